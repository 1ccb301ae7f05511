package lint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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

// withSchemas and withoutSchemas are OpenAPI documents: one declaring a
// JSON response schema, one whose responses have none.
const (
	withSchemas = `openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /doc:
    get:
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {type: object, properties: {id: {type: integer}}}
`
	withoutSchemas = `openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /doc:
    delete:
      responses:
        "204": {description: deleted}
`
)

// writeDocs writes withSchemas and withoutSchemas to files and returns
// their paths.
func writeDocs(t *testing.T) (schemas, none string) {
	t.Helper()
	dir := t.TempDir()
	schemas, none = filepath.Join(dir, "schemas.yaml"), filepath.Join(dir, "none.yaml")
	for p, doc := range map[string]string{schemas: withSchemas, none: withoutSchemas} {
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return schemas, none
}

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

// TestChecks runs every rule against configurations that fire it and
// ones that do not (the clean baseline, and a near miss where a rule has
// conditions), and checks that every rule fired in some case and that each
// report names its findings in every format. In routes, $SCHEMAS and
// $NOSCHEMAS stand for the paths of withSchemas and withoutSchemas.
func TestChecks(t *testing.T) {
	schemasDoc, noSchemasDoc := writeDocs(t)
	fired := map[string]bool{}
	tests := []struct {
		desc   string
		extra  string
		routes string
		edit   func(*config.Config)
		want   []string
		notes  []string // substrings, one per note
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
		{desc: "masking: a route that only deletes returns no data", routes: `
  - {name: d, path: /d, methods: [DELETE], upstream: a, rate_limits: [per-ip], auth: {authenticators: [jwt], roles: {any_of: [u]}}}`,
			want: nil},
		{desc: "masking: a block without detectors or field rules masks nothing", routes: `
  - {name: m, path: /m, methods: [GET, DELETE], upstream: a, rate_limits: [per-ip], auth: {authenticators: [jwt], roles: {any_of: [u]}}, masking: {detectors: []}}`,
			want: []string{"masking-off:low:m"}},
		{desc: "masking: field rules alone are masking", routes: `
  - {name: m, path: /m, methods: [GET], upstream: a, rate_limits: [per-ip], auth: {authenticators: [jwt], roles: {any_of: [u]}}, masking: {detectors: [], fields: [{name: card}]}}`,
			want: nil},
		{desc: "masking: public routes are not asked to mask", routes: `
  - {name: pub, path: /pub, methods: [GET], upstream: a, public: true, rate_limits: [per-ip], waf: {}}`,
			want: []string{"public-route:info:pub"}},
		{desc: "response filtering in log mode on a route whose document has response schemas", routes: `
  - {name: r, path: /doc, methods: [GET], upstream: a, public: true, rate_limits: [per-ip], waf: {}, openapi: {spec: "$SCHEMAS"}, response_filtering: {mode: log}}`,
			want: []string{"public-route:info:r", "response-filtering-off:low:r"}},
		{desc: "response filtering strip, block and default are on", routes: `
  - {name: s, path: /doc, methods: [GET], upstream: a, public: true, rate_limits: [per-ip], waf: {}, openapi: {spec: "$SCHEMAS"}, response_filtering: {mode: strip}}
  - {name: b, path: /doc, methods: [POST], upstream: a, public: true, rate_limits: [per-ip], waf: {}, openapi: {spec: "$SCHEMAS"}, response_filtering: {mode: block}}
  - {name: d, path: /doc, methods: [PUT], upstream: a, public: true, rate_limits: [per-ip], waf: {}, openapi: {spec: "$SCHEMAS"}}`,
			want: []string{"public-route:info:b", "public-route:info:d", "public-route:info:s"}},
		{desc: "response filtering log without response schemas, or without a document", routes: `
  - {name: n, path: /doc, methods: [DELETE], upstream: a, public: true, rate_limits: [per-ip], waf: {}, openapi: {spec: "$NOSCHEMAS"}, response_filtering: {mode: log}}
  - {name: x, path: /x, methods: [GET], upstream: a, public: true, rate_limits: [per-ip], waf: {}, response_filtering: {mode: log, deny_fields: [password_hash]}}`,
			want: []string{"public-route:info:n", "public-route:info:x"}},
		{desc: "response filtering log on an upstream's generated routes", routes: goodRoutes,
			edit: func(c *config.Config) {
				c.Upstreams["a"].OpenAPI = &config.OpenAPI{Spec: schemasDoc, ResponseFiltering: &config.ResponseFiltering{Mode: config.ResponseModeLog}}
				c.Upstreams["b"] = &config.Upstream{OpenAPI: &config.OpenAPI{Spec: schemasDoc}}
				c.Upstreams["c"] = &config.Upstream{OpenAPI: &config.OpenAPI{Spec: noSchemasDoc, ResponseFiltering: &config.ResponseFiltering{Mode: config.ResponseModeLog}}}
			},
			want: []string{"public-route:info:pub", "response-filtering-off:low:upstreams.a.openapi"}},
		{desc: "a document that does not load is a note", routes: `
  - {name: r, path: /doc, methods: [GET], upstream: a, public: true, rate_limits: [per-ip], waf: {}, openapi: {spec: "/nonexistent/moat-lint-test.yaml"}, response_filtering: {mode: log}}`,
			want:  []string{"public-route:info:r"},
			notes: []string{"r: response filtering not checked"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			routes := strings.NewReplacer("$SCHEMAS", schemasDoc, "$NOSCHEMAS", noSchemasDoc).Replace(tc.routes)
			c := parse(t, tc.extra, routes)
			if tc.edit != nil {
				tc.edit(c)
			}
			rep := Check(c, "moat.yaml", time.Unix(0, 0))
			g := got(rep)
			if strings.Join(g, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("findings:\n  %s\nwant:\n  %s", strings.Join(g, "\n  "), strings.Join(tc.want, "\n  "))
			}
			for _, f := range rep.Findings {
				fired[f.Rule] = true
				if f.Owner != scan.OwnerGateway || f.OWASP == "" || f.Message == "" {
					t.Errorf("finding %s lacks owner, OWASP item or message: %+v", f.Rule, f)
				}
			}
			if len(rep.Notes) != len(tc.notes) {
				t.Errorf("notes %q, want %d", rep.Notes, len(tc.notes))
			}
			for i, n := range tc.notes {
				if i < len(rep.Notes) && !strings.Contains(rep.Notes[i], n) {
					t.Errorf("note %q lacks %q", rep.Notes[i], n)
				}
			}
			checkFormats(t, rep)
		})
	}
	for _, r := range Rules {
		if !fired[r.ID] {
			t.Errorf("no case fires rule %s", r.ID)
		}
	}
}

// checkFormats writes rep in every format and checks that each names every
// finding's rule: the table and HTML mention it, JSON and SARIF list the
// same rules as the report, in order.
func checkFormats(t *testing.T, rep *scan.Report) {
	t.Helper()
	var want []string
	for _, f := range rep.Findings {
		want = append(want, f.Rule)
	}
	for _, format := range scan.Formats {
		var b bytes.Buffer
		if err := scan.WriteReport(&b, rep, format); err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		var rules []string
		switch format {
		case "json":
			var v struct{ Findings []scan.Finding }
			if err := json.Unmarshal(b.Bytes(), &v); err != nil {
				t.Fatalf("json: %v", err)
			}
			for _, f := range v.Findings {
				rules = append(rules, f.Rule)
			}
		case "sarif":
			var v struct {
				Runs []struct{ Results []struct{ RuleID string } }
			}
			if err := json.Unmarshal(b.Bytes(), &v); err != nil || len(v.Runs) != 1 {
				t.Fatalf("sarif: %v", err)
			}
			for _, r := range v.Runs[0].Results {
				rules = append(rules, r.RuleID)
			}
		default:
			for _, id := range want {
				if !strings.Contains(b.String(), id) {
					t.Errorf("%s output does not name %s", format, id)
				}
			}
			continue
		}
		if strings.Join(rules, ",") != strings.Join(want, ",") {
			t.Errorf("%s lists rules %v, want %v", format, rules, want)
		}
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
	doc, err := os.ReadFile("../../docs/lint.md")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, r := range Rules {
		if ids[r.ID] {
			t.Errorf("rule %s twice", r.ID)
		}
		ids[r.ID] = true
		if r.Name == "" || r.Description == "" || r.OWASP == "" || r.Remediation == "" || !strings.HasSuffix(r.HelpURI, "#"+r.ID) {
			t.Errorf("rule %s incomplete: %+v", r.ID, r)
		}
		if !strings.Contains(string(doc), "| `"+r.ID+"` |") || !strings.Contains(string(doc), "\n### "+r.ID+"\n") {
			t.Errorf("docs/lint.md lacks the table row or the section (### %s) of rule %s", r.ID, r.ID)
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

// TestLoadResolvesSpecBesideTheFile lints a configuration file whose
// route names its OpenAPI document by a relative path: it is found beside
// the file, as moat serve finds it, whatever the working directory.
func TestLoadResolvesSpecBesideTheFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "api.yaml"), []byte(withSchemas), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(base, filepath.Join(dir, "audit"), "", `
  - {name: r, path: /doc, methods: [GET], upstream: a, public: true, rate_limits: [per-ip], waf: {}, openapi: {spec: api.yaml}, response_filtering: {mode: log}}`)
	path := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Load(path, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	g := strings.Join(got(rep), " ")
	if g != "public-route:info:r response-filtering-off:low:r" || len(rep.Notes) != 0 {
		t.Errorf("findings %s, notes %q", g, rep.Notes)
	}
}
