package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

func TestAdminConfigDefaults(t *testing.T) {
	var a config.Admin
	a.ApplyDefaults()
	if a.Address != "127.0.0.1:9901" || a.EventsBuffer != 1000 || a.ReadinessTimeout != config.DefaultAdminReadinessTimeout ||
		a.MaxConfigSize != config.DefaultAdminMaxConfigSize || a.LoginLimit != (config.AdminLoginLimit{Failures: 10,
		Per: config.Duration(time.Minute), Cooldown: config.Duration(5 * time.Minute)}) {
		t.Errorf("defaults %+v", a)
	}
	if got := strings.Join(a.AllowedHosts, ","); got != "localhost,127.0.0.1,::1" {
		t.Errorf("allowed hosts %s", got)
	}
	if ps := a.Validate(); len(ps) != 0 {
		t.Errorf("defaults do not validate: %v", ps)
	}
	b := config.Admin{Address: "[::1]:9901"}
	b.ApplyDefaults()
	if got := strings.Join(b.AllowedHosts, ","); got != "localhost,127.0.0.1,::1" {
		t.Errorf("allowed hosts for [::1] %s", got)
	}
	c := config.Admin{Address: "10.1.2.3:9901", Insecure: true}
	c.ApplyDefaults()
	if got := strings.Join(c.AllowedHosts, ","); got != "localhost,127.0.0.1,::1,10.1.2.3" {
		t.Errorf("allowed hosts for 10.1.2.3 %s", got)
	}
	d := config.Admin{Address: "0.0.0.0:9901", Insecure: true}
	d.ApplyDefaults()
	if got := strings.Join(d.AllowedHosts, ","); got != "localhost,127.0.0.1,::1" {
		t.Errorf("allowed hosts for the wildcard address %s", got)
	}
}

func TestAdminConfigValidate(t *testing.T) {
	good := config.HashAdminToken(readToken)
	tests := []struct {
		desc string
		edit func(*config.Admin)
		want []string // problem paths
	}{
		{"valid", func(*config.Admin) {}, nil},
		{"bad address", func(a *config.Admin) { a.Address = "9901" }, []string{"address"}},
		{"remote address without tls", func(a *config.Admin) { a.Address = "0.0.0.0:9901" }, []string{"address"}},
		{"remote address, insecure", func(a *config.Admin) { a.Address = "0.0.0.0:9901"; a.Insecure = true }, nil},
		{"localhost name", func(a *config.Admin) { a.Address = "localhost:9901" }, nil},
		{"plaintext token instead of hash", func(a *config.Admin) { a.Tokens[0].SHA256 = readToken }, []string{"tokens[0].sha256"}},
		{"hash of the empty token", func(a *config.Admin) { a.Tokens[0].SHA256 = config.HashAdminToken("") }, []string{"tokens[0].sha256"}},
		{"upper-case hash is accepted", func(a *config.Admin) { a.Tokens[0].SHA256 = strings.ToUpper(good) }, nil},
		{"duplicate token", func(a *config.Admin) { a.Tokens[1].SHA256 = good }, []string{"tokens[1].sha256"}},
		{"duplicate name", func(a *config.Admin) { a.Tokens[1].Name = a.Tokens[0].Name }, []string{"tokens[1].name"}},
		{"bad name", func(a *config.Admin) { a.Tokens[0].Name = "has space" }, []string{"tokens[0].name"}},
		{"bad role", func(a *config.Admin) { a.Tokens[0].Role = "admin" }, []string{"tokens[0].role"}},
		{"clients without client_auth", func(a *config.Admin) { a.Clients = []config.AdminClient{{Identity: "ops", Role: "write"}} }, []string{"clients"}},
		{"host with port", func(a *config.Admin) { a.AllowedHosts = []string{"admin.internal:9901"} }, []string{"allowed_hosts[0]"}},
		{"wildcard host", func(a *config.Admin) { a.AllowedHosts = []string{"*.internal"} }, []string{"allowed_hosts[0]"}},
		{"IPv6 host", func(a *config.Admin) { a.AllowedHosts = []string{"fd00::1"} }, nil},
		{"events buffer too large", func(a *config.Admin) { a.EventsBuffer = 2000000 }, []string{"events_buffer"}},
		{"negative timeout", func(a *config.Admin) { a.ReadinessTimeout = -1 }, []string{"readiness_timeout"}},
		{"tls without files", func(a *config.Admin) { a.TLS = &config.ListenerTLS{} }, []string{"tls"}},
		{"tls 1.1", func(a *config.Admin) { a.TLS = &config.ListenerTLS{MinVersion: "1.1"} }, []string{"tls", "tls.min_version"}},
		{"login limit of one failure", func(a *config.Admin) { a.LoginLimit.Failures = 1 }, nil},
		{"login limit failures negative", func(a *config.Admin) { a.LoginLimit.Failures = -1 }, []string{"login_limit.failures"}},
		{"login limit failures too many", func(a *config.Admin) { a.LoginLimit.Failures = 10001 }, []string{"login_limit.failures"}},
		{"login limit window too short", func(a *config.Admin) { a.LoginLimit.Per = config.Duration(time.Millisecond) }, []string{"login_limit.per"}},
		{"login limit window too long", func(a *config.Admin) { a.LoginLimit.Per = config.Duration(25 * time.Hour) }, []string{"login_limit.per"}},
		{"login limit cooldown negative", func(a *config.Admin) { a.LoginLimit.Cooldown = -1 }, []string{"login_limit.cooldown"}},
		{"login limit disabled ignores its values", func(a *config.Admin) { a.LoginLimit = config.AdminLoginLimit{Disabled: true, Failures: -1} }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			a := testAdmin()
			a.ApplyDefaults()
			tt.edit(&a)
			a.ApplyDefaults()
			var got []string
			for _, p := range a.Validate() {
				got = append(got, p.Path)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("problems at %v, want %v", got, tt.want)
			}
		})
	}
}

