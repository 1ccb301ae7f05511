package audit

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

// The benchmarks measure the request path: building the event from the
// exchange and encoding it (Record), against encoding/json on an equivalent
// struct, and Record with a file sink end to end.
//
//	go test -run '^$' -bench . -benchmem ./internal/audit

// jsonEvent mirrors the event for encoding/json, to compare with the
// hand-written appender (same fields, same nesting).
type jsonEvent struct {
	Timestamp time.Time `json:"@timestamp"`
	ECS       struct {
		Version string `json:"version"`
	} `json:"ecs"`
	Source *struct {
		IP string `json:"ip"`
	} `json:"source,omitempty"`
	User *struct {
		ID    string   `json:"id,omitempty"`
		Roles []string `json:"roles,omitempty"`
	} `json:"user,omitempty"`
	HTTP struct {
		Version string `json:"version,omitempty"`
		Request struct {
			ID     string `json:"id,omitempty"`
			Method string `json:"method,omitempty"`
		} `json:"request"`
		Response struct {
			StatusCode int `json:"status_code"`
		} `json:"response"`
	} `json:"http"`
	URL struct {
		Scheme string `json:"scheme,omitempty"`
		Domain string `json:"domain,omitempty"`
		Path   string `json:"path,omitempty"`
	} `json:"url"`
	UserAgent *struct {
		Original string `json:"original"`
	} `json:"user_agent,omitempty"`
	Observer struct {
		Hostname string `json:"hostname,omitempty"`
		Product  string `json:"product"`
	} `json:"observer"`
	Moat struct {
		Decision      string   `json:"decision,omitempty"`
		Route         string   `json:"route,omitempty"`
		PathTemplate  string   `json:"path_template,omitempty"`
		Authenticator string   `json:"authenticator,omitempty"`
		AuthKind      string   `json:"auth_kind,omitempty"`
		KeyID         string   `json:"key_id,omitempty"`
		Scopes        []string `json:"scopes,omitempty"`
		QueryKeys     []string `json:"query_keys,omitempty"`
		Detail        string   `json:"detail,omitempty"`
		Upstream      *struct {
			Target string `json:"target"`
		} `json:"upstream,omitempty"`
		Latency struct {
			GatewayUS  int64 `json:"gateway_us"`
			UpstreamUS int64 `json:"upstream_us,omitempty"`
		} `json:"latency"`
		Limits []struct {
			Name      string `json:"name"`
			Allowed   bool   `json:"allowed"`
			Quota     int64  `json:"quota"`
			WindowMS  int64  `json:"window_ms"`
			Remaining int64  `json:"remaining"`
			ResetMS   int64  `json:"reset_ms"`
		} `json:"limits,omitempty"`
		Findings map[string]any `json:"findings,omitempty"`
	} `json:"moat"`
	Event struct {
		Kind     string   `json:"kind"`
		Category []string `json:"category"`
		Type     []string `json:"type"`
		Action   string   `json:"action"`
		Outcome  string   `json:"outcome"`
		Reason   string   `json:"reason,omitempty"`
		Dataset  string   `json:"dataset"`
		Duration int64    `json:"duration"`
	} `json:"event"`
}

