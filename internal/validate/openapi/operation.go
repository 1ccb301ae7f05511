package openapi

import (
	"mime"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moat-gateway/moat/internal/router"
)

// Operation is one operation of the document: a method on a path, with what
// the pipeline needs to make it a route and what validation checks. The
// exported fields are read-only after Load.
type Operation struct {
	ID         string // operationId; "" when the document gives none
	Method     string // upper case: GET, POST...
	Path       string // the path as written in the document: /books/{id}
	Template   string // the router template: the base path, then Path with parameters renamed where the router needs it
	Summary    string
	Deprecated bool
	// Deprecation is the operation's x-moat-deprecation (only allowed on a
	// deprecated operation); nil when it has none.
	Deprecation *Deprecation

	// Auth is the operation's x-moat-auth, or the document's when the
	// operation has none; nil when neither has one.
	Auth *Auth
	// RateLimits is the operation's x-moat-rate-limits (names of configured
	// rate limits), or the document's; nil when neither has one.
	RateLimits []string
	// Owners lists the x-moat-owner extensions on the operation's
	// parameters and on the properties of its JSON request bodies.
	Owners []Owner

	Parameters  []*Parameter // path-item parameters merged with the operation's, in that order
	RequestBody *RequestBody // nil when the operation declares none
	Responses   []*Response  // in document order

	pointer   string         // JSON pointer of the operation object
	check     *opCheck       // compiled validation
	index     int            // position in Document.Operations
	segments  []compositeSeg // path segments the router sees as one parameter but hold several
	readOnly  []string       // readOnly properties of the JSON request bodies
	writeOnly []string       // writeOnly properties of the JSON responses
	line      int
}

// Auth is the x-moat-auth extension: either public, or the names of the
// authenticators to try in order.
type Auth struct {
	Public         bool
	Authenticators []string
	// Authorization of the generated route, from the object form
	// {authenticators, roles, scopes, allow_any_authenticated}: roles and
	// scopes are any-of requirements.
	Roles, Scopes         []string
	AllowAnyAuthenticated bool
}

// Deprecation is the x-moat-deprecation extension of a deprecated
// operation: when it was deprecated, when it is retired, and where the
// deprecation notice is. Each field is optional.
type Deprecation struct {
	At     time.Time // deprecated_at; zero when not given
	Sunset time.Time // sunset; zero when not given
	Link   string    // link: an absolute http(s) URL without spaces, quotes or angle brackets; "" when not given
}

// Owner is one x-moat-owner extension: where the owned value is found and
// the extension's value as written, for the authorization stage to
// interpret.
//
// A path parameter's value is read with Operation.PathValue, which also
// handles parameters that share a path segment ("{name}.{ext}").
type Owner struct {
	In    string         // path, query, header, cookie, or body
	Name  string         // the parameter name as the document writes it; for body, a property path ("/owner_id", "/items/*/owner")
	Value map[string]any // the extension's value, as written in the document
}

// Parameter is one parameter of an operation.
type Parameter struct {
	Name            string // as written in the document
	In              string // path, query, header or cookie
	Required        bool
	Deprecated      bool
	Style           string // the effective style: simple, label, matrix, form, spaceDelimited, pipeDelimited or deepObject
	Explode         bool   // the effective explode
	AllowEmptyValue bool
	RouterName      string // path parameters: the name of the parameter in Operation.Template ("" for those inside a composite segment)
	Schema          string // JSON pointer of the schema (of the media type's schema when ContentType is set); "" for none
	ContentType     string // the media type of a parameter described by content instead of schema
	Owner           map[string]any

	pointer string
}

// RequestBody is an operation's requestBody.
type RequestBody struct {
	Required bool
	Content  []*MediaType // sorted by media type; this is the content-type allowlist
}

// Response is one entry of an operation's responses.
type Response struct {
	Status  string       // "200", "2XX" or "default"
	Content []*MediaType // sorted by media type
}

// MediaType is one entry of a content map.
type MediaType struct {
	Type   string // the key as written (lower-cased): application/json, application/*, */*
	Schema string // JSON pointer of the schema; "" when there is none

	typ, sub string // the key's type and subtype, without parameters
	json     bool   // a JSON media type (application/json or a +json subtype)
	wild     bool   // a range: type/* or */*
}

// compositeSeg is a path segment such as "{name}.{ext}": the router matches
// the whole segment as one parameter, and validation splits it.
type compositeSeg struct {
	routerName string
	re         *regexp.Regexp
	names      []string // the document's parameter names, one per group
}

