package openapi

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/router"
)

// Reasons the OpenAPI stages refuse requests with. A body that is not JSON
// where the document says JSON is the kernel's 400 invalid_json.
const (
	ReasonSchemaViolation        = "schema_violation"         // 400: the JSON body does not match its schema
	ReasonInvalidParameter       = "invalid_parameter"        // 400: a parameter does not match its schema or style, or is repeated
	ReasonMissingParameter       = "missing_parameter"        // 400: a required parameter is absent
	ReasonUndeclaredParameter    = "undeclared_parameter"     // 400: strict mode: a query parameter the operation does not declare
	ReasonMissingBody            = "missing_body"             // 400: the operation requires a body and there is none
	ReasonUnexpectedBody         = "unexpected_body"          // 400: strict mode: a body on an operation without requestBody
	ReasonUnsupportedMediaType   = "unsupported_media_type"   // 415: the Content-Type is not in the operation's requestBody content
	ReasonOperationNotDocumented = "operation_not_documented" // 404: no operation of the document matches the method and path
)

// statusOf maps each reason to its HTTP status.
func statusOf(reason string) int {
	switch reason {
	case ReasonUnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	case ReasonOperationNotDocumented:
		return http.StatusNotFound
	}
	return http.StatusBadRequest
}

// Findings keys the stages record on the exchange.
const (
	NoteViolations = "validation_errors"  // []string: each violation as Violation.String formats it
	NoteWouldDeny  = "validation_reason"  // log mode: the reason enforce mode would have answered
	NoteOperation  = "openapi_operation"  // Dispatcher: the operation the request matched
	NoteShadow     = "shadow_api"         // shadow mode: the request matched no operation and passed
	NoteDeprecated = "openapi_deprecated" // the operation is deprecated: true
)

// Mode says what a violation does.
type Mode uint8

// The modes.
const (
	ModeEnforce Mode = iota // refuse the request
	ModeLog                 // record the violations and let the request through
)

// Unknown says what happens to a request that matches no operation.
type Unknown uint8

// The unknown-operation policies.
const (
	UnknownDeny   Unknown = iota // 404 operation_not_documented
	UnknownShadow                // record it in the shadow API report and let it through
)

// Options configures the stages built from a Document.
type Options struct {
	Mode   Mode
	Strict bool // refuse undeclared query parameters and JSON properties, and a body the operation does not declare

	Unknown Unknown       // Dispatcher and Undocumented: requests that match no operation
	Shadow  *ShadowReport // UnknownShadow: where such requests are recorded (required)
	Source  string        // names the document or upstream in shadow entries
}

// OptionsFrom translates an OpenAPI configuration block (after
// ApplyDefaults). generated says whether the routes were generated from
// the document, which makes validation strict unless the block says
// otherwise. shadow is the report for unknown_operations: shadow.
func OptionsFrom(c *config.OpenAPI, generated bool, shadow *ShadowReport, source string) Options {
	o := Options{Strict: c.StrictDefault(generated), Shadow: shadow, Source: source}
	if c != nil && c.Mode == config.OpenAPIModeLog {
		o.Mode = ModeLog
	}
	if c != nil && c.UnknownOperations == config.OpenAPIUnknownShadow {
		o.Unknown = UnknownShadow
	}
	return o
}

// Violation is one way a request does not match the document. It names
// where and which rule, never the offending value.
type Violation struct {
	Reason  string // reason ID
	In      string // path, query, header, cookie or body
	Name    string // the parameter name; "" for the body
	Pointer string // location inside the value: "/authors/0/email" in a body, "/1" in an array parameter
	Keyword string // the schema keyword that failed (maximum, required, format...) or a check of moat's (missing, duplicate, style, undeclared, media_type)
}

// String formats the violation for logs: "query.limit: maximum",
// "body/authors/0/email: format".
func (v Violation) String() string {
	var b strings.Builder
	b.WriteString(v.In)
	if v.Name != "" {
		b.WriteByte('.')
		b.WriteString(v.Name)
	}
	b.WriteString(v.Pointer)
	b.WriteString(": ")
	b.WriteString(v.Keyword)
	return b.String()
}

