package openapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/moat-gateway/moat/internal/router"
)

// methods are the operation fields of a Path Item, in the order Operations
// lists them.
var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// Supported values of jsonSchemaDialect: JSON Schema 2020-12 and the
// OpenAPI 3.1 base dialect built on it.
var dialects = []string{
	"https://json-schema.org/draft/2020-12/schema",
	"https://spec.openapis.org/oas/3.1/dialect/base",
	"https://spec.openapis.org/oas/3.1/dialect/2024-11-10",
}

// Extensions moat reads. Any other x-moat-* key where these may appear is
// a load error, so that a misspelt one is not silently ignored.
const (
	extAuth        = "x-moat-auth"
	extRateLimits  = "x-moat-rate-limits"
	extOwner       = "x-moat-owner"
	extDeprecation = "x-moat-deprecation"
)

// maxPropertyPaths bounds the property paths one body schema may expand to
// when readOnly, writeOnly and x-moat-owner properties are listed.
const maxPropertyPaths = 10000

// builder turns the document's JSON tree into Operations and compiles their
// validation.
type builder struct {
	d        *Document
	o        loadOptions
	root     map[string]any
	problems []string

	docAuth       *Auth
	docRateLimits []string
}

func newBuilder(d *Document, o loadOptions) *builder { return &builder{d: d, o: o} }

// errorf records a problem at the JSON pointer ptr.
func (b *builder) errorf(ptr, format string, args ...any) {
	b.problems = append(b.problems, b.d.where(ptr)+": "+fmt.Sprintf(format, args...))
}

func (b *builder) build() error {
	tree, err := jsonschema.UnmarshalJSON(bytes.NewReader(b.d.json))
	if err != nil {
		return fmt.Errorf("%s: decoding the document: %w", b.d.name, err)
	}
	root, ok := tree.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: the document is not an object", b.d.name)
	}
	b.root = root
	if b.d.v30 {
		normalize30(root)
		if b.d.json, err = json.Marshal(root); err != nil {
			return fmt.Errorf("%s: encoding the document: %w", b.d.name, err)
		}
	} else if dialect, ok := root["jsonSchemaDialect"].(string); ok && !slices.Contains(dialects, dialect) {
		b.errorf("#/jsonSchemaDialect", "jsonSchemaDialect %q is not supported: use JSON Schema 2020-12 or the OpenAPI 3.1 base dialect", dialect)
	}

	b.checkExtensions("#", root, extAuth, extRateLimits)
	b.docAuth = b.auth("#", root)
	b.docRateLimits = b.rateLimits("#", root)
	docBase := b.serverPath("#", root, "")
	if b.o.basePath != nil {
		docBase = *b.o.basePath
	}
	b.d.basePath = docBase

	paths, _ := root["paths"].(map[string]any)
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, p := range keys {
		ptr := child("#/paths", p)
		if strings.HasPrefix(p, "x-") {
			continue
		}
		item, itemPtr, err := deref(root, ptr, paths[p])
		if err != nil {
			b.errorf(ptr, "%v", err)
			continue
		}
		base := docBase
		if b.o.basePath == nil {
			base = b.serverPath(itemPtr, item, docBase)
		}
		for _, m := range methods {
			raw, ok := item[m]
			if !ok {
				continue
			}
			opPtr := child(itemPtr, m)
			op, ok := raw.(map[string]any)
			if !ok {
				b.errorf(opPtr, "an operation must be an object")
				continue
			}
			b.operation(p, strings.ToUpper(m), item, itemPtr, op, opPtr, base)
		}
	}
	slices.SortStableFunc(b.d.ops, func(x, y *Operation) int { return x.line - y.line })
	for i, op := range b.d.ops {
		op.index = i
	}

	rb := router.NewBuilder[*Operation]()
	for _, op := range b.d.ops {
		if err := rb.Add("", []string{op.Method}, op.Template, op); err != nil {
			b.errorf(op.pointer, "operation %s cannot be routed: %v", op, err)
		}
	}
	b.d.router = rb.Build()
	if len(b.problems) > 0 {
		return loadError(b.problems)
	}
	for _, op := range b.d.ops {
		if err := b.compile(op); err != nil {
			b.problems = append(b.problems, err.Error())
		}
	}
	if len(b.problems) > 0 {
		return loadError(b.problems)
	}
	// The compiled schemas do not need their compilers, which each hold a
	// copy of the document: CompileSchema builds one again if it is asked
	// for a request schema later.
	b.d.schemas = [numVariants]*schemaSet{}
	return nil
}

