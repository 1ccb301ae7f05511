package tlsx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/tlsx/tlstest"
)

func TestProtocolVersionsAndCipherSuites(t *testing.T) {
	// Each server certificate type, so that suites needing an RSA or an
	// ECDSA certificate are really on offer.
	type server struct {
		ca  *tlstest.CA
		srv *tlsServer
	}
	newServer := func(t *testing.T, rsa bool, minVersion string) server {
		f := &fixture{ca: tlstest.NewCA(t), dir: t.TempDir()}
		certPEM, keyPEM, _ := f.ca.IssueWith(t, tlstest.Options{Kind: tlstest.Server, CommonName: "srv", RSA: rsa})
		f.certFile, f.keyFile = tlstest.WriteFiles(t, f.dir, certPEM, keyPEM)
		return server{ca: f.ca, srv: startServer(t, newManager(t, f.config(minVersion, ""), nil))}
	}
	servers := map[string]server{
		"ecdsa":     newServer(t, false, ""),
		"rsa":       newServer(t, true, "1.2"),
		"ecdsa 1.3": newServer(t, false, "1.3"),
	}

	tests := []struct {
		desc        string
		server      string
		min, max    uint16
		suites      []uint16
		wantVersion uint16 // 0: handshake must fail
		wantSuite   uint16
	}{
		{desc: "client default negotiates tls 1.3", server: "ecdsa", wantVersion: tls.VersionTLS13},
		{desc: "tls 1.3 with rsa certificate", server: "rsa", min: tls.VersionTLS13, wantVersion: tls.VersionTLS13},
		{desc: "tls 1.0 refused", server: "ecdsa", min: tls.VersionTLS10, max: tls.VersionTLS10},
		{desc: "tls 1.1 refused", server: "ecdsa", min: tls.VersionTLS10, max: tls.VersionTLS11},
		{desc: "tls 1.2 ecdhe-ecdsa aes-128-gcm", server: "ecdsa", max: tls.VersionTLS12,
			suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, wantVersion: tls.VersionTLS12, wantSuite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{desc: "tls 1.2 ecdhe-ecdsa aes-256-gcm", server: "ecdsa", max: tls.VersionTLS12,
			suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}, wantVersion: tls.VersionTLS12, wantSuite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		{desc: "tls 1.2 ecdhe-ecdsa chacha20-poly1305", server: "ecdsa", max: tls.VersionTLS12,
			suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, wantVersion: tls.VersionTLS12, wantSuite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
		{desc: "tls 1.2 ecdhe-rsa aes-128-gcm", server: "rsa", max: tls.VersionTLS12,
			suites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, wantVersion: tls.VersionTLS12, wantSuite: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		{desc: "tls 1.2 ecdhe-rsa aes-256-gcm", server: "rsa", max: tls.VersionTLS12,
			suites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}, wantVersion: tls.VersionTLS12, wantSuite: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
		{desc: "tls 1.2 ecdhe-rsa chacha20-poly1305", server: "rsa", max: tls.VersionTLS12,
			suites: []uint16{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}, wantVersion: tls.VersionTLS12, wantSuite: tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
		{desc: "tls 1.2 ecdhe-ecdsa cbc refused", server: "ecdsa", max: tls.VersionTLS12,
			suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}},
		{desc: "tls 1.2 ecdhe-rsa cbc refused", server: "rsa", max: tls.VersionTLS12,
			suites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256}},
		{desc: "tls 1.2 rsa key exchange refused", server: "rsa", max: tls.VersionTLS12,
			suites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_RSA_WITH_AES_128_CBC_SHA}},
		{desc: "tls 1.2 3des refused", server: "rsa", max: tls.VersionTLS12,
			suites: []uint16{tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA}},
		{desc: "min_version 1.3 accepts tls 1.3", server: "ecdsa 1.3", wantVersion: tls.VersionTLS13},
		{desc: "min_version 1.3 refuses tls 1.2", server: "ecdsa 1.3", max: tls.VersionTLS12,
			suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			s := servers[tt.server]
			cfg := s.ca.ClientConfig(nil)
			cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = tt.min, tt.max, tt.suites
			state, err, res := s.srv.handshake(t, cfg)
			if tt.wantVersion == 0 {
				if err == nil || res.err == nil {
					t.Fatalf("handshake succeeded (version %s, suite %s); want refused by both sides (client: %v, server: %v)",
						tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite), err, res.err)
				}
				return
			}
			if err != nil || res.err != nil {
				t.Fatalf("handshake failed: client: %v; server: %v", err, res.err)
			}
			if state.Version != tt.wantVersion {
				t.Errorf("version = %s, want %s", tls.VersionName(state.Version), tls.VersionName(tt.wantVersion))
			}
			if tt.wantSuite != 0 && state.CipherSuite != tt.wantSuite {
				t.Errorf("suite = %s, want %s", tls.CipherSuiteName(state.CipherSuite), tls.CipherSuiteName(tt.wantSuite))
			}
		})
	}
}

