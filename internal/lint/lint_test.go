package lint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/scan"
)

// base is a configuration that lints clean: TLS-less only on loopback,
// every route limited, authenticated routes masked with explicit roles,
// audit with a key, admin on loopback. Tests append or replace parts.
const base = `
listeners:
  - {name: public, address: 127.0.0.1:8080}
authenticators:
  jwt:
    jwt:
      issuers:
        - {issuer: https://idp.example, audiences: [api], algorithms: [HS256], secret: "0123456789abcdef0123456789abcdef-x"}
rate_limits:
  per-ip: {rate: 10, per: 1s, key: client_ip}
upstreams:
  a: {targets: ["http://127.0.0.1:9"]}
admin:
  address: 127.0.0.1:0
  tokens: [{name: ops, sha256: 0000000000000000000000000000000000000000000000000000000000000000, role: read}]
audit:
  dir: %s
  key: "0123456789abcdef0123456789abcdef-audit"
  sinks: [{type: stdout}]
%s
routes:
%s`

const goodRoutes = `
  - {name: pub, path: /pub, methods: [GET], upstream: a, public: true, rate_limits: [per-ip], waf: {}}
  - name: priv
    path: /priv/{id}
    methods: [GET]
    upstream: a
    rate_limits: [per-ip]
    auth: {authenticators: [jwt], roles: {any_of: [user]}, owner: [{in: path, name: id, claim: sub}]}
    masking: {}
`

func parse(t *testing.T, extra, routes string) *config.Config {
	t.Helper()
	doc := fmt.Sprintf(base, t.TempDir(), extra, routes)
	c, err := config.Parse("moat.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("fixture does not load: %v\n%s", err, doc)
	}
	return c
}

// got returns rule:severity:where for each finding, sorted.
func got(r *scan.Report) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.Rule+":"+f.Severity.String()+":"+f.Operation)
	}
	sort.Strings(out)
	return out
}

