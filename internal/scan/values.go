package scan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// sample returns a value valid for the schema as far as the scanner can
// tell: the example, default or first enum value, else one built from the
// type. Object samples hold the required properties and, when all is set,
// every property that is not readOnly.
func sample(s *openapi3.Schema, all bool, depth int) any {
	if s == nil || depth > 6 {
		return "moat"
	}
	switch {
	case s.Example != nil:
		return s.Example
	case len(s.Examples) > 0:
		return s.Examples[0]
	case s.Default != nil:
		return s.Default
	case len(s.Enum) > 0:
		return s.Enum[0]
	}
	if len(s.AllOf) > 0 {
		obj := map[string]any{}
		for _, sub := range s.AllOf {
			if sub == nil {
				continue
			}
			if m, ok := sample(sub.Value, all, depth+1).(map[string]any); ok {
				for k, v := range m {
					obj[k] = v
				}
			}
		}
		if len(s.Properties) == 0 {
			return obj
		}
	}
	for _, alt := range []openapi3.SchemaRefs{s.OneOf, s.AnyOf} {
		if len(alt) > 0 && alt[0] != nil {
			return sample(alt[0].Value, all, depth+1)
		}
	}
	switch {
	case s.Type.Permits("object") && (len(s.Properties) > 0 || s.Type.Is("object")):
		obj := map[string]any{}
		for _, name := range sortedKeys(s.Properties) {
			p := s.Properties[name]
			if p == nil || p.Value == nil || p.Value.ReadOnly {
				continue
			}
			if all || contains(s.Required, name) {
				obj[name] = sample(p.Value, all, depth+1)
			}
		}
		return obj
	case s.Type.Is("array"):
		var item *openapi3.Schema
		if s.Items != nil {
			item = s.Items.Value
		}
		return []any{sample(item, all, depth+1)}
	case s.Type.Is("integer"):
		if s.Min != nil {
			return int64(*s.Min) + 1
		}
		return 1
	case s.Type.Is("number"):
		if s.Min != nil {
			return *s.Min + 1
		}
		return 1.5
	case s.Type.Is("boolean"):
		return false
	}
	switch s.Format {
	case "email":
		return "moat-scan@example.com"
	case "uuid":
		return "00000000-0000-4000-8000-000000000001"
	case "date-time":
		return "2024-01-01T00:00:00Z"
	case "date":
		return "2024-01-01"
	case "uri", "url":
		return "https://example.invalid/"
	}
	v := "moat"
	for len(v) < int(s.MinLength) {
		v += "x"
	}
	return v
}

// scalarString formats a sample for a path or query parameter.
func scalarString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case nil:
		return ""
	case []any:
		if len(t) > 0 {
			return scalarString(t[0])
		}
		return ""
	case map[string]any:
		b, _ := json.Marshal(t)
		return string(b)
	default:
		return fmt.Sprint(t)
	}
}

// isStringParam reports whether a parameter takes a string (injection and
// SSRF probes only send strings where strings are declared, or where no
// schema says otherwise).
func isStringParam(p Param) bool {
	if p.Schema == nil {
		return true
	}
	if len(p.Schema.Enum) > 0 {
		return false
	}
	return p.Schema.Type.IsEmpty() || p.Schema.Type.Permits("string")
}

// buildPath fills the operation's template. fill returns the value for a
// path parameter ("" to use a sample). Query parameters that are required
// get samples; override sets one parameter's raw value (query or path).
func buildPath(o *Operation, fill func(Param) string, overrideIn, overrideName, overrideValue string) string {
	path := o.Path
	q := url.Values{}
	for _, p := range o.Params {
		var v string
		overridden := p.In == overrideIn && p.Name == overrideName
		switch {
		case overridden:
			v = overrideValue
		case fill != nil && p.In == "path":
			v = fill(p)
		}
		if v == "" && !overridden {
			v = scalarString(sample(p.Schema, false, 0))
		}
		switch p.In {
		case "path":
			path = strings.ReplaceAll(path, "{"+p.Name+"}", url.PathEscape(v))
		case "query":
			if p.Required || overridden {
				q.Set(p.Name, v)
			}
		}
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return path
}

// idValue is an object ID seen in a response.
type idValue struct {
	Key   string // the JSON key ("id", "user_id") or "location"
	Value string
	Rank  int // lower is likelier the caller's own: 0 top-level or Location, 1 nested; the caller adds 2 for admin operations
}

// collectIDs returns the object IDs in a response: values of JSON keys
// named id, *_id, *Id, uuid (strings and numbers), and the last segment of
// a Location header. At most 50 are returned.
func collectIDs(body []byte, location string) []idValue {
	var out []idValue
	seen := map[idValue]bool{}
	add := func(k, v string, rank int) {
		iv := idValue{k, v, rank}
		if len(out) < 50 && v != "" && len(v) <= 128 && !strings.ContainsAny(v, " \t\r\n/?#") && !seen[iv] {
			seen[iv] = true
			out = append(out, iv)
		}
	}
	if location != "" {
		if u, err := url.Parse(location); err == nil {
			segs := strings.Split(strings.TrimRight(u.Path, "/"), "/")
			if seg, err := url.PathUnescape(segs[len(segs)-1]); err == nil {
				add("location", seg, 0)
			}
		}
	}
	v, ok := decodeJSON(body)
	if !ok {
		return out
	}
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		if depth > 8 || len(out) >= 50 {
			return
		}
		switch t := v.(type) {
		case map[string]any:
			rank := min(depth, 1)
			for _, k := range sortedKeys(t) {
				switch x := t[k].(type) {
				case string:
					if isIDKey(k) {
						add(k, x, rank)
					}
				case json.Number:
					if isIDKey(k) {
						add(k, x.String(), rank)
					}
				default:
					walk(x, depth+1)
				}
			}
		case []any:
			for i, e := range t {
				if i >= 100 {
					break
				}
				walk(e, depth+1)
			}
		}
	}
	walk(v, 0)
	return out
}

func isIDKey(k string) bool {
	l := strings.ToLower(k)
	return l == "id" || l == "uuid" || strings.HasSuffix(l, "_id") || strings.HasSuffix(k, "Id") || strings.HasSuffix(k, "ID")
}

// normName lowercases and drops _ and - so user_id matches userId.
func normName(s string) string {
	return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
}

// decodeJSON parses a JSON body with json.Number; ok is false for anything
// that is not JSON.
func decodeJSON(b []byte) (any, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || (b[0] != '{' && b[0] != '[') {
		return nil, false
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	return v, true
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
