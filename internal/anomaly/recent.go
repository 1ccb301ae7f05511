package anomaly

import "sync"

// DefaultRecentAlerts is how many alerts a Detector keeps for
// RecentAlerts when Options.Recent is nil.
const DefaultRecentAlerts = 1000

// AlertRing keeps the most recent alerts, up to its capacity; older ones
// are overwritten. One ring may be shared by successive Detectors (pass it
// as Options.Recent) so that the history survives a reload that rebuilds
// the detection. An AlertRing is safe for concurrent use.
type AlertRing struct {
	mu    sync.Mutex
	buf   []Alert
	next  int // where the next alert goes
	count int
}

// NewAlertRing returns a ring holding up to n alerts (DefaultRecentAlerts
// when n <= 0).
func NewAlertRing(n int) *AlertRing {
	if n <= 0 {
		n = DefaultRecentAlerts
	}
	return &AlertRing{buf: make([]Alert, n)}
}

// Add keeps a, overwriting the oldest alert when the ring is full. The
// alert's Sample slice is kept, not copied: callers must not change it
// afterwards.
func (r *AlertRing) Add(a Alert) {
	r.mu.Lock()
	r.buf[r.next] = a
	r.next = (r.next + 1) % len(r.buf)
	if r.count < len(r.buf) {
		r.count++
	}
	r.mu.Unlock()
}

// Recent returns up to limit alerts, newest first (all of them when limit
// <= 0). The result is a fresh slice, never nil; its alerts share their
// Sample slices with the ring, which never changes them.
func (r *AlertRing) Recent(limit int) []Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.count
	if limit > 0 && limit < n {
		n = limit
	}
	out := make([]Alert, n)
	for i := range n {
		out[i] = r.buf[(r.next-1-i+2*len(r.buf))%len(r.buf)]
	}
	return out
}

// Cap returns how many alerts the ring holds at most.
func (r *AlertRing) Cap() int { return len(r.buf) }
