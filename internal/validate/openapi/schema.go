package openapi

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// Direction says which side of an exchange a schema is compiled for: it
// decides whether readOnly or writeOnly properties stop being required.
type Direction uint8

// The directions.
const (
	ForRequest  Direction = iota // readOnly properties are not required
	ForResponse                  // writeOnly properties are not required
)

// variant is one transformed copy of the document that schemas are compiled
// from; each has its own compiler.
type variant uint8

const (
	variantRequest       variant = iota // readOnly properties are not required
	variantRequestStrict                // and undeclared properties are refused
	variantResponse                     // writeOnly properties are not required
	numVariants
)

var variantNames = [numVariants]string{"request", "request-strict", "response"}

// schemaSet is the compiler of one variant. Compiled schemas are cached by
// the compiler, so components shared by several operations compile once.
type schemaSet struct {
	c   *jsonschema.Compiler
	url string // the URL of the document resource
}

// Schema is a compiled schema: a JSON value is checked against it without
// compiling or rendering anything. It is immutable and safe for concurrent
// use.
type Schema struct {
	s       *jsonschema.Schema
	pointer string
}

// Pointer returns the JSON pointer of the schema in the document.
func (s *Schema) Pointer() string { return s.pointer }

// Validate checks v, a value decoded from JSON with numbers as json.Number
// (as gateway.Exchange.JSONBody returns it), and returns its violations, at
// most maxViolations, with reason schema_violation and In "body"; nil when v
// is valid. A violation names the value's location and the failed keyword,
// never the value.
func (s *Schema) Validate(v any) []Violation {
	if ptr, costly := findCostlyNumber(v); costly {
		return []Violation{{Reason: ReasonSchemaViolation, In: "body", Pointer: ptr, Keyword: KeywordNumberSize}}
	}
	err := s.s.Validate(v)
	if err == nil {
		return nil
	}
	return schemaViolations(err, ReasonSchemaViolation, "body", "", nil)
}

// CompileSchema compiles the schema at the JSON pointer ptr (such as a
// MediaType's Schema) for dir. It compiles at most once per pointer and
// direction; call it at configuration load, never per request. It returns
// an error naming the schema's position when the schema does not compile.
func (d *Document) CompileSchema(ptr string, dir Direction) (*Schema, error) {
	v := variantRequest
	if dir == ForResponse {
		v = variantResponse
	}
	s, err := d.compile(ptr, v)
	if err != nil {
		return nil, err
	}
	return &Schema{s: s, pointer: ptr}, nil
}

// compile compiles the schema at ptr in variant v.
func (d *Document) compile(ptr string, v variant) (*jsonschema.Schema, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	set := d.schemas[v]
	if set == nil {
		var err error
		if set, err = d.newSchemaSet(v); err != nil {
			return nil, fmt.Errorf("%s: %w", d.name, err)
		}
		d.schemas[v] = set
	}
	s, err := set.c.Compile(set.url + fragmentURL(ptr))
	if err != nil {
		return nil, fmt.Errorf("%s: schema %s does not compile: %s", d.where(ptr), ptr, compileMessage(err))
	}
	return s, nil
}

// compileMessage shortens a compiler error: the resource URL is an
// internal name.
func compileMessage(err error) string {
	msg := err.Error()
	for _, n := range variantNames {
		msg = strings.ReplaceAll(msg, resourceURL(n), "")
	}
	return msg
}

func resourceURL(name string) string { return "https://moat.invalid/openapi/" + name + ".json" }

// newSchemaSet builds the compiler of variant v over a transformed copy of
// the document.
func (d *Document) newSchemaSet(v variant) (*schemaSet, error) {
	tree, err := jsonschema.UnmarshalJSON(bytes.NewReader(d.json))
	if err != nil {
		return nil, fmt.Errorf("decoding the document: %w", err)
	}
	switch v {
	case variantRequest:
		walkSchemas(tree, func(s map[string]any, _ bool) { dropRequired(tree, s, "readOnly") })
	case variantRequestStrict:
		walkSchemas(tree, func(s map[string]any, entry bool) {
			dropRequired(tree, s, "readOnly")
			refuseUndeclared(s, entry)
		})
	case variantResponse:
		walkSchemas(tree, func(s map[string]any, _ bool) { dropRequired(tree, s, "writeOnly") })
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(refuseLoader{})
	for _, f := range openAPIFormats {
		c.RegisterFormat(f)
	}
	url := resourceURL(variantNames[v])
	if err := c.AddResource(url, tree); err != nil {
		return nil, fmt.Errorf("adding the document to the schema compiler: %w", err)
	}
	return &schemaSet{c: c, url: url}, nil
}

// refuseLoader fails every load: references out of the document (files,
// URLs) are not followed.
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("reference to %q: only references within the document are supported", url)
}

