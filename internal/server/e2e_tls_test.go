package server_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/tlsx/tlstest"
)

// tlsConfig has a plain listener and three TLS listeners on the same
// certificate: server-only, mutual TLS required, mutual TLS optional.
const tlsConfig = `
server:
  watch_config: false
  shutdown_grace: 5s
listeners:
  - name: plain
    address: 127.0.0.1:0
  - name: tls
    address: 127.0.0.1:0
    tls: {cert_file: %[2]s, key_file: %[3]s}
  - name: mtls-require
    address: 127.0.0.1:0
    tls:
      cert_file: %[2]s
      key_file: %[3]s
      client_auth: {mode: require, ca_file: %[4]s}
  - name: mtls-optional
    address: 127.0.0.1:0
    tls:
      cert_file: %[2]s
      key_file: %[3]s
      client_auth: {mode: optional, ca_file: %[4]s}
upstreams:
  a:
    targets: [%[1]s]
routes:
  - {name: books, path: /books, methods: [GET], upstream: a, public: true}
`

const (
	lPlain = iota
	lTLS
	lMTLSRequire
	lMTLSOptional
)

func TestTLS(t *testing.T) {
	a := newUpstream(t, "a")
	ca := tlstest.NewCA(t)
	certPEM, keyPEM, _ := ca.Issue(t, tlstest.Server, "gateway")
	dir := t.TempDir()
	certFile, keyFile := tlstest.WriteFiles(t, dir, certPEM, keyPEM)
	caFile := filepath.Join(dir, "clients.pem")
	tlstest.WriteFile(t, caFile, ca.CertPEM())
	g := startGateway(t, fmt.Sprintf(tlsConfig, a.URL(), certFile, keyFile, caFile))

	_, _, clientCert := ca.Issue(t, tlstest.Client, "client")
	_, _, strangerCert := tlstest.NewCA(t).Issue(t, tlstest.Client, "stranger")

	const hsts = "max-age=31536000; includeSubDomains"
	t.Run("HTTP/2 and HSTS", func(t *testing.T) {
		tests := []struct {
			desc       string
			url        string
			wantStatus int
			wantProto  int
			wantHSTS   string
		}{
			{desc: "TLS listener, proxied", url: g.https(lTLS) + "/books", wantStatus: 200, wantProto: 2, wantHSTS: hsts},
			{desc: "TLS listener, error response", url: g.https(lTLS) + "/nope", wantStatus: 404, wantProto: 2, wantHSTS: hsts},
			{desc: "plain listener, proxied", url: g.urls[lPlain] + "/books", wantStatus: 200, wantProto: 1},
			{desc: "plain listener, error response", url: g.urls[lPlain] + "/nope", wantStatus: 404, wantProto: 1},
		}
		c := tlsClient(t, ca.ClientConfig(nil))
		for _, tt := range tests {
			t.Run(tt.desc, func(t *testing.T) {
				resp, body := send(t, c, newRequest(t, http.MethodGet, tt.url, nil))
				if resp.StatusCode != tt.wantStatus || resp.ProtoMajor != tt.wantProto {
					t.Fatalf("status %d over HTTP/%d, want %d over HTTP/%d (body %q)", resp.StatusCode, resp.ProtoMajor, tt.wantStatus, tt.wantProto, clip(body))
				}
				if got := resp.Header.Get("Strict-Transport-Security"); got != tt.wantHSTS {
					t.Errorf("Strict-Transport-Security = %q, want %q", got, tt.wantHSTS)
				}
				if tt.wantStatus == 404 {
					wantProblem(t, resp, body, 404, "route_not_found")
				}
			})
		}
	})

	t.Run("protocol versions", func(t *testing.T) {
		tests := []struct {
			desc     string
			min, max uint16
			wantOK   bool
		}{
			{desc: "TLS 1.0 refused", min: tls.VersionTLS10, max: tls.VersionTLS10},
			{desc: "TLS 1.1 refused", min: tls.VersionTLS10, max: tls.VersionTLS11},
			{desc: "TLS 1.2 accepted", min: tls.VersionTLS12, max: tls.VersionTLS12, wantOK: true},
			{desc: "TLS 1.3 accepted", min: tls.VersionTLS13, max: tls.VersionTLS13, wantOK: true},
		}
		for _, tt := range tests {
			t.Run(tt.desc, func(t *testing.T) {
				cfg := ca.ClientConfig(nil)
				cfg.MinVersion, cfg.MaxVersion = tt.min, tt.max
				state, err := handshake(g.addrs[lTLS], cfg)
				if tt.wantOK {
					if err != nil {
						t.Fatalf("handshake failed: %v", err)
					}
					if state.Version != tt.max {
						t.Errorf("negotiated version %x, want %x", state.Version, tt.max)
					}
					return
				}
				if err == nil {
					t.Fatalf("handshake with TLS %x succeeded", state.Version)
				}
				// The server refuses, not our client.
				if !strings.Contains(err.Error(), "remote error: tls: protocol version not supported") {
					t.Errorf("handshake error %q, want the server's protocol_version alert", err)
				}
			})
		}
	})

	t.Run("mutual TLS", func(t *testing.T) {
		tests := []struct {
			desc     string
			listener int
			cert     *tls.Certificate
			wantOK   bool
		}{
			{desc: "require: no client certificate", listener: lMTLSRequire},
			{desc: "require: certificate from another CA", listener: lMTLSRequire, cert: strangerCert},
			{desc: "require: valid certificate", listener: lMTLSRequire, cert: clientCert, wantOK: true},
			{desc: "optional: no client certificate", listener: lMTLSOptional, wantOK: true},
			{desc: "optional: valid certificate", listener: lMTLSOptional, cert: clientCert, wantOK: true},
			{desc: "optional: certificate from another CA", listener: lMTLSOptional, cert: strangerCert},
			{desc: "server-only TLS ignores a client certificate", listener: lTLS, cert: clientCert, wantOK: true},
		}
		for _, tt := range tests {
			t.Run(tt.desc, func(t *testing.T) {
				// Both versions: TLS 1.3 clients learn of a refused
				// certificate only on their first read.
				for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
					cfg := ca.ClientConfig(tt.cert)
					cfg.MinVersion, cfg.MaxVersion = version, version
					status, err := tlsGet(g.addrs[tt.listener], cfg, "/books")
					switch {
					case tt.wantOK && (err != nil || status != 200):
						t.Errorf("TLS %x: status %d, error %v; want 200", version, status, err)
					case !tt.wantOK && err == nil:
						t.Errorf("TLS %x: request succeeded with status %d, want a failed handshake", version, status)
					case !tt.wantOK && !strings.Contains(err.Error(), "remote error: tls:"):
						t.Errorf("TLS %x: request failed with %q, want the server's TLS alert", version, err)
					}
				}
			})
		}
	})
}