// opCheck is the compiled validation of one operation, built at load.
type opCheck struct {
	path, query, header, cookie []*paramCheck
	queryNames                  map[string]bool // names of query parameters and of exploded form objects' properties
	deepObjects                 []string        // names of deepObject parameters: name[...] keys are theirs
	body                        []bodyCheck     // one per RequestBody.Content entry
}

// bodyCheck is the compiled check of one request media type.
type bodyCheck struct {
	mt              *MediaType
	lenient, strict *jsonschema.Schema // nil unless the media type is JSON and has a schema
}

// compile builds op's opCheck. Parameters are compiled in the request
// variant, bodies in both request variants.
func (b *builder) compile(op *Operation) error {
	c := &opCheck{queryNames: map[string]bool{}}
	for _, p := range op.Parameters {
		pc := &paramCheck{p: p, key: p.Name}
		if p.Schema != "" {
			s, err := b.d.compile(p.Schema, variantRequest)
			if err != nil {
				return err
			}
			pc.schema = s
			v, _ := lookup(b.root, p.Schema)
			pc.shape = shapeOf(b.root, v)
		}
		if p.ContentType != "" {
			if mt, err := newMediaType(p.ContentType, ""); err == nil && mt.json {
				pc.json = true
			}
		}
		switch p.In {
		case "path":
			if p.RouterName == "" {
				for i := range op.segments {
					for j, n := range op.segments[i].names {
						if n == p.Name {
							pc.seg, pc.group = &op.segments[i], j+1
						}
					}
				}
			}
			c.path = append(c.path, pc)
		case "query":
			c.query = append(c.query, pc)
			c.queryNames[p.Name] = true
			switch {
			case p.Style == "deepObject":
				c.deepObjects = append(c.deepObjects, p.Name)
			case p.Style == "form" && p.Explode && pc.kind() == tObject:
				for n := range pc.shape.props {
					c.queryNames[n] = true
				}
			}
		case "header":
			pc.key = http.CanonicalHeaderKey(p.Name)
			switch pc.key {
			case "Accept", "Content-Type", "Authorization": // OpenAPI: such header parameters are ignored
				continue
			}
			c.header = append(c.header, pc)
		case "cookie":
			c.cookie = append(c.cookie, pc)
		}
	}
	if rb := op.RequestBody; rb != nil {
		for _, mt := range rb.Content {
			bc := bodyCheck{mt: mt}
			if (mt.json || mt.wild) && mt.Schema != "" {
				var err error
				if bc.lenient, err = b.d.compile(mt.Schema, variantRequest); err != nil {
					return err
				}
				if bc.strict, err = b.d.compile(mt.Schema, variantRequestStrict); err != nil {
					return err
				}
			}
			c.body = append(c.body, bc)
		}
	}
	op.check = c
	return nil
}

// requestIsJSON reports whether a Content-Type value names a JSON media
// type.
func requestIsJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	typ, sub, _ := strings.Cut(mt, "/")
	return isJSONType(typ, sub)
}

// Validator is the request stage of one operation: it validates every
// request of a route generated from the operation. It is built by
// Document.Validator, immutable, and safe for concurrent use.
type Validator struct {
	op     *Operation
	c      *opCheck
	mode   Mode
	strict bool
}

// Validator returns the request stage that validates requests against op,
// which must be one of d's operations. The path parameters are read from
// the exchange's route parameters, so the route's template must be
// op.Template.
func (d *Document) Validator(op *Operation, opts Options) (*Validator, error) {
	if op == nil || op.check == nil {
		return nil, errors.New("openapi: operation is not one of the document's")
	}
	for _, o := range d.ops {
		if o == op {
			return &Validator{op: op, c: op.check, mode: opts.Mode, strict: opts.Strict}, nil
		}
	}
	return nil, fmt.Errorf("openapi: operation %s is not one of %s's", op, d.name)
}