func toJSONEvent(ev *Event, host string) *jsonEvent {
	j := &jsonEvent{Timestamp: ev.Time}
	j.ECS.Version = ECSVersion
	if ev.ClientIP.IsValid() {
		j.Source = &struct {
			IP string `json:"ip"`
		}{ev.ClientIP.String()}
	}
	if ev.UserID != "" {
		j.User = &struct {
			ID    string   `json:"id,omitempty"`
			Roles []string `json:"roles,omitempty"`
		}{ev.UserID, ev.Roles}
	}
	j.HTTP.Version, j.HTTP.Request.ID, j.HTTP.Request.Method, j.HTTP.Response.StatusCode = ev.HTTPVersion, ev.RequestID, ev.Method, ev.Status
	j.URL.Scheme, j.URL.Domain, j.URL.Path = ev.Scheme, ev.Host, ev.Path
	if ev.UserAgent != "" {
		j.UserAgent = &struct {
			Original string `json:"original"`
		}{ev.UserAgent}
	}
	j.Observer.Hostname, j.Observer.Product = host, "moat"
	m := &j.Moat
	m.Decision, m.Route, m.PathTemplate, m.Authenticator, m.AuthKind, m.KeyID, m.Scopes, m.Detail =
		ev.Decision, ev.Route, ev.PathTemplate, ev.Authenticator, ev.AuthKind, ev.KeyID, ev.Scopes, ev.Detail
	if ev.Upstream != "" {
		m.Upstream = &struct {
			Target string `json:"target"`
		}{ev.Upstream}
	}
	m.Latency.GatewayUS, m.Latency.UpstreamUS = ev.GatewayTime.Microseconds(), ev.UpstreamTime.Microseconds()
	for _, l := range ev.Limits {
		m.Limits = append(m.Limits, struct {
			Name      string `json:"name"`
			Allowed   bool   `json:"allowed"`
			Quota     int64  `json:"quota"`
			WindowMS  int64  `json:"window_ms"`
			Remaining int64  `json:"remaining"`
			ResetMS   int64  `json:"reset_ms"`
		}{l.Name, l.Allowed, l.Quota, l.Window.Milliseconds(), l.Remaining, l.Reset.Milliseconds()})
	}
	m.Findings = ev.Findings
	e := &j.Event
	e.Kind, e.Category, e.Type, e.Action, e.Outcome, e.Reason, e.Dataset, e.Duration =
		"event", []string{ev.Category}, []string{ev.Types[0], ev.Types[1]}, ev.Action, ev.Outcome, ev.Reason, Dataset, int64(ev.Duration)
	return j
}

func BenchmarkEncode(b *testing.B) {
	gs := goldenExchanges()
	for _, g := range []int{0, 3} { // allowed (JWT, limits, upstream), WAF block (findings)
		ex, end := gs[g].ex, gs[g].end
		b.Run(gs[g].name+"/appender", func(b *testing.B) {
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			for b.Loop() {
				ev := FromExchange(ex, end)
				buf = appendEvent(buf[:0], &ev, "gw-1")
			}
			b.SetBytes(int64(len(buf)))
		})
		b.Run(gs[g].name+"/encoding_json", func(b *testing.B) {
			var n int
			b.ReportAllocs()
			for b.Loop() {
				ev := FromExchange(ex, end)
				out, err := json.Marshal(toJSONEvent(&ev, "gw-1"))
				if err != nil {
					b.Fatal(err)
				}
				n = len(out)
			}
			b.SetBytes(int64(n))
		})
	}
}

// BenchmarkRecord is the request-path cost of auditing one exchange with a
// file sink: FromExchange and Record from parallel goroutines. The queue is
// large enough that nothing is dropped (reported as drops/op), and Close
// (flushing to the file) is inside the timing, so ns/op is the end-to-end
// cost per event at saturation, not only the caller's share.
func BenchmarkRecord(b *testing.B) {
	g := goldenExchanges()[0]
	dir := b.TempDir()
	cfg := testAuditConfig(filepath.Join(dir, "state"), config.AuditSink{Type: "file", BatchSize: 512, MemoryQueue: 1 << 16,
		File: &config.AuditFile{Path: filepath.Join(dir, "audit.jsonl"), MaxSize: 1 << 30}})
	cfg.QueueSize = 1 << 20
	a, err := New(cfg, Options{Log: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	a.Start()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ev := FromExchange(g.ex, g.end)
			a.Record(&ev)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	s := a.Stats()
	b.ReportMetric(float64(s.Dropped)/float64(b.N), "drops/op")
	if s.Sinks[0].Delivered != s.Recorded+1 {
		b.Fatalf("delivered %d of %d", s.Sinks[0].Delivered, s.Recorded+1)
	}
}

func BenchmarkSeal(b *testing.B) {
	g := goldenExchanges()[0]
	ev := FromExchange(g.ex, g.end)
	prefix := appendEvent(nil, &ev, "gw-1")
	c := newTestChain(testKey)
	b.ReportAllocs()
	for b.Loop() {
		c.seal(prefix)
	}
}