func TestCipherSuitesAreECDHEAndAEAD(t *testing.T) {
	for _, id := range cipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("suite %s is not ECDHE with an AEAD cipher", name)
		}
		if slices.ContainsFunc(tls.InsecureCipherSuites(), func(s *tls.CipherSuite) bool { return s.ID == id }) {
			t.Errorf("suite %s is insecure", name)
		}
	}
	if len(cipherSuites) != 6 {
		t.Errorf("%d suites, want 6", len(cipherSuites))
	}
}

func TestHTTPServerNegotiatesHTTP2(t *testing.T) {
	f := newFixture(t, "srv")
	m := newManager(t, f.config("", ""), nil)

	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, r.Proto)
		}),
		TLSConfig:         m.TLSConfig(),
		ReadHeaderTimeout: bound,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS: %v", err)
		}
	})

	tests := []struct {
		desc      string
		protocols func() *http.Protocols
		want      string
	}{
		{desc: "http/2 client gets http/2", protocols: func() *http.Protocols {
			p := &http.Protocols{}
			p.SetHTTP2(true)
			return p
		}, want: "HTTP/2.0"},
		{desc: "http/1.1 client gets http/1.1", protocols: func() *http.Protocols {
			p := &http.Protocols{}
			p.SetHTTP1(true)
			return p
		}, want: "HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: f.ca.ClientConfig(nil), Protocols: tt.protocols()}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: bound}
			res, err := client.Get("https://" + ln.Addr().String() + "/")
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != tt.want {
				t.Errorf("server saw %s, want %s", body, tt.want)
			}
		})
	}
}

func TestMutualTLS(t *testing.T) {
	trusted := tlstest.NewCA(t)
	untrusted := tlstest.NewCA(t)
	_, _, alice := trusted.Issue(t, tlstest.Client, "alice")
	_, _, mallory := untrusted.Issue(t, tlstest.Client, "mallory")
	// A server certificate from the trusted CA lacks the clientAuth usage.
	_, _, serverCert := trusted.Issue(t, tlstest.Server, "not-a-client")

	type server struct {
		srv *tlsServer
		ca  *tlstest.CA // issued the server certificate
	}
	servers := map[string]server{}
	for _, mode := range []string{"require", "optional"} {
		f := newFixture(t, "srv").withClientCAs(t, trusted)
		servers[mode] = server{srv: startServer(t, newManager(t, f.config("", mode), nil)), ca: f.ca}
	}

	tests := []struct {
		desc       string
		mode       string
		clientCert *tls.Certificate
		wantOK     bool
		wantCN     string // CN of the verified client certificate; "" for none
	}{
		{desc: "require: no client certificate refused", mode: "require"},
		{desc: "require: certificate from another CA refused", mode: "require", clientCert: mallory},
		{desc: "require: certificate without clientAuth usage refused", mode: "require", clientCert: serverCert},
		{desc: "require: valid certificate accepted", mode: "require", clientCert: alice, wantOK: true, wantCN: "alice"},
		{desc: "optional: no client certificate accepted", mode: "optional", wantOK: true},
		{desc: "optional: certificate from another CA refused", mode: "optional", clientCert: mallory},
		{desc: "optional: valid certificate verified", mode: "optional", clientCert: alice, wantOK: true, wantCN: "alice"},
	}
	for _, tt := range tests {
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(tt.desc+" "+tls.VersionName(version), func(t *testing.T) {
				s := servers[tt.mode]
				cfg := s.ca.ClientConfig(tt.clientCert)
				cfg.MaxVersion = version
				_, err, res := s.srv.handshake(t, cfg)
				if !tt.wantOK {
					if err == nil || res.err == nil {
						t.Fatalf("handshake succeeded; want refused by both sides (client: %v, server: %v)", err, res.err)
					}
					return
				}
				if err != nil || res.err != nil {
					t.Fatalf("handshake failed: client: %v; server: %v", err, res.err)
				}
				got := VerifiedClientCert(&res.state)
				switch {
				case tt.wantCN == "" && got != nil:
					t.Errorf("VerifiedClientCert = %q, want nil", got.Subject.CommonName)
				case tt.wantCN != "" && got == nil:
					t.Errorf("VerifiedClientCert = nil, want %q", tt.wantCN)
				case tt.wantCN != "" && got.Subject.CommonName != tt.wantCN:
					t.Errorf("VerifiedClientCert CN = %q, want %q", got.Subject.CommonName, tt.wantCN)
				}
			})
		}
	}
}

