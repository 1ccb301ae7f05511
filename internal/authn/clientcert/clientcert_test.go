package clientcert

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/authn"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/tlsx"
	"github.com/moat-gateway/moat/internal/tlsx/tlstest"
)

// chainCA is a CA for what tlstest does not issue: intermediates and
// certificates with URI and email names.
type chainCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub any, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newChainCA(t testing.TB, cn string) *chainCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	return &chainCA{cert: sign(t, tmpl, nil, key.Public(), key), key: key}
}

func (ca *chainCA) intermediate(t testing.TB, cn string) *chainCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	return &chainCA{cert: sign(t, tmpl, ca.cert, key.Public(), ca.key), key: key}
}

// leaf issues a client certificate from tmpl (subject and names).
func (ca *chainCA) leaf(t testing.TB, tmpl *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey(t)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return sign(t, tmpl, ca.cert, key.Public(), ca.key), key
}

func (ca *chainCA) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

func writeFile(t *testing.T, data ...[]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	var all []byte
	for _, d := range data {
		all = append(all, d...)
	}
	if err := os.WriteFile(path, all, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func newAuth(t *testing.T, cfg *config.ClientCertAuth) *Authenticator {
	t.Helper()
	a, err := New("mtls", cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

// exchange is a request that arrived with cert verified and, after it,
// the intermediates the client sent.
func exchange(cert *x509.Certificate, intermediates ...*x509.Certificate) *gateway.Exchange {
	ex := &gateway.Exchange{Request: httptest.NewRequest("GET", "/", nil), ClientCert: cert}
	if cert != nil {
		ex.TLS = &tls.ConnectionState{PeerCertificates: append([]*x509.Certificate{cert}, intermediates...)}
	}
	return ex
}

// verified adds a chain to the exchange's verified chains, as the handshake
// would have.
func verified(ex *gateway.Exchange, chain ...*x509.Certificate) *gateway.Exchange {
	ex.TLS.VerifiedChains = append(ex.TLS.VerifiedChains, chain)
	return ex
}

func reason(t *testing.T, err error) string {
	t.Helper()
	var f *authn.Failure
	if !errors.As(err, &f) {
		t.Fatalf("error %v, want a Failure", err)
	}
	return f.ReasonID
}

func TestNoCertificate(t *testing.T) {
	a := newAuth(t, &config.ClientCertAuth{})
	ex := exchange(nil)
	// Unverified certificates are never read.
	ca := tlstest.NewCA(t)
	_, _, c := ca.Issue(t, tlstest.Client, "sneaky")
	ex.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf}}
	if p, err := a.Authenticate(context.Background(), ex); !errors.Is(err, authn.ErrNoCredentials) || p != nil {
		t.Fatalf("Authenticate = %v, %v; want ErrNoCredentials", p, err)
	}
	if a.Challenge() != "" {
		t.Errorf("Challenge = %q, want none", a.Challenge())
	}
}

func TestSubjectSources(t *testing.T) {
	ca := newChainCA(t, "names CA")
	full, _ := ca.leaf(t, &x509.Certificate{
		Subject:        pkix.Name{CommonName: "billing"},
		DNSNames:       []string{"billing.internal", "billing.example"},
		URIs:           []*url.URL{mustURL(t, "spiffe://prod.example/ns/billing/sa/api")},
		EmailAddresses: []string{"billing@example.com", "ops@example.com"},
	})
	bare, _ := ca.leaf(t, &x509.Certificate{Subject: pkix.Name{Organization: []string{"no names"}}})
	twoURIs, _ := ca.leaf(t, &x509.Certificate{URIs: []*url.URL{
		mustURL(t, "https://billing.example/"), mustURL(t, "spiffe://prod.example/billing")}})
	httpURI, _ := ca.leaf(t, &x509.Certificate{URIs: []*url.URL{mustURL(t, "https://billing.example/svc")}})
	rootID, _ := ca.leaf(t, &x509.Certificate{URIs: []*url.URL{mustURL(t, "spiffe://prod.example")}})
	controlCN, _ := ca.leaf(t, &x509.Certificate{Subject: pkix.Name{CommonName: "evil\nX-Moat-Subject: admin"}})
	tests := []struct {
		desc    string
		subject string
		cert    *x509.Certificate
		want    string // "": client_cert_no_identity
	}{
		{desc: "cn by default", cert: full, want: "billing"},
		{desc: "cn", subject: "cn", cert: full, want: "billing"},
		{desc: "dns: the first", subject: "dns", cert: full, want: "billing.internal"},
		{desc: "uri: the first", subject: "uri", cert: twoURIs, want: "https://billing.example/"},
		{desc: "email: the first", subject: "email", cert: full, want: "billing@example.com"},
		{desc: "spiffe", subject: "spiffe", cert: full, want: "spiffe://prod.example/ns/billing/sa/api"},
		{desc: "no cn", subject: "cn", cert: bare},
		{desc: "no dns", subject: "dns", cert: bare},
		{desc: "no uri", subject: "uri", cert: bare},
		{desc: "no email", subject: "email", cert: bare},
		{desc: "spiffe: no URI", subject: "spiffe", cert: bare},
		{desc: "spiffe: two URIs", subject: "spiffe", cert: twoURIs},
		{desc: "spiffe: not a spiffe URI", subject: "spiffe", cert: httpURI},
		{desc: "spiffe: trust domain only", subject: "spiffe", cert: rootID},
		{desc: "control characters", subject: "cn", cert: controlCN},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			a := newAuth(t, &config.ClientCertAuth{Subject: tt.subject})
			p, err := a.Authenticate(context.Background(), exchange(tt.cert))
			if tt.want == "" {
				if got := reason(t, err); got != ReasonNoIdentity {
					t.Fatalf("reason %q, want %q", got, ReasonNoIdentity)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if p.Subject != tt.want {
				t.Errorf("subject %q, want %q", p.Subject, tt.want)
			}
		})
	}
}

func TestPrincipal(t *testing.T) {
	ca := tlstest.NewCA(t)
	_, _, c := ca.Issue(t, tlstest.Client, "svc-a", "svc-a.internal")
	p, err := newAuth(t, &config.ClientCertAuth{}).Authenticate(context.Background(), exchange(c.Leaf))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.Leaf.Raw)
	want := gateway.Principal{Subject: "svc-a", Authenticator: "mtls", Kind: "client_cert",
		KeyID: hex.EncodeToString(sum[:]), ExpiresAt: c.Leaf.NotAfter}
	if p.Subject != want.Subject || p.Authenticator != want.Authenticator || p.Kind != want.Kind ||
		p.KeyID != want.KeyID || !p.ExpiresAt.Equal(want.ExpiresAt) || p.Claims != nil {
		t.Errorf("principal %+v\nwant %+v", p, want)
	}
}

func TestCheckSPIFFEID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"spiffe://example.org/workload", true},
		{"spiffe://prod.example-1_a/ns/default/sa/Api.v2", true},
		{"spiffe://example.org", false},
		{"spiffe://example.org/", false},
		{"spiffe://example.org/a//b", false},
		{"spiffe://example.org/a/", false},
		{"spiffe://example.org/./a", false},
		{"spiffe://example.org/a/..", false},
		{"spiffe://Example.org/a", false},
		{"spiffe://example.org:8443/a", false},
		{"spiffe://user@example.org/a", false},
		{"spiffe://example.org/a?x=1", false},
		{"spiffe://example.org/a#frag", false},
		{"spiffe://example.org/a%20b", false},
		{"spiffe:///a", false},
		{"SPIFFE://example.org/a", false},
		{"https://example.org/a", false},
		{"spiffe://example.org/" + strings.Repeat("a", maxSPIFFEID), false},
	}
	for _, tt := range tests {
		err := checkSPIFFEID(tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("checkSPIFFEID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
	}
}

func TestCAAllowlist(t *testing.T) {
	caA, caB := tlstest.NewCA(t), tlstest.NewCA(t)
	_, _, fromA := caA.Issue(t, tlstest.Client, "a")
	_, _, fromB := caB.Issue(t, tlstest.Client, "b")

	root := newChainCA(t, "root")
	inter := root.intermediate(t, "issuing")
	leaf, _ := inter.leaf(t, &x509.Certificate{Subject: pkix.Name{CommonName: "chained"}})

	tests := []struct {
		desc   string
		caFile string
		ex     *gateway.Exchange
		ok     bool
	}{
		{desc: "issued by an allowed CA", caFile: writeFile(t, caA.CertPEM()), ex: exchange(fromA.Leaf), ok: true},
		{desc: "issued by another CA the listener trusts", caFile: writeFile(t, caA.CertPEM()), ex: exchange(fromB.Leaf)},
		{desc: "bundle of two CAs", caFile: writeFile(t, caA.CertPEM(), caB.CertPEM()), ex: exchange(fromB.Leaf), ok: true},
		{desc: "through the intermediate the client sent", caFile: writeFile(t, root.pem()), ex: exchange(leaf, inter.cert), ok: true},
		{desc: "intermediate not sent", caFile: writeFile(t, root.pem()), ex: exchange(leaf)},
		{desc: "no TLS state", caFile: writeFile(t, root.pem()), ex: &gateway.Exchange{ClientCert: leaf}},
		{desc: "the intermediate itself allowed", caFile: writeFile(t, inter.pem()), ex: exchange(leaf), ok: true},
		{desc: "another root's intermediate", caFile: writeFile(t, caA.CertPEM()), ex: exchange(leaf, inter.cert)},
		{desc: "settled by the chain the handshake verified", caFile: writeFile(t, root.pem()),
			ex: verified(exchange(leaf), leaf, inter.cert, root.cert), ok: true},
		{desc: "the handshake's chain ends elsewhere", caFile: writeFile(t, caA.CertPEM()),
			ex: verified(exchange(leaf), leaf, inter.cert, root.cert)},
		{desc: "a verified chain of another certificate", caFile: writeFile(t, root.pem()),
			ex: verified(exchange(leaf), fromA.Leaf, root.cert)},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			a := newAuth(t, &config.ClientCertAuth{CAFile: tt.caFile})
			p, err := a.Authenticate(context.Background(), tt.ex)
			if tt.ok {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if p.Subject != tt.ex.ClientCert.Subject.CommonName {
					t.Errorf("subject %q", p.Subject)
				}
				return
			}
			if got := reason(t, err); got != ReasonCANotAllowed {
				t.Fatalf("reason %q, want %q", got, ReasonCANotAllowed)
			}
		})
	}
}

