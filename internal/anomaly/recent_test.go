package anomaly

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

func TestAlertRing(t *testing.T) {
	tests := []struct {
		desc       string
		capacity   int
		add, limit int
		want       []string // subjects, newest first
	}{
		{"empty", 3, 0, 0, []string{}},
		{"fewer than capacity", 3, 2, 0, []string{"s1", "s0"}},
		{"wrapped keeps the newest", 3, 5, 0, []string{"s4", "s3", "s2"}},
		{"limit", 3, 5, 2, []string{"s4", "s3"}},
		{"limit over count", 3, 1, 10, []string{"s0"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			r := NewAlertRing(tt.capacity)
			for i := range tt.add {
				r.Add(Alert{Subject: fmt.Sprintf("s%d", i)})
			}
			got := r.Recent(tt.limit)
			if got == nil {
				t.Fatal("Recent returned nil")
			}
			subs := make([]string, len(got))
			for i, a := range got {
				subs[i] = a.Subject
			}
			if fmt.Sprint(subs) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", subs, tt.want)
			}
		})
	}
	if NewAlertRing(0).Cap() != DefaultRecentAlerts {
		t.Error("default capacity")
	}
}

func TestAlertRingConcurrent(t *testing.T) {
	r := NewAlertRing(64)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 500 {
				r.Add(Alert{Subject: fmt.Sprint(g, i), Count: i})
			}
		}()
		go func() {
			defer wg.Done()
			for range 200 {
				if n := len(r.Recent(10)); n > 10 {
					t.Errorf("Recent(10) returned %d", n)
				}
			}
		}()
	}
	wg.Wait()
	if n := len(r.Recent(0)); n != 64 {
		t.Errorf("after 2000 adds: %d alerts, want the capacity 64", n)
	}
}

// TestRecentAlertsAfterAction checks that handled alerts are kept, newest
// first, with the block they caused, and that a shared ring outlives the
// Detector that filled it.
func TestRecentAlertsAfterAction(t *testing.T) {
	c := testConfig(t, func(c *config.Anomaly) {
		c.Block.Enabled = true
		c.Block.Duration = config.Duration(10 * time.Minute)
	})
	ring := NewAlertRing(10)
	m := NewMemory(0, func() time.Time { return t0 })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := New(c, Options{Blocker: m, Log: quiet, Recent: ring, Now: func() time.Time { return t0 }})
	if got := d.RecentAlerts(0); len(got) != 0 {
		t.Fatalf("alerts before any traffic: %v", got)
	}
	for i := range 25 {
		d.Observe(Observation{At: t0.Add(time.Duration(i) * time.Millisecond), ClientIP: ip("203.0.113.5"), Status: 401, ReasonID: "basic_invalid"})
	}
	for _, a := range drain(d) {
		d.act(a) // what the worker does, without a goroutine
	}
	got := d.RecentAlerts(5)
	if len(got) != 1 {
		t.Fatalf("alerts %+v, want one auth_failures alert", got)
	}
	a := got[0]
	if a.Detector != DetectorAuthFailures || a.SubjectKind != KindIP || a.Subject != "203.0.113.5" {
		t.Errorf("alert %+v", a)
	}
	if want := a.At.Add(10 * time.Minute); !a.BlockedUntil.Equal(want) {
		t.Errorf("BlockedUntil %v, want %v", a.BlockedUntil, want)
	}
	d2 := New(c, Options{Log: quiet, Recent: ring})
	if got := d2.RecentAlerts(0); len(got) != 1 || got[0].Subject != "203.0.113.5" {
		t.Errorf("a Detector sharing the ring sees %+v", got)
	}
	if got := New(c, Options{Log: quiet}).RecentAlerts(0); len(got) != 0 {
		t.Errorf("a Detector with its own ring sees %+v", got)
	}
}
