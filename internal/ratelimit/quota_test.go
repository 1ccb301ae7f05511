package ratelimit

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestQuotaWindow(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	tests := []struct {
		desc       string
		q          Quota
		now        time.Time
		id         string
		start, end time.Time
	}{
		{desc: "utc day", q: Quota{Limit: 1, Period: Day}, now: time.Date(2026, 11, 21, 23, 59, 59, 999, time.UTC),
			id: "20261121", start: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC), end: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)},
		{desc: "utc month in december", q: Quota{Limit: 1, Period: Month}, now: time.Date(2026, 12, 31, 12, 0, 0, 0, time.UTC),
			id: "202612", start: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), end: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{desc: "tokyo is already tomorrow", q: Quota{Limit: 1, Period: Day, Location: tokyo}, now: time.Date(2026, 11, 21, 15, 30, 0, 0, time.UTC),
			id: "20261122", start: time.Date(2026, 11, 22, 0, 0, 0, 0, tokyo), end: time.Date(2026, 11, 23, 0, 0, 0, 0, tokyo)},
		{desc: "berlin day with the autumn change lasts 25h", q: Quota{Limit: 1, Period: Day, Location: berlin}, now: time.Date(2026, 10, 25, 12, 0, 0, 0, berlin),
			id: "20261025", start: time.Date(2026, 10, 24, 22, 0, 0, 0, time.UTC), end: time.Date(2026, 10, 25, 23, 0, 0, 0, time.UTC)},
		{desc: "berlin month of february in a leap year", q: Quota{Limit: 1, Period: Month, Location: berlin}, now: time.Date(2028, 2, 29, 23, 30, 0, 0, berlin),
			id: "202802", start: time.Date(2028, 1, 31, 23, 0, 0, 0, time.UTC), end: time.Date(2028, 2, 29, 23, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			id, start, end := tt.q.Window(tt.now)
			if id != tt.id || !start.Equal(tt.start) || !end.Equal(tt.end) {
				t.Fatalf("got %s [%v, %v), want %s [%v, %v)", id, start.UTC(), end.UTC(), tt.id, tt.start.UTC(), tt.end.UTC())
			}
			if tt.now.Before(start) || !tt.now.Before(end) {
				t.Fatalf("now %v outside its window", tt.now)
			}
		})
	}
}

// quotaCheck is a check of q at now, keyed like the stage keys it.
func quotaCheck(name string, q Quota, now time.Time, cost int64) Check {
	id, _, end := q.Window(now)
	return Check{Key: name + ":" + id, Kind: KindQuota, Quota: q.Limit, WindowEnd: end.UnixNano(), Cost: cost}
}

// TestMemoryQuota walks a daily quota through a day, a refusal that charges
// nothing, the reset at midnight in its time zone, and the janitor.
func TestMemoryQuota(t *testing.T) {
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	m := NewMemory(MemoryOptions{SweepInterval: -1})
	ctx := context.Background()
	q := Quota{Limit: 3, Period: Day, Location: tokyo}
	day := time.Date(2026, 11, 21, 9, 0, 0, 0, tokyo)
	midnight := time.Date(2026, 11, 22, 0, 0, 0, 0, tokyo)
	tests := []struct {
		desc      string
		at        time.Time
		cost      int64
		allowed   bool
		remaining int64
	}{
		{desc: "first", at: day, allowed: true, remaining: 2},
		{desc: "cost two", at: day.Add(time.Hour), cost: 2, allowed: true, remaining: 0},
		{desc: "exhausted", at: day.Add(2 * time.Hour), allowed: false, remaining: 0},
		{desc: "still exhausted a nanosecond before midnight", at: midnight.Add(-1), allowed: false, remaining: 0},
		{desc: "midnight in tokyo starts a new day", at: midnight, allowed: true, remaining: 2},
	}
	for _, tt := range tests {
		res := make([]Result, 1)
		ok, err := m.Allow(ctx, tt.at, []Check{quotaCheck("daily", q, tt.at, tt.cost)}, res)
		if err != nil {
			t.Fatal(err)
		}
		if ok != tt.allowed || res[0].Remaining != tt.remaining {
			t.Fatalf("%s: allowed %v %+v, want %v remaining %d", tt.desc, ok, res[0], tt.allowed, tt.remaining)
		}
		if !ok {
			if want := midnight.Sub(tt.at); res[0].RetryAfter != want || res[0].ResetAfter != want {
				t.Fatalf("%s: retry %v reset %v, want %v (until midnight)", tt.desc, res[0].RetryAfter, res[0].ResetAfter, want)
			}
		}
	}
	if n := m.Sweep(midnight.Add(-time.Second)); n != 0 {
		t.Fatalf("swept %d keys before their window ended", n)
	}
	if n := m.Sweep(midnight.Add(time.Second)); n != 1 {
		t.Fatalf("swept %d keys after the first window ended, want 1", n)
	}
}

