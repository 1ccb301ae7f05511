package server_test

import (
	"fmt"
	"net/http"
	"testing"
)

// TestListenerProtocols covers the plain-listener options: h2c (HTTP/2
// without TLS, prior knowledge) and the redirect to HTTPS.
func TestListenerProtocols(t *testing.T) {
	up := newUpstream(t, "a")
	g := startGateway(t, fmt.Sprintf(`
server: {watch_config: false}
listeners:
  - name: h2c
    address: 127.0.0.1:0
    h2c: true
  - name: redirect
    address: 127.0.0.1:0
    redirect_https: {port: 8443}
upstreams:
  a: {targets: [%q]}
routes:
  - {path: /x, methods: [GET], upstream: a, public: true}
`, up.URL()))

	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Transport: &http.Transport{Protocols: &p}}
	t.Cleanup(h2c.CloseIdleConnections)
	resp, body := send(t, h2c, newRequest(t, "GET", g.urls[0]+"/x", nil))
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Errorf("h2c: %s %d, want HTTP/2 200: %s", resp.Proto, resp.StatusCode, clip(body))
	}
	if e := decodeEcho(t, resp, body); e.Upstream != "a" {
		t.Errorf("h2c request reached %q", e.Upstream)
	}

	resp, _ = g.get(t, "/x") // through listener 0 over HTTP/1.1: still served
	if resp.StatusCode != http.StatusOK {
		t.Errorf("HTTP/1.1 on the h2c listener: %d", resp.StatusCode)
	}
	resp, _ = send(t, g.client, newRequest(t, "GET", g.urls[1]+"/x?a=1", nil))
	if resp.StatusCode != http.StatusPermanentRedirect {
		t.Fatalf("redirect listener: %d, want 308", resp.StatusCode)
	}
	if loc := resp.Header.Get("Location"); loc != "https://127.0.0.1:8443/x?a=1" {
		t.Errorf("Location %q", loc)
	}
	if up.hits.Load() != 2 {
		t.Errorf("upstream saw %d requests, want 2 (the redirect listener forwards nothing)", up.hits.Load())
	}
}
