package audit

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/tlsx/tlstest"
)

// testKey is the chain key of the tests: 32 bytes.
var testKey = []byte("0123456789abcdef0123456789abcdef")

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.UTC)

// quietLog discards the process log; logTo captures it.
func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func logTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// exchange builds a finished exchange for method and target.
func exchange(method, target string) *gateway.Exchange {
	r := httptest.NewRequest(method, target, nil)
	r.Header.Set("User-Agent", "curl/8.5.0")
	return &gateway.Exchange{
		ID:       "4bf92f3577b34da6a3ce929d0e0e4736",
		Request:  r,
		ClientIP: netip.MustParseAddr("203.0.113.7"),
		PeerIP:   netip.MustParseAddr("203.0.113.7"),
		Start:    t0,
		Listener: &gateway.Listener{Name: "public"},
	}
}

// goldenExchanges are the representative exchanges of the golden file.
func goldenExchanges() []struct {
	name string
	ex   *gateway.Exchange
	end  time.Time
} {
	allowed := exchange("GET", "https://api.example.com:8443/books/42?fields=title&api_key=SECRET-QUERY-VALUE")
	allowed.TLS = &tls.ConnectionState{Version: tls.VersionTLS13}
	allowed.Request.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	allowed.Route = &gateway.Route{Name: "get-book", Template: "/books/{id}"}
	allowed.Principal = &gateway.Principal{Subject: "alice", Authenticator: "corp-jwt", Kind: "jwt", Roles: []string{"reader", "editor"},
		Scopes: []string{"books:read"}, KeyID: "kid-2026", Claims: map[string]any{"email": "alice@example.com"}}
	allowed.Status = 200
	allowed.Target = "http://10.0.0.5:8080"
	allowed.UpstreamLatency = 7350 * time.Microsecond
	allowed.Limits = []gateway.LimitState{{Name: "per-user", Quota: 100, Window: time.Minute, Remaining: 97, Reset: 1800 * time.Millisecond, Allowed: true, Headers: true}}

	authDenied := exchange("POST", "/orders")
	authDenied.PeerIP = netip.MustParseAddr("10.1.2.3")
	authDenied.Route = &gateway.Route{Name: "create-order", Template: "/orders"}
	authDenied.Status = 401
	authDenied.ReasonID = "jwt_expired"
	authDenied.Detail = "token expired 2m10s ago"

	limited := exchange("GET", "/books")
	limited.ClientIP = netip.MustParseAddr("2001:db8::1")
	limited.PeerIP = netip.MustParseAddr("2001:db8::1")
	limited.Route = &gateway.Route{Name: "list-books", Template: "/books"}
	limited.Principal = &gateway.Principal{Subject: "team-a", Authenticator: "keys", Kind: "api_key", KeyID: "k_7Hq2", Plan: "free"}
	limited.Status = 429
	limited.ReasonID = "rate_limited"
	limited.Detail = "over per-key"
	limited.Limits = []gateway.LimitState{
		{Name: "per-ip", Quota: 1000, Window: time.Hour, Remaining: 512, Reset: 20 * time.Minute, Allowed: true},
		{Name: "per-key", Quota: 10, Window: time.Second, Remaining: 0, Reset: 900 * time.Millisecond, Allowed: false, Headers: true},
	}

	waf := exchange("POST", "/search?q=1")
	waf.Request.Header.Set("User-Agent", "sqlmap/1.7\n\"quoted\"")
	waf.Route = &gateway.Route{Name: "search", Template: "/search"}
	waf.Status = 403
	waf.ReasonID = "waf_blocked"
	waf.Detail = "anomaly score 15 >= 5"
	waf.Note(FindingWAFRuleIDs, []int{942100, 942190})
	waf.Note(FindingWAFScore, 15)
	waf.Note("waf_attacks", []string{"sqli"})
	waf.Note("content_encoding_decoded", "gzip")

	return []struct {
		name string
		ex   *gateway.Exchange
		end  time.Time
	}{
		{"allowed", allowed, t0.Add(9 * time.Millisecond)},
		{"denied_by_auth", authDenied, t0.Add(400 * time.Microsecond)},
		{"rate_limited", limited, t0.Add(250 * time.Microsecond)},
		{"waf_blocked", waf, t0.Add(1200 * time.Microsecond)},
	}
}

// goldenEvents are the golden exchanges' events and one of each other kind.
func goldenEvents() []Event {
	var evs []Event
	start := Event{Time: t0, Action: ActionChainStart, Category: "process", Types: [2]string{"start"}, Outcome: OutcomeSuccess,
		Message: "audit chain started", Chain: &ChainInfo{Reason: "new", KeyID: KeyID(testKey)}}
	evs = append(evs, start)
	for _, g := range goldenExchanges() {
		evs = append(evs, FromExchange(g.ex, g.end))
	}
	evs = append(evs,
		ConfigReload(t0.Add(time.Second), "/etc/moat/moat.yaml", strings.Repeat("ab", 32), nil),
		KeyChange(t0.Add(2*time.Second), ActionKeyRevoke, "k_7Hq2", "team-a", ""),
		AdminAction(t0.Add(3*time.Second), "route_disable", &gateway.Principal{Subject: "ops-admin", Roles: []string{"admin"}, Authenticator: "admin-mtls", Kind: "client_cert"},
			netip.MustParseAddr("192.0.2.10"), "disabled route legacy-upload", nil),
		Event{Time: t0.Add(4 * time.Second), Action: ActionEventsDropped, Category: "process", Types: [2]string{"info"}, Outcome: OutcomeFailure,
			Message: "audit events were dropped: the queue was full", Dropped: 17},
	)
	return evs
}

// newTestChain returns a new keyed chain with a fixed ID.
func newTestChain(key []byte) *chain {
	c := &chain{}
	startChain(c, chainState{}, "new", key)
	c.id = "00c0ffee00c0ffee"
	return c
}

// sealAll encodes and chains events like the Auditor does.
func sealAll(c *chain, evs []Event, host string) []byte {
	var out []byte
	for i := range evs {
		out = append(out, c.seal(appendEvent(nil, &evs[i], host))...)
	}
	return out
}

// decodeLines parses JSON lines.
func decodeLines(t testing.TB, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("line is not JSON: %v\n%s", err, l)
		}
		out = append(out, m)
	}
	return out
}

// field returns a dotted path of a decoded event.
func field(m map[string]any, path string) any {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

// testAuditConfig returns an audit block with a key, dir and the sinks.
func testAuditConfig(dir string, sinks ...config.AuditSink) config.Audit {
	var k config.Secret
	_ = k.UnmarshalText(testKey)
	return config.Audit{Dir: dir, Key: k, Hostname: "gw-1", Sinks: sinks}
}

// eventually polls cond every 5ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func closeAuditor(t testing.TB, a *Auditor) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// testTLS returns a new CA, its certificate as a PEM file, and a server
// certificate for localhost it signed.
func testTLS(t *testing.T) (*tlstest.CA, string, *tls.Certificate) {
	t.Helper()
	ca := tlstest.NewCA(t)
	_, _, cert := ca.Issue(t, tlstest.Server, "localhost")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca, caFile, cert
}

func tlsListen(cert *tls.Certificate) (net.Listener, error) {
	return tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12})
}
