package waf

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// quiet discards the stage's own log lines in tests.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newStage builds a stage from a defaulted copy of cfg and closes it when
// the test ends.
func newStage(t testing.TB, cfg config.WAF) *Stage {
	t.Helper()
	cfg.ApplyDefaults()
	s, err := New(&cfg, quiet)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// req describes a test request.
type req struct {
	method  string
	target  string // request target: path and query, sent as is
	headers map[string]string
	body    string
}

// exchange builds an exchange as the gateway would hand it to the stage:
// a server-side request (RequestURI set, Host moved out of Header) with a
// browser-like set of headers unless the test overrides them.
func exchange(r req) *gateway.Exchange {
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(method, "http://api.example.com"+r.target, body)
	hr.RequestURI = r.target
	hr.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36")
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("Accept-Language", "en-US,en;q=0.9")
	if r.body != "" {
		// As net/http's server leaves it: Content-Length stays in Header.
		hr.Header.Set("Content-Length", strconv.Itoa(len(r.body)))
		hr.Header.Set("Content-Type", "application/json")
	}
	for k, v := range r.headers {
		if v == "" {
			hr.Header.Del(k)
			continue
		}
		if strings.EqualFold(k, "Host") {
			hr.Host = v
			continue
		}
		hr.Header.Set(k, v)
	}
	return &gateway.Exchange{ID: "test-req", Request: hr, ClientIP: netip.MustParseAddr("198.51.100.23"),
		Route: &gateway.Route{Name: "test", MaxBody: 1 << 20}}
}

// verdict runs the stage on r and returns the exchange and the Reject, if
// any; any other error fails the test.
func verdict(t testing.TB, s *Stage, r req) (*gateway.Exchange, *gateway.Reject) {
	t.Helper()
	ex := exchange(r)
	err := s.ProcessRequest(context.Background(), ex)
	if err == nil {
		return ex, nil
	}
	var rej *gateway.Reject
	if !errors.As(err, &rej) {
		t.Fatalf("ProcessRequest returned %T %v, want nil or *gateway.Reject", err, err)
	}
	return ex, rej
}

func ruleIDs(ex *gateway.Exchange) []int {
	ids, _ := ex.Findings[NoteRuleIDs].([]int)
	return ids
}

func hasRule(ex *gateway.Exchange, id int) bool {
	for _, r := range ruleIDs(ex) {
		if r == id {
			return true
		}
	}
	return false
}

func itoa(n int) string { return strconv.Itoa(n) }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