// operation builds one Operation and appends it to the document.
func (b *builder) operation(path, method string, item map[string]any, itemPtr string, raw map[string]any, ptr, base string) {
	if method == http.MethodTrace {
		b.errorf(ptr, "TRACE operations cannot be served: the gateway refuses TRACE")
		return
	}
	op := &Operation{Method: method, Path: path, pointer: ptr, line: b.d.pos[ptr].line}
	op.ID, _ = raw["operationId"].(string)
	op.Summary, _ = raw["summary"].(string)
	op.Deprecated, _ = raw["deprecated"].(bool)

	b.checkExtensions(ptr, raw, extAuth, extRateLimits, extDeprecation)
	op.Deprecation = b.deprecation(ptr, raw, op.Deprecated)
	op.Auth = b.auth(ptr, raw)
	if op.Auth == nil {
		op.Auth = b.docAuth
	}
	op.RateLimits = b.rateLimits(ptr, raw)
	if _, ok := raw[extRateLimits]; !ok {
		op.RateLimits = b.docRateLimits
	}

	if b.o.basePath == nil {
		base = b.serverPath(ptr, raw, base)
	}
	tpl, names, segs, err := convertTemplate(path)
	if err != nil {
		b.errorf(ptr, "path %q: %v", path, err)
		return
	}
	op.Template = base + tpl
	if err := router.ValidateTemplate(op.Template); err != nil {
		b.errorf(ptr, "path %q: %v", path, err)
		return
	}
	op.segments = segs

	b.parameters(op, item, itemPtr, raw, ptr, names)
	b.requestBody(op, raw, ptr)
	b.responses(op, raw, ptr)
	b.d.ops = append(b.d.ops, op)
}

// parameters merges the path item's parameters with the operation's (the
// operation's win for the same name and location) and checks them against
// the path template.
func (b *builder) parameters(op *Operation, item map[string]any, itemPtr string, raw map[string]any, ptr string, templateNames map[string]string) {
	type key struct{ in, name string }
	index := map[key]int{}
	add := func(ownerPtr string, list any) {
		l, ok := list.([]any)
		if !ok {
			return
		}
		for i, v := range l {
			pptr := child(child(ownerPtr, "parameters"), i)
			p := b.parameter(pptr, v)
			if p == nil {
				continue
			}
			k := key{p.In, p.Name}
			if p.In == "header" {
				k.name = http.CanonicalHeaderKey(p.Name)
			}
			if j, dup := index[k]; dup {
				op.Parameters[j] = p
				continue
			}
			index[k] = len(op.Parameters)
			op.Parameters = append(op.Parameters, p)
		}
	}
	add(itemPtr, item["parameters"])
	add(ptr, raw["parameters"])

	declared := map[string]bool{}
	for _, p := range op.Parameters {
		if p.Owner != nil {
			op.Owners = append(op.Owners, Owner{In: p.In, Name: p.Name, Value: p.Owner})
		}
		if p.In != "path" {
			continue
		}
		declared[p.Name] = true
		rn, ok := templateNames[p.Name]
		if !ok {
			b.errorf(p.pointer, "path parameter %q does not appear in the path %q", p.Name, op.Path)
			continue
		}
		p.RouterName = rn
		if !p.Required {
			b.errorf(p.pointer, "path parameter %q must be required: true", p.Name)
		}
	}
	for name := range templateNames {
		if !declared[name] {
			b.errorf(ptr, "the path %q has the parameter {%s}, which the operation does not declare (in: path)", op.Path, name)
		}
	}
}

