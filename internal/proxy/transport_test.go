package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// writePEM writes one PEM block to a file in dir and returns its path.
func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// clientCert creates a self-signed client certificate and writes it and its
// key to dir.
func clientCert(t *testing.T, dir string) (cert *x509.Certificate, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "moat-test-client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return cert, writePEM(t, dir, "client.pem", "CERTIFICATE", der), writePEM(t, dir, "client-key.pem", "PRIVATE KEY", keyDER)
}

func TestUpstreamTLS(t *testing.T) {
	dir := t.TempDir()
	cert, certFile, keyFile := clientCert(t, dir)
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(cert)

	plain := httptest.NewTLSServer(http.HandlerFunc(echo))
	t.Cleanup(plain.Close)
	h2 := httptest.NewUnstartedServer(http.HandlerFunc(echo))
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	mtls := httptest.NewUnstartedServer(http.HandlerFunc(echo))
	mtls.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	mtls.StartTLS()
	t.Cleanup(mtls.Close)
	caFile := writePEM(t, dir, "ca.pem", "CERTIFICATE", plain.Certificate().Raw) // httptest servers share one certificate

	tests := []struct {
		desc       string
		server     *httptest.Server
		tls        *config.UpstreamTLS
		wantStatus int
		wantProto  string
		wantCN     string
	}{
		{desc: "CA file verifies the target", server: plain, tls: &config.UpstreamTLS{CAFile: caFile},
			wantStatus: http.StatusOK, wantProto: "HTTP/1.1"},
		{desc: "system roots do not know the test CA", server: plain,
			wantStatus: http.StatusBadGateway},
		{desc: "server name matching the certificate", server: plain, tls: &config.UpstreamTLS{CAFile: caFile, ServerName: "example.com"},
			wantStatus: http.StatusOK, wantProto: "HTTP/1.1"},
		{desc: "server name not in the certificate", server: plain, tls: &config.UpstreamTLS{CAFile: caFile, ServerName: "other.test"},
			wantStatus: http.StatusBadGateway},
		{desc: "HTTP/2 to https targets", server: h2, tls: &config.UpstreamTLS{CAFile: caFile},
			wantStatus: http.StatusOK, wantProto: "HTTP/2.0"},
		{desc: "client certificate", server: mtls, tls: &config.UpstreamTLS{CAFile: caFile, CertFile: certFile, KeyFile: keyFile},
			wantStatus: http.StatusOK, wantProto: "HTTP/1.1", wantCN: "moat-test-client"},
		{desc: "client certificate required", server: mtls, tls: &config.UpstreamTLS{CAFile: caFile},
			wantStatus: http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			cfg := testConfig(t, tt.server.URL)
			cfg.TLS = tt.tls
			rs := &renders{}
			u := newTestUpstream(t, cfg, rs)
			rec := get(u, "/x")
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %q", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantStatus != http.StatusOK {
				if r := rs.last(t); r.ReasonID != gateway.ReasonUpstreamUnreachable {
					t.Errorf("reason %q, want upstream_unreachable (err: %v)", r.ReasonID, r.Err)
				}
				return
			}
			s := decodeSeen(t, rec)
			if s.Proto != tt.wantProto || s.CommonName != tt.wantCN {
				t.Errorf("upstream saw proto %q client cert %q, want %q %q", s.Proto, s.CommonName, tt.wantProto, tt.wantCN)
			}
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	_, certFile, keyFile := clientCert(t, dir)
	notPEM := filepath.Join(dir, "not-pem.txt")
	if err := os.WriteFile(notPEM, []byte("SECRET-MATERIAL-1234"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		desc string
		tls  *config.UpstreamTLS
		want []string // in the error
	}{
		{desc: "missing CA file", tls: &config.UpstreamTLS{CAFile: missing}, want: []string{"tls.ca_file", missing}},
		{desc: "CA file without certificates", tls: &config.UpstreamTLS{CAFile: notPEM}, want: []string{"tls.ca_file", notPEM}},
		{desc: "certificate without key", tls: &config.UpstreamTLS{CertFile: certFile}, want: []string{"tls.key_file"}},
		{desc: "unreadable key", tls: &config.UpstreamTLS{CertFile: certFile, KeyFile: notPEM}, want: []string{certFile, notPEM}},
		{desc: "key does not match", tls: &config.UpstreamTLS{CertFile: certFile, KeyFile: keyFile + ".nope"}, want: []string{keyFile + ".nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			cfg := testConfig(t, "https://127.0.0.1:1")
			cfg.TLS = tt.tls
			_, err := New("api", cfg, quietLog)
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "SECRET-MATERIAL") {
				t.Errorf("error %q shows file contents", err)
			}
		})
	}
}

func TestTransportSettings(t *testing.T) {
	cfg := testConfig(t, "http://127.0.0.1:1", "https://127.0.0.1:2")
	cfg.MaxIdleConns = 7
	cfg.Timeouts = config.UpstreamTimeout{Connect: config.Duration(3 * time.Second), ResponseHeader: config.Duration(4 * time.Second)}
	u := newTestUpstream(t, cfg, nil)
	tr := u.transport
	switch {
	case tr.Proxy != nil:
		t.Error("transport takes a proxy")
	case !tr.DisableCompression:
		t.Error("transport negotiates compression")
	case tr.MaxIdleConnsPerHost != 7:
		t.Errorf("MaxIdleConnsPerHost %d", tr.MaxIdleConnsPerHost)
	case tr.TLSHandshakeTimeout != 3*time.Second || tr.ResponseHeaderTimeout != 4*time.Second:
		t.Errorf("timeouts: handshake %v, response header %v", tr.TLSHandshakeTimeout, tr.ResponseHeaderTimeout)
	case !tr.ForceAttemptHTTP2:
		t.Error("HTTP/2 not attempted with an https target")
	case tr.TLSClientConfig.MinVersion != tls.VersionTLS12:
		t.Errorf("TLS min version %x", tr.TLSClientConfig.MinVersion)
	}
}

func TestNoProxyFromEnvironment(t *testing.T) {
	var proxied atomic.Int64
	envProxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		io.WriteString(w, "intercepted")
	}))
	t.Cleanup(envProxy.Close)
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
		t.Setenv(k, envProxy.URL)
	}
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")

	ts, hits := namedServer(t, "upstream")
	u := newTestUpstream(t, testConfig(t, ts.URL), &renders{})
	if u.transport.Proxy != nil {
		t.Fatal("transport takes a proxy from the environment")
	}
	if rec := get(u, "/x"); rec.Body.String() != "upstream" || hits.Load() != 1 || proxied.Load() != 0 {
		t.Errorf("got %q; upstream %d, proxy %d requests", rec.Body, hits.Load(), proxied.Load())
	}
}

func TestBodiesPassUntouched(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Accept-Encoding", r.Header.Get("Accept-Encoding"))
		if r.Header.Get("Accept-Encoding") == "gzip" {
			w.Header().Set("Content-Encoding", "gzip")
			io.WriteString(w, "\x1f\x8bnot really gzip")
			return
		}
		io.WriteString(w, "identity")
	}))
	t.Cleanup(ts.Close)
	u := newTestUpstream(t, testConfig(t, ts.URL), &renders{})

	rec := get(u, "/x")
	if got := rec.Header().Get("X-Seen-Accept-Encoding"); got != "" || rec.Body.String() != "identity" {
		t.Errorf("without client Accept-Encoding: upstream saw %q, body %q", got, rec.Body)
	}
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	rec = send(u, req, nil)
	if rec.Header().Get("Content-Encoding") != "gzip" || rec.Body.String() != "\x1f\x8bnot really gzip" {
		t.Errorf("gzip body changed: %q %q", rec.Header().Get("Content-Encoding"), rec.Body)
	}
}
