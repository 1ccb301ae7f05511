package scan

import (
	"crypto/tls"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/moat-gateway/moat/examples/vulnapi"
)

// TestWeakTLS runs the tls probe against the sample API's planted weak-tls
// flaw (TLS 1.0, TLS 1.1 and a 3DES suite accepted), its hardened TLS
// configuration and a plain-http target.
func TestWeakTLS(t *testing.T) {
	tests := []struct {
		desc   string
		https  bool
		hard   bool
		titles []string
	}{
		{desc: "vulnerable https", https: true, titles: []string{
			"TLS 1.0 accepted", "TLS 1.1 accepted", "insecure cipher suite " + tls.CipherSuiteName(vulnapi.WeakCipherSuite),
		}},
		{desc: "hardened https", https: true, hard: true},
		{desc: "plain http is not probed"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			api := newTestAPI(tc.hard)
			var srv *httptest.Server
			if tc.https {
				srv = newTLSServer(t, api, tc.hard)
			} else {
				srv = httptest.NewServer(api)
				defer srv.Close()
			}
			o := testOptions(t, api, srv.URL)
			o.Insecure, o.Probes = true, []string{"tls"}
			rep := runScan(t, o)
			var titles []string
			for _, f := range rep.Findings {
				if f.Rule != RuleWeakTLS {
					continue
				}
				titles = append(titles, f.Title)
				if f.OWASP != "API8:2023" || f.Severity != SeverityMedium || f.Owner != OwnerGateway || f.URL != srv.URL {
					t.Errorf("finding %q: OWASP %s, severity %s, owner %s, URL %s; want API8:2023, medium, gateway, %s",
						f.Title, f.OWASP, f.Severity, f.Owner, f.URL, srv.URL)
				}
			}
			slices.Sort(titles)
			if !slices.Equal(titles, tc.titles) {
				t.Errorf("weak-tls findings %q, want %q", titles, tc.titles)
			}
		})
	}
}

// TestWeakTLSDryRunPlansHandshakes checks that the tls probe plans its
// three handshakes on an https target and sends none in a dry run.
func TestWeakTLSDryRunPlansHandshakes(t *testing.T) {
	api := newTestAPI(false)
	srv := newTLSServer(t, api, false)
	o := testOptions(t, api, srv.URL)
	o.DryRun, o.Insecure, o.Probes = true, true, []string{"tls"}
	rep := runScan(t, o)
	n := 0
	for _, p := range rep.Plan {
		if p.Probe == "tls" && p.Method == "TLS" {
			n++
		}
	}
	if n != 3 || api.Requests() != 0 {
		t.Errorf("planned %d handshakes, sent %d requests; want 3 and 0", n, api.Requests())
	}
}
