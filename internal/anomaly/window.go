package anomaly

import (
	"math"
	"time"
)

// buckets is the number of buckets of a sliding window: a window of 5m
// counts in 30s buckets, so an event leaves the count between window-30s and
// window after it happened.
const buckets = 10

// window counts events in the last n bucket widths. Time is given as a
// bucket index (unix nanoseconds / width), so the caller injects time. The
// zero value is an empty window. It is not safe for concurrent use.
type window struct {
	count [buckets]uint32
	epoch [buckets]int64 // bucket index each slot holds
}

// add counts n events in bucket idx and returns the window's total ending
// with that bucket. An event older than the whole window (its slot already
// holds a later bucket) is not counted: observations arrive roughly in
// order, and a late one must not wipe a newer bucket.
func (w *window) add(idx int64, n uint32) uint32 {
	s := (idx%buckets + buckets) % buckets // times before 1970 stay in range
	if w.epoch[s] > idx {
		return w.sum(idx)
	}
	if w.epoch[s] != idx {
		w.epoch[s], w.count[s] = idx, 0
	}
	if w.count[s] <= math.MaxUint32-n {
		w.count[s] += n
	}
	return w.sum(idx)
}

// sum returns the events in the buckets idx-buckets+1 through idx.
func (w *window) sum(idx int64) uint32 {
	var t uint64
	for s := range buckets {
		if e := w.epoch[s]; e <= idx && e > idx-buckets {
			t += uint64(w.count[s])
		}
	}
	return uint32(min(t, math.MaxUint32))
}

// bucketOf returns the bucket index of t in a window of length w.
func bucketOf(t time.Time, w time.Duration) int64 {
	return t.UnixNano() / (int64(w) / buckets)
}

// distinct tracks the distinct values (64-bit hashes) seen in the last
// window, exactly, up to limit of them: enough to tell when a threshold of
// limit is crossed. It holds at most limit entries. The zero value is
// ready; it is not safe for concurrent use.
type distinct struct {
	seen map[uint64]int64 // hash -> last seen, unix nanoseconds
}

// add records h at now and reports whether limit distinct values were seen
// within the window ending at now. It then forgets them all, so the next
// alert needs limit fresh values again.
func (d *distinct) add(h uint64, now, window int64, limit int) (int, bool) {
	if d.seen == nil {
		d.seen = make(map[uint64]int64, 8)
	}
	d.seen[h] = now
	if len(d.seen) < limit {
		return len(d.seen), false
	}
	for k, t := range d.seen {
		if t <= now-window {
			delete(d.seen, k)
		}
	}
	n := len(d.seen)
	if n < limit {
		return n, false
	}
	clear(d.seen)
	return n, true
}

// baseline is an exponentially weighted moving average of events per
// period, folded at each period boundary. It is not safe for concurrent use.
type baseline struct {
	avg     float64 // events per period
	period  int64   // index of the period cur counts
	cur     uint32  // events in the current period
	periods int64   // periods folded since the subject was first seen
}

// add counts one event in period p, folding the finished periods (and the
// empty ones in between) into the average with weight alpha.
func (b *baseline) add(p int64, alpha float64) {
	if b.period == 0 {
		b.period = p
	}
	if p > b.period {
		b.avg += alpha * (float64(b.cur) - b.avg)
		gap := p - b.period - 1
		if gap > 0 {
			b.avg *= math.Pow(1-alpha, float64(min(gap, 1<<20)))
		}
		b.periods += p - b.period
		b.period, b.cur = p, 0
	}
	if b.cur < math.MaxUint32 {
		b.cur++
	}
}