// openAPIFormats are the OpenAPI formats JSON Schema does not define.
// float, double, binary and password assert nothing.
var openAPIFormats = []*jsonschema.Format{
	{Name: "int32", Validate: intRange(32)},
	{Name: "int64", Validate: intRange(64)},
	{Name: "byte", Validate: func(v any) error {
		s, ok := v.(string)
		if !ok {
			return nil
		}
		if _, err := base64.StdEncoding.DecodeString(s); err != nil {
			return errors.New("not base64")
		}
		return nil
	}},
}

// intRange checks that a number that is an integer fits a signed integer
// of bits bits; other values are the type keyword's business.
func intRange(bits uint) func(v any) error {
	lo := new(big.Rat).SetInt(new(big.Int).Neg(new(big.Int).Lsh(big.NewInt(1), bits-1)))
	hi := new(big.Rat).SetInt(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), bits-1), big.NewInt(1)))
	return func(v any) error {
		n, ok := v.(json.Number)
		if !ok {
			return nil
		}
		r, ok := new(big.Rat).SetString(string(n))
		if !ok || !r.IsInt() {
			return nil
		}
		if r.Cmp(lo) < 0 || r.Cmp(hi) > 0 {
			return fmt.Errorf("out of the int%d range", bits)
		}
		return nil
	}
}