// PathValue returns the value of the path parameter name (as the document
// writes it) in the route parameters of a request routed by op.Template.
// ok is false when op has no such parameter or the segment does not have
// the form the document's path gives it.
func (op *Operation) PathValue(params []router.Param, name string) (value string, ok bool) {
	for _, p := range op.Parameters {
		if p.In != "path" || p.Name != name {
			continue
		}
		if p.RouterName != "" {
			for _, rp := range params {
				if rp.Key == p.RouterName {
					return rp.Value, true
				}
			}
			return "", false
		}
		for i := range op.segments {
			seg := &op.segments[i]
			for j, n := range seg.names {
				if n != name {
					continue
				}
				m := seg.re.FindStringSubmatch(paramValue(params, seg.routerName))
				if m == nil {
					return "", false
				}
				return m[j+1], true
			}
		}
	}
	return "", false
}

// ReadOnlyProperties returns the property paths of the operation's JSON
// request bodies whose schema says readOnly: true, as JSON pointers where
// "*" stands for every array element or map member ("/id",
// "/items/*/price"). The paths of every request media type are merged.
// Validation does not refuse such properties (it only stops requiring them
// in requests); the authorization stage's property rules decide.
func (op *Operation) ReadOnlyProperties() []string { return op.readOnly }

// WriteOnlyProperties returns the property paths, as ReadOnlyProperties
// does, of the operation's JSON responses whose schema says writeOnly:
// true: values a response must not reveal.
func (op *Operation) WriteOnlyProperties() []string { return op.writeOnly }

// Line returns the line of the operation in the document.
func (op *Operation) Line() int { return op.line }

// String names the operation in messages: its operationId and method and
// path.
func (op *Operation) String() string {
	if op.ID != "" {
		return op.ID + " (" + op.Method + " " + op.Path + ")"
	}
	return op.Method + " " + op.Path
}

// ResponseFor returns the response the document declares for status: the
// exact code, else its range ("2XX"), else "default". ok is false when
// there is none.
func (op *Operation) ResponseFor(status int) (r *Response, ok bool) {
	code := strconv.Itoa(status)
	rng := code[:1] + "XX"
	var inRange, def *Response
	for _, r := range op.Responses {
		switch {
		case r.Status == code:
			return r, true
		case strings.EqualFold(r.Status, rng):
			inRange = r
		case r.Status == "default":
			def = r
		}
	}
	if inRange != nil {
		return inRange, true
	}
	return def, def != nil
}

// MediaTypeFor returns the entry of r's content that matches contentType
// (a Content-Type value); see matchMediaType.
func (r *Response) MediaTypeFor(contentType string) (*MediaType, bool) {
	return matchMediaType(r.Content, contentType)
}

// newMediaType parses a content key.
func newMediaType(key, schema string) (*MediaType, error) {
	mt, _, err := mime.ParseMediaType(key)
	if err != nil {
		return nil, err
	}
	typ, sub, _ := strings.Cut(mt, "/")
	m := &MediaType{Type: strings.ToLower(key), Schema: schema, typ: typ, sub: sub}
	m.json = isJSONType(typ, sub)
	m.wild = typ == "*" || sub == "*"
	return m, nil
}

// isJSONType reports whether type/subtype is JSON: application/json, or
// any +json structured syntax suffix.
func isJSONType(typ, sub string) bool {
	return (typ == "application" && sub == "json") || strings.HasSuffix(sub, "+json")
}

// matchMediaType finds the entry of content for a Content-Type value: an
// exact type/subtype first, then type/*, then */*. Parameters (charset...)
// are ignored on both sides. ok is false when the value does not parse or
// nothing matches.
func matchMediaType(content []*MediaType, contentType string) (*MediaType, bool) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, false
	}
	typ, sub, _ := strings.Cut(mt, "/")
	var wildSub, wildAll *MediaType
	for _, m := range content {
		switch {
		case m.typ == typ && m.sub == sub:
			return m, true
		case m.typ == typ && m.sub == "*":
			wildSub = m
		case m.typ == "*" && m.sub == "*":
			wildAll = m
		}
	}
	if wildSub != nil {
		return wildSub, true
	}
	return wildAll, wildAll != nil
}

// sortMediaTypes orders a content map's entries by key.
func sortMediaTypes(c []*MediaType) {
	slices.SortFunc(c, func(a, b *MediaType) int { return strings.Compare(a.Type, b.Type) })
}