func TestExpiredSinceHandshake(t *testing.T) {
	ca := tlstest.NewCA(t)
	_, _, c := ca.Issue(t, tlstest.Client, "svc")
	for _, caFile := range []string{"", writeFile(t, ca.CertPEM())} {
		a := newAuth(t, &config.ClientCertAuth{CAFile: caFile})
		ex := verified(exchange(c.Leaf), c.Leaf, ca.Cert)
		a.now = func() time.Time { return c.Leaf.NotAfter }
		if _, err := a.Authenticate(context.Background(), ex); err != nil {
			t.Fatalf("at NotAfter: %v", err)
		}
		a.now = func() time.Time { return c.Leaf.NotAfter.Add(time.Second) }
		_, err := a.Authenticate(context.Background(), ex)
		if got := reason(t, err); got != ReasonExpired {
			t.Fatalf("after NotAfter: reason %q, want %q", got, ReasonExpired)
		}
	}
}

func TestAllowlistedCAExpiredSinceHandshake(t *testing.T) {
	root := newChainCA(t, "root")
	inter := root.intermediate(t, "issuing")
	leaf, _ := inter.leaf(t, &x509.Certificate{Subject: pkix.Name{CommonName: "svc"}, NotAfter: time.Now().Add(48 * time.Hour)})
	a := newAuth(t, &config.ClientCertAuth{CAFile: writeFile(t, root.pem())})
	a.now = func() time.Time { return inter.cert.NotAfter.Add(time.Second) } // the leaf is still valid
	ex := verified(exchange(leaf, inter.cert), leaf, inter.cert, root.cert)
	_, err := a.Authenticate(context.Background(), ex)
	if got := reason(t, err); got != ReasonCANotAllowed {
		t.Fatalf("reason %q, want %q", got, ReasonCANotAllowed)
	}
}

