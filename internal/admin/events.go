package admin

import (
	"net/netip"
	"sync"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
)

// Event is one recent denial, as GET /api/v1/events reports it.
type Event struct {
	RequestID string     `json:"request_id"`
	Time      time.Time  `json:"time"`
	Route     string     `json:"route,omitempty"` // "" when no route matched
	Method    string     `json:"method"`
	Path      string     `json:"path"` // the route's path template, or the request path (cut to 256 bytes) when no route matched
	Reason    string     `json:"reason_id"`
	Status    int        `json:"status"`
	ClientIP  netip.Addr `json:"client_ip"`
	Principal string     `json:"principal,omitempty"` // the authenticated subject, if authentication ran first
}

// maxEventPath bounds the request path kept for an unrouted denial.
const maxEventPath = 256

// Ring keeps the most recent denials, up to its capacity; older ones are
// overwritten. It is safe for concurrent use.
type Ring struct {
	mu    sync.Mutex
	buf   []Event
	next  int // where the next event goes
	count int
}

// NewRing returns a Ring holding up to n events (at least 1).
func NewRing(n int) *Ring {
	if n < 1 {
		n = 1
	}
	return &Ring{buf: make([]Event, n)}
}

// Record keeps ex if it was denied (its ReasonID is set); allowed exchanges
// cost a string comparison. It copies what it keeps and holds no reference
// to ex.
func (g *Ring) Record(ex *gateway.Exchange) {
	if ex.ReasonID == "" {
		return
	}
	ev := Event{RequestID: ex.ID, Time: ex.Start, Reason: ex.ReasonID, Status: ex.Status, ClientIP: ex.ClientIP}
	if ex.Request != nil {
		ev.Method = ex.Request.Method
		if ex.Request.URL != nil {
			ev.Path = ex.Request.URL.Path
		}
	}
	if ex.Route != nil {
		ev.Route, ev.Path = ex.Route.Name, ex.Route.Template
	} else if len(ev.Path) > maxEventPath {
		ev.Path = ev.Path[:maxEventPath]
	}
	if ex.Principal != nil {
		ev.Principal = ex.Principal.Subject
	}
	g.Add(ev)
}

// Add keeps ev, overwriting the oldest event when the ring is full.
func (g *Ring) Add(ev Event) {
	g.mu.Lock()
	g.buf[g.next] = ev
	g.next = (g.next + 1) % len(g.buf)
	if g.count < len(g.buf) {
		g.count++
	}
	g.mu.Unlock()
}

// Filter selects events; zero fields match everything.
type Filter struct {
	Reason    string
	Route     string
	ClientIP  netip.Addr // a single address; see Prefix
	Prefix    netip.Prefix
	Principal string
	Since     time.Time // events at or after
	Limit     int       // most events returned; 0 means all
}

func (f *Filter) match(ev *Event) bool {
	return (f.Reason == "" || ev.Reason == f.Reason) &&
		(f.Route == "" || ev.Route == f.Route) &&
		(!f.ClientIP.IsValid() || ev.ClientIP == f.ClientIP) &&
		(!f.Prefix.IsValid() || f.Prefix.Contains(ev.ClientIP)) &&
		(f.Principal == "" || ev.Principal == f.Principal) &&
		(f.Since.IsZero() || !ev.Time.Before(f.Since))
}

// Query returns the events f selects, newest first.
func (g *Ring) Query(f Filter) []Event {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := []Event{}
	for i := range g.count {
		ev := &g.buf[(g.next-1-i+2*len(g.buf))%len(g.buf)]
		if !f.match(ev) {
			continue
		}
		out = append(out, *ev)
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out
}