// Keywords whose values are schemas (JSON Schema 2020-12, plus the older
// "definitions" and array-form "items" that OpenAPI 3.0 documents may use).
var (
	schemaKeywords    = []string{"additionalProperties", "items", "not", "if", "then", "else", "contains", "propertyNames", "unevaluatedItems", "unevaluatedProperties", "contentSchema", "additionalItems"}
	schemaMapKeywords = []string{"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
	schemaListKeys    = []string{"allOf", "anyOf", "oneOf", "prefixItems", "items"}
)

// walkSchemas calls visit on every schema object of the OpenAPI document
// tree root: the components' schemas and every "schema" of a parameter,
// header or media type, and every subschema within them. entry is true for
// the schema of a parameter, header or media type: the value at the root of
// what a request or response carries. visit may modify the schema it is
// given but not its subschemas' positions. Examples and extensions are not
// entered, so data in them is never taken for schemas.
func walkSchemas(root any, visit func(s map[string]any, entry bool)) {
	var doc func(v any, depth int, inComponents bool)
	var schema func(v any, depth int, entry bool)
	schema = func(v any, depth int, entry bool) {
		s, ok := v.(map[string]any)
		if !ok || depth > maxDepth {
			return
		}
		visit(s, entry)
		for _, k := range schemaKeywords {
			if sub, ok := s[k].(map[string]any); ok {
				schema(sub, depth+1, false)
			}
		}
		for _, k := range schemaMapKeywords {
			if m, ok := s[k].(map[string]any); ok {
				for _, sub := range m {
					schema(sub, depth+1, false)
				}
			}
		}
		for _, k := range schemaListKeys {
			if l, ok := s[k].([]any); ok {
				for _, sub := range l {
					schema(sub, depth+1, false)
				}
			}
		}
	}
	doc = func(v any, depth int, inComponents bool) {
		if depth > maxDepth {
			return
		}
		switch t := v.(type) {
		case map[string]any:
			for k, c := range t {
				switch {
				case k == "example" || k == "examples" || strings.HasPrefix(k, "x-"):
				case k == "schema":
					schema(c, depth+1, true)
				case k == "schemas" && inComponents:
					if m, ok := c.(map[string]any); ok {
						for _, sub := range m {
							schema(sub, depth+1, false)
						}
					}
				default:
					doc(c, depth+1, depth == 0 && k == "components")
				}
			}
		case []any:
			for _, c := range t {
				doc(c, depth+1, false)
			}
		}
	}
	doc(root, 0, false)
}

// dropRequired removes from s's required list the properties whose schema
// says flag (readOnly or writeOnly): true, directly or through a chain of
// local references. OpenAPI: a readOnly property is required in responses
// only, a writeOnly one in requests only.
func dropRequired(root any, s map[string]any, flag string) {
	req, ok := s["required"].([]any)
	if !ok {
		return
	}
	props, _ := s["properties"].(map[string]any)
	if props == nil {
		return
	}
	kept := req[:0:0]
	for _, r := range req {
		name, _ := r.(string)
		if p, ok := props[name]; ok && schemaFlag(root, p, flag) {
			continue
		}
		kept = append(kept, r)
	}
	if len(kept) != len(req) {
		s["required"] = kept
	}
}

// schemaFlag reports whether the schema v, or a schema it refers to with
// $ref, says flag: true.
func schemaFlag(root, v any, flag string) bool {
	for i := 0; i < maxDepth; i++ {
		s, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if b, _ := s[flag].(bool); b {
			return true
		}
		ref, ok := s["$ref"].(string)
		if !ok {
			return false
		}
		if v, ok = lookup(root, ref); !ok {
			return false
		}
	}
	return false
}

// refuseUndeclared makes the properties an object at the position of s (or
// of its instance-position subschemas) may have exactly those the schema
// evaluates: it adds unevaluatedProperties: false to every schema that
// describes a whole value (an entry schema, a property, an array item, an
// additional property) unless it says something about unevaluated
// properties itself. Composition keeps working: properties declared in any
// allOf, anyOf or oneOf branch that passed, or through $ref, count as
// evaluated (JSON Schema 2020-12), and additionalProperties or
// patternProperties declare the properties they match. Component schemas
// themselves are left open, since they are composed.
func refuseUndeclared(s map[string]any, entry bool) {
	seal := func(v any) {
		if m, ok := v.(map[string]any); ok {
			if _, has := m["unevaluatedProperties"]; !has {
				m["unevaluatedProperties"] = false
			}
		}
	}
	if entry {
		seal(s)
	}
	for _, k := range []string{"additionalProperties", "items", "unevaluatedItems", "additionalItems"} {
		seal(s[k])
	}
	for _, k := range []string{"properties", "patternProperties"} {
		if m, ok := s[k].(map[string]any); ok {
			for _, sub := range m {
				seal(sub)
			}
		}
	}
	if l, ok := s["prefixItems"].([]any); ok {
		for _, sub := range l {
			seal(sub)
		}
	}
}

// maxViolations bounds the violations one request reports.
const maxViolations = 16

// schemaViolations flattens a validation error into violations: the
// innermost failures, each with the instance location and the keyword,
// sorted by location. An anyOf or oneOf failure is reported as itself
// rather than as the failures of each branch. Property names reported by
// required come from the schema; those reported as undeclared come from the
// request and are clipped.
//
// unevaluatedProperties (strict mode) needs care: when another keyword of
// the same schema fails, the annotations of the failed subschemas are lost
// (JSON Schema 2020-12), so every property they declared is reported as
// unevaluated too. Such reports are dropped when another failure lies in
// the same object (see lostAnnotations): the violations listed are then all
// real, though an undeclared property next to another failure may only be
// listed once that one is fixed.
func schemaViolations(err error, reason, in, name string, out []Violation) []Violation {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return append(out, Violation{Reason: reason, In: in, Name: name, Keyword: "invalid"})
	}
	start := len(out)
	defer func() {
		slices.SortStableFunc(out[start:], func(a, b Violation) int {
			return cmp.Or(strings.Compare(a.Pointer, b.Pointer), strings.Compare(a.Keyword, b.Keyword))
		})
	}()
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(out) >= maxViolations {
			return
		}
		loc := instancePointer(e.InstanceLocation)
		switch k := e.ErrorKind.(type) {
		case *kind.AnyOf, *kind.OneOf:
			out = append(out, Violation{Reason: reason, In: in, Name: name, Pointer: loc, Keyword: keywordOf(e)})
			return
		case *kind.Required:
			for _, m := range k.Missing {
				out = append(out, Violation{Reason: reason, In: in, Name: name, Pointer: loc + "/" + escapeToken(m), Keyword: "required"})
			}
			return
		case *kind.AdditionalProperties:
			for _, p := range k.Properties {
				out = append(out, Violation{Reason: reason, In: in, Name: name, Pointer: loc + "/" + escapeToken(clip(p)), Keyword: "additionalProperties"})
			}
			return
		}
		if len(e.Causes) == 0 {
			out = append(out, Violation{Reason: reason, In: in, Name: name, Pointer: loc, Keyword: keywordOf(e)})
			return
		}
		for _, c := range e.Causes {
			if unevaluated(c) && lostAnnotations(c, e.Causes) {
				continue
			}
			walk(c)
		}
	}
	walk(ve)
	if len(out) == 0 {
		out = append(out, Violation{Reason: reason, In: in, Name: name, Keyword: "invalid"})
	}
	return out
}