// TestMemoryQuotaAllOrNothing checks that a quota and a rate limit on one
// request are charged together or not at all.
func TestMemoryQuotaAllOrNothing(t *testing.T) {
	m := NewMemory(MemoryOptions{SweepInterval: -1})
	ctx := context.Background()
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	q := Quota{Limit: 2, Period: Month}
	rate := Check{Key: "rate:a", Limit: Limit{Rate: 1, Period: time.Hour, Burst: 1}}
	res := make([]Result, 2)

	// The rate limit refuses the second request: the quota keeps its count.
	if ok, _ := m.Allow(ctx, now, []Check{quotaCheck("q", q, now, 1), rate}, res); !ok {
		t.Fatal("first request refused")
	}
	if ok, _ := m.Allow(ctx, now, []Check{quotaCheck("q", q, now, 1), rate}, res); ok {
		t.Fatal("second request admitted past the rate limit")
	}
	if !res[0].Allowed || res[0].Remaining != 1 {
		t.Fatalf("the quota was charged by a refused request: %+v", res[0])
	}
	// Later, the quota refuses: the rate limit is not charged.
	later := now.Add(time.Hour)
	if ok, _ := m.Allow(ctx, later, []Check{quotaCheck("q", q, later, 1), rate}, res); !ok {
		t.Fatal("third request refused")
	}
	muchLater := later.Add(time.Hour)
	if ok, _ := m.Allow(ctx, muchLater, []Check{quotaCheck("q", q, muchLater, 1), rate}, res); ok {
		t.Fatal("admitted past the quota")
	}
	if !res[1].Allowed || res[1].Remaining != 1 {
		t.Fatalf("the rate limit was charged by a request the quota refused: %+v", res[1])
	}
}

