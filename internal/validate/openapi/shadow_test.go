package openapi

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a manual clock for the shadow report.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestNormalizePath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"/orders", "/orders"},
		{"/orders/17", "/orders/{id}"},
		{"/orders/17/items/3?debug=1", "/orders/{id}/items/{id}"},
		{"/u/0b6f7c1e-3d4a-4f5b-9c8d-7e6f5a4b3c2d", "/u/{id}"},
		{"/u/507f1f77bcf86cd799439011", "/u/{id}"},               // ObjectId: 24 hex digits
		{"/u/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/u/{id}"},             // ULID
		{"/reset/eyJhbGciOiJIUzI1NiJ9xyz123", "/reset/{id}"},     // token-like
		{"/v2/users", "/v2/users"},                               // short mix of letters and digits is kept
		{"/deadbeef", "/deadbeef"},                               // short hex is a word
		{"/files/report-2024-final", "/files/report-2024-final"}, // under 20 characters
		{"/a/b\x01c", "/a/b?c"},                                  // control characters
		{"/" + strings.Repeat("z", 100), "/" + strings.Repeat("z", 64) + "..."},
		{strings.Repeat("/a", 20), strings.Repeat("/a", 16) + "/..."},
		{"/orders/", "/orders/"},
	}
	for _, tc := range tests {
		if got := NormalizePath(tc.in); got != tc.want {
			t.Errorf("NormalizePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := strings.Repeat("/"+strings.Repeat("y", 60), 10)
	if got := NormalizePath(long); len(got) > maxShadowPath || !strings.HasSuffix(got, "/...") {
		t.Errorf("NormalizePath(long) = %q (%d bytes)", got, len(got))
	}
}

func TestShadowReport(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	t0 := c.Now()
	r := NewShadowReport(3, c.Now)
	r.Record("books", "GET", "/orders/1")
	c.Advance(time.Minute)
	r.Record("books", "GET", "/orders/2")
	r.Record("books", "POST", "/orders")
	r.Record("books", "BREW", "/pot")
	r.Record("books", "PUT", "/full") // a fourth key: dropped
	r.Record("other", "GET", "/x")    // dropped too
	c.Advance(time.Minute)
	r.Record("books", "GET", "/orders/3") // existing key: still counted
	s := r.Snapshot()
	if s.Dropped != 2 {
		t.Errorf("dropped %d, want 2", s.Dropped)
	}
	want := []ShadowEntry{
		{Source: "books", Method: "GET", Path: "/orders/{id}", Count: 3, FirstSeen: t0, LastSeen: t0.Add(2 * time.Minute)},
		{Source: "books", Method: "POST", Path: "/orders", Count: 1, FirstSeen: t0.Add(time.Minute), LastSeen: t0.Add(time.Minute)},
		{Source: "books", Method: "OTHER", Path: "/pot", Count: 1, FirstSeen: t0.Add(time.Minute), LastSeen: t0.Add(time.Minute)},
	}
	if len(s.Entries) != len(want) {
		t.Fatalf("entries %+v", s.Entries)
	}
	for i := range want {
		if s.Entries[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, s.Entries[i], want[i])
		}
	}
	// The snapshot is a copy.
	s.Entries[0].Count = 99
	if r.Snapshot().Entries[0].Count != 3 {
		t.Error("snapshot shares entries with the report")
	}
	if d := NewShadowReport(0, nil); d.max != DefaultShadowEntries || d.now == nil {
		t.Errorf("defaults %d", d.max)
	}
}

func TestShadowReportConcurrent(t *testing.T) {
	r := NewShadowReport(100, nil)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				r.Record("s", "GET", "/orders/"+string(rune('0'+i%10)))
				if i%100 == 0 {
					r.Snapshot()
				}
			}
		}()
	}
	wg.Wait()
	s := r.Snapshot()
	if len(s.Entries) != 1 || s.Entries[0].Count != 8*500 {
		t.Errorf("entries %+v", s.Entries)
	}
}

func TestUndocumented(t *testing.T) {
	if _, err := NewUndocumented(Options{Unknown: UnknownShadow}); err == nil {
		t.Error("shadow without a report")
	}
	deny, err := NewUndocumented(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ex := request("GET", "/internal/debug/17", "")
	expectReject(t, ex, deny.ProcessRequest(context.Background(), ex), http.StatusNotFound, ReasonOperationNotDocumented, "")

	r := NewShadowReport(10, nil)
	shadow, err := NewUndocumented(Options{Unknown: UnknownShadow, Shadow: r, Source: "books"})
	if err != nil {
		t.Fatal(err)
	}
	ex = request("GET", "/internal/debug/17?token=secret", "")
	if err := shadow.ProcessRequest(context.Background(), ex); err != nil {
		t.Fatal(err)
	}
	if ex.Findings[NoteShadow] != true {
		t.Errorf("findings %v", ex.Findings)
	}
	if e := r.Snapshot().Entries; len(e) != 1 || e[0].Path != "/internal/debug/{id}" || e[0].Source != "books" {
		t.Errorf("entries %+v", e)
	}
}

func TestDispatcher(t *testing.T) {
	d := testDoc(t, api31)
	r := NewShadowReport(10, nil)
	tests := []struct {
		desc    string
		opts    Options
		method  string
		target  string
		status  int
		reason  string
		op      string
		shadows int
	}{
		{desc: "documented and valid", method: "GET", target: "/health/ping", op: "ping"},
		{desc: "documented, HEAD on GET", method: "HEAD", target: "/health/ping", op: "ping"},
		{desc: "documented and invalid", method: "GET", target: "/v1/files/a.gif", status: 400, reason: ReasonInvalidParameter, op: "getFile"},
		{desc: "documented, strict", opts: Options{Strict: true}, method: "GET", target: "/health/ping?x=1", status: 400, reason: ReasonUndeclaredParameter, op: "ping"},
		{desc: "unknown path denied", method: "GET", target: "/v1/admin", status: 404, reason: ReasonOperationNotDocumented},
		{desc: "unknown method denied", method: "PATCH", target: "/v1/items/5", status: 404, reason: ReasonOperationNotDocumented},
		{desc: "path without the base path denied", method: "GET", target: "/items/5", status: 404, reason: ReasonOperationNotDocumented},
		{desc: "unknown path shadowed", opts: Options{Unknown: UnknownShadow, Shadow: r}, method: "GET", target: "/v1/admin/7", shadows: 1},
		{desc: "unknown method shadowed", opts: Options{Unknown: UnknownShadow, Shadow: r}, method: "PATCH", target: "/v1/items/5", shadows: 2},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s, err := d.Dispatcher(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			ex := request(tc.method, tc.target, "")
			err = s.ProcessRequest(context.Background(), ex)
			expectReject(t, ex, err, tc.status, tc.reason, "")
			if got, _ := ex.Findings[NoteOperation].(string); got != tc.op {
				t.Errorf("operation %q, want %q", got, tc.op)
			}
			if n := len(r.Snapshot().Entries); n != tc.shadows && tc.shadows > 0 {
				t.Errorf("%d shadow entries, want %d", n, tc.shadows)
			}
		})
	}
	if _, err := d.Dispatcher(Options{Unknown: UnknownShadow}); err == nil {
		t.Error("a shadow dispatcher without a report")
	}
}

func TestValidatorForeignOperation(t *testing.T) {
	a, b := testDoc(t, api31), testDoc(t, api30)
	if _, err := a.Validator(b.Operations()[0], Options{}); err == nil {
		t.Error("a validator for another document's operation")
	}
	if _, err := a.Validator(nil, Options{}); err == nil {
		t.Error("a validator for no operation")
	}
}