// lostAnnotations reports whether the unevaluated-property failure u may be
// an artefact: another failure lies in the object u's property belongs to
// (at the object, or inside one of its members), so that the object's
// subschemas may have failed and lost the annotations that declare the
// property. Other unevaluated properties of the same object are peers, not
// such evidence.
func lostAnnotations(u *jsonschema.ValidationError, siblings []*jsonschema.ValidationError) bool {
	obj := u.InstanceLocation[:max(len(u.InstanceLocation)-1, 0)]
	for _, s := range siblings {
		loc := s.InstanceLocation
		if len(loc) < len(obj) || !slices.Equal(loc[:len(obj)], obj) {
			continue
		}
		if !unevaluated(s) || len(loc) > len(obj)+1 {
			return true
		}
	}
	return false
}

// unevaluated reports whether e is an unevaluatedProperties: false
// failure: a property no subschema evaluated.
func unevaluated(e *jsonschema.ValidationError) bool {
	_, f := e.ErrorKind.(*kind.FalseSchema)
	return f && strings.HasSuffix(e.SchemaURL, "/unevaluatedProperties")
}

// keywordOf names the keyword a leaf error failed: the kind's keyword, or
// for a false schema the keyword that holds it (unevaluatedProperties:
// false reports an undeclared property that way).
func keywordOf(e *jsonschema.ValidationError) string {
	if kp := e.ErrorKind.KeywordPath(); len(kp) > 0 {
		return kp[len(kp)-1]
	}
	if _, ok := e.ErrorKind.(*kind.FalseSchema); ok {
		if i := strings.LastIndexByte(e.SchemaURL, '/'); i >= 0 {
			switch k := e.SchemaURL[i+1:]; k {
			case "unevaluatedProperties", "additionalProperties", "unevaluatedItems", "items", "additionalItems", "propertyNames":
				return k
			}
		}
		return "false"
	}
	if _, ok := e.ErrorKind.(*kind.Not); ok {
		return "not"
	}
	return "invalid"
}

// instancePointer formats an instance location as a JSON pointer, each
// token clipped: object keys come from the request.
func instancePointer(loc []string) string {
	if len(loc) == 0 {
		return ""
	}
	var b strings.Builder
	for _, t := range loc {
		b.WriteByte('/')
		b.WriteString(escapeToken(clip(t)))
	}
	return b.String()
}

// clip makes client-supplied text safe and short for logs: at most 64
// bytes, control characters and invalid UTF-8 replaced by "?".
func clip(s string) string {
	const max = 64
	ok := len(s) <= max
	for i := 0; ok && i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			ok = false
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		if i >= max {
			b.WriteString("...")
			break
		}
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// normalize30 translates the schemas of an OpenAPI 3.0 document into JSON
// Schema 2020-12, in place:
//
//   - nullable: true adds "null" to type (and null to enum); without a
//     type, the schema becomes anyOf [{type: null}, the schema];
//   - boolean exclusiveMinimum/exclusiveMaximum become the numeric form;
//   - keywords next to $ref are dropped, as OpenAPI 3.0 ignores them,
//     except extensions and readOnly/writeOnly, which moat reads.
func normalize30(root any) {
	walkSchemas(root, func(s map[string]any, _ bool) {
		if _, ok := s["$ref"]; ok {
			for k := range s {
				if k != "$ref" && k != "readOnly" && k != "writeOnly" && !strings.HasPrefix(k, "x-") {
					delete(s, k)
				}
			}
			return
		}
		exclusive30(s, "exclusiveMinimum", "minimum")
		exclusive30(s, "exclusiveMaximum", "maximum")
		nullable, _ := s["nullable"].(bool)
		delete(s, "nullable")
		if !nullable {
			return
		}
		if e, ok := s["enum"].([]any); ok && !containsNull(e) {
			s["enum"] = append(e, nil)
		}
		switch t := s["type"].(type) {
		case string:
			s["type"] = []any{t, "null"}
		case []any:
			if !containsString(t, "null") {
				s["type"] = append(t, "null")
			}
		case nil:
			rest := make(map[string]any, len(s))
			for k, v := range s {
				if !strings.HasPrefix(k, "x-") && k != "readOnly" && k != "writeOnly" {
					rest[k] = v
					delete(s, k)
				}
			}
			s["anyOf"] = []any{map[string]any{"type": "null"}, rest}
		}
	})
}

// exclusive30 turns exclusiveMinimum: true (draft 4, OpenAPI 3.0) next to
// minimum into exclusiveMinimum: <minimum>; false is dropped.
func exclusive30(s map[string]any, ex, bound string) {
	b, ok := s[ex].(bool)
	if !ok {
		return
	}
	delete(s, ex)
	if v, has := s[bound]; b && has {
		s[ex] = v
		delete(s, bound)
	}
}

func containsNull(l []any) bool {
	for _, v := range l {
		if v == nil {
			return true
		}
	}
	return false
}

func containsString(l []any, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}
