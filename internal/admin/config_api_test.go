package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
)

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

// fakeConfig stands for the server: it holds a configuration file and
// "applies" a new one when config.Parse accepts it.
type fakeConfig struct {
	mu      sync.Mutex
	data    []byte
	cfg     *config.Config
	applied int
	fail    error // returned by reload instead of applying, when set
}

const minimalYAML = `listeners:
  - address: 127.0.0.1:8080
upstreams:
  api:
    targets: [http://127.0.0.1:9000]
routes:
  - path: /books/{id}
    methods: [get]
    upstream: api
    public: true
`

func newFakeConfig() *fakeConfig {
	f := &fakeConfig{}
	if err := f.set([]byte(minimalYAML)); err != nil {
		panic(err)
	}
	return f
}

func (f *fakeConfig) set(data []byte) error {
	cfg, err := config.Parse("moat.yaml", data)
	if err != nil {
		return err
	}
	f.data, f.cfg = data, cfg
	return nil
}

func (f *fakeConfig) get() ([]byte, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := ConfigJSON(f.cfg)
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(f.data)
	return b, hex.EncodeToString(sum[:])
}

func (f *fakeConfig) reload(data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	if err := f.set(data); err != nil {
		return err
	}
	f.applied++
	return nil
}

func TestGetConfigRedactsSecrets(t *testing.T) {
	const auditKey = "audit-hmac-key-0123456789abcdef0123456789"
	const sinkToken = "splunk-hec-token-5f0e1d2c3b4a"
	t.Setenv("MOAT_TEST_HEC_TOKEN", sinkToken)
	data := minimalYAML + `audit:
  dir: ` + t.TempDir() + `
  key: ` + auditKey + `
  sinks:
    - type: http
      http:
        url: https://siem.example:8088/services/collector/event
        format: splunk_hec
        token: env:MOAT_TEST_HEC_TOKEN
`
	f := &fakeConfig{}
	if err := f.set([]byte(data)); err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	if f.cfg.Audit == nil || f.cfg.Audit.Key.Value() != auditKey {
		t.Fatal("the audit key did not load: the test proves nothing")
	}
	_, ts := start(t, testAdmin(), Deps{Config: f.get})
	code, h, b := do(t, ts, req{path: "/api/v1/config", token: readToken})
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d type %q: %s", code, h.Get("Content-Type"), b)
	}
	for _, secret := range []string{auditKey, sinkToken, "audit-hmac", "splunk-hec-token"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("GET /api/v1/config reveals %q", secret)
		}
	}
	var got struct {
		Audit struct {
			Key   string
			Sinks []struct{ HTTP struct{ Token string } }
		}
		Routes []struct{ Path string }
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Audit.Key != "REDACTED" || len(got.Audit.Sinks) != 1 || got.Audit.Sinks[0].HTTP.Token != "REDACTED" {
		t.Errorf("secrets not written as REDACTED: %s", b)
	}
	if len(got.Routes) != 1 || got.Routes[0].Path != "/books/{id}" {
		t.Errorf("routes not in the JSON with their YAML names: %s", b)
	}
	_, etag := f.get()
	if h.Get("ETag") != `"`+etag+`"` {
		t.Errorf("ETag %q, want the file's quoted sha256 %q", h.Get("ETag"), etag)
	}
	if code, _, _ := do(t, ts, req{path: "/api/v1/config", token: readToken, header: map[string]string{"If-None-Match": `"` + etag + `"`}}); code != 304 {
		t.Errorf("If-None-Match with the current ETag: status %d, want 304", code)
	}
}