func TestTLSCertificateReload(t *testing.T) {
	a := newUpstream(t, "a")
	ca := tlstest.NewCA(t)
	certPEM, keyPEM, oldCert := ca.Issue(t, tlstest.Server, "old")
	dir := t.TempDir()
	certFile, keyFile := tlstest.WriteFiles(t, dir, certPEM, keyPEM)
	g := startGateway(t, fmt.Sprintf(`
server:
  watch_config: false
  shutdown_grace: 5s
listeners:
  - name: tls
    address: 127.0.0.1:0
    tls: {cert_file: %[2]s, key_file: %[3]s}
upstreams:
  a:
    targets: [%[1]s]
routes:
  - {name: books, path: /books, methods: [GET], upstream: a, public: true}
`, a.URL(), certFile, keyFile))
	addr := g.addrs[0]

	// served returns the serial number of the certificate a new handshake gets.
	served := func() string {
		t.Helper()
		state, err := handshake(addr, ca.ClientConfig(nil))
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		return state.PeerCertificates[0].SerialNumber.String()
	}
	if got, want := served(), oldCert.Leaf.SerialNumber.String(); got != want {
		t.Fatalf("serving certificate %s, want the initial one %s", got, want)
	}
	// An HTTP/2 connection opened before the change is kept.
	c := tlsClient(t, ca.ClientConfig(nil))
	getSerial := func(when string) string {
		t.Helper()
		resp, body := send(t, c, newRequest(t, http.MethodGet, g.https(0)+"/books", nil))
		if resp.StatusCode != 200 || resp.TLS == nil {
			t.Fatalf("status %d %s the reload (body %q)", resp.StatusCode, when, clip(body))
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	old := getSerial("before")

	certPEM, keyPEM, newCert := ca.Issue(t, tlstest.Server, "new")
	tlstest.WriteFiles(t, dir, certPEM, keyPEM)
	want := newCert.Leaf.SerialNumber.String()
	eventually(t, "new certificate served", func() bool { return served() == want })

	// Same listener, same process: the old connection still answers, on
	// the certificate it was opened with.
	if got := getSerial("after"); got != old {
		t.Errorf("the connection opened before the reload now shows certificate %s, want %s: was it closed?", got, old)
	}
	select {
	case err := <-g.done:
		t.Fatalf("Run returned during the certificate reload: %v", err)
	default:
	}
}

// tlsClient returns a client that speaks HTTP/2 when the server offers it.
func tlsClient(t *testing.T, cfg *tls.Config) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// tlsGet sends GET path over a new HTTP/1.1 TLS connection to addr and
// returns the response status, or the error of the handshake, the write or
// the read.
func tlsGet(addr string, cfg *tls.Config, path string) (int, error) {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// handshake opens a new TLS connection (no session resumption) to addr,
// completes the handshake and returns its state.
func handshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}
