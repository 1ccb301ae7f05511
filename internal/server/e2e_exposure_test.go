package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// exposureSpec is the OpenAPI document of the hostile upstream's users
// API: password is writeOnly (it may be sent, it is never returned), and
// password_hash is not declared at all.
const exposureSpec = `openapi: 3.1.0
info: {title: users, version: "1"}
paths:
  /users/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    get:
      operationId: getUser
      responses:
        "200":
          description: a user
          content:
            application/json:
              schema: {$ref: "#/components/schemas/User"}
components:
  schemas:
    User:
      type: object
      required: [id, name]
      properties:
        id: {type: integer}
        name: {type: string}
        email: {type: string, format: email}
        password: {type: string, writeOnly: true}
`

// The hostile upstream's answers.
const (
	// hostileUser matches User, plus an undeclared password_hash and the
	// writeOnly password.
	hostileUser = `{"id":1,"name":"ann","email":"ann@example.com","password_hash":"$2b$10$N9qo8uLOickgx2ZMRZoMye","password":"hunter2"}`
	// hostilePayment leaks a Luhn-valid card number and an AWS access key
	// pair.
	hostilePayment = `{"id":"pay_1","card":"4111111111111111","aws_access_key_id":"AKIAIOSFODNN7EXAMPLE",` +
		`"aws_secret_access_key":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY","note":"ok"}`
	// hostileCrash is a framework debug page: Java, Go and Python traces,
	// an SQL error with its query, file paths.
	hostileCrash = "java.sql.SQLException: ORA-00942: table or view does not exist\n" +
		"SQLSTATE[42S02]: SELECT password_hash FROM users WHERE id = 1\n" +
		"\tat com.example.UserDao.find(UserDao.java:42)\n" +
		"\tat /opt/app/lib/dao.jar\n" +
		"goroutine 1 [running]:\nmain.handler(0xc000010000)\n\t/srv/app/main.go:17 +0x1d\n" +
		"Traceback (most recent call last):\n  File \"/usr/lib/python3/app.py\", line 3, in <module>\n"
)

// leakyHeaders are what the hostile upstream sends on every response.
var leakyHeaders = map[string]string{
	"Server":           "Apache/2.4.1",
	"X-Powered-By":     "PHP/5.6",
	"X-AspNet-Version": "4.0.30319",
	"X-Debug-Token":    "f00dfeed",
}