// Operation returns the operation v validates.
func (v *Validator) Operation() *Operation { return v.op }

// ProcessRequest validates the request's parameters, then its body. In
// enforce mode the first failing check's reason is answered (400, or 415
// for a media type), every violation found is recorded under
// "validation_errors", and nothing else is said to the client; in log mode
// the violations are recorded and the request passes. Errors reading the
// body (413 body_too_large...) are returned in both modes.
func (v *Validator) ProcessRequest(_ context.Context, ex *gateway.Exchange) error {
	return v.check(ex, ex.Params)
}

func (v *Validator) check(ex *gateway.Exchange, params []router.Param) error {
	if v.op.Deprecated {
		ex.Note(NoteDeprecated, true)
	}
	var out []Violation
	out = v.checkPath(params, out)
	out = v.checkQuery(ex.Request.URL.RawQuery, out)
	out = v.checkHeaders(ex.Request.Header, out)
	if len(out) > 0 && v.mode == ModeEnforce {
		return deny(ex, out)
	}
	out, err := v.checkBody(ex, out)
	if err != nil {
		return err
	}
	if len(out) == 0 {
		return nil
	}
	if v.mode == ModeLog {
		note(ex, out)
		ex.Note(NoteWouldDeny, out[0].Reason)
		return nil
	}
	return deny(ex, out)
}

// deny records the violations and returns the reject of the first.
func deny(ex *gateway.Exchange, out []Violation) error {
	note(ex, out)
	first := out[0]
	detail := make([]string, 0, len(out))
	for _, v := range out {
		detail = append(detail, v.String())
	}
	return &gateway.Reject{Status: statusOf(first.Reason), ReasonID: first.Reason, Detail: strings.Join(detail, "; ")}
}

func note(ex *gateway.Exchange, out []Violation) {
	s := make([]string, len(out))
	for i, v := range out {
		s[i] = v.String()
	}
	ex.Note(NoteViolations, s)
}

// add appends a violation unless maxViolations are there already.
func add(out []Violation, v Violation) []Violation {
	if len(out) >= maxViolations {
		return out
	}
	return append(out, v)
}

// checkValue validates a decoded parameter value against its schema.
func checkValue(pc *paramCheck, val any, out []Violation) []Violation {
	if pc.schema == nil {
		return out
	}
	if ptr, costly := findCostlyNumber(val); costly {
		return add(out, Violation{Reason: ReasonInvalidParameter, In: pc.p.In, Name: pc.p.Name, Pointer: ptr, Keyword: KeywordNumberSize})
	}
	if err := pc.schema.Validate(val); err != nil {
		return schemaViolations(err, ReasonInvalidParameter, pc.p.In, pc.p.Name, out)
	}
	return out
}

func (v *Validator) checkPath(params []router.Param, out []Violation) []Violation {
	for _, pc := range v.c.path {
		var raw string
		if pc.seg != nil {
			m := pc.seg.re.FindStringSubmatch(paramValue(params, pc.seg.routerName))
			if m == nil {
				out = add(out, Violation{Reason: ReasonInvalidParameter, In: "path", Name: pc.p.Name, Keyword: "template"})
				continue
			}
			raw = m[pc.group]
		} else {
			raw = paramValue(params, pc.p.RouterName)
		}
		val, err := pc.pathValue(raw)
		if err != nil {
			out = add(out, Violation{Reason: ReasonInvalidParameter, In: "path", Name: pc.p.Name, Keyword: "style"})
			continue
		}
		out = checkValue(pc, val, out)
	}
	return out
}

func paramValue(params []router.Param, name string) string {
	for _, p := range params {
		if p.Key == name {
			return p.Value
		}
	}
	return ""
}