// FuzzGuards sends arbitrary Host, Origin, Sec-Fetch-Site and Authorization
// headers, methods and paths: nothing panics, and nothing but the health
// endpoints answers 2xx without the write token, nor reaches a write
// endpoint from a foreign origin.
func FuzzGuards(f *testing.F) {
	f.Add("POST", "/api/v1/keys", "127.0.0.1:9901", "http://127.0.0.1:9901", "", "Bearer "+writeToken)
	f.Add("GET", "/api/v1/status", "localhost", "", "cross-site", "Bearer x")
	f.Add("PUT", "/api/v1/config", "[::1]", "null", "same-origin", "")
	f.Add("GET", "/api/v1/keys/AAAAAAAA", "LOCALHOST.", "http://evil", "none", "bearer  "+readToken)
	s, err := New(testAdmin(), Deps{Keys: nil, Status: func() Status { return Status{} }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, path, host, origin, fetchSite, auth string) {
		u := "http://127.0.0.1:9901/"
		r, err := http.NewRequest(method, u, nil)
		if err != nil {
			return
		}
		r.URL.Path = path
		r.Host = host
		r.RemoteAddr = "127.0.0.1:40000"
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if fetchSite != "" {
			r.Header.Set("Sec-Fetch-Site", fetchSite)
		}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		if rec.Code >= 300 {
			return
		}
		if !s.hostAllowed(host) {
			t.Fatalf("Host %q answered %d", host, rec.Code)
		}
		if path == "/healthz" || path == "/readyz" {
			return
		}
		_, tok, _ := strings.Cut(auth, " ")
		tok = strings.TrimSpace(tok)
		if tok != readToken && tok != writeToken {
			t.Fatalf("%s %s answered %d with Authorization %q", method, path, rec.Code, auth)
		}
		if !safeMethod(method) && (tok != writeToken || !s.originAllowed(r)) {
			t.Fatalf("%s %s answered %d to a read token or a foreign origin", method, path, rec.Code)
		}
	})
}
