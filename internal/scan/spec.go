package scan

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// Operation is one operation of the OpenAPI document, reduced to what the
// probes need.
type Operation struct {
	Method   string // upper case
	Path     string // template as written: /users/{id}
	ID       string // operationId
	Tags     []string
	Params   []Param // path-item parameters merged with the operation's
	Secured  bool    // the effective security requirement needs credentials
	Admin    bool    // an admin function (see adminReason)
	AdminWhy string  // why it is considered admin: tag, path, x-moat-roles, DELETE
	Body     *openapi3.Schema
	Line     int // line of the operation in the document, 0 when unknown

	op *openapi3.Operation
}

// Param is one parameter of an operation.
type Param struct {
	Name     string
	In       string // path, query, header, cookie
	Required bool
	Schema   *openapi3.Schema // nil when the parameter has none
}

// String returns "METHOD /path".
func (o *Operation) String() string { return o.Method + " " + o.Path }

// Safe reports whether the operation's method does not change data.
func (o *Operation) Safe() bool { return safeMethod(o.Method) }

func safeMethod(m string) bool {
	return m == "GET" || m == "HEAD" || m == "OPTIONS"
}

// pathParams returns the operation's path parameters.
func (o *Operation) pathParams() []Param {
	var ps []Param
	for _, p := range o.Params {
		if p.In == "path" {
			ps = append(ps, p)
		}
	}
	return ps
}

// Spec is a loaded OpenAPI document.
type Spec struct {
	File       string // as given; used in SARIF locations
	Version    string // the openapi field
	Operations []*Operation
	doc        *openapi3.T
}

// LoadSpec reads an OpenAPI 3.0 or 3.1 document from a file. External
// references are refused: the scanner reads only the file it is given.
func LoadSpec(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading spec: %w", err)
	}
	abs, _ := filepath.Abs(path)
	return ParseSpec(data, path, abs)
}

// ParseSpec parses an OpenAPI document held in data; name is how reports
// refer to it. abs (optional) is the document's absolute path, for
// resolving local references.
func ParseSpec(data []byte, name, abs string) (*Spec, error) {
	l := openapi3.NewLoader()
	l.IsExternalRefsAllowed = false
	l.IncludeOrigin = true
	var (
		doc *openapi3.T
		err error
	)
	if abs != "" {
		doc, err = l.LoadFromDataWithPath(data, &url.URL{Path: abs})
	} else {
		doc, err = l.LoadFromData(data)
	}
	if err != nil {
		return nil, fmt.Errorf("loading spec %s: %w", name, err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		return nil, fmt.Errorf("loading spec %s: openapi %q is not 3.0 or 3.1", name, doc.OpenAPI)
	}
	if err := doc.Validate(context.Background(), openapi3.DisableExamplesValidation(), openapi3.DisableSchemaPatternValidation()); err != nil {
		return nil, fmt.Errorf("spec %s is invalid: %w", name, err)
	}
	if doc.Paths == nil || doc.Paths.Len() == 0 {
		return nil, errors.New("spec " + name + " has no paths")
	}
	s := &Spec{File: name, Version: doc.OpenAPI, doc: doc}
	paths := doc.Paths.Keys()
	sort.Strings(paths)
	for _, p := range paths {
		item := doc.Paths.Value(p)
		for _, m := range []string{"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"} {
			op := item.GetOperation(m)
			if op == nil {
				continue
			}
			s.Operations = append(s.Operations, newOperation(doc, p, m, item, op))
		}
	}
	return s, nil
}

func newOperation(doc *openapi3.T, path, method string, item *openapi3.PathItem, op *openapi3.Operation) *Operation {
	o := &Operation{Method: method, Path: path, ID: op.OperationID, Tags: op.Tags, op: op}
	if op.Origin != nil && op.Origin.Key != nil {
		o.Line = op.Origin.Key.Line
	}
	seen := map[string]int{}
	add := func(ps openapi3.Parameters) {
		for _, pr := range ps {
			if pr == nil || pr.Value == nil {
				continue
			}
			p := Param{Name: pr.Value.Name, In: pr.Value.In, Required: pr.Value.Required || pr.Value.In == "path"}
			if pr.Value.Schema != nil {
				p.Schema = pr.Value.Schema.Value
			}
			k := p.In + "\x00" + p.Name
			if i, ok := seen[k]; ok {
				o.Params[i] = p // the operation's overrides the path item's
				continue
			}
			seen[k] = len(o.Params)
			o.Params = append(o.Params, p)
		}
	}
	add(item.Parameters)
	add(op.Parameters)

	reqs := doc.Security
	if op.Security != nil {
		reqs = *op.Security
	}
	o.Secured = len(reqs) > 0
	for _, r := range reqs {
		if len(r) == 0 { // {} : anonymous allowed
			o.Secured = false
		}
	}
	if pub, ok := extPublic(op.Extensions["x-moat-auth"]); ok && pub {
		o.Secured = false
	}

	switch {
	case slices.ContainsFunc(op.Tags, func(t string) bool { return strings.EqualFold(t, "admin") }):
		o.Admin, o.AdminWhy = true, "tagged admin"
	case adminPath.MatchString(path):
		o.Admin, o.AdminWhy = true, "path contains /admin"
	case hasAdminRole(op.Extensions["x-moat-roles"]):
		o.Admin, o.AdminWhy = true, "x-moat-roles lists admin"
	case method == "DELETE":
		o.Admin, o.AdminWhy = true, "DELETE"
	}

	if op.RequestBody != nil && op.RequestBody.Value != nil {
		if mt := jsonMedia(op.RequestBody.Value.Content); mt != nil && mt.Schema != nil {
			o.Body = mt.Schema.Value
		}
	}
	return o
}

var adminPath = regexp.MustCompile(`(?i)/admin(/|$|[-_])`)

func extPublic(v any) (bool, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return false, false
	}
	b, ok := m["public"].(bool)
	return b, ok
}

