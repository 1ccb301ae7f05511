package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/moat-gateway/moat/internal/gateway"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestGoldenEvents pins the exact bytes of representative events: allowed,
// denied by authentication, rate limited, WAF blocked, and a chain start,
// configuration reload, key change, admin action and drop report. The file
// is also a valid hash chain (TestVerifyGolden).
func TestGoldenEvents(t *testing.T) {
	got := sealAll(newTestChain(testKey), goldenEvents(), "gw-1")
	path := filepath.Join("testdata", "events.golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGoldenEvents -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
		for i := range min(len(gl), len(wl)) {
			if !bytes.Equal(gl[i], wl[i]) {
				t.Fatalf("line %d differs:\ngot:  %s\nwant: %s", i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("got %d lines, want %d", len(gl), len(wl))
	}
}

// TestGoldenFields checks what each representative event says, field by
// field, so the golden file cannot silently pin a wrong value.
func TestGoldenFields(t *testing.T) {
	evs := decodeLines(t, sealAll(newTestChain(testKey), goldenEvents(), "gw-1"))
	tests := []struct {
		desc string
		line int
		want map[string]any
	}{
		{"chain start", 0, map[string]any{"event.action": "audit_chain_start", "event.sequence": 1.0, "moat.chain.reason": "new", "moat.chain.key_id": KeyID(testKey), "event.id": "00c0ffee00c0ffee-1"}},
		{"allowed", 1, map[string]any{
			"@timestamp": "2026-11-21T10:00:00.123456Z", "event.outcome": "success", "moat.decision": "allow", "event.type": []any{"access", "allowed"},
			"http.request.method": "GET", "http.response.status_code": 200.0, "http.request.id": "4bf92f3577b34da6a3ce929d0e0e4736", "http.version": "1.1",
			"url.path": "/books/42", "url.domain": "api.example.com", "url.scheme": "https", "moat.query_keys": []any{"fields", "api_key"},
			"source.ip": "203.0.113.7", "user.id": "alice", "user.roles": []any{"reader", "editor"}, "moat.authenticator": "corp-jwt", "moat.auth_kind": "jwt",
			"moat.key_id": "kid-2026", "moat.scopes": []any{"books:read"}, "moat.route": "get-book", "moat.path_template": "/books/{id}", "moat.listener": "public",
			"moat.latency.gateway_us": 1650.0, "moat.latency.upstream_us": 7350.0, "event.duration": 9e6, "moat.upstream.target": "http://10.0.0.5:8080",
			"trace.id": "4bf92f3577b34da6a3ce929d0e0e4736", "tls.version": "1.3", "user_agent.original": "curl/8.5.0", "observer.hostname": "gw-1",
			"event.sequence": 2.0, "event.reason": nil, "moat.peer_ip": nil,
		}},
		{"denied by auth", 2, map[string]any{
			"event.outcome": "failure", "moat.decision": "deny", "event.reason": "jwt_expired", "event.type": []any{"access", "denied"},
			"http.response.status_code": 401.0, "moat.detail": "token expired 2m10s ago", "moat.peer_ip": "10.1.2.3", "user.id": nil,
			"moat.latency.gateway_us": 400.0, "moat.latency.upstream_us": nil, "url.scheme": "http",
		}},
		{"rate limited", 3, map[string]any{
			"event.reason": "rate_limited", "http.response.status_code": 429.0, "source.ip": "2001:db8::1", "moat.plan": "free", "moat.key_id": "k_7Hq2",
			"moat.limits": []any{
				map[string]any{"name": "per-ip", "allowed": true, "quota": 1000.0, "window_ms": 3.6e6, "remaining": 512.0, "reset_ms": 1.2e6},
				map[string]any{"name": "per-key", "allowed": false, "quota": 10.0, "window_ms": 1000.0, "remaining": 0.0, "reset_ms": 900.0},
			},
		}},
		{"waf blocked", 4, map[string]any{
			"event.reason": "waf_blocked", "moat.waf": map[string]any{"rule_ids": []any{"942100", "942190"}, "score": 15.0, "attacks": []any{"sqli"}},
			"moat.findings":       map[string]any{"content_encoding_decoded": "gzip"},
			"user_agent.original": "sqlmap/1.7\n\"quoted\"", "moat.query_keys": []any{"q"},
		}},
		{"config reload", 5, map[string]any{"event.action": "config_reload", "event.category": []any{"configuration"}, "moat.config.file": "/etc/moat/moat.yaml", "event.duration": nil, "moat.latency": nil}},
		{"key revoke", 6, map[string]any{"event.action": "api_key_revoke", "event.type": []any{"deletion"}, "moat.key_id": "k_7Hq2", "user.target.id": "team-a", "user.id": nil}},
		{"admin action", 7, map[string]any{"event.action": "route_disable", "user.id": "ops-admin", "source.ip": "192.0.2.10", "message": "disabled route legacy-upload"}},
		{"drops", 8, map[string]any{"event.action": "audit_events_dropped", "moat.dropped_events": 17.0, "event.outcome": "failure"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ev := evs[tc.line]
			for path, want := range tc.want {
				got := field(ev, path)
				gb, _ := json.Marshal(got)
				wb, _ := json.Marshal(want)
				if !bytes.Equal(gb, wb) {
					t.Errorf("%s = %s, want %s", path, gb, wb)
				}
			}
		})
	}
}

// TestNoSecrets checks that what may hold a credential never reaches an
// event: query values (an API key in a query parameter), the principal's
// claims.
func TestNoSecrets(t *testing.T) {
	out := sealAll(newTestChain(testKey), goldenEvents(), "gw-1")
	for _, secret := range []string{"SECRET-QUERY-VALUE", "alice@example.com", string(testKey)} {
		if bytes.Contains(out, []byte(secret)) {
			t.Errorf("events contain %q", secret)
		}
	}
}

// TestEventsMatchSchema validates every golden event against
// docs/audit.schema.json, which closes every object it describes: a field
// the encoder writes and the schema does not describe fails here.
func TestEventsMatchSchema(t *testing.T) {
	sch := compileSchema(t)
	for i, ev := range decodeLines(t, sealAll(newTestChain(testKey), goldenEvents(), "gw-1")) {
		if err := sch.Validate(toSchemaValue(t, ev)); err != nil {
			t.Errorf("event %d does not match the schema: %v", i+1, err)
		}
	}
	// The schema is not vacuous: a wrong type, an unknown field and a
	// missing required field are refused.
	good := decodeLines(t, sealAll(newTestChain(testKey), goldenEvents()[1:2], "gw-1"))[0]
	bad := []func(m map[string]any){
		func(m map[string]any) { m["http"].(map[string]any)["response"].(map[string]any)["status_code"] = "200" },
		func(m map[string]any) { m["moat"].(map[string]any)["secret_token"] = "x" },
		func(m map[string]any) { delete(m["event"].(map[string]any), "sequence") },
		func(m map[string]any) { m["event"].(map[string]any)["outcome"] = "maybe" },
		func(m map[string]any) { m["source"].(map[string]any)["ip"] = "not-an-address" },
	}
	for i, mutate := range bad {
		var m map[string]any
		b, _ := json.Marshal(good)
		_ = json.Unmarshal(b, &m)
		mutate(m)
		if err := sch.Validate(toSchemaValue(t, m)); err == nil {
			t.Errorf("mutation %d was accepted by the schema", i)
		}
	}
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("../../docs/audit.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource("audit.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("audit.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func toSchemaValue(t *testing.T, m map[string]any) any {
	t.Helper()
	b, _ := json.Marshal(m)
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSchemaDocumented checks that every field the schema describes is
// documented in docs/audit.md.
func TestSchemaDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/audit.md")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../docs/audit.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	var walk func(node map[string]any, path string)
	walk = func(node map[string]any, path string) {
		if ref, ok := node["$ref"].(string); ok {
			name := strings.TrimPrefix(ref, "#/$defs/")
			node = s["$defs"].(map[string]any)[name].(map[string]any)
		}
		if items, ok := node["items"].(map[string]any); ok {
			walk(items, path)
		}
		props, _ := node["properties"].(map[string]any)
		for k, v := range props {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if !bytes.Contains(doc, []byte("`"+p+"`")) {
				t.Errorf("field %s is not documented in docs/audit.md", p)
			}
			walk(v.(map[string]any), p)
		}
	}
	walk(s, "")
}

// TestAppendStringMatchesEncodingJSON compares the string escaper with
// encoding/json on the strings that matter.
func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	tests := []struct{ desc, in string }{
		{"plain", "hello"},
		{"quotes and backslashes", `a"b\c`},
		{"controls", "\x00\x01\x1f\t\n\r\x7f"},
		{"invalid utf-8", "a\xffb\xc3\x28c\xed\xa0\x80"},
		{"line separators", "x\u2028y\u2029z"},
		{"html", "<script>&amp;</script>"},
		{"multibyte", "日本語 ✓ 🙂"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			checkString(t, tc.in, 0)
		})
	}
}

// checkString verifies that appendString(in) is valid JSON and decodes to
// what encoding/json's encoding decodes to (clipped when max > 0).
func checkString(t *testing.T, in string, max int) {
	t.Helper()
	b := appendString(nil, in, max)
	if !json.Valid(b) {
		t.Fatalf("appendString(%q) = %s: not valid JSON", in, b)
	}
	var got string
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	ref := in
	if max > 0 && len(in) > max {
		n := max
		for n > 0 && !utf8.RuneStart(in[n]) {
			n--
		}
		ref = in[:n]
	}
	rb, _ := json.Marshal(ref)
	var want string
	_ = json.Unmarshal(rb, &want)
	if max > 0 && len(in) > max {
		want += "..."
	}
	if got != want {
		t.Fatalf("appendString(%q) decodes to %q, encoding/json gives %q", in, got, want)
	}
}

// FuzzAppendString is a differential fuzz target: the hand-written escaper
// must produce valid JSON that decodes to exactly what encoding/json's
// encoding decodes to.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a", `"\`, "\x00\x1f", "\xff\xfe", "\u2028", "日本", "\xe6\x97"} {
		f.Add(s, 0)
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 4096 {
			max = 0
		}
		checkString(t, s, max)
	})
}