func (v *Validator) checkQuery(raw string, out []Violation) []Violation {
	if len(v.c.query) == 0 && (!v.strict || raw == "") {
		return out
	}
	q, bad, ok := parseQuery(raw)
	if !ok {
		return add(out, Violation{Reason: ReasonInvalidParameter, In: "query", Name: clip(bad), Keyword: "encoding"})
	}
	var buf [4]string
	for _, pc := range v.c.query {
		p := pc.p
		var val any
		var err error
		present := true
		switch {
		case p.Style == "deepObject":
			val, present, err = deepObject(pc, q)
		case p.Style == "form" && p.Explode && pc.kind() == tObject:
			val, present, err = explodedObject(pc, q)
		default:
			vals := q.values(p.Name, buf[:0])
			switch {
			case len(vals) == 0:
				present = false
			case p.Explode && pc.kind() == tArray:
				arr := make([]any, len(vals))
				for i, s := range vals {
					arr[i] = coerce(s, pc.shape.items)
				}
				val = arr
			case len(vals) > 1:
				out = add(out, Violation{Reason: ReasonInvalidParameter, In: "query", Name: p.Name, Keyword: "duplicate"})
				continue
			case vals[0] == "" && pc.kind() != tArray:
				if !p.AllowEmptyValue {
					out = add(out, Violation{Reason: ReasonInvalidParameter, In: "query", Name: p.Name, Keyword: "allowEmptyValue"})
					continue
				}
				if pc.shape.types != 0 && pc.shape.types&tString == 0 {
					present = false // an empty value for a non-string parameter: as if absent
				} else {
					val = ""
				}
			default:
				val, err = pc.fromString(vals[0])
			}
		}
		switch {
		case err != nil:
			out = add(out, Violation{Reason: ReasonInvalidParameter, In: "query", Name: p.Name, Keyword: err.Error()})
		case !present:
			if p.Required {
				out = add(out, Violation{Reason: ReasonMissingParameter, In: "query", Name: p.Name, Keyword: "required"})
			}
		default:
			out = checkValue(pc, val, out)
		}
	}
	if v.strict {
		for i, p := range q {
			if !v.c.declaredQuery(p.key) && !q[:i].has(p.key) {
				out = add(out, Violation{Reason: ReasonUndeclaredParameter, In: "query", Name: clip(p.key), Keyword: "undeclared"})
			}
		}
	}
	return out
}

// has reports whether q holds a pair named name.
func (q query) has(name string) bool {
	for _, p := range q {
		if p.key == name {
			return true
		}
	}
	return false
}

// declaredQuery reports whether the query name k belongs to a declared
// parameter.
func (c *opCheck) declaredQuery(k string) bool {
	if c.queryNames[k] {
		return true
	}
	if i := strings.IndexByte(k, '['); i > 0 && strings.HasSuffix(k, "]") {
		for _, n := range c.deepObjects {
			if k[:i] == n {
				return true
			}
		}
	}
	return false
}

// deepObject collects name[prop]=value pairs into an object.
func deepObject(pc *paramCheck, q query) (any, bool, error) {
	prefix := pc.p.Name + "["
	var obj map[string]any
	for _, p := range q {
		rest, ok := strings.CutPrefix(p.key, prefix)
		if !ok {
			continue
		}
		prop, ok := strings.CutSuffix(rest, "]")
		if !ok || strings.ContainsAny(prop, "[]") {
			return nil, true, errStyle
		}
		if obj == nil {
			obj = map[string]any{}
		}
		if _, dup := obj[prop]; dup {
			return nil, true, errDuplicate
		}
		obj[prop] = coerce(p.value, pc.shape.props[prop])
	}
	return obj, obj != nil, nil
}

// explodedObject collects the declared properties of a form, explode: true
// object parameter from the query names equal to them.
func explodedObject(pc *paramCheck, q query) (any, bool, error) {
	var obj map[string]any
	var buf [2]string
	for prop, t := range pc.shape.props {
		vals := q.values(prop, buf[:0])
		if len(vals) == 0 {
			continue
		}
		if len(vals) > 1 {
			return nil, true, errDuplicate
		}
		if obj == nil {
			obj = map[string]any{}
		}
		obj[prop] = coerce(vals[0], t)
	}
	return obj, obj != nil, nil
}

