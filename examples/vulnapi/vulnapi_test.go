package vulnapi

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestPlantedFlawsAndFixes(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	expired := func(secret string) string {
		return SignHS256(secret, map[string]any{"sub": "1", "exp": now.Add(-time.Hour).Unix()})
	}
	tests := []struct {
		desc         string
		method, path string
		header       [2]string
		vulnStatus   int
		vulnBodyHas  string
		hardStatus   int
	}{
		{desc: "admin list without credentials", method: "GET", path: "/v2/admin/users", vulnStatus: 200, vulnBodyHas: "password_hash", hardStatus: 403},
		{desc: "bob reads alice", method: "GET", path: "/v2/users/1", header: [2]string{"X-API-Key", BobKey}, vulnStatus: 200, vulnBodyHas: "4111", hardStatus: 403},
		{desc: "alg none", method: "GET", path: "/v2/me", header: [2]string{"Authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."}, vulnStatus: 200, hardStatus: 401},
		{desc: "expired token", method: "GET", path: "/v2/me", header: [2]string{"Authorization", "Bearer " + expired(WeakSecret)}, vulnStatus: 200, hardStatus: 401},
		{desc: "sql error", method: "GET", path: "/v2/products?q=%27", vulnStatus: 500, vulnBodyHas: "SQL syntax", hardStatus: 200},
		{desc: "trace echo", method: "TRACE", path: "/", vulnStatus: 200, vulnBodyHas: "TRACE / HTTP/1.1", hardStatus: 405},
		{desc: "actuator", method: "GET", path: "/actuator/env", vulnStatus: 200, hardStatus: 404},
		{desc: "ssrf beyond loopback refused by the fetcher, answered with a panic trace (verbose-errors)", method: "GET", path: "/v2/fetch?url=http://192.0.2.1/", vulnStatus: 500, hardStatus: 400},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			for _, hardened := range []bool{false, true} {
				srv := httptest.NewServer(New(Options{Hardened: hardened, Now: func() time.Time { return now }}))
				req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
				if tc.header[0] != "" {
					req.Header.Set(tc.header[0], tc.header[1])
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					srv.Close()
					t.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				srv.Close()
				want := tc.vulnStatus
				if hardened {
					want = tc.hardStatus
				}
				if res.StatusCode != want {
					t.Errorf("hardened=%v: status %d, want %d: %s", hardened, res.StatusCode, want, body)
				}
				if !hardened && !strings.Contains(string(body), tc.vulnBodyHas) {
					t.Errorf("vulnerable: body lacks %q: %s", tc.vulnBodyHas, body)
				}
			}
		})
	}
}

func TestSubjectHeader(t *testing.T) {
	srv := httptest.NewServer(New(Options{SubjectHeader: "X-Moat-Subject"}))
	defer srv.Close()
	for _, tc := range []struct {
		desc, subject string
		status        int
	}{
		{"gateway subject", "2", 200},
		{"no subject", "", 401},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/v2/me", nil)
			req.Header.Set("X-API-Key", BobKey) // ignored: the gateway authenticates
			if tc.subject != "" {
				req.Header.Set("X-Moat-Subject", tc.subject)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tc.status {
				t.Errorf("status %d, want %d", res.StatusCode, tc.status)
			}
		})
	}
}

// TestTLSConfig pins the planted weak-tls flaw: the vulnerable variant
// completes TLS 1.0, TLS 1.1 and 3DES handshakes, the hardened one only
// modern ones, and sends HSTS over HTTPS.
func TestTLSConfig(t *testing.T) {
	cert, err := SelfSignedCert()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		desc           string
		client         *tls.Config
		vulnOK, hardOK bool   // the handshake completes
		version        uint16 // the version negotiated, when not 0
		suite          uint16 // the suite negotiated, when not 0
	}{
		{desc: "TLS 1.0", client: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}, vulnOK: true, version: tls.VersionTLS10},
		{desc: "TLS 1.1", client: &tls.Config{MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}, vulnOK: true, version: tls.VersionTLS11},
		{desc: "TLS 1.2 with 3DES only", client: &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{WeakCipherSuite}}, vulnOK: true, suite: WeakCipherSuite},
		{desc: "TLS 1.2 with CBC-SHA256 only", client: &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256}}},
		{desc: "TLS 1.2 AEAD", client: &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}, vulnOK: true, hardOK: true},
		{desc: "TLS 1.3", client: &tls.Config{MinVersion: tls.VersionTLS13}, vulnOK: true, hardOK: true},
	}
	for _, hardened := range []bool{false, true} {
		srv := httptest.NewUnstartedServer(New(Options{Hardened: hardened}))
		srv.TLS = TLSConfig(hardened, cert)
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
		srv.StartTLS()
		for _, tc := range tests {
			t.Run(fmt.Sprintf("hardened=%v/%s", hardened, tc.desc), func(t *testing.T) {
				cfg := tc.client.Clone()
				cfg.InsecureSkipVerify = true //nolint:gosec // the test's own self-signed server
				c, err := tls.Dial("tcp", srv.Listener.Addr().String(), cfg)
				want := tc.vulnOK
				if hardened {
					want = tc.hardOK
				}
				if (err == nil) != want {
					t.Fatalf("handshake error %v, want success %v", err, want)
				}
				if err != nil {
					return
				}
				defer c.Close()
				st := c.ConnectionState()
				if tc.version != 0 && st.Version != tc.version {
					t.Errorf("negotiated %s", tls.VersionName(st.Version))
				}
				if tc.suite != 0 && st.CipherSuite != tc.suite {
					t.Errorf("negotiated %s", tls.CipherSuiteName(st.CipherSuite))
				}
			})
		}
		res, err := srv.Client().Get(srv.URL + "/v2/products")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("Strict-Transport-Security") != ""; got != hardened {
			t.Errorf("hardened=%v: Strict-Transport-Security sent %v", hardened, got)
		}
		srv.Close()
	}
}