// parameter reads one Parameter Object (or a reference to one).
func (b *builder) parameter(ptr string, v any) *Parameter {
	m, mptr, err := deref(b.root, ptr, v)
	if err != nil {
		b.errorf(ptr, "%v", err)
		return nil
	}
	p := &Parameter{pointer: mptr}
	p.Name, _ = m["name"].(string)
	p.In, _ = m["in"].(string)
	p.Required, _ = m["required"].(bool)
	p.Deprecated, _ = m["deprecated"].(bool)
	p.AllowEmptyValue, _ = m["allowEmptyValue"].(bool)
	b.checkExtensions(mptr, m, extOwner)
	if o, ok := m[extOwner]; ok {
		if p.Owner, ok = o.(map[string]any); !ok {
			b.errorf(child(mptr, extOwner), "%s must be an object", extOwner)
		}
	}
	if p.Name == "" {
		b.errorf(mptr, "a parameter needs a name")
		return nil
	}
	defStyle, styles := "", []string(nil)
	switch p.In {
	case "path":
		defStyle, styles = "simple", []string{"simple", "label", "matrix"}
	case "query":
		defStyle, styles = "form", []string{"form", "spaceDelimited", "pipeDelimited", "deepObject"}
	case "header":
		defStyle, styles = "simple", []string{"simple"}
	case "cookie":
		defStyle, styles = "form", []string{"form"}
	default:
		b.errorf(mptr, "parameter %q: in must be path, query, header or cookie, not %q", p.Name, p.In)
		return nil
	}
	p.Style, _ = m["style"].(string)
	if p.Style == "" {
		p.Style = defStyle
	}
	if !slices.Contains(styles, p.Style) {
		b.errorf(mptr, "parameter %q: style %q is not allowed in %s", p.Name, p.Style, p.In)
		return nil
	}
	p.Explode = p.Style == "form"
	if e, ok := m["explode"].(bool); ok {
		p.Explode = e
	}
	if _, ok := m["schema"]; ok {
		p.Schema = child(mptr, "schema")
	} else if c, ok := m["content"].(map[string]any); ok {
		if len(c) != 1 {
			b.errorf(mptr, "parameter %q: content must have exactly one media type", p.Name)
			return nil
		}
		for ct := range c {
			p.ContentType = strings.ToLower(ct)
			if mt, ok := c[ct].(map[string]any); ok {
				if _, ok := mt["schema"]; ok {
					p.Schema = child(child(child(mptr, "content"), ct), "schema")
				}
			}
		}
	}
	return p
}

// requestBody reads the operation's requestBody.
func (b *builder) requestBody(op *Operation, raw map[string]any, ptr string) {
	v, ok := raw["requestBody"]
	if !ok {
		return
	}
	m, mptr, err := deref(b.root, child(ptr, "requestBody"), v)
	if err != nil {
		b.errorf(child(ptr, "requestBody"), "%v", err)
		return
	}
	rb := &RequestBody{}
	rb.Required, _ = m["required"].(bool)
	rb.Content = b.content(child(mptr, "content"), m["content"])
	if len(rb.Content) == 0 {
		b.errorf(mptr, "requestBody must list at least one media type in content")
	}
	op.RequestBody = rb
	var paths, owners []string
	ownerVals := map[string]map[string]any{}
	for _, mt := range rb.Content {
		if !mt.json || mt.Schema == "" {
			continue
		}
		ro, err := b.propertyPaths(mt.Schema, func(s map[string]any) bool { f, _ := s["readOnly"].(bool); return f }, nil)
		if err != nil {
			b.errorf(mt.Schema, "%v", err)
		}
		paths = append(paths, ro...)
		ow, err := b.propertyPaths(mt.Schema, func(s map[string]any) bool { _, ok := s[extOwner]; return ok }, ownerVals)
		if err != nil {
			b.errorf(mt.Schema, "%v", err)
		}
		owners = append(owners, ow...)
	}
	op.readOnly = sortedUnique(paths)
	for _, p := range sortedUnique(owners) {
		op.Owners = append(op.Owners, Owner{In: "body", Name: p, Value: ownerVals[p]})
	}
}

