package openapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// typeSet is a set of JSON types a schema admits.
type typeSet uint8

const (
	tString typeSet = 1 << iota
	tNumber
	tInteger
	tBoolean
	tNull
	tArray
	tObject
)

var typeNames = map[string]typeSet{
	"string": tString, "number": tNumber, "integer": tInteger, "boolean": tBoolean,
	"null": tNull, "array": tArray, "object": tObject,
}

// shape is what a parameter's schema says about the value's structure,
// enough to turn the strings of a request into typed JSON values before the
// schema checks them.
type shape struct {
	types typeSet            // of the value; 0 when the schema does not say
	items typeSet            // of an array's items
	props map[string]typeSet // of an object's properties
}

// shapeOf reads the shape of the schema v in the document root.
func shapeOf(root, v any) shape {
	s := resolveSchema(root, v)
	sh := shape{types: typesOf(root, v, 0)}
	if sh.types&tArray != 0 {
		sh.items = typesOf(root, findKeyword(root, s, "items"), 0)
	}
	if sh.types&tObject != 0 {
		if props, ok := findKeyword(root, s, "properties").(map[string]any); ok {
			sh.props = make(map[string]typeSet, len(props))
			for n, p := range props {
				sh.props[n] = typesOf(root, p, 0)
			}
		}
	}
	return sh
}

// resolveSchema follows a chain of local $ref from the schema v.
func resolveSchema(root, v any) map[string]any {
	for i := 0; i < maxDepth; i++ {
		s, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		if v, ok = lookup(root, ref); !ok {
			return s
		}
	}
	return nil
}

// findKeyword returns keyword k of the schema s, or of the first allOf
// branch that has it.
func findKeyword(root any, s map[string]any, k string) any {
	if s == nil {
		return nil
	}
	if v, ok := s[k]; ok {
		return v
	}
	if l, ok := s["allOf"].([]any); ok {
		for _, b := range l {
			if v := findKeyword(root, resolveSchema(root, b), k); v != nil {
				return v
			}
		}
	}
	return nil
}

// typesOf returns the JSON types the schema v admits, as far as type,
// const, enum, allOf (intersection) and anyOf/oneOf (union) tell; 0 when
// they do not.
func typesOf(root, v any, depth int) typeSet {
	s := resolveSchema(root, v)
	if s == nil || depth > 16 {
		return 0
	}
	switch t := s["type"].(type) {
	case string:
		return typeNames[t]
	case []any:
		var ts typeSet
		for _, n := range t {
			if name, ok := n.(string); ok {
				ts |= typeNames[name]
			}
		}
		return ts
	}
	if c, ok := s["const"]; ok {
		return jsonType(c)
	}
	if e, ok := s["enum"].([]any); ok {
		var ts typeSet
		for _, v := range e {
			ts |= jsonType(v)
		}
		return ts
	}
	var ts typeSet
	if l, ok := s["allOf"].([]any); ok {
		for _, b := range l {
			if bt := typesOf(root, b, depth+1); bt != 0 {
				if ts == 0 {
					ts = bt
				} else {
					ts &= bt
				}
			}
		}
		if ts != 0 {
			return ts
		}
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		if l, ok := s[k].([]any); ok {
			for _, b := range l {
				ts |= typesOf(root, b, depth+1)
			}
		}
	}
	return ts
}

func jsonType(v any) typeSet {
	switch t := v.(type) {
	case string:
		return tString
	case json.Number:
		if strings.ContainsAny(string(t), ".eE") {
			return tNumber
		}
		return tInteger | tNumber
	case bool:
		return tBoolean
	case nil:
		return tNull
	case []any:
		return tArray
	case map[string]any:
		return tObject
	}
	return 0
}

// maxNumberLength bounds a parameter value taken as a number: longer
// digit strings stay strings (and fail a numeric type), so that a huge
// literal never reaches arbitrary-precision arithmetic.
const maxNumberLength = 100

