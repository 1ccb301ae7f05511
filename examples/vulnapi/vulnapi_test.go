package vulnapi

import (
	"io"
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
		{desc: "ssrf beyond loopback refused by the fetcher", method: "GET", path: "/v2/fetch?url=http://192.0.2.1/", vulnStatus: 502, hardStatus: 400},
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