// responses reads the operation's responses.
func (b *builder) responses(op *Operation, raw map[string]any, ptr string) {
	rs, _ := raw["responses"].(map[string]any)
	var wo []string
	for code, v := range rs {
		if strings.HasPrefix(code, "x-") {
			continue
		}
		rptr := child(child(ptr, "responses"), code)
		m, mptr, err := deref(b.root, rptr, v)
		if err != nil {
			b.errorf(rptr, "%v", err)
			continue
		}
		r := &Response{Status: code, Content: b.content(child(mptr, "content"), m["content"])}
		op.Responses = append(op.Responses, r)
		for _, mt := range r.Content {
			if mt.json && mt.Schema != "" {
				p, err := b.propertyPaths(mt.Schema, func(s map[string]any) bool { f, _ := s["writeOnly"].(bool); return f }, nil)
				if err != nil {
					b.errorf(mt.Schema, "%v", err)
				}
				wo = append(wo, p...)
			}
		}
	}
	slices.SortFunc(op.Responses, func(x, y *Response) int {
		return b.d.pos[child(child(ptr, "responses"), x.Status)].line - b.d.pos[child(child(ptr, "responses"), y.Status)].line
	})
	op.writeOnly = sortedUnique(wo)
}

// content reads a content map.
func (b *builder) content(ptr string, v any) []*MediaType {
	m, _ := v.(map[string]any)
	out := make([]*MediaType, 0, len(m))
	for key, mv := range m {
		mptr := child(ptr, key)
		schema := ""
		if mo, ok := mv.(map[string]any); ok {
			if _, ok := mo["schema"]; ok {
				schema = child(mptr, "schema")
			}
		}
		mt, err := newMediaType(key, schema)
		if err != nil {
			b.errorf(mptr, "media type %q: %v", key, err)
			continue
		}
		out = append(out, mt)
	}
	sortMediaTypes(out)
	return out
}