func hasAdminRole(v any) bool {
	list, ok := v.([]any)
	if !ok {
		return false
	}
	for _, r := range list {
		if s, ok := r.(string); ok && strings.EqualFold(s, "admin") {
			return true
		}
	}
	return false
}

// jsonMedia returns the content's JSON media type (application/json or any
// +json), or nil.
func jsonMedia(c openapi3.Content) *openapi3.MediaType {
	if mt := c.Get("application/json"); mt != nil {
		return mt
	}
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.HasSuffix(strings.ToLower(strings.TrimSpace(strings.Split(k, ";")[0])), "+json") {
			return c[k]
		}
	}
	return nil
}

// responseSchema returns the JSON schema the document declares for the
// status, falling back to the range (2XX) and default; nil when none.
func (o *Operation) responseSchema(status int) *openapi3.Schema {
	if o.op == nil || o.op.Responses == nil {
		return nil
	}
	r := o.op.Responses.Status(status)
	if r == nil {
		r = o.op.Responses.Value(fmt.Sprintf("%dXX", status/100))
	}
	if r == nil {
		r = o.op.Responses.Default()
	}
	if r == nil || r.Value == nil {
		return nil
	}
	mt := jsonMedia(r.Value.Content)
	if mt == nil || mt.Schema == nil {
		return nil
	}
	return mt.Schema.Value
}

// versionPrefix finds /v<N> at the start of documented paths, for the
// inventory probe's older-version check.
var versionPrefix = regexp.MustCompile(`^/v(\d+)(/|$)`)

// basePathVersion returns the highest /vN path prefix documented, 0 when none.
func (s *Spec) basePathVersion() int {
	best := 0
	for _, o := range s.Operations {
		if m := versionPrefix.FindStringSubmatch(o.Path); m != nil {
			n := 0
			fmt.Sscanf(m[1], "%d", &n)
			best = max(best, n)
		}
	}
	return best
}

// documents reports whether a concrete path matches a documented template.
func (s *Spec) documents(path string) bool {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for _, o := range s.Operations {
		t := strings.Split(strings.Trim(o.Path, "/"), "/")
		if len(t) != len(segs) {
			continue
		}
		ok := true
		for i := range t {
			if !strings.HasPrefix(t[i], "{") && t[i] != segs[i] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