// TestExposureModes is the end-to-end check of minimal data exposure
// (docs/response-filtering.md, docs/masking.md, docs/safe-errors.md): one
// hostile upstream that adds undeclared and writeOnly properties, leaks a
// card number and an AWS key pair, answers 500 with stack traces and an SQL
// error, redirects elsewhere, and names its software in every response;
// the gateway, configured as the documentation shows, with one route per
// mode. Each mode does what it says, writeOnly properties never reach the
// client, the leaky headers never do either, the redirect is passed on and
// not followed, and the audit file holds the replaced error body only on
// the route that asks for it.
func TestExposureModes(t *testing.T) {
	const auditKey = "0123456789abcdef0123456789abcdef-exposure"
	t.Setenv("MOAT_TEST_AUDIT_KEY", auditKey)

	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	t.Cleanup(other.Close)
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h := w.Header()
		for k, v := range leakyHeaders {
			h.Set(k, v)
		}
		switch {
		case strings.HasPrefix(r.URL.Path, "/users/"):
			h.Set("Content-Type", "application/json")
			io.WriteString(w, hostileUser)
		case strings.HasPrefix(r.URL.Path, "/payments/"):
			h.Set("Content-Type", "application/json")
			io.WriteString(w, hostilePayment)
		case r.URL.Path == "/crash":
			h.Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, hostileCrash)
		case r.URL.Path == "/moved":
			h.Set("Location", other.URL+"/new-home")
			w.WriteHeader(http.StatusFound)
			io.WriteString(w, "moved")
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(up.Close)

	dir := t.TempDir()
	spec := filepath.Join(dir, "users.openapi.yaml")
	if err := os.WriteFile(spec, []byte(exposureSpec), 0o600); err != nil {
		t.Fatal(err)
	}
	auditFile := filepath.Join(dir, "audit.jsonl")
	// One route per mode; each strips its prefix so that the upstream sees
	// the document's paths, and serves the document under that prefix.
	g := startGateway(t, fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
audit:
  dir: %[1]q
  key: env:MOAT_TEST_AUDIT_KEY
  sinks: [{type: file, file: {path: %[2]q}}]
upstreams:
  hostile: {targets: [%[3]q]}
routes:
  - path: /log/users/{id}
    methods: [GET]
    upstream: hostile
    public: true
    rewrite: {strip_prefix: /log}
    openapi: {spec: %[4]q, base_path: /log}
    response_filtering: {mode: log}
  - path: /strip/users/{id}
    methods: [GET]
    upstream: hostile
    public: true
    rewrite: {strip_prefix: /strip}
    openapi: {spec: %[4]q, base_path: /strip}
    response_filtering: {mode: strip}
  - path: /block/users/{id}
    methods: [GET]
    upstream: hostile
    public: true
    rewrite: {strip_prefix: /block}
    openapi: {spec: %[4]q, base_path: /block}
    response_filtering: {mode: block}
  - path: /deny/users/{id}
    methods: [GET]
    upstream: hostile
    public: true
    rewrite: {strip_prefix: /deny}
    response_filtering:
      deny_fields: [password_hash, password]
  - path: /mask/payments/{id}
    methods: [GET]
    upstream: hostile
    public: true
    rewrite: {strip_prefix: /mask}
    masking:
      fields:
        - {name: aws_secret_access_key}
  - path: /maskblock/payments/{id}
    methods: [GET]
    upstream: hostile
    public: true
    rewrite: {strip_prefix: /maskblock}
    masking:
      actions: {secrets: block}
  - path: /crash
    methods: [GET]
    upstream: hostile
    public: true
  - path: /kept/crash
    methods: [GET]
    upstream: hostile
    public: true
    rewrite: {strip_prefix: /kept}
    safe_errors: {keep_in_audit: true}
  - path: /moved
    methods: [GET]
    upstream: hostile
    public: true
`, filepath.Join(dir, "spool"), auditFile, up.URL, spec))

	const stripped = `{"id":1,"name":"ann","email":"ann@example.com"}`
	tests := []struct {
		desc   string
		path   string
		status int
		body   string // exact body; "" when reason is set
		reason string // reason_id of a problem document
		// findings the audit event of the request must have (keys of
		// moat.findings), and text it must or must not hold.
		findings    []string
		auditHas    []string
		auditHasNot []string
	}{
		{desc: "response_filtering log: body unchanged but for writeOnly, undeclared property recorded",
			path: "/log/users/1", status: 200,
			body:     `{"id":1,"name":"ann","email":"ann@example.com","password_hash":"$2b$10$N9qo8uLOickgx2ZMRZoMye"}`,
			findings: []string{"response_removed", "response_undeclared"}, auditHas: []string{"/password_hash undeclared", "/password write_only"}},
		{desc: "response_filtering strip: undeclared and writeOnly properties removed, the rest byte for byte",
			path: "/strip/users/1", status: 200, body: stripped, findings: []string{"response_removed"},
			auditHas: []string{"/password_hash undeclared", "/password write_only"}},
		{desc: "response_filtering block: 502 response_schema_violation",
			path: "/block/users/1", status: 502, reason: "response_schema_violation",
			findings: []string{"response_undeclared"}},
		{desc: "deny_fields on a route without a schema",
			path: "/deny/users/1", status: 200, body: stripped, findings: []string{"response_removed"}},
		{desc: "masking mask: card and access key masked by detectors, the secret key by its field rule",
			path: "/mask/payments/1", status: 200,
			body: `{"id":"pay_1","card":"************1111","aws_access_key_id":"[REDACTED:aws_access_key]",` +
				`"aws_secret_access_key":"[REDACTED]","note":"ok"}`,
			findings: []string{"masking"}, auditHas: []string{"/card", "/aws_access_key_id", "/aws_secret_access_key"}},
		{desc: "masking block: a leaked secret refuses the response",
			path: "/maskblock/payments/1", status: 502, reason: "sensitive_data_blocked", findings: []string{"masking"}},
		{desc: "safe errors (default): the 500 becomes the gateway's problem document, the trace is gone",
			path: "/crash", status: 500, reason: "upstream_error",
			auditHasNot: []string{"SQLSTATE", "UserDao", "goroutine", "Traceback"}},
		{desc: "safe errors keep_in_audit: the client gets the problem document, the audit the masked original",
			path: "/kept/crash", status: 500, reason: "upstream_error", findings: []string{"upstream_error_body"},
			auditHas: []string{"SQLSTATE[42S02]", "UserDao.java:42", "goroutine 1 [running]", "Traceback (most recent call last)"}},
		{desc: "an upstream redirect reaches the client and is not followed",
			path: "/moved", status: 302, body: "moved"},
	}
	requestIDs := map[string]int{} // X-Request-Id -> index in tests
	for i, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			before := hits.Load()
			resp, body := g.get(t, tc.path)
			requestIDs[resp.Header.Get("X-Request-Id")] = i
			if tc.reason != "" {
				wantProblem(t, resp, body, tc.status, tc.reason)
				want := fmt.Sprintf(`{"type":"about:blank","title":%q,"status":%d,"reason_id":%q,"request_id":%q}`+"\n",
					http.StatusText(tc.status), tc.status, tc.reason, resp.Header.Get("X-Request-Id"))
				if string(body) != want {
					t.Errorf("problem body =\n%s\nwant\n%s", body, want)
				}
			} else {
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, clip(body))
				}
				if string(body) != tc.body {
					t.Errorf("body =\n%s\nwant\n%s", body, tc.body)
				}
			}
			for name := range leakyHeaders {
				if v := resp.Header.Get(name); v != "" {
					t.Errorf("%s: %s reached the client", name, v)
				}
			}
			for _, leak := range []string{"hunter2", "4111111111111111", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI", "SQLSTATE", "goroutine", "/opt/app"} {
				if strings.Contains(string(body), leak) {
					t.Errorf("%q reached the client: %s", leak, clip(body))
				}
			}
			if n := hits.Load() - before; n != 1 {
				t.Errorf("%d upstream requests, want exactly 1", n)
			}
			if tc.status == http.StatusFound {
				if loc := resp.Header.Get("Location"); loc != other.URL+"/new-home" {
					t.Errorf("Location = %q, want the upstream's", loc)
				}
				if n := elsewhere.Load(); n != 0 {
					t.Errorf("the redirect target got %d requests: the gateway followed the redirect", n)
				}
			}
		})
	}

	// The audit file, complete once the gateway has stopped.
	if err := g.stop(t); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[int]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			HTTP struct{ Request struct{ ID string } }
			Moat struct{ Findings map[string]json.RawMessage }
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit line is not JSON: %v: %s", err, clip(sc.Bytes()))
		}
		i, ok := requestIDs[ev.HTTP.Request.ID]
		if !ok {
			continue
		}
		tc := tests[i]
		seen[i] = true
		line := sc.Text()
		for _, k := range tc.findings {
			if _, ok := ev.Moat.Findings[k]; !ok {
				t.Errorf("%s: audit event lacks finding %s: %s", tc.path, k, clip(sc.Bytes()))
			}
		}
		for _, s := range tc.auditHas {
			if !strings.Contains(line, jsonText(s)) {
				t.Errorf("%s: audit event lacks %q: %s", tc.path, s, clip(sc.Bytes()))
			}
		}
		for _, s := range append(tc.auditHasNot, "hunter2", "4111111111111111", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI", "$2b$10$") {
			if strings.Contains(line, jsonText(s)) {
				t.Errorf("%s: audit event holds %q: %s", tc.path, s, clip(sc.Bytes()))
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for i, tc := range tests {
		if !seen[i] {
			t.Errorf("%s: no audit event", tc.path)
		}
	}
}

// jsonText returns s as it appears inside a JSON string.
func jsonText(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}