// FuzzEvent encodes events whose strings, findings and query come from the
// fuzzer: every line must be valid JSON whose string fields decode to what
// was given (clipped), with the chain intact.
func FuzzEvent(f *testing.F) {
	f.Add("/books/1", "a=1&b=2", "alice", "ua", "detail\n", "k", "v", 1.5)
	f.Add("/\xff", "&&=&x", "\x00", "", "\u2028", "", "", math.Inf(1))
	f.Fuzz(func(t *testing.T, path, query, user, ua, detail, fk, fv string, num float64) {
		ex := exchange("GET", "/")
		ex.Request.URL.Path, ex.Request.URL.RawQuery = path, query
		ex.Request.Header.Set("User-Agent", ua)
		ex.Principal = &gateway.Principal{Subject: user, Roles: []string{fv, fk}}
		ex.ReasonID, ex.Detail, ex.Status = "x", detail, 403
		ex.Note(fk, fv)
		ex.Note("n", num)
		ex.Note("nested", map[string]any{fk: []any{fv, num, nil, true, map[string]any{"deep": map[string]any{"deeper": fv}}}})
		ex.Note(FindingWAFRuleIDs, []any{fk, 7})
		ev := FromExchange(ex, t0.Add(time.Millisecond))
		c := newTestChain(testKey)
		start := goldenEvents()[0]
		first := c.seal(appendEvent(nil, &start, "h"))
		line := c.seal(appendEvent(nil, &ev, "h"))
		if !json.Valid(line) {
			t.Fatalf("not valid JSON: %s", line)
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		checkField(t, m, "url.path", path, maxPath)
		checkField(t, m, "user.id", user, maxString)
		checkField(t, m, "user_agent.original", ua, maxUserAgent)
		checkField(t, m, "moat.detail", detail, maxDetail)
		res, err := Verify([]Input{{Name: "fuzz", R: bytes.NewReader(append(first, line...))}}, VerifyOptions{Keys: [][]byte{testKey}})
		if err != nil || res.Problem != nil || res.Events != 2 {
			t.Fatalf("chain does not verify: %v %v", err, res.Problem)
		}
	})
}

func checkField(t *testing.T, m map[string]any, path, in string, max int) {
	t.Helper()
	got := field(m, path)
	if in == "" {
		if got != nil {
			t.Fatalf("%s = %v for an empty value", path, got)
		}
		return
	}
	ref := in
	clipped := false
	if len(in) > max {
		n := max
		for n > 0 && !utf8.RuneStart(in[n]) {
			n--
		}
		ref, clipped = in[:n], true
	}
	rb, _ := json.Marshal(ref)
	var want string
	_ = json.Unmarshal(rb, &want)
	if clipped {
		want += "..."
	}
	if got != want {
		t.Fatalf("%s = %q, want %q", path, got, want)
	}
}

func TestValidNumber(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"0", true}, {"-0", true}, {"12", true}, {"1.5", true}, {"1e10", true}, {"-1.5E-3", true},
		{"", false}, {"01", false}, {"1.", false}, {".5", false}, {"1e", false}, {"+1", false}, {"NaN", false}, {"0x10", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := validNumber(tc.in); got != tc.want {
				t.Errorf("validNumber(%q) = %v", tc.in, got)
			}
			if tc.want != json.Valid([]byte(tc.in)) {
				t.Errorf("the test disagrees with encoding/json on %q", tc.in)
			}
		})
	}
}

