package admin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate and key signed by ca, as PEM.
func (ca *testCA) issue(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClientCertificateAuth(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA, otherCA := newCA(t, "server CA"), newCA(t, "client CA"), newCA(t, "other CA")
	sc, sk := serverCA.issue(t, "moat-admin", true)
	cfg := testAdmin()
	cfg.TLS = &config.ListenerTLS{CertFile: writeFile(t, dir, "s.crt", sc), KeyFile: writeFile(t, dir, "s.key", sk),
		ClientAuth: &config.ClientAuth{Mode: "optional", CAFile: writeFile(t, dir, "ca.crt", clientCA.pem)}}
	cfg.Clients = []config.AdminClient{{Identity: "ops-laptop", Role: "write"}, {Identity: "dashboard", Role: "read"}}
	s, err := New(cfg, Deps{Status: func() Status { return Status{} }, Keys: openStore(t), Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.cert)
	client := func(ca *testCA, cn string) *http.Client {
		tc := &tls.Config{RootCAs: roots}
		if ca != nil {
			c, k := ca.issue(t, cn, false)
			pair, err := tls.X509KeyPair(c, k)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
	}
	base := "https://" + ln.Addr().String()
	tests := []struct {
		desc, method, path string
		client             *http.Client
		token              string
		want               int
	}{
		{"listed write certificate", "POST", "/api/v1/keys", client(clientCA, "ops-laptop"), "", 201},
		{"listed read certificate reads", "GET", "/api/v1/status", client(clientCA, "dashboard"), "", 200},
		{"listed read certificate cannot write", "POST", "/api/v1/keys", client(clientCA, "dashboard"), "", 403},
		{"unlisted certificate", "GET", "/api/v1/status", client(clientCA, "intruder"), "", 401},
		{"no certificate, token", "GET", "/api/v1/status", client(nil, ""), readToken, 200},
		{"no certificate, no token", "GET", "/api/v1/status", client(nil, ""), "", 401},
		{"no certificate, health", "GET", "/healthz", client(nil, ""), "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			var body io.Reader
			if tt.method == "POST" {
				body = strings.NewReader(`{"subject":"svc"}`)
			}
			r, _ := http.NewRequest(tt.method, base+tt.path, body)
			if body != nil {
				r.Header.Set("Content-Type", "application/json")
			}
			if tt.token != "" {
				r.Header.Set("Authorization", "Bearer "+tt.token)
			}
			res, err := tt.client.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.want {
				t.Errorf("status %d, want %d: %s", res.StatusCode, tt.want, b)
			}
		})
	}
	// A certificate from a CA that is not trusted never authenticates,
	// whatever its name: the client does not offer it (the server's
	// CertificateRequest names only the client CA), or the handshake fails.
	r, _ := http.NewRequest("GET", base+"/api/v1/status", nil)
	if res, err := client(otherCA, "ops-laptop").Do(r); err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("a certificate from an untrusted CA: status %d, want 401", res.StatusCode)
		}
	}
	// Offered anyway (GetClientCertificate ignores the CA list), it fails
	// the handshake.
	c, k := otherCA.issue(t, "ops-laptop", false)
	pair, _ := tls.X509KeyPair(c, k)
	forced := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }}}}
	r, _ = http.NewRequest("GET", base+"/api/v1/status", nil)
	if res, err := forced.Do(r); err == nil {
		res.Body.Close()
		t.Errorf("a forced certificate from an untrusted CA got status %d, want a handshake failure", res.StatusCode)
	}
}
