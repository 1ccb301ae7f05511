package authz

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

func TestPropertyRules(t *testing.T) {
	props := &config.PropertyRules{
		ReadOnly:   []string{"/id", "/owner_id", "/items/*/price", "/meta/a~1b"},
		WriteRoles: map[string][]string{"/discount": {"sales-admin"}, "/flags/*": {"ops"}},
	}
	sales := &gateway.Principal{Subject: "s", Roles: []string{"sales-admin"}}
	const patch = "application/json-patch+json"
	tests := []struct {
		desc   string
		r      req
		want   string
		detail string // substring of the detail
	}{
		{"no body", req{method: "POST"}, "", ""},
		{"allowed properties", req{method: "POST", body: `{"title":"x","items":[{"sku":"a"}]}`}, "", ""},
		{"read-only top level", req{method: "POST", body: `{"title":"x","id":5}`}, ReasonPropertyDenied, "read-only property /id"},
		{"read-only set to null", req{method: "PATCH", body: `{"owner_id":null}`, ctype: "application/merge-patch+json"}, ReasonPropertyDenied, "/owner_id"},
		{"read-only case variant", req{method: "POST", body: `{"Owner_ID":"bob"}`}, ReasonPropertyDenied, "/Owner_ID"},
		{"read-only in array element", req{method: "POST", body: `{"items":[{"sku":"a"},{"sku":"b","price":1}]}`}, ReasonPropertyDenied, "/items/1/price"},
		{"escaped pointer", req{method: "POST", body: `{"meta":{"a/b":1}}`}, ReasonPropertyDenied, "/meta/a~1b"},
		{"role-restricted without role", req{method: "POST", body: `{"discount":50}`}, ReasonPropertyDenied, "needs one of the roles sales-admin"},
		{"role-restricted with role", req{method: "POST", body: `{"discount":50}`, principal: sales}, "", ""},
		{"role-restricted wildcard member", req{method: "POST", body: `{"flags":{"beta":true}}`}, ReasonPropertyDenied, "/flags/beta"},
		{"detail has no value", req{method: "POST", body: `{"id":"secret-value"}`}, ReasonPropertyDenied, "/id"},
		{"not JSON", req{method: "POST", body: `id=5`, ctype: "application/x-www-form-urlencoded"}, gateway.ReasonInvalidJSON, ""},
		{"patch on other property", req{method: "PATCH", ctype: patch, body: `[{"op":"replace","path":"/title","value":"x"}]`}, "", ""},
		{"patch sets read-only", req{method: "PATCH", ctype: patch, body: `[{"op":"replace","path":"/owner_id","value":"bob"}]`}, ReasonPropertyDenied, "/owner_id"},
		{"patch removes read-only", req{method: "PATCH", ctype: patch, body: `[{"op":"remove","path":"/id"}]`}, ReasonPropertyDenied, "/id"},
		{"patch inside read-only", req{method: "PATCH", ctype: "application/json-patch+json; charset=utf-8", body: `[{"op":"add","path":"/meta/a~1b/x","value":1}]`}, ReasonPropertyDenied, ""},
		{"patch ancestor value sets it", req{method: "PATCH", ctype: patch, body: `[{"op":"add","path":"/items/-","value":{"sku":"c","price":0}}]`}, ReasonPropertyDenied, "/items/-/price"},
		{"patch ancestor value without it", req{method: "PATCH", ctype: patch, body: `[{"op":"add","path":"/items/-","value":{"sku":"c"}}]`}, "", ""},
		{"patch whole document", req{method: "PATCH", ctype: patch, body: `[{"op":"replace","path":"","value":{"id":1}}]`}, ReasonPropertyDenied, "/id"},
		{"patch removes ancestor", req{method: "PATCH", ctype: patch, body: `[{"op":"remove","path":"/items/0"}]`}, "", ""},
		{"patch copy onto ancestor", req{method: "PATCH", ctype: patch, body: `[{"op":"copy","from":"/items/0","path":"/items/-"}]`}, ReasonPropertyDenied, ""},
		{"patch move from read-only", req{method: "PATCH", ctype: patch, body: `[{"op":"move","from":"/owner_id","path":"/title"}]`}, ReasonPropertyDenied, "/owner_id"},
		{"patch test is no write", req{method: "PATCH", ctype: patch, body: `[{"op":"test","path":"/id","value":1}]`}, "", ""},
		{"patch case variant", req{method: "PATCH", ctype: patch, body: `[{"op":"replace","path":"/ID","value":2}]`}, ReasonPropertyDenied, "/ID"},
		{"patch not a list", req{method: "PATCH", ctype: patch, body: `{"id":1}`}, ReasonPropertyDenied, "not an array"},
		{"patch bad op", req{method: "PATCH", ctype: patch, body: `[{"op":"frob","path":"/x"}]`}, ReasonPropertyDenied, "unknown op"},
		{"patch bad path", req{method: "PATCH", ctype: patch, body: `[{"op":"add","path":"x","value":1}]`}, ReasonPropertyDenied, ""},
		{"patch role-restricted with role", req{method: "PATCH", ctype: patch, body: `[{"op":"replace","path":"/discount","value":5}]`, principal: sales}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := mustNew(t, config.Authorization{AllowAnyAuthenticated: true, Properties: props}, Options{})
			got, rej := verdict(t, s, tc.r.exchange())
			if got != tc.want {
				t.Fatalf("got %q (%v), want %q", got, rej, tc.want)
			}
			if rej != nil && tc.detail != "" && !strings.Contains(rej.Detail, tc.detail) {
				t.Fatalf("detail %q does not contain %q", rej.Detail, tc.detail)
			}
			if rej != nil && strings.Contains(rej.Detail, "secret-value") {
				t.Fatalf("detail %q carries a value", rej.Detail)
			}
		})
	}
}