func TestPutConfig(t *testing.T) {
	changed := strings.Replace(minimalYAML, "/books/{id}", "/novels/{id}", 1)
	invalid := strings.Replace(minimalYAML, "upstream: api", "upstream: nope", 1)
	tests := []struct {
		desc, body, ctype string
		ifMatch           string // "current" for the serving ETag
		fail              error
		want              int
		reason            string
		applied           bool
	}{
		{"applies with the current ETag", changed, "application/yaml", "current", nil, 200, "", true},
		{"missing If-Match", changed, "application/yaml", "", nil, 428, ReasonPreconditionRequired, false},
		{"stale ETag", changed, "application/yaml", `"0000"`, nil, 412, ReasonPreconditionFailed, false},
		{"weak ETag does not match (strong comparison)", changed, "application/yaml", "weak", nil, 412, ReasonPreconditionFailed, false},
		{"star matches", changed, "application/yaml", "*", nil, 200, "", true},
		{"JSON content type", changed, "application/json", "current", nil, 415, ReasonUnsupportedMediaType, false},
		{"invalid configuration", invalid, "application/yaml; charset=utf-8", "current", nil, 422, ReasonConfigInvalid, false},
		{"reload refused", changed, "text/yaml", "current", errors.New("listeners changed: these need a restart"), 409, ReasonReloadFailed, false},
		{"too large", strings.Repeat("#", 5<<20), "application/yaml", "current", nil, 413, ReasonBodyTooLarge, false},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			f := newFakeConfig()
			f.fail = tt.fail
			var al auditLog
			_, ts := start(t, testAdmin(), Deps{Config: f.get, Reload: f.reload, Audit: al.fn})
			_, etag := f.get()
			hdr := map[string]string{}
			switch tt.ifMatch {
			case "":
			case "current":
				hdr["If-Match"] = `"` + etag + `"`
			case "weak":
				hdr["If-Match"] = `W/"` + etag + `"`
			default:
				hdr["If-Match"] = tt.ifMatch
			}
			code, h, b := do(t, ts, req{method: "PUT", path: "/api/v1/config", token: writeToken, body: tt.body, ctype: tt.ctype, header: hdr})
			if code != tt.want {
				t.Fatalf("status %d, want %d: %s", code, tt.want, b)
			}
			if got := reasonOf(t, h, b); got != tt.reason {
				t.Errorf("reason %q, want %q", got, tt.reason)
			}
			if (f.applied == 1) != tt.applied {
				t.Errorf("applied %d times, want applied=%v", f.applied, tt.applied)
			}
			switch code {
			case 200:
				_, newTag := f.get()
				if newTag == etag || h.Get("ETag") != `"`+newTag+`"` {
					t.Errorf("ETag after apply %q, want the new file's %q", h.Get("ETag"), newTag)
				}
				recs := al.all()
				if len(recs) != 1 || recs[0].action != "config_apply" || recs[0].actor != "ops" || recs[0].err != nil {
					t.Errorf("audit %+v, want one successful config_apply by ops", recs)
				}
			case 422:
				var p struct {
					Problems []struct{ Path, Message string }
				}
				json.Unmarshal(b, &p)
				if len(p.Problems) == 0 || !strings.Contains(p.Problems[0].Path, "upstream") {
					t.Errorf("problems %+v, want one naming the route's upstream", p.Problems)
				}
				if recs := al.all(); len(recs) != 1 || recs[0].err == nil {
					t.Errorf("audit %+v, want one failed config_apply", recs)
				}
			case 412:
				if h.Get("ETag") != `"`+etag+`"` {
					t.Errorf("412 ETag %q, want the serving one", h.Get("ETag"))
				}
			}
		})
	}
}

// TestPutConfigLostUpdate: two operators read the configuration and its
// ETag; the first one's PUT is applied, the second one's, sent with the
// ETag it read, is refused with 412 and the current ETag, and nothing of it
// is applied. Sent again with the current ETag (in a list), it is applied.
func TestPutConfigLostUpdate(t *testing.T) {
	f := newFakeConfig()
	var al auditLog
	_, ts := start(t, testAdmin(), Deps{Config: f.get, Reload: f.reload, Audit: al.fn})
	code, h, b := do(t, ts, req{method: "HEAD", path: "/api/v1/config", token: readToken})
	read := h.Get("ETag")
	if code != 200 || read == "" || len(b) != 0 {
		t.Fatalf("HEAD: %d ETag %q body %q", code, read, b)
	}
	put := func(yaml, ifMatch string) (int, http.Header, []byte) {
		return do(t, ts, req{method: "PUT", path: "/api/v1/config", token: writeToken, body: yaml, ctype: "application/yaml",
			header: map[string]string{"If-Match": ifMatch}})
	}
	alice := strings.Replace(minimalYAML, "/books/{id}", "/novels/{id}", 1)
	bob := strings.Replace(minimalYAML, "/books/{id}", "/poems/{id}", 1)

	code, h, b = put(alice, read)
	current := h.Get("ETag")
	if code != 200 || current == "" || current == read {
		t.Fatalf("first PUT: %d ETag %q: %s", code, current, b)
	}
	code, h, b = put(bob, read)
	if code != 412 || reasonOf(t, h, b) != ReasonPreconditionFailed || h.Get("ETag") != current {
		t.Fatalf("second PUT with the ETag it read: %d ETag %q %s, want 412 with %q", code, h.Get("ETag"), b, current)
	}
	if f.applied != 1 || !strings.Contains(string(f.data), "/novels/") {
		t.Fatalf("after the refused PUT: applied %d times, serving %q", f.applied, f.data)
	}
	// The reader's copy is stale: If-None-Match with the old ETag gets the
	// new document, with the current one 304.
	if code, h, b := do(t, ts, req{path: "/api/v1/config", token: readToken, header: map[string]string{"If-None-Match": read}}); code != 200 || h.Get("ETag") != current || !strings.Contains(string(b), "/novels/") {
		t.Errorf("GET with the old ETag: %d ETag %q", code, h.Get("ETag"))
	}
	if code, h, _ := do(t, ts, req{path: "/api/v1/config", token: readToken, header: map[string]string{"If-None-Match": current}}); code != 304 || h.Get("ETag") != current {
		t.Errorf("GET with the current ETag: %d ETag %q, want 304", code, h.Get("ETag"))
	}
	if code, _, b := put(bob, `"0000", `+current); code != 200 {
		t.Fatalf("PUT with the current ETag in a list: %d %s", code, b)
	}
	if f.applied != 2 || !strings.Contains(string(f.data), "/poems/") {
		t.Errorf("applied %d times, serving %q", f.applied, f.data)
	}
	var applied int
	for _, r := range al.all() {
		if r.action == "config_apply" && r.err == nil {
			applied++
		}
	}
	if applied != 2 || len(al.all()) != 2 {
		t.Errorf("audit %+v, want two successful config_apply and nothing for the 412", al.all())
	}
}