func TestChecks(t *testing.T) {
	tests := []struct {
		desc   string
		extra  string
		routes string
		edit   func(*config.Config)
		want   []string
	}{
		{desc: "clean baseline", routes: goodRoutes, want: []string{"public-route:info:pub"}},
		{desc: "public route without limit or WAF", routes: `
  - {name: open, path: /o, methods: [GET], upstream: a, public: true}`,
			want: []string{"public-route:info:open", "route-without-rate-limit:medium:open", "waf-off:medium:open"}},
		{desc: "upstream limit covers routes", extra: "", routes: `
  - {name: open, path: /o, methods: [GET], upstream: a, public: true, waf: {mode: detect}}`,
			edit: func(c *config.Config) { c.Upstreams["a"].RateLimits = []string{"per-ip"} },
			want: []string{"public-route:info:open", "waf-detect-only:low:open"}},
		{desc: "waf disabled counts as off", routes: `
  - {name: open, path: /o, methods: [GET], upstream: a, public: true, rate_limits: [per-ip], waf: {enabled: false}}`,
			want: []string{"public-route:info:open", "waf-off:medium:open"}},
		{desc: "authenticated route: low limit, masking, any authenticated, query key", routes: `
  - name: p
    path: /p
    methods: [GET]
    upstream: a
    auth: {authenticators: [jwt], allow_any_authenticated: true, allow_query_key: true}`,
			want: []string{"allow-any-authenticated:low:p", "api-key-in-query:low:p", "masking-off:low:p", "route-without-rate-limit:low:p"}},
		{desc: "default plan limits authenticated routes", extra: `
plans:
  basic: {rate_limits: [per-ip]}
default_plan: basic`, routes: `
  - {name: p, path: /p, methods: [GET], upstream: a, auth: {authenticators: [jwt], roles: {any_of: [u]}}, masking: {}}`,
			want: nil},
		{desc: "cors any origin and plain http", extra: `
cors:
  allow_origins: ["*", "http://app.example.com", "http://localhost:3000"]`, routes: goodRoutes,
			want: []string{"cors-any-origin:medium:cors", "cors-plain-http-origin:low:cors", "public-route:info:pub"}},
		{desc: "cors public-suffix wildcard with credentials", routes: `
  - name: c
    path: /c
    methods: [GET]
    upstream: a
    public: true
    rate_limits: [per-ip]
    waf: {}
    cors: {allow_origins: ["https://*.co.uk", "https://*.example.com"], allow_credentials: true}`,
			want: []string{"cors-credentials-wildcard:high:c", "cors-wide-pattern:high:c", "public-route:info:c"}},
		{desc: "own-domain wildcard without credentials is fine", routes: `
  - {name: c, path: /c, methods: [GET], upstream: a, public: true, rate_limits: [per-ip], waf: {}, cors: {allow_origins: ["https://*.example.com"]}}`,
			want: []string{"public-route:info:c"}},
		{desc: "disabled cors is not linted", routes: `
  - {name: c, path: /c, methods: [GET], upstream: a, public: true, rate_limits: [per-ip], waf: {}, cors: {disabled: true, allow_origins: ["*"]}}`,
			want: []string{"public-route:info:c"}},
		{desc: "short jwt secret and missing audit key (set after validation)", routes: goodRoutes,
			edit: func(c *config.Config) {
				var s config.Secret
				_ = s.UnmarshalText([]byte("secret"))
				c.Authenticators["jwt"].JWT.Issuers[0].Secret = s
				c.Audit.Key = config.Secret{}
			},
			want: []string{"audit-key-missing:medium:audit", "public-route:info:pub", "short-hmac-secret:high:authenticators.jwt.jwt.issuers[0]"}},
		{desc: "short audit key", routes: goodRoutes,
			edit: func(c *config.Config) {
				var s config.Secret
				_ = s.UnmarshalText([]byte("0123456789"))
				c.Audit.Key = s
			},
			want: []string{"public-route:info:pub", "short-hmac-secret:high:audit"}},
		{desc: "plain listener on all interfaces, TLS listener without HSTS, redirect listener", routes: goodRoutes,
			edit: func(c *config.Config) {
				c.Listeners = []config.Listener{
					{Name: "wide", Address: ":8080"},
					{Name: "lan", Address: "10.0.0.1:8080"},
					{Name: "local6", Address: "[::1]:8080"},
					{Name: "redir", Address: ":80", RedirectHTTPS: &config.RedirectHTTPS{Port: 443}},
					{Name: "tls", Address: ":443", TLS: &config.ListenerTLS{HSTS: config.HSTS{Disabled: true}}},
				}
			},
			want: []string{"hsts-disabled:low:listeners[4] tls", "listener-without-tls:medium:listeners[0] wide", "listener-without-tls:medium:listeners[1] lan", "public-route:info:pub"}},
		{desc: "admin on a public address without tls", routes: goodRoutes,
			edit: func(c *config.Config) { c.Admin.Address, c.Admin.Insecure = "0.0.0.0:9901", true },
			want: []string{"admin-insecure:high:admin", "public-route:info:pub"}},
		{desc: "no audit, no admin, headers and brute force off", routes: goodRoutes,
			edit: func(c *config.Config) {
				c.Audit, c.Admin = nil, nil
				c.SecurityHeaders.Disabled, c.BruteForce.Disabled = true, true
			},
			want: []string{"admin-off:info:", "audit-off:medium:", "brute-force-off:low:brute_force", "public-route:info:pub", "security-headers-off:medium:security_headers"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			c := parse(t, tc.extra, tc.routes)
			if tc.edit != nil {
				tc.edit(c)
			}
			rep := Check(c, "moat.yaml", time.Unix(0, 0))
			g := got(rep)
			if strings.Join(g, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("findings:\n  %s\nwant:\n  %s", strings.Join(g, "\n  "), strings.Join(tc.want, "\n  "))
			}
			for _, f := range rep.Findings {
				if f.Owner != scan.OwnerGateway || f.OWASP == "" || f.Message == "" {
					t.Errorf("finding %s lacks owner, OWASP item or message: %+v", f.Rule, f)
				}
			}
		})
	}
}