func TestPropertiesSkipBodyWhenNoRuleApplies(t *testing.T) {
	s := mustNew(t, config.Authorization{AllowAnyAuthenticated: true,
		Properties: &config.PropertyRules{WriteRoles: map[string][]string{"/discount": {"sales-admin"}}}}, Options{})
	// The principal may write every restricted property: the body, not
	// even valid JSON, is left to later stages.
	r := req{method: "POST", body: `not json`, principal: &gateway.Principal{Subject: "s", Roles: []string{"sales-admin"}}}
	if got, _ := verdict(t, s, r.exchange()); got != "" {
		t.Fatalf("got %q", got)
	}
}

func TestPointerWalk(t *testing.T) {
	var doc any
	if err := json.Unmarshal([]byte(`{"a":[{"b":1},{"b":2},{"c":3}],"A":{"b":4},"x~y":{"p/q":5},"arr":[0,1,2,3,4,5,6,7,8,9,10]}`), &doc); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ptr  string
		want []string
	}{
		{"/a/*/b", []string{"/a/0/b", "/a/1/b"}},
		{"/a/1/b", []string{"/a/1/b"}},
		{"/a/01/b", nil}, // not a canonical index
		{"/a/9/b", nil},
		{"/x~0y/p~1q", []string{"/x~0y/p~1q"}},
		{"/arr/10", []string{"/arr/10"}},
		{"/*/b", []string{"/A/b"}},
	} {
		p, err := parsePointer(tc.ptr)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		p.walk(doc, func(path []string, _ any) bool { got = append(got, formatPath(path)); return true })
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: got %v, want %v", tc.ptr, got, tc.want)
		}
	}
	// Case-insensitive member names: both spellings are visited.
	p, _ := parsePointer("/a")
	n := 0
	p.walk(doc, func([]string, any) bool { n++; return true })
	if n != 2 {
		t.Errorf("/a visited %d members, want 2 (a and A)", n)
	}
}

// FuzzProperties runs random bodies through a body owner rule and the
// property rules, as plain JSON and as JSON Patch: nothing may panic,
// every error is a Reject, and a body that carries a read-only property
// verbatim at the top level is always refused.
func FuzzProperties(f *testing.F) {
	for _, s := range []string{
		`{"id":1}`, `[{"op":"add","path":"/items/-","value":{"price":1}}]`, `[{"op":"move","from":"/id","path":""}]`,
		`{"items":[{"price":null}]}`, `[]`, `"x"`, `[{"op":"copy","from":"/a","path":"/items"}]`, `{"a":{"b":[1,{"c":2}]}}`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	s, err := New(config.Authorization{Roles: req2("reader"), Owner: []config.OwnerRule{{In: "body", Pointer: "/a/*/b", Claim: "org_ids", Match: "member"}}, Properties: &config.PropertyRules{
		ReadOnly: []string{"/id", "/items/*/price", "/a/b/*/c"}, WriteRoles: map[string][]string{"/x/*": {"admin"}},
	}}, "fuzz", Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string, isPatch bool) {
		ctype := "application/json"
		if isPatch {
			ctype = jsonPatchType
		}
		ex := req{method: "POST", body: body, ctype: ctype}.exchange()
		err := s.ProcessRequest(t.Context(), ex)
		if err != nil {
			if _, rej := verdict(t, s, req{method: "POST", body: body, ctype: ctype}.exchange()); rej == nil {
				t.Fatalf("not a reject: %v", err)
			}
			return
		}
		if isPatch {
			return
		}
		var m map[string]any
		if json.Unmarshal([]byte(body), &m) == nil {
			if _, ok := m["id"]; ok {
				t.Fatalf("body %s with /id passed", body)
			}
		}
	})
}
