package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-gateway/moat/examples/vulnapi"
)

func loadTestSpec(t *testing.T) *Spec {
	t.Helper()
	s, err := LoadSpec("testdata/api.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testOptions(t *testing.T, api *vulnapi.API, url string) Options {
	return Options{
		Target: url, Spec: loadTestSpec(t), Rate: 5000, MaxRequests: 500,
		RequestTimeout: 3 * time.Second, Timeout: 60 * time.Second, SSRFWait: 500 * time.Millisecond,
		Identities: []Identity{
			{Name: "alice", Header: "Authorization", Value: "Bearer " + api.AliceToken()},
			{Name: "bob", Header: "X-API-Key", Value: bobKey},
		},
	}
}

func runScan(t *testing.T, o Options) *Report {
	t.Helper()
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func rulesOf(r *Report) map[string]int {
	m := map[string]int{}
	for _, f := range r.Findings {
		m[f.Rule]++
	}
	return m
}

// TestScanVulnerableAndHardened scans the vulnerable sample API over HTTPS
// (its TLS configuration is a planted flaw too) and expects every planted
// flaw found, each with its OWASP category; the hardened variant, also
// over HTTPS, yields no finding at all.
func TestScanVulnerableAndHardened(t *testing.T) {
	expected := map[string]string{
		RuleUnauthenticated:    "API2:2023",
		RuleBOLA:               "API1:2023",
		RuleBFLA:               "API5:2023",
		RuleUndeclaredProperty: "API3:2023",
		RuleSensitiveData:      "API3:2023",
		RuleRateLimit:          "API4:2023",
		RuleInjection:          "API8:2023",
		RuleSSRF:               "API7:2023",
		RuleCORS:               "API8:2023",
		RuleTrace:              "API8:2023",
		RuleWeakTLS:            "API8:2023",
		RuleInventory:          "API9:2023",
		RuleJWTNone:            "API2:2023",
		RuleJWTWeakSecret:      "API2:2023",
		RuleJWTExpired:         "API2:2023",
		RuleMassAssignment:     "API3:2023",
		RuleSecurityHeaders:    "API8:2023",
		RuleVerboseErrors:      "API8:2023",
	}
	vuln := newTestAPI(false)
	vs := newTLSServer(t, vuln, false)
	o := testOptions(t, vuln, vs.URL)
	o.AllowDestructive, o.Insecure = true, true
	vrep := runScan(t, o)
	got := rulesOf(vrep)
	for rule, category := range expected {
		t.Run("vulnerable/"+rule, func(t *testing.T) {
			if got[rule] == 0 {
				t.Fatalf("no %s finding; findings: %v; notes: %v", rule, got, vrep.Notes)
			}
			for _, f := range vrep.Findings {
				if f.Rule == rule && f.OWASP != category {
					t.Errorf("%s finding %q filed under %s, want %s", rule, f.Title, f.OWASP, category)
				}
			}
		})
	}
	for _, f := range vrep.Findings {
		if strings.Contains(f.Evidence+f.Message+f.URL, bobKey) || strings.Contains(f.Evidence+f.Message, vuln.AliceToken()[20:]) {
			t.Errorf("finding %s leaks a credential: %+v", f.Rule, f)
		}
	}

	hard := newTestAPI(true)
	hs := newTLSServer(t, hard, true)
	o = testOptions(t, hard, hs.URL)
	o.AllowDestructive, o.Insecure = true, true
	hrep := runScan(t, o)
	for _, f := range hrep.Findings {
		t.Errorf("hardened API: unexpected finding %s %s: %s (%s)", f.Severity, f.Rule, f.Title, f.Operation)
	}
	if t.Failed() {
		var b bytes.Buffer
		_ = WriteReport(&b, vrep, "table")
		t.Log(b.String())
	}
}

func TestScanSpecificFindings(t *testing.T) {
	vuln := newTestAPI(false)
	vs := httptest.NewServer(vuln)
	defer vs.Close()
	rep := runScan(t, testOptions(t, vuln, vs.URL))
	want := []struct {
		desc, rule, titleHas, op string
	}{
		{"unauthenticated admin op", RuleUnauthenticated, "", "GET /v2/admin/users"},
		{"alice reads bob", RuleBOLA, "alice reads objects of bob", "GET /v2/users/{id}"},
		{"password hash exposed", RuleUndeclaredProperty, "/password_hash", "GET /v2/users/{id}"},
		{"card number", RuleSensitiveData, "payment card", ""},
		{"email not in schema", RuleSensitiveData, "e-mail", "GET /v2/users/{id}"},
		{"sql error", RuleInjection, "SQL payload in query parameter q", "GET /v2/products"},
		{"panic trace of a failed fetch", RuleVerboseErrors, "a stack trace", "GET /v2/fetch"},
		{"actuator", RuleInventory, "/actuator", ""},
		{"older version", RuleInventory, "/v1", ""},
	}
	for _, w := range want {
		t.Run(w.desc, func(t *testing.T) {
			for _, f := range rep.Findings {
				if f.Rule == w.rule && strings.Contains(f.Title, w.titleHas) && (w.op == "" || f.Operation == w.op) {
					return
				}
			}
			t.Errorf("missing %s finding with %q on %q", w.rule, w.titleHas, w.op)
		})
	}
}

func TestDryRunSendsNothing(t *testing.T) {
	api := newTestAPI(false)
	srv := httptest.NewServer(api)
	defer srv.Close()
	o := testOptions(t, api, srv.URL)
	o.DryRun, o.AllowDestructive = true, true
	rep := runScan(t, o)
	if n := api.Requests(); n != 0 {
		t.Fatalf("dry run sent %d requests", n)
	}
	if len(rep.Plan) == 0 || rep.Requests != 0 {
		t.Fatalf("plan %d entries, %d requests", len(rep.Plan), rep.Requests)
	}
	probes := map[string]bool{}
	for _, p := range rep.Plan {
		probes[p.Probe] = true
	}
	for _, p := range []string{"discovery", "unauthenticated", "bola", "function-level", "jwt", "inventory", "injection", "ssrf", "mass-assignment"} {
		if !probes[p] {
			t.Errorf("plan lacks probe %s", p)
		}
	}
}

func TestDestructiveNeedsFlag(t *testing.T) {
	api := newTestAPI(false)
	srv := httptest.NewServer(api)
	defer srv.Close()
	rep := runScan(t, testOptions(t, api, srv.URL))
	if n := api.Writes(); n != 0 {
		t.Fatalf("%d data-changing requests without --allow-destructive", n)
	}
	if rulesOf(rep)[RuleMassAssignment] != 0 {
		t.Fatal("mass assignment ran without --allow-destructive")
	}
	found := false
	for _, n := range rep.Notes {
		found = found || strings.Contains(n, "mass-assignment: skipped")
	}
	if !found {
		t.Errorf("no note about the skipped probe: %v", rep.Notes)
	}
}

func TestRequestBudget(t *testing.T) {
	for _, max := range []int{1, 7, 40} {
		api := newTestAPI(false)
		srv := httptest.NewServer(api)
		o := testOptions(t, api, srv.URL)
		o.MaxRequests = max
		rep := runScan(t, o)
		srv.Close()
		if n := api.Requests(); n > int64(max) || rep.Requests > max {
			t.Errorf("budget %d: server saw %d, report says %d", max, n, rep.Requests)
		}
		if !rep.BudgetExhausted {
			t.Errorf("budget %d: not reported exhausted", max)
		}
	}
}

func TestRedirectToOtherHostNotFollowed(t *testing.T) {
	var other atomic.Int64
	os := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { other.Add(1) }))
	defer os.Close()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, os.URL+"/stolen", http.StatusFound)
	}))
	defer target.Close()
	spec, err := ParseSpec([]byte("openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get:\n      responses: {'200': {description: ok}}\n"), "t.yaml", "")
	if err != nil {
		t.Fatal(err)
	}
	rep := runScan(t, Options{Target: target.URL, Spec: spec, Rate: 5000, MaxRequests: 100, SSRFWait: time.Millisecond})
	if other.Load() != 0 {
		t.Fatalf("followed a redirect to another host %d times", other.Load())
	}
	found := false
	for _, n := range rep.Notes {
		found = found || strings.Contains(n, "not the target host")
	}
	if !found {
		t.Errorf("no note about the refused redirect: %v", rep.Notes)
	}
}

