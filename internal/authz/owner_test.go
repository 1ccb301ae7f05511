package authz

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/router"
)

// recorder is an Observer that remembers every mismatch.
type recorder struct {
	mu    sync.Mutex
	calls [][2]string
}

func (r *recorder) OwnerMismatch(principal, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, [2]string{principal, id})
}

func TestOwnerRules(t *testing.T) {
	pathParams := func(id string) []router.Param {
		return []router.Param{{Key: "org", Value: "acme"}, {Key: "id", Value: id}}
	}
	tests := []struct {
		desc   string
		rule   config.OwnerRule
		r      req
		want   string
		object string // object_id finding expected on a mismatch
	}{
		{"path equals subject", config.OwnerRule{In: "path", Name: "id", Claim: "sub"}, req{params: pathParams("alice")}, "", ""},
		{"path differs from subject", config.OwnerRule{In: "path", Name: "id", Claim: "sub"}, req{params: pathParams("bob")}, ReasonOwnerMismatch, "bob"},
		{"path equals claim", config.OwnerRule{In: "path", Name: "org", Claim: "org"}, req{}, "", ""},
		{"path equals numeric claim", config.OwnerRule{In: "path", Name: "id", Claim: "account"}, req{params: pathParams("42")}, "", ""},
		{"path member of list claim", config.OwnerRule{In: "path", Name: "org", Claim: "org_ids", Match: "member"}, req{params: []router.Param{{Key: "org", Value: "globex"}}}, "", ""},
		{"path not member", config.OwnerRule{In: "path", Name: "org", Claim: "org_ids", Match: "member"}, req{params: []router.Param{{Key: "org", Value: "initech"}}}, ReasonOwnerMismatch, "initech"},
		{"equal against a list claim fails", config.OwnerRule{In: "path", Name: "org", Claim: "org_ids"}, req{params: []router.Param{{Key: "org", Value: "acme"}}}, ReasonOwnerMismatch, "acme"},
		{"missing claim", config.OwnerRule{In: "path", Name: "org", Claim: "tenant"}, req{}, ReasonOwnerMismatch, "acme"},
		{"missing path parameter fails closed", config.OwnerRule{In: "path", Name: "id", Claim: "sub"}, req{params: []router.Param{}}, ReasonOwnerMismatch, ""},
		{"empty identifier", config.OwnerRule{In: "path", Name: "id", Claim: "sub"}, req{params: pathParams(""), principal: &gateway.Principal{Subject: ""}}, ReasonOwnerMismatch, ""},
		{"query equal", config.OwnerRule{In: "query", Name: "account", Claim: "account"}, req{target: "/x?account=42"}, "", ""},
		{"query other's", config.OwnerRule{In: "query", Name: "account", Claim: "account"}, req{target: "/x?account=43"}, ReasonOwnerMismatch, "43"},
		{"query repeated: every value must pass", config.OwnerRule{In: "query", Name: "account", Claim: "account"}, req{target: "/x?account=42&account=43"}, ReasonOwnerMismatch, "43"},
		{"query escaped", config.OwnerRule{In: "query", Name: "org", Claim: "org"}, req{target: "/x?%6Frg=ac%6De"}, "", ""},
		{"query absent passes", config.OwnerRule{In: "query", Name: "account", Claim: "account"}, req{target: "/x"}, "", ""},
		{"query absent but required", config.OwnerRule{In: "query", Name: "account", Claim: "account", Required: true}, req{target: "/x"}, ReasonOwnerMismatch, ""},
		{"body string", config.OwnerRule{In: "body", Pointer: "/owner_id", Claim: "sub"}, req{method: "POST", body: `{"owner_id":"alice"}`}, "", ""},
		{"body other's", config.OwnerRule{In: "body", Pointer: "/owner_id", Claim: "sub"}, req{method: "POST", body: `{"owner_id":"bob"}`}, ReasonOwnerMismatch, "bob"},
		{"body case variant is checked too", config.OwnerRule{In: "body", Pointer: "/owner_id", Claim: "sub"}, req{method: "POST", body: `{"owner_id":"alice","Owner_ID":"bob"}`}, ReasonOwnerMismatch, "bob"},
		{"body number", config.OwnerRule{In: "body", Pointer: "/account", Claim: "account"}, req{method: "POST", body: `{"account":42.0}`}, "", ""},
		{"body nested wildcard all own", config.OwnerRule{In: "body", Pointer: "/lines/*/org", Claim: "org_ids", Match: "member"}, req{method: "POST", body: `{"lines":[{"org":"acme"},{"org":"globex"}]}`}, "", ""},
		{"body nested wildcard one foreign", config.OwnerRule{In: "body", Pointer: "/lines/*/org", Claim: "org_ids", Match: "member"}, req{method: "POST", body: `{"lines":[{"org":"acme"},{"org":"initech"}]}`}, ReasonOwnerMismatch, "initech"},
		{"body object is not an identifier", config.OwnerRule{In: "body", Pointer: "/owner_id", Claim: "sub"}, req{method: "POST", body: `{"owner_id":{"id":"alice"}}`}, ReasonOwnerMismatch, ""},
		{"body null is absent", config.OwnerRule{In: "body", Pointer: "/owner_id", Claim: "sub"}, req{method: "POST", body: `{"owner_id":null}`}, "", ""},
		{"body absent but required", config.OwnerRule{In: "body", Pointer: "/owner_id", Claim: "sub", Required: true}, req{method: "POST", body: `{}`}, ReasonOwnerMismatch, ""},
		{"no body but required", config.OwnerRule{In: "body", Pointer: "/owner_id", Claim: "sub", Required: true}, req{method: "POST"}, ReasonOwnerMismatch, ""},
		{"invalid body keeps its reason", config.OwnerRule{In: "body", Pointer: "/owner_id", Claim: "sub"}, req{method: "POST", body: `{"owner_id":`}, gateway.ReasonInvalidJSON, ""},
		{"expr with object_id", config.OwnerRule{In: "path", Name: "id", Expr: `object_id.startsWith(principal.claims.org + "-")`}, req{params: pathParams("acme-9")}, "", ""},
		{"expr denies", config.OwnerRule{In: "path", Name: "id", Expr: `object_id.startsWith(principal.claims.org + "-")`}, req{params: pathParams("globex-9")}, ReasonOwnerMismatch, "globex-9"},
		{"expr error denies", config.OwnerRule{In: "path", Name: "id", Expr: `principal.claims.nope == object_id`}, req{}, ReasonOwnerMismatch, "7"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			obs := &recorder{}
			s := mustNew(t, config.Authorization{Owner: []config.OwnerRule{tc.rule}}, Options{Observer: obs})
			ex := tc.r.exchange()
			got, rej := verdict(t, s, ex)
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if got != ReasonOwnerMismatch {
				if len(obs.calls) > 0 {
					t.Fatalf("observer called on %q", got)
				}
				return
			}
			if tc.object != "" {
				if ex.Findings[FindingObjectID] != tc.object {
					t.Fatalf("object_id finding %v, want %q", ex.Findings[FindingObjectID], tc.object)
				}
				if len(obs.calls) != 1 || obs.calls[0] != [2]string{PrincipalKey(ex.Principal), tc.object} {
					t.Fatalf("observer calls %v", obs.calls)
				}
				if contains(rej.Detail, tc.object) {
					t.Fatalf("detail %q carries the object ID", rej.Detail)
				}
			}
		})
	}
}

func jsonNumber(s string) json.Number { return json.Number(s) }

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestScalarString(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
		ok   bool
	}{
		{"a", "a", true}, {float64(42), "42", true}, {42.5, "42.5", true}, {int64(-3), "-3", true},
		{jsonNumber("42"), "42", true}, {jsonNumber("42.0"), "42", true}, {jsonNumber("4.2e1"), "42", true},
		{jsonNumber("12345678901234567890"), "12345678901234567890", true}, {true, "", false}, {nil, "", false},
		{[]any{"a"}, "", false},
	} {
		got, ok := scalarString(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("scalarString(%#v) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