// TestFindingValues covers the value types a stage may note, including
// ones without a JSON form, and the bounds on size.
func TestFindingValues(t *testing.T) {
	big := map[string]any{}
	for i := range 40 {
		big[string(rune('A'+i%26))+strings.Repeat("k", i)] = i
	}
	long := make([]string, 100)
	tests := []struct {
		desc  string
		value any
		want  string
	}{
		{"nil", nil, `null`},
		{"float NaN", math.NaN(), `null`},
		{"uint64", uint64(math.MaxUint64), `18446744073709551615`},
		{"json number", json.Number("12.5"), `12.5`},
		{"bad json number", json.Number("12x"), `"12x"`},
		{"duration", 1500 * time.Millisecond, `"1.5s"`},
		{"address", netip.MustParseAddr("::1"), `"::1"`},
		{"error", errors.New("boom"), `"boom"`},
		{"struct", struct{ A int }{3}, `"{3}"`},
		{"map of strings", map[string]string{"b": "2", "a": "1"}, `{"a":"1","b":"2"}`},
		{"too deep", []any{[]any{[]any{[]any{"x"}}}}, `[[["..."]]]`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := string(appendValue(nil, tc.value, 1))
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		b := appendValue(nil, big, 1)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil || len(m) != maxMapKeys {
			t.Errorf("map of 40 keys: %d keys (%v)", len(m), err)
		}
		var l []any
		if err := json.Unmarshal(appendValue(nil, long, 1), &l); err != nil || len(l) != maxList {
			t.Errorf("list of 100: %d entries (%v)", len(l), err)
		}
	})
	t.Run("many findings", func(t *testing.T) {
		ex := exchange("GET", "/")
		for k, v := range big {
			ex.Note(k, v)
		}
		ev := FromExchange(ex, t0)
		var m map[string]any
		line := newTestChain(nil).seal(appendEvent(nil, &ev, ""))
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		if n := len(field(m, "moat.findings").(map[string]any)); n != maxMapKeys {
			t.Errorf("%d findings written, want %d", n, maxMapKeys)
		}
	})
}