func TestNewErrors(t *testing.T) {
	ca := tlstest.NewCA(t)
	leafPEM, keyPEM, _ := ca.Issue(t, tlstest.Client, "leaf")
	dir := t.TempDir()
	tests := []struct {
		desc string
		cfg  *config.ClientCertAuth
		want string
	}{
		{desc: "no configuration", want: "authenticators.mtls.client_cert: no configuration"},
		{desc: "unknown subject", cfg: &config.ClientCertAuth{Subject: "serial"}, want: `client_cert.subject: "serial" is not one of`},
		{desc: "missing file", cfg: &config.ClientCertAuth{CAFile: filepath.Join(dir, "nope.pem")}, want: "client_cert.ca_file: open " + filepath.Join(dir, "nope.pem")},
		{desc: "not PEM", cfg: &config.ClientCertAuth{CAFile: writeFile(t, []byte("hello"))}, want: "no PEM certificates"},
		{desc: "a private key", cfg: &config.ClientCertAuth{CAFile: writeFile(t, ca.CertPEM(), keyPEM)}, want: "PEM block 2 is a PRIVATE KEY"},
		{desc: "not a CA", cfg: &config.ClientCertAuth{CAFile: writeFile(t, leafPEM)}, want: `certificate 1 ("leaf") is not a CA`},
		{desc: "garbage certificate", cfg: &config.ClientCertAuth{CAFile: writeFile(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")}))}, want: "certificate 1:"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			_, err := New("mtls", tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error quotes PEM: %v", err)
			}
		})
	}
}