func TestVerifiedClientCert(t *testing.T) {
	ca := tlstest.NewCA(t)
	_, _, alice := ca.Issue(t, tlstest.Client, "alice")
	_, _, bob := ca.Issue(t, tlstest.Client, "bob")
	tests := []struct {
		desc  string
		state *tls.ConnectionState
		want  *x509.Certificate
	}{
		{desc: "nil state", state: nil},
		{desc: "no certificates", state: &tls.ConnectionState{}},
		{desc: "presented but unverified", state: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{alice.Leaf}}},
		{desc: "empty first chain", state: &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{}}}},
		{desc: "leaf of first verified chain", state: &tls.ConnectionState{
			PeerCertificates: []*x509.Certificate{alice.Leaf},
			VerifiedChains:   [][]*x509.Certificate{{alice.Leaf, ca.Cert}, {bob.Leaf, ca.Cert}},
		}, want: alice.Leaf},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if got := VerifiedClientCert(tt.state); got != tt.want {
				t.Errorf("VerifiedClientCert = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGetConfigForClientReusesConfig(t *testing.T) {
	f := newFixture(t, "srv").withClientCAs(t, tlstest.NewCA(t))
	m := newManager(t, f.config("", "require"), nil)

	first, err := m.GetConfigForClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = m.GetConfigForClient(nil) }); allocs != 0 {
		t.Errorf("GetConfigForClient allocates %v times per call, want 0", allocs)
	}
	if again, _ := m.GetConfigForClient(nil); again != first {
		t.Error("GetConfigForClient returned a different config without a reload")
	}
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	if again, _ := m.GetConfigForClient(nil); again == first {
		t.Error("GetConfigForClient returned the old config after a reload")
	}

	tests := []struct {
		desc string
		got  any
		want any
	}{
		{desc: "min version", got: first.MinVersion, want: uint16(tls.VersionTLS12)},
		{desc: "cipher suites", got: first.CipherSuites, want: cipherSuites},
		{desc: "alpn", got: first.NextProtos, want: []string{"h2", "http/1.1"}},
		{desc: "curve preferences left to crypto/tls", got: first.CurvePreferences == nil, want: true},
		{desc: "client auth", got: first.ClientAuth, want: tls.RequireAndVerifyClientCert},
		{desc: "client CAs", got: first.ClientCAs != nil, want: true},
		{desc: "session tickets", got: first.SessionTicketsDisabled, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if !equalAny(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func equalAny(a, b any) bool {
	switch a := a.(type) {
	case []uint16:
		return slices.Equal(a, b.([]uint16))
	case []string:
		return slices.Equal(a, b.([]string))
	}
	return a == b
}

func TestExpiryWarnings(t *testing.T) {
	now := time.Now()
	tests := []struct {
		desc     string
		notAfter time.Time
		want     string // "" for no warning
	}{
		{desc: "expired", notAfter: now.Add(-time.Hour), want: "tls certificate has expired"},
		{desc: "expires in two days", notAfter: now.Add(48 * time.Hour), want: "tls certificate expires soon"},
		{desc: "valid for a month", notAfter: now.Add(30 * 24 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			f := &fixture{ca: tlstest.NewCA(t), dir: t.TempDir()}
			certPEM, keyPEM, _ := f.ca.IssueWith(t, tlstest.Options{Kind: tlstest.Server, CommonName: "srv", NotBefore: now.Add(-72 * time.Hour), NotAfter: tt.notAfter})
			f.certFile, f.keyFile = tlstest.WriteFiles(t, f.dir, certPEM, keyPEM)
			log, buf := testLogger()
			newManager(t, f.config("", ""), log)
			logs := buf.String()
			if !strings.Contains(logs, "tls certificate loaded") || !strings.Contains(logs, "subject_cn=srv") || !strings.Contains(logs, "not_after=") {
				t.Errorf("load not logged with subject and expiry:\n%s", logs)
			}
			warned := strings.Contains(logs, "level=WARN")
			switch {
			case tt.want == "" && warned:
				t.Errorf("unexpected warning:\n%s", logs)
			case tt.want != "" && !strings.Contains(logs, tt.want):
				t.Errorf("want warning %q in:\n%s", tt.want, logs)
			}
		})
	}
}
