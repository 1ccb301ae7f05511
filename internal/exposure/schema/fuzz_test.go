package schema

import (
	"encoding/json"
	"testing"
)

// FuzzRewrite checks the rewriter on arbitrary upstream bodies with a
// deny-list: it never panics, accepts exactly what encoding/json accepts
// (up to nesting), and its output is valid JSON without any denied member.
func FuzzRewrite(f *testing.F) {
	for _, s := range []string{`{"a":1,"password_hash":2}`, `[{"password_hash":{"x":[1]}},{"b":"\u00e9"}]`,
		`{"password_hash":1}`, `{"x":1,"password_hash":1,"y":2}`, `{"pass\u0077ord_hash":1}`, `1e5`, `"s"`, `{`, `[1,]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := rewriter{deny: map[string]bool{"passwordhash": true}}
		out, err := w.rewrite(body, nil)
		valid := json.Valid(body)
		if err != nil {
			if valid && len(body) < 400 {
				t.Fatalf("valid body refused: %q: %v", body, err)
			}
			return
		}
		if !valid {
			t.Fatalf("invalid body accepted: %q", body)
		}
		if !json.Valid(out) {
			t.Fatalf("output is not JSON: %q -> %q", body, out)
		}
		var walk func(v any)
		walk = func(v any) {
			switch t2 := v.(type) {
			case map[string]any:
				for k, c := range t2 {
					if normalize(k) == "passwordhash" {
						t.Fatalf("denied member %q left in %q", k, out)
					}
					walk(c)
				}
			case []any:
				for _, c := range t2 {
					walk(c)
				}
			}
		}
		var v any
		_ = json.Unmarshal(out, &v)
		walk(v)
	})
}