// TestMutualTLS runs a real handshake: the server verifies the client's
// chain against its client CAs, and the authenticator narrows them.
func TestMutualTLS(t *testing.T) {
	serverCA := tlstest.NewCA(t)
	_, _, serverCert := serverCA.Issue(t, tlstest.Server, "gateway")
	root := newChainCA(t, "client root")
	inter := root.intermediate(t, "client issuing")
	leaf, leafKey := inter.leaf(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "svc"},
		URIs:    []*url.URL{mustURL(t, "spiffe://prod.example/svc")},
	})
	other := tlstest.NewCA(t)
	_, _, otherCert := other.Issue(t, tlstest.Client, "other")

	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(root.cert)
	clientCAs.AddCert(other.Cert)
	a := newAuth(t, &config.ClientCertAuth{Subject: "spiffe", CAFile: writeFile(t, root.pem())})

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ex := &gateway.Exchange{Request: r, TLS: r.TLS, ClientCert: tlsx.VerifiedClientCert(r.TLS)}
		p, err := a.Authenticate(r.Context(), ex)
		if err != nil {
			var f *authn.Failure
			if errors.As(err, &f) {
				fmt.Fprint(w, f.ReasonID)
				return
			}
			fmt.Fprint(w, err)
			return
		}
		fmt.Fprint(w, p.Subject)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{*serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
		MinVersion:   tls.VersionTLS12,
	}
	srv.StartTLS()
	defer srv.Close()

	get := func(cert *tls.Certificate) string {
		t.Helper()
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: serverCA.ClientConfig(cert)}, Timeout: 10 * time.Second}
		defer c.CloseIdleConnections()
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	chained := &tls.Certificate{Certificate: [][]byte{leaf.Raw, inter.cert.Raw}, PrivateKey: leafKey}
	if got := get(chained); got != "spiffe://prod.example/svc" {
		t.Errorf("allowed chain: %q", got)
	}
	if got := get(otherCert); got != ReasonCANotAllowed {
		t.Errorf("certificate of a CA outside the allowlist: %q", got)
	}
}

// BenchmarkAuthenticate measures a request after a handshake, whose
// verified chain settles the allowlist, and one without verified chains,
// which costs a full chain verification.
func BenchmarkAuthenticate(b *testing.B) {
	ca := tlstest.NewCA(b)
	_, _, c := ca.Issue(b, tlstest.Client, "svc")
	caFile := filepath.Join(b.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, bb := range []struct {
		name string
		cfg  *config.ClientCertAuth
		ex   *gateway.Exchange
	}{
		{"no-allowlist", &config.ClientCertAuth{}, verified(exchange(c.Leaf), c.Leaf, ca.Cert)},
		{"allowlist", &config.ClientCertAuth{CAFile: caFile}, verified(exchange(c.Leaf), c.Leaf, ca.Cert)},
		{"allowlist-full-verify", &config.ClientCertAuth{CAFile: caFile}, exchange(c.Leaf)},
	} {
		b.Run(bb.name, func(b *testing.B) {
			a, err := New("mtls", bb.cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Authenticate(context.Background(), bb.ex); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