// errDuplicate reports a parameter given more than once where one value is
// allowed: the upstream might read another copy than the one validated.
var errDuplicate = errors.New("duplicate")

func (v *Validator) checkHeaders(h http.Header, out []Violation) []Violation {
	for _, pc := range v.c.header {
		vals := h.Values(pc.key)
		out = v.single(pc, vals, out, func(vals []string) string { return strings.Join(vals, ",") })
	}
	for _, pc := range v.c.cookie {
		out = v.single(pc, cookieValues(h, pc.p.Name), out, nil)
	}
	return out
}

// single checks a header or cookie parameter. Several values are joined
// by join for arrays and objects (a header's lines are one list); for a
// single value, or when join is nil, they are a duplicate.
func (v *Validator) single(pc *paramCheck, vals []string, out []Violation, join func([]string) string) []Violation {
	p := pc.p
	switch {
	case len(vals) == 0:
		if p.Required {
			out = add(out, Violation{Reason: ReasonMissingParameter, In: p.In, Name: p.Name, Keyword: "required"})
		}
		return out
	case len(vals) > 1 && (join == nil || pc.kind() == 0):
		return add(out, Violation{Reason: ReasonInvalidParameter, In: p.In, Name: p.Name, Keyword: "duplicate"})
	}
	s := vals[0]
	if len(vals) > 1 {
		s = join(vals)
	}
	val, err := pc.fromString(s)
	if err != nil {
		return add(out, Violation{Reason: ReasonInvalidParameter, In: p.In, Name: p.Name, Keyword: err.Error()})
	}
	return checkValue(pc, val, out)
}

func (v *Validator) checkBody(ex *gateway.Exchange, out []Violation) ([]Violation, error) {
	rb := v.op.RequestBody
	if rb == nil && !v.strict {
		return out, nil
	}
	body, err := ex.ReadBody()
	if err != nil {
		return out, err
	}
	if rb == nil {
		if len(body) > 0 {
			out = add(out, Violation{Reason: ReasonUnexpectedBody, In: "body", Keyword: "requestBody"})
		}
		return out, nil
	}
	if len(body) == 0 {
		if rb.Required {
			out = add(out, Violation{Reason: ReasonMissingBody, In: "body", Keyword: "required"})
		}
		return out, nil
	}
	cts := ex.Request.Header.Values("Content-Type")
	if len(cts) != 1 {
		kw := "missing"
		if len(cts) > 1 {
			kw = "duplicate"
		}
		return add(out, Violation{Reason: ReasonUnsupportedMediaType, In: "header", Name: "Content-Type", Keyword: kw}), nil
	}
	var bc *bodyCheck
	if mt, ok := matchMediaType(rb.Content, cts[0]); ok {
		for i := range v.c.body {
			if v.c.body[i].mt == mt {
				bc = &v.c.body[i]
			}
		}
	}
	if bc == nil {
		return add(out, Violation{Reason: ReasonUnsupportedMediaType, In: "header", Name: "Content-Type", Keyword: "media_type"}), nil
	}
	schema := bc.lenient
	if v.strict {
		schema = bc.strict
	}
	if schema == nil || (!bc.mt.json && !requestIsJSON(cts[0])) {
		return out, nil // not JSON: the media type is allowed, the body is not validated
	}
	doc, err := ex.JSONBody()
	if err != nil {
		var rej *gateway.Reject
		if v.mode == ModeLog && errors.As(err, &rej) && rej.ReasonID == gateway.ReasonInvalidJSON {
			return add(out, Violation{Reason: gateway.ReasonInvalidJSON, In: "body", Keyword: "json"}), nil
		}
		return out, err
	}
	if ptr, costly := findCostlyNumber(doc); costly {
		return add(out, Violation{Reason: ReasonSchemaViolation, In: "body", Pointer: ptr, Keyword: KeywordNumberSize}), nil
	}
	if err := schema.Validate(doc); err != nil {
		out = schemaViolations(err, ReasonSchemaViolation, "body", "", out)
	}
	return out, nil
}

var _ gateway.RequestStage = (*Validator)(nil)