// isNumber reports whether s is a JSON number literal of at most
// maxNumberLength bytes.
func isNumber(s string) bool {
	if s == "" || len(s) > maxNumberLength {
		return false
	}
	i := 0
	if s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	start := i
	if n := digits(); n == 0 || (n > 1 && s[start] == '0') {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// coerce turns one parameter string into the JSON value a schema of types
// t expects: a json.Number for a numeric schema when s is a number, a bool
// for a boolean schema when s is true or false, and the string otherwise
// (which then fails a non-string type, as it should).
func coerce(s string, t typeSet) any {
	if t&(tInteger|tNumber) != 0 && isNumber(s) {
		return json.Number(s)
	}
	if t&tBoolean != 0 && (s == "true" || s == "false") {
		return s == "true"
	}
	return s
}

// paramCheck is the compiled check of one parameter.
type paramCheck struct {
	p      *Parameter
	key    string             // header: canonical name; otherwise the name
	schema *jsonschema.Schema // nil when the parameter has no schema
	shape  shape
	json   bool // described by a JSON media type: the value is a JSON document

	seg   *compositeSeg // a path parameter inside a composite segment
	group int           // its group in seg.re
}

// kind says how a parameter value is structured.
func (c *paramCheck) kind() typeSet {
	switch t := c.shape.types; {
	case c.json:
		return 0
	case t&tArray != 0:
		return tArray
	case t&tObject != 0:
		return tObject
	}
	return 0
}

// errStyle reports a value that does not have the form its style demands.
var errStyle = errors.New("style")

// fromString decodes the single serialized value of a path, header or
// cookie parameter (or of a query parameter that is not exploded) by the
// parameter's style. The prefix of label and matrix values has been
// checked by the caller.
func (c *paramCheck) fromString(s string) (any, error) {
	if c.json {
		return decodeJSON(s)
	}
	p := c.p
	switch c.kind() {
	case tArray:
		if s == "" {
			return []any{}, nil
		}
		sep := ","
		switch {
		case p.Style == "spaceDelimited":
			sep = " "
		case p.Style == "pipeDelimited":
			sep = "|"
		case p.Style == "label" && p.Explode:
			sep = "."
		}
		parts := strings.Split(s, sep)
		out := make([]any, len(parts))
		for i, v := range parts {
			out[i] = coerce(v, c.shape.items)
		}
		return out, nil
	case tObject:
		obj := map[string]any{}
		if s == "" {
			return obj, nil
		}
		if p.Explode {
			sep := ","
			switch p.Style {
			case "label":
				sep = "."
			case "matrix":
				sep = ";"
			}
			for _, kv := range strings.Split(s, sep) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return nil, errStyle
				}
				if _, dup := obj[k]; dup {
					return nil, errStyle
				}
				obj[k] = coerce(v, c.shape.props[k])
			}
			return obj, nil
		}
		parts := strings.Split(s, ",")
		if len(parts)%2 != 0 {
			return nil, errStyle
		}
		for i := 0; i < len(parts); i += 2 {
			if _, dup := obj[parts[i]]; dup {
				return nil, errStyle
			}
			obj[parts[i]] = coerce(parts[i+1], c.shape.props[parts[i]])
		}
		return obj, nil
	}
	return coerce(s, c.shape.types), nil
}

// matrixExploded decodes "id=1;id=2" (the text after the first ";").
func (c *paramCheck) matrixExploded(s string) (any, error) {
	var out []any
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k != c.p.Name {
			return nil, errStyle
		}
		out = append(out, coerce(v, c.shape.items))
	}
	return out, nil
}

// pathValue decodes a path parameter from its segment (or group).
func (c *paramCheck) pathValue(raw string) (any, error) {
	switch c.p.Style {
	case "label":
		s, ok := strings.CutPrefix(raw, ".")
		if !ok {
			return nil, errStyle
		}
		return c.fromString(s)
	case "matrix":
		rest, ok := strings.CutPrefix(raw, ";")
		if !ok {
			return nil, errStyle
		}
		switch {
		case c.p.Explode && c.kind() == tObject: // ;R=100;G=200: the name is not repeated
			return c.fromString(rest)
		case c.p.Explode && c.kind() == tArray: // ;id=3;id=4
			return c.matrixExploded(rest)
		}
		s, ok := strings.CutPrefix(rest, c.p.Name)
		if !ok {
			return nil, errStyle
		}
		if s == "" {
			return c.fromString("")
		}
		if s, ok = strings.CutPrefix(s, "="); !ok {
			return nil, errStyle
		}
		return c.fromString(s)
	}
	return c.fromString(raw)
}

// decodeJSON parses a parameter value described by a JSON media type.
func decodeJSON(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errStyle
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errStyle
	}
	return v, nil
}

// query is a parsed query string: its name=value pairs, decoded, in order.
type query []queryPair

type queryPair struct{ key, value string }

// values appends the values of name to dst, in order.
func (q query) values(name string, dst []string) []string {
	for _, p := range q {
		if p.key == name {
			dst = append(dst, p.value)
		}
	}
	return dst
}

// maxQueryPairs bounds the pairs of one query string that are parsed.
const maxQueryPairs = 1024

// parseQuery splits a raw query string on "&" and decodes each name and
// value (with "+" as space). It returns the name of the offending pair
// and false when a pair holds ";" (a separator some servers honour: a
// parameter hidden from validation could reach the upstream), does not
// decode, or when there are more than maxQueryPairs pairs.
func parseQuery(raw string) (q query, bad string, ok bool) {
	if raw == "" {
		return nil, "", true
	}
	n := strings.Count(raw, "&") + 1
	if n > maxQueryPairs {
		return nil, "", false
	}
	q = make(query, 0, n)
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if strings.IndexByte(pair, ';') >= 0 {
			return nil, k, false
		}
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, k, false
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, key, false
		}
		q = append(q, queryPair{key, val})
	}
	return q, "", true
}

// cookies returns the values of the cookie name in the request's Cookie
// headers.
func cookieValues(h http.Header, name string) []string {
	var out []string
	for _, line := range h.Values("Cookie") {
		for part := range strings.SplitSeq(line, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && k == name {
				out = append(out, strings.Trim(v, `"`))
			}
		}
	}
	return out
}