func TestFindingsOrderedBySeverityWithLines(t *testing.T) {
	c := parse(t, "", `
  - {name: a1, path: /a, methods: [GET], upstream: a, public: true}
  - {name: a2, path: /b, methods: [GET], upstream: a, public: true, cors: {allow_origins: ["https://*.github.io"], allow_credentials: true}}`)
	rep := Check(c, "moat.yaml", time.Unix(0, 0))
	for i := 1; i < len(rep.Findings); i++ {
		if rep.Findings[i].Severity > rep.Findings[i-1].Severity {
			t.Fatalf("finding %d (%s) ranks above %d (%s)", i, rep.Findings[i].Severity, i-1, rep.Findings[i-1].Severity)
		}
	}
	for _, f := range rep.Findings {
		if f.Operation == "a2" && f.Line == 0 {
			t.Errorf("route finding %s has no line", f.Rule)
		}
	}
	if rep.Count(scan.SeverityHigh) != 2 {
		t.Errorf("high findings %d, want 2 (wide pattern, credentials): %v", rep.Count(scan.SeverityHigh), got(rep))
	}
}

func TestRulesDocumented(t *testing.T) {
	ids := map[string]bool{}
	for _, r := range Rules {
		if ids[r.ID] {
			t.Errorf("rule %s twice", r.ID)
		}
		ids[r.ID] = true
		if r.Name == "" || r.Description == "" || r.OWASP == "" || r.Remediation == "" || !strings.HasSuffix(r.HelpURI, "#"+r.ID) {
			t.Errorf("rule %s incomplete: %+v", r.ID, r)
		}
	}
}

func TestReportFormats(t *testing.T) {
	c := parse(t, "", `
  - {name: "<b>x</b>", path: /o, methods: [GET], upstream: a, public: true}`)
	rep := Check(c, "moat.yaml", time.Unix(0, 0))
	for _, format := range scan.Formats {
		t.Run(format, func(t *testing.T) {
			var b bytes.Buffer
			if err := scan.WriteReport(&b, rep, format); err != nil {
				t.Fatal(err)
			}
			s := b.String()
			switch format {
			case "table":
				if !strings.Contains(s, "moat-lint of moat.yaml") || !strings.Contains(s, "waf-off") {
					t.Errorf("table:\n%s", s)
				}
			case "html":
				if strings.Contains(s, "<b>x</b>") || !strings.Contains(s, "moat-lint report") {
					t.Errorf("html not escaped or not titled")
				}
			case "json":
				var v struct {
					Tool     string
					Findings []scan.Finding
				}
				if err := json.Unmarshal(b.Bytes(), &v); err != nil || v.Tool != Tool || len(v.Findings) != len(rep.Findings) {
					t.Errorf("json: %v %+v", err, v)
				}
			case "sarif":
				var v struct {
					Runs []struct {
						Tool struct {
							Driver struct {
								Name  string
								Rules []struct{ ID string }
							}
						}
						Results []struct {
							RuleID    string
							RuleIndex int
						}
					}
				}
				if err := json.Unmarshal(b.Bytes(), &v); err != nil {
					t.Fatal(err)
				}
				d := v.Runs[0].Tool.Driver
				if d.Name != Tool || len(d.Rules) != len(Rules) {
					t.Fatalf("driver %s with %d rules", d.Name, len(d.Rules))
				}
				for _, r := range v.Runs[0].Results {
					if d.Rules[r.RuleIndex].ID != r.RuleID {
						t.Errorf("result %s points at rule %d (%s)", r.RuleID, r.RuleIndex, d.Rules[r.RuleIndex].ID)
					}
				}
			}
		})
	}
}

func TestLoadRefusesInvalidConfiguration(t *testing.T) {
	if _, err := Load("testdata/does-not-exist.yaml", time.Now()); err == nil {
		t.Fatal("no error for a missing file")
	}
}