// TestQuotaFileSurvivesRestart charges a quota, closes the file as a
// shutdown does, and checks that a new process (a new Memory) continues the
// count, and that a window that ended meanwhile starts from zero.
func TestQuotaFileSurvivesRestart(t *testing.T) {
	path := t.TempDir() + "/quotas.db"
	ctx := context.Background()
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	q := Quota{Limit: 5, Period: Day}
	charge := func(m *Memory, n int) (admitted int) {
		for range n {
			res := make([]Result, 1)
			if ok, err := m.Allow(ctx, now, []Check{quotaCheck("daily:alice", q, now, 1)}, res); err != nil {
				t.Fatal(err)
			} else if ok {
				admitted++
			}
		}
		return admitted
	}

	m1 := NewMemory(MemoryOptions{SweepInterval: -1})
	f1, err := OpenQuotaFile(path, m1, QuotaFileOptions{FlushInterval: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if got := charge(m1, 3); got != 3 {
		t.Fatalf("admitted %d of 3", got)
	}
	if err := f1.Close(); err != nil {
		t.Fatal(err)
	}

	m2 := NewMemory(MemoryOptions{SweepInterval: -1})
	f2, err := OpenQuotaFile(path, m2, QuotaFileOptions{FlushInterval: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if got := charge(m2, 5); got != 2 {
		t.Fatalf("after a restart, admitted %d more, want the 2 left of 5", got)
	}
	if err := f2.Flush(); err != nil { // as the background flush would
		t.Fatal(err)
	}
	if err := f2.Close(); err != nil {
		t.Fatal(err)
	}

	now = now.Add(24 * time.Hour) // the next day: the saved window ended
	m3 := NewMemory(MemoryOptions{SweepInterval: -1})
	f3, err := OpenQuotaFile(path, m3, QuotaFileOptions{FlushInterval: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer f3.Close()
	if m3.Len() != 0 {
		t.Fatalf("loaded %d counters of an ended window", m3.Len())
	}
	if got := charge(m3, 6); got != 5 {
		t.Fatalf("a new day admitted %d, want 5", got)
	}
}

// TestQuotaFileBackgroundFlush checks that the flush loop writes charges
// without a Close, so a crash loses at most one interval.
func TestQuotaFileBackgroundFlush(t *testing.T) {
	path := t.TempDir() + "/quotas.db"
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	q := Quota{Limit: 10, Period: Month}
	m := NewMemory(MemoryOptions{SweepInterval: -1})
	f, err := OpenQuotaFile(path, m, QuotaFileOptions{FlushInterval: 10 * time.Millisecond, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res := make([]Result, 1)
	for range 4 {
		m.Allow(context.Background(), now, []Check{quotaCheck("monthly:bob", q, now, 1)}, res)
	}
	id, _, end := q.Window(now)
	want := end.UnixNano() + 4
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got int64
		f.db.View(func(tx *bolt.Tx) error {
			if v := tx.Bucket(quotaBucket).Get([]byte("monthly:bob:" + id)); len(v) == 8 {
				got = int64(binary.BigEndian.Uint64(v))
			}
			return nil
		})
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("file holds %d, want %d (4 used) after background flushes", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestQuotaFileSavesEachCounter is the regression test for a flush that
// reused one value buffer for every Put: bbolt keeps the slice until the
// transaction commits, so every counter was saved with the last one's value.
func TestQuotaFileSavesEachCounter(t *testing.T) {
	path := t.TempDir() + "/quotas.db"
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	q := Quota{Limit: 100, Period: Day}
	m1 := NewMemory(MemoryOptions{SweepInterval: -1})
	f1, err := OpenQuotaFile(path, m1, QuotaFileOptions{FlushInterval: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	res := make([]Result, 1)
	for i, user := range []string{"a", "b", "c"} {
		for range i + 1 {
			m1.Allow(context.Background(), now, []Check{quotaCheck("q:"+user, q, now, 1)}, res)
		}
	}
	if err := f1.Close(); err != nil {
		t.Fatal(err)
	}
	m2 := NewMemory(MemoryOptions{SweepInterval: -1})
	f2, err := OpenQuotaFile(path, m2, QuotaFileOptions{FlushInterval: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	for i, user := range []string{"a", "b", "c"} {
		m2.Allow(context.Background(), now, []Check{quotaCheck("q:"+user, q, now, 1)}, res)
		if want := int64(100 - (i + 2)); res[0].Remaining != want {
			t.Errorf("user %s: remaining %d after a restart, want %d", user, res[0].Remaining, want)
		}
	}
}

// BenchmarkMemoryQuota is one request meeting a daily quota and a rate
// limit in the memory store: the quota window computed, both checked and
// charged together.
func BenchmarkMemoryQuota(b *testing.B) {
	m := NewMemory(MemoryOptions{SweepInterval: -1})
	q := Quota{Limit: MaxQuota, Period: Day, Location: time.UTC}
	rate := Check{Key: "rate:alice", Limit: Limit{Rate: 1_000_000_000, Period: time.Second, Burst: 1_000_000_000}}
	res := make([]Result, 2)
	ctx := context.Background()
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		at := now.Add(time.Duration(i))
		checks := [2]Check{quotaCheck("daily:alice", q, at, 1), rate}
		if ok, err := m.Allow(ctx, at, checks[:], res); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
