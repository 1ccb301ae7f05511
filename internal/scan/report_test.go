package scan

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// goldenReport is a fixed report for the table golden files, its findings
// sorted by severity as Run sorts them.
func goldenReport() *Report {
	return &Report{
		Target: "https://api.example.com", Spec: "openapi.yaml", SpecVersion: "3.0.3",
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Duration: 1500 * time.Millisecond,
		Requests: 42, MaxRequests: 500,
		Findings: []Finding{
			{Rule: RuleUnauthenticated, OWASP: "API2:2023", Severity: SeverityCritical, Title: "reachable without credentials", Operation: "GET /admin/users", Owner: OwnerGateway},
			{Rule: RuleBOLA, OWASP: "API1:2023", Severity: SeverityHigh, Title: "alice reads objects of bob", Operation: "GET /users/{id}", Identity: "alice", Owner: OwnerGateway},
			{Rule: RuleInjection, OWASP: "API8:2023", Severity: SeverityHigh, Title: "SQL payload in query parameter q provokes an SQL error", Operation: "GET /products", Identity: "alice", Owner: OwnerApplication},
			{Rule: RuleSSRF, OWASP: "API7:2023", Severity: SeverityHigh, Title: "server fetches the URL in url", Operation: "GET /fetch", Identity: "bob", Owner: OwnerApplication},
			{Rule: RuleWeakTLS, OWASP: "API8:2023", Severity: SeverityMedium, Title: "TLS 1.0 accepted", Owner: OwnerGateway},
		},
		Notes: []string{"mass-assignment: skipped, needs --allow-destructive"},
	}
}

// TestTableGolden pins the summary table: a scan with findings of both
// owners and notes, a scan without findings, a dry run, and a report of
// another tool (moat lint). go test -run TestTableGolden -update rewrites
// the files.
func TestTableGolden(t *testing.T) {
	clean := goldenReport()
	clean.Findings, clean.Notes = []Finding{}, nil
	dry := &Report{Target: "http://127.0.0.1:9090", Spec: "openapi.yaml", DryRun: true, MaxRequests: 500, Plan: []PlanEntry{
		{Probe: "discovery", Method: "GET", Path: "/v2/me", Identity: "alice"},
		{Probe: "unauthenticated", Method: "GET", Path: "/v2/me"},
		{Probe: "tls", Method: "TLS", Path: "127.0.0.1:9090"},
	}}
	tool := &Report{Tool: "moat-lint", Spec: "moat.yaml", Findings: []Finding{
		{Rule: "waf-off", OWASP: "API8:2023", Severity: SeverityMedium, Title: "Public route without WAF", Message: "public route search has no WAF.", Operation: "search", Line: 12, Owner: OwnerGateway},
		{Rule: "audit-off", OWASP: "API8:2023", Severity: SeverityMedium, Title: "No audit trail", Message: "no audit block.", Owner: OwnerGateway},
	}}
	tests := []struct {
		name string
		rep  *Report
	}{
		{"scan", goldenReport()},
		{"clean", clean},
		{"dry-run", dry},
		{"tool", tool},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteReport(&b, tc.rep, "table"); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "table-"+tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if b.String() != string(want) {
				t.Errorf("table differs from %s:\n%s\nwant:\n%s", path, b.String(), want)
			}
		})
	}
}

// TestRulesDocumented checks that docs/scan.md names every rule, and that
// every rule has an OWASP item, an owner and a remediation.
func TestRulesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/scan.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range Rules {
		if !bytes.Contains(doc, []byte("`"+r.ID+"`")) {
			t.Errorf("docs/scan.md does not name rule %s", r.ID)
		}
		if r.OWASP == "" || r.Owner == "" || r.Remediation == "" {
			t.Errorf("rule %s incomplete: %+v", r.ID, r)
		}
	}
}