// propertyPaths walks the schema at ptr along instance positions
// (properties, items, additional and pattern properties, through $ref and
// the allOf/anyOf/oneOf/if/then/else branches) and returns the property
// paths of the schemas for which want is true, with "*" for every array
// element or map member. A recursive schema is unrolled maxRecursion
// times. When values is not nil, it receives the
// x-moat-owner value of each path found.
func (b *builder) propertyPaths(ptr string, want func(map[string]any) bool, values map[string]map[string]any) ([]string, error) {
	start, ok := lookup(b.root, ptr)
	if !ok {
		return nil, fmt.Errorf("schema %s does not resolve", ptr)
	}
	var out []string
	visits := 0
	var stack []string // references being expanded: a recursive one is unrolled maxRecursion times
	var walk func(v any, sptr string, path []string, depth int) error
	walk = func(v any, sptr string, path []string, depth int) error {
		s, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		if visits++; visits > maxPropertyPaths || depth > maxDepth {
			return fmt.Errorf("the schema at %s expands to more than %d property paths: simplify it", ptr, maxPropertyPaths)
		}
		if want(s) {
			p := formatPath(path)
			out = append(out, p)
			if values != nil {
				if val, ok := s[extOwner].(map[string]any); ok {
					values[p] = val
				} else {
					b.errorf(child(sptr, extOwner), "%s must be an object", extOwner)
				}
			}
		}
		if values != nil {
			b.checkExtensions(sptr, s, extOwner)
		}
		if ref, ok := s["$ref"].(string); ok && strings.HasPrefix(ref, "#") && count(stack, ref) < maxRecursion {
			if target, ok := lookup(b.root, ref); ok {
				stack = append(stack, ref)
				err := walk(target, normalizePointer(ref), path, depth+1)
				stack = stack[:len(stack)-1]
				if err != nil {
					return err
				}
			}
		}
		if props, ok := s["properties"].(map[string]any); ok {
			names := make([]string, 0, len(props))
			for n := range props {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				if err := walk(props[n], child(child(sptr, "properties"), n), append(path[:len(path):len(path)], n), depth+1); err != nil {
					return err
				}
			}
		}
		star := append(path[:len(path):len(path)], "*")
		for _, k := range []string{"items", "additionalProperties", "unevaluatedItems"} {
			if err := walk(s[k], child(sptr, k), star, depth+1); err != nil {
				return err
			}
		}
		for _, k := range []string{"patternProperties"} {
			if m, ok := s[k].(map[string]any); ok {
				for n, sub := range m {
					if err := walk(sub, child(child(sptr, k), n), star, depth+1); err != nil {
						return err
					}
				}
			}
		}
		for _, k := range []string{"allOf", "anyOf", "oneOf", "prefixItems"} {
			l, _ := s[k].([]any)
			p := path
			if k == "prefixItems" {
				p = star
			}
			for i, sub := range l {
				if err := walk(sub, child(child(sptr, k), i), p, depth+1); err != nil {
					return err
				}
			}
		}
		for _, k := range []string{"if", "then", "else"} {
			if err := walk(s[k], child(sptr, k), path, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	err := walk(start, ptr, nil, 0)
	return out, err
}

// maxRecursion is how many times a recursive reference is unrolled when
// property paths are listed: a readOnly property of a tree node is listed
// for the first maxRecursion levels of the tree.
const maxRecursion = 4

func count(s []string, v string) int {
	n := 0
	for _, e := range s {
		if e == v {
			n++
		}
	}
	return n
}

// formatPath escapes and joins path segments into a JSON pointer; "" for
// none.
func formatPath(segs []string) string {
	var sb strings.Builder
	for _, s := range segs {
		sb.WriteByte('/')
		if s == "*" {
			sb.WriteString(s)
			continue
		}
		sb.WriteString(escapeToken(s))
	}
	return sb.String()
}

func sortedUnique(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	sort.Strings(s)
	return slices.Compact(s)
}

// checkExtensions records a problem for every x-moat-* key of m that is not
// one of allowed.
func (b *builder) checkExtensions(ptr string, m map[string]any, allowed ...string) {
	for k := range m {
		if strings.HasPrefix(strings.ToLower(k), "x-moat-") && !slices.Contains(allowed, k) {
			b.errorf(child(ptr, k), "unknown extension %s here (known: %s)", k, strings.Join(allowed, ", "))
		}
	}
}

// auth reads x-moat-auth: a list of authenticator names, {public: true}, or
// {authenticators: [...], roles: [...], scopes: [...],
// allow_any_authenticated: true}.
func (b *builder) auth(ptr string, m map[string]any) *Auth {
	v, ok := m[extAuth]
	if !ok {
		return nil
	}
	eptr := child(ptr, extAuth)
	names := func(field string, list any, at string) []string {
		l, ok := list.([]any)
		if !ok {
			b.errorf(at, "%s: %s must be a list of names", extAuth, field)
			return nil
		}
		var out []string
		for i, n := range l {
			s, ok := n.(string)
			if !ok || strings.TrimSpace(s) == "" {
				b.errorf(child(at, i), "%s: %s must be non-empty strings", extAuth, field)
				continue
			}
			if slices.Contains(out, s) {
				b.errorf(child(at, i), "%s: %q is listed twice", extAuth, s)
				continue
			}
			out = append(out, s)
		}
		return out
	}
	switch t := v.(type) {
	case []any:
		a := &Auth{Authenticators: names("authenticators", t, eptr)}
		if len(t) == 0 {
			b.errorf(eptr, "%s: list at least one authenticator, or write {public: true}", extAuth)
		}
		return a
	case map[string]any:
		if pub, ok := t["public"].(bool); ok || t["public"] != nil {
			if !pub || len(t) != 1 {
				b.errorf(eptr, "%s: public must be true, and {public: true} takes no other field", extAuth)
				return nil
			}
			return &Auth{Public: true}
		}
		a := &Auth{}
		for k, val := range t {
			at := child(eptr, k)
			switch k {
			case "authenticators":
				a.Authenticators = names(k, val, at)
			case "roles":
				a.Roles = names(k, val, at)
			case "scopes":
				a.Scopes = names(k, val, at)
			case "allow_any_authenticated":
				if a.AllowAnyAuthenticated, ok = val.(bool); !ok {
					b.errorf(at, "%s: allow_any_authenticated must be true or false", extAuth)
				}
			default:
				b.errorf(at, "%s: unknown field %q (authenticators, roles, scopes, allow_any_authenticated, or public)", extAuth, k)
			}
		}
		if len(a.Authenticators) == 0 {
			b.errorf(eptr, "%s: authenticators lists at least one name", extAuth)
		}
		return a
	default:
		b.errorf(eptr, "%s must be a list of authenticator names, {public: true}, or {authenticators, roles, scopes, allow_any_authenticated}", extAuth)
		return nil
	}
}

// deprecation reads x-moat-deprecation: {deprecated_at, sunset, link}, on
// an operation that is deprecated.
func (b *builder) deprecation(ptr string, m map[string]any, deprecated bool) *Deprecation {
	v, ok := m[extDeprecation]
	if !ok {
		return nil
	}
	eptr := child(ptr, extDeprecation)
	t, ok := v.(map[string]any)
	if !ok {
		b.errorf(eptr, "%s must be an object {deprecated_at, sunset, link}", extDeprecation)
		return nil
	}
	if !deprecated {
		b.errorf(eptr, "%s requires deprecated: true on the operation", extDeprecation)
		return nil
	}
	d := &Deprecation{}
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		at := child(eptr, k)
		s, isString := t[k].(string)
		switch k {
		case "deprecated_at", "sunset":
			tm, err := time.Parse(time.RFC3339, s)
			if !isString || err != nil {
				b.errorf(at, "%s: %s wants an RFC 3339 time such as 2027-01-01T00:00:00Z", extDeprecation, k)
				continue
			}
			if k == "sunset" {
				d.Sunset = tm
			} else {
				d.At = tm
			}
		case "link":
			if !isString || !validLink(s) {
				b.errorf(at, "%s: link wants an absolute http or https URL without spaces, quotes or angle brackets", extDeprecation)
				continue
			}
			d.Link = s
		default:
			b.errorf(at, "%s: unknown field %q (deprecated_at, sunset, link)", extDeprecation, k)
		}
	}
	if !d.At.IsZero() && !d.Sunset.IsZero() && d.Sunset.Before(d.At) {
		b.errorf(child(eptr, "sunset"), "%s: sunset is before deprecated_at", extDeprecation)
	}
	return d
}

// validLink reports whether s can be sent as the target of a Link header
// field: an absolute http or https URL with a host and nothing that would
// end the <...> or the field.
func validLink(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && !strings.ContainsAny(s, "<>\" \t\r\n")
}

// rateLimits reads x-moat-rate-limits: a list of rate limit names.
func (b *builder) rateLimits(ptr string, m map[string]any) []string {
	v, ok := m[extRateLimits]
	if !ok {
		return nil
	}
	eptr := child(ptr, extRateLimits)
	l, ok := v.([]any)
	if !ok {
		b.errorf(eptr, "%s must be a list of rate limit names", extRateLimits)
		return nil
	}
	out := []string{}
	for i, n := range l {
		s, ok := n.(string)
		if !ok || strings.TrimSpace(s) == "" {
			b.errorf(child(eptr, i), "%s: rate limit names must be non-empty strings", extRateLimits)
			continue
		}
		if slices.Contains(out, s) {
			b.errorf(child(eptr, i), "%s: %q is listed twice", extRateLimits, s)
			continue
		}
		out = append(out, s)
	}
	return out
}

// serverPath returns the path of the first server of the object m (the
// document, a path item or an operation), or inherited when m has no
// servers. Server variables take their default values. A server URL
// without a scheme is taken as a path.
func (b *builder) serverPath(ptr string, m map[string]any, inherited string) string {
	servers, ok := m["servers"].([]any)
	if !ok || len(servers) == 0 {
		return inherited
	}
	sptr := child(child(ptr, "servers"), 0)
	s, _ := servers[0].(map[string]any)
	raw, _ := s["url"].(string)
	vars, _ := s["variables"].(map[string]any)
	expanded, err := expandServerURL(raw, vars)
	if err != nil {
		b.errorf(sptr, "server url %q: %v", raw, err)
		return inherited
	}
	p := expanded
	if i := strings.Index(expanded, "://"); i >= 0 || strings.HasPrefix(expanded, "//") {
		u, err := url.Parse(expanded)
		if err != nil {
			b.errorf(sptr, "server url %q: %v", raw, err)
			return inherited
		}
		p = u.Path
	} else if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	p = strings.TrimRight(p, "/")
	if p != "" && p[0] != '/' {
		p = "/" + p
	}
	if strings.ContainsAny(p, "{}") {
		b.errorf(sptr, "server url %q: the path holds an undefined variable", raw)
		return inherited
	}
	return p
}

// expandServerURL replaces {name} in a server URL by the variable's
// default.
func expandServerURL(raw string, vars map[string]any) (string, error) {
	var sb strings.Builder
	for {
		i := strings.IndexByte(raw, '{')
		if i < 0 {
			sb.WriteString(raw)
			return sb.String(), nil
		}
		j := strings.IndexByte(raw[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("unclosed {")
		}
		name := raw[i+1 : i+j]
		v, _ := vars[name].(map[string]any)
		def, ok := v["default"].(string)
		if !ok {
			return "", fmt.Errorf("variable %q has no default", name)
		}
		sb.WriteString(raw[:i])
		sb.WriteString(def)
		raw = raw[i+j+1:]
	}
}

// convertTemplate turns an OpenAPI path into a router template. A segment
// that is exactly one parameter stays one, renamed when the router's
// grammar ([A-Za-z_][A-Za-z0-9_]*) needs it; a segment mixing text and
// parameters ("{name}.{ext}") becomes one router parameter that validation
// splits with a regular expression (each parameter matches as little as it
// can, left to right). names maps each document parameter name to its
// router name ("" inside a composite segment).
func convertTemplate(path string) (tpl string, names map[string]string, segs []compositeSeg, err error) {
	if !strings.HasPrefix(path, "/") {
		return "", nil, nil, fmt.Errorf("must start with /")
	}
	names = map[string]string{}
	used := map[string]bool{}
	routerName := func(n string) string {
		var sb strings.Builder
		for i := 0; i < len(n); i++ {
			c := n[i]
			if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' && sb.Len() > 0 {
				sb.WriteByte(c)
			} else {
				sb.WriteByte('_')
			}
		}
		base := sb.String()
		name := base
		for i := 2; used[name]; i++ {
			name = fmt.Sprintf("%s_%d", base, i)
		}
		used[name] = true
		return name
	}
	parts := strings.Split(path[1:], "/")
	out := make([]string, len(parts))
	for i, s := range parts {
		if !strings.ContainsAny(s, "{}") {
			out[i] = s
			continue
		}
		var re strings.Builder
		var group []string
		re.WriteByte('^')
		for rest := s; rest != ""; {
			open := strings.IndexByte(rest, '{')
			if open < 0 {
				if strings.IndexByte(rest, '}') >= 0 {
					return "", nil, nil, fmt.Errorf("unbalanced } in segment %q", s)
				}
				re.WriteString(regexp.QuoteMeta(rest))
				break
			}
			if strings.IndexByte(rest[:open], '}') >= 0 {
				return "", nil, nil, fmt.Errorf("unbalanced } in segment %q", s)
			}
			end := strings.IndexByte(rest[open:], '}')
			if end < 0 {
				return "", nil, nil, fmt.Errorf("unclosed { in segment %q", s)
			}
			name := rest[open+1 : open+end]
			if name == "" || strings.ContainsAny(name, "{") {
				return "", nil, nil, fmt.Errorf("bad parameter in segment %q", s)
			}
			if _, dup := names[name]; dup {
				return "", nil, nil, fmt.Errorf("parameter {%s} appears twice", name)
			}
			re.WriteString(regexp.QuoteMeta(rest[:open]))
			re.WriteString("(.+?)")
			group = append(group, name)
			names[name] = ""
			rest = rest[open+end+1:]
		}
		if len(group) == 1 && s == "{"+group[0]+"}" {
			rn := routerName(group[0])
			names[group[0]] = rn
			out[i] = "{" + rn + "}"
			continue
		}
		re.WriteByte('$')
		rn := routerName(fmt.Sprintf("_seg%d", i+1))
		segs = append(segs, compositeSeg{routerName: rn, re: regexp.MustCompile(re.String()), names: group})
		out[i] = "{" + rn + "}"
	}
	return "/" + strings.Join(out, "/"), names, segs, nil
}