func TestSARIFStructure(t *testing.T) {
	api := newTestAPI(false)
	srv := httptest.NewServer(api)
	defer srv.Close()
	rep := runScan(t, testOptions(t, api, srv.URL))
	var b bytes.Buffer
	if err := WriteReport(&b, rep, "sarif"); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["version"] != "2.1.0" || !strings.Contains(doc["$schema"].(string), "sarif-schema-2.1.0") {
		t.Fatalf("version/$schema: %v %v", doc["version"], doc["$schema"])
	}
	runs := doc["runs"].([]any)
	run := runs[0].(map[string]any)
	driver := run["tool"].(map[string]any)["driver"].(map[string]any)
	if driver["name"] == "" {
		t.Fatal("no tool.driver.name")
	}
	ruleIDs := map[string]bool{}
	for _, r := range driver["rules"].([]any) {
		rm := r.(map[string]any)
		ruleIDs[rm["id"].(string)] = true
		if !strings.HasPrefix(rm["helpUri"].(string), "https://owasp.org/API-Security/editions/2023/en/0xa") {
			t.Errorf("rule %v helpUri %v", rm["id"], rm["helpUri"])
		}
	}
	results := run["results"].([]any)
	if len(results) == 0 {
		t.Fatal("no results")
	}
	for _, r := range results {
		rm := r.(map[string]any)
		id, _ := rm["ruleId"].(string)
		if !ruleIDs[id] {
			t.Errorf("result ruleId %q not among the rules", id)
		}
		if l := rm["level"]; l != "error" && l != "warning" && l != "note" {
			t.Errorf("level %v", l)
		}
		if txt, _ := rm["message"].(map[string]any)["text"].(string); txt == "" {
			t.Error("empty message.text")
		}
		loc := rm["locations"].([]any)[0].(map[string]any)
		if loc["physicalLocation"].(map[string]any)["artifactLocation"].(map[string]any)["uri"] != "testdata/api.yaml" {
			t.Errorf("location %v", loc)
		}
	}
}

func TestHTMLEscapes(t *testing.T) {
	rep := &Report{Target: "http://x", Spec: "s.yaml", Findings: []Finding{{Rule: RuleInjection, Severity: SeverityHigh, Title: "<script>alert(1)</script>", Evidence: "<img src=x onerror=alert(1)>"}}}
	var b bytes.Buffer
	if err := WriteReport(&b, rep, "html"); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	if strings.Contains(s, "<script>alert") || strings.Contains(s, "<img src=x") {
		t.Fatal("html report does not escape content")
	}
	if strings.Contains(s, "http://") && strings.Contains(s, "<link") || strings.Contains(s, "<script src") {
		t.Fatal("html report loads external assets")
	}
}
