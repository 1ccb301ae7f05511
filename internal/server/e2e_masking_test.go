package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestMaskingFromConfig: an upstream that leaks a card number, an e-mail
// address and a password hash gets them masked or removed on the way out,
// one that leaks a private key is refused with 502, and the upstream is
// asked for an uncompressed body.
func TestMaskingFromConfig(t *testing.T) {
	var sawEncoding string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawEncoding = r.Header.Get("Accept-Encoding")
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/users/1":
			io.WriteString(w, `{"id":1,"email":"jane.doe@example.com","card":"4111 1111 1111 1111","password_hash":"$2a$10$abc","note":"order 1234567890123"}`)
		case "/keys":
			io.WriteString(w, `{"pem":"-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----"}`)
		}
	}))
	defer up.Close()
	g := startGateway(t, fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
upstreams:
  a: {targets: [%q]}
routes:
  - path: /users/{id}
    methods: [GET]
    upstream: a
    public: true
    masking:
      fields: [{name: password_hash, action: remove}]
  - path: /keys
    methods: [GET]
    upstream: a
    public: true
    masking: {actions: {secrets: block}}
`, up.URL))
	resp, body := g.get(t, "/users/1", "Accept-Encoding", "gzip")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, clip(body))
	}
	if sawEncoding != "" {
		t.Errorf("the upstream was asked for %q; masking needs an uncompressed body", sawEncoding)
	}
	got := string(body)
	for _, leak := range []string{"4111 1111 1111 1111", "jane.doe@", "password_hash", "$2a$"} {
		if strings.Contains(got, leak) {
			t.Errorf("%q reached the client: %s", leak, got)
		}
	}
	for _, keep := range []string{`"id":1`, "1111", "example.com", "order 1234567890123"} {
		if !strings.Contains(got, keep) {
			t.Errorf("%q was lost: %s", keep, got)
		}
	}
	resp, body = g.get(t, "/keys")
	wantProblem(t, resp, body, 502, "sensitive_data_blocked")
	assertNoLeak(t, body, "PRIVATE KEY")
}
