package audit

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// pipe delivers events to one sink, in order, at least once.
//
// Events wait in a bounded memory queue. When it is full, or a delivery
// fails, the pipe spills: the failed batch and everything queued go to the
// sink's spool on disk, and new events follow them there until the spool
// has been delivered completely; then the memory queue takes over again. So
// the order is kept, and what the sink could not take is on disk while it
// is down. A spool batch is acked (taken off the spool) only after the sink
// accepted it.
//
// push is called by the chain goroutine; run by the pipe's own goroutine.
type pipe struct {
	name, kind string
	sink       sink
	spool      *spool
	log        *slog.Logger

	batchN     int
	batchBytes int
	linger     time.Duration
	retryMin   time.Duration
	retryMax   time.Duration

	mu      sync.Mutex
	ring    ring
	spooled bool      // the spool holds events older than any in memory
	firstAt time.Time // when the oldest event in memory arrived

	wake      chan struct{} // an event arrived
	stopping  chan struct{} // no more events will arrive: deliver the rest, then stop
	abort     chan struct{} // stop now: keep what is left in the spool
	abortOnce sync.Once
	done      chan struct{}

	delivered atomic.Uint64
	failures  atomic.Uint64
	rejected  atomic.Uint64
	dropped   atomic.Uint64

	failing  bool // last attempt failed (owned by run)
	lastWarn time.Time
	dropWarn atomic.Int64 // unix nanos of the last drop warning
}

type pipeConfig struct {
	batchN, batchBytes, memN   int
	linger, retryMin, retryMax time.Duration
}

func newPipe(name, kind string, sk sink, sp *spool, c pipeConfig, log *slog.Logger) *pipe {
	p := &pipe{name: name, kind: kind, sink: sk, spool: sp, log: log.With("sink", name),
		batchN: c.batchN, batchBytes: c.batchBytes, linger: c.linger, retryMin: c.retryMin, retryMax: c.retryMax,
		ring: newRing(c.memN), wake: make(chan struct{}, 1), stopping: make(chan struct{}), abort: make(chan struct{}), done: make(chan struct{})}
	p.spooled = !sp.empty()
	return p
}

// push queues lines (shared, never modified) in memory, or in the spool when
// the pipe is spooling or memory is full.
func (p *pipe) push(lines [][]byte) {
	p.mu.Lock()
	i := 0
	if !p.spooled {
		for ; i < len(lines) && p.ring.len() < p.ring.cap(); i++ {
			if p.ring.len() == 0 {
				p.firstAt = time.Now()
			}
			p.ring.push(lines[i])
		}
	}
	if i < len(lines) {
		var spill [][]byte
		if !p.spooled {
			spill = p.ring.drain(nil)
			p.spooled = true
		}
		spill = append(spill, lines[i:]...)
		p.toSpool(spill, false)
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// toSpool writes events to the spool, before what it holds when front is
// set; events that do not fit or cannot be written are counted and logged.
// p.mu is held.
func (p *pipe) toSpool(recs [][]byte, front bool) {
	var n int
	var err error
	if front {
		n, err = p.spool.prepend(recs)
	} else {
		n, err = p.spool.append(recs)
	}
	if n == 0 {
		if err != nil {
			p.log.Error("audit spool: write not synced to disk", "error", err)
		}
		return
	}
	p.dropped.Add(uint64(n))
	now := time.Now()
	last := p.dropWarn.Load()
	if now.UnixNano()-last >= int64(10*time.Second) && p.dropWarn.CompareAndSwap(last, now.UnixNano()) {
		msg := "audit events dropped: the sink's spool is full"
		if !errors.Is(err, errSpoolFull) {
			msg = "audit events dropped: the sink's spool cannot be written"
		}
		p.log.Error(msg, "dropped", n, "dropped_total", p.dropped.Load(), "spool_bytes", p.spool.size.Load(), "error", err)
	}
}

// batch is a set of events on its way to the sink.
type batch struct {
	lines     [][]byte
	fromSpool bool
	cur       cursor
}

// run delivers until stopping has been closed and everything was delivered,
// or until abort; what is left then stays in the spool.
func (p *pipe) run() {
	defer close(p.done)
	defer p.spillMemory()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.abort:
			cancel()
		case <-p.done:
		}
	}()
	attempt := 0
	for {
		b, ok := p.next()
		if !ok {
			return
		}
		err := p.sink.send(ctx, b.lines)
		var perm *permanentError
		switch {
		case err == nil:
			p.commit(b)
			p.delivered.Add(uint64(len(b.lines)))
			if p.failing {
				p.failing = false
				p.log.Info("audit sink delivers again", "failed_attempts", attempt)
			}
			attempt = 0
			continue
		case errors.As(err, &perm):
			p.commit(b)
			p.rejected.Add(uint64(len(b.lines)))
			p.log.Error("audit sink refused a batch for good; its events are dropped", "events", len(b.lines), "error", err)
			continue
		}
		p.failures.Add(1)
		attempt++
		if !b.fromSpool {
			p.spillBatch(b.lines)
		}
		now := time.Now()
		if !p.failing || now.Sub(p.lastWarn) >= 30*time.Second {
			p.log.Warn("audit sink delivery failed; events wait in the spool", "error", err, "attempt", attempt,
				"spool_bytes", p.spool.size.Load())
			p.lastWarn = now
		}
		p.failing = true
		select {
		case <-p.stopping:
			return // shutting down: no retries, the rest stays in the spool
		default:
		}
		if !p.sleep(p.backoff(attempt)) && isClosed(p.abort) {
			return
		}
	}
}

// backoff is the wait before attempt n+1: exponential from retryMin up to
// retryMax, with "equal jitter" (half fixed, half random) so that many
// gateways do not retry in step.
func (p *pipe) backoff(n int) time.Duration {
	d := p.retryMin
	for i := 1; i < n && d < p.retryMax; i++ {
		d *= 2
	}
	d = min(d, p.retryMax)
	return d/2 + rand.N(d/2+1)
}

// next returns the next batch: from the spool while it holds events, else
// from memory once a batch is full or has waited linger. It returns false
// when the pipe must stop.
func (p *pipe) next() (batch, bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-p.abort:
			return batch{}, false
		default:
		}
		stopping := isClosed(p.stopping)
		var wait <-chan time.Time
		p.mu.Lock()
		if p.spooled {
			lines, cur, err := p.spool.read(p.batchN, p.batchBytes)
			if err != nil && len(lines) == 0 {
				p.mu.Unlock()
				p.log.Error("audit spool: reading failed; retrying", "error", err)
				if !p.sleep(p.retryMax) {
					return batch{}, false
				}
				continue
			}
			if len(lines) > 0 {
				p.mu.Unlock()
				return batch{lines: lines, fromSpool: true, cur: cur}, true
			}
			if p.spool.empty() {
				p.spooled = false
			}
		}
		if n := p.ring.len(); n > 0 {
			age := time.Since(p.firstAt)
			if n >= p.batchN || p.ring.bytes >= p.batchBytes || p.linger <= 0 || age >= p.linger || stopping {
				lines := p.ring.take(p.batchN, p.batchBytes)
				if p.ring.len() > 0 {
					p.firstAt = time.Now()
				}
				p.mu.Unlock()
				return batch{lines: lines}, true
			}
			if timer == nil {
				timer = time.NewTimer(p.linger - age)
			} else {
				timer.Reset(p.linger - age)
			}
			wait = timer.C
		} else if stopping && !p.spooled {
			p.mu.Unlock()
			return batch{}, false
		}
		p.mu.Unlock()
		select {
		case <-p.wake:
		case <-wait:
		case <-p.stopping:
		case <-p.abort:
			return batch{}, false
		}
	}
}

// sleep waits for d, or less when the pipe is told to stop; it returns
// false when the pipe must stop at once.
func (p *pipe) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.stopping:
		return false
	case <-p.abort:
		return false
	}
}

// commit takes a delivered (or refused) batch off the spool.
func (p *pipe) commit(b batch) {
	if !b.fromSpool {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.spool.ack(b.cur); err != nil {
		p.log.Error("audit spool: recording delivery failed; events may be delivered twice", "error", err)
	}
}

// spillBatch moves a batch from memory that failed into the spool, ahead of
// everything newer: in front of the spool when newer events went there in
// the meantime, else followed by the memory queue.
func (p *pipe) spillBatch(lines [][]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.spooled {
		p.toSpool(lines, true)
		return
	}
	p.toSpool(p.ring.drain(lines), false)
	p.spooled = true
}

// spillMemory keeps what is still in memory when the pipe stops.
func (p *pipe) spillMemory() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ring.len() > 0 {
		p.toSpool(p.ring.drain(nil), false)
		p.spooled = true
	}
}

// stop asks the pipe to deliver what it has and return.
func (p *pipe) stop() { close(p.stopping) }

// cancel makes the pipe stop at once, keeping the rest in its spool.
func (p *pipe) cancel() { p.abortOnce.Do(func() { close(p.abort) }) }

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// ring is a bounded FIFO of event lines.
type ring struct {
	buf   [][]byte
	head  int
	n     int
	bytes int
}

func newRing(n int) ring { return ring{buf: make([][]byte, n)} }

func (r *ring) len() int { return r.n }
func (r *ring) cap() int { return len(r.buf) }

func (r *ring) push(l []byte) {
	r.buf[(r.head+r.n)%len(r.buf)] = l
	r.n++
	r.bytes += len(l)
}

// take removes up to max lines (and about maxBytes, at least one) from the
// front, into a new slice.
func (r *ring) take(max, maxBytes int) [][]byte {
	out := make([][]byte, 0, min(max, r.n))
	total := 0
	for r.n > 0 && len(out) < max && (len(out) == 0 || total+len(r.buf[r.head]) <= maxBytes) {
		l := r.buf[r.head]
		r.buf[r.head] = nil
		r.head = (r.head + 1) % len(r.buf)
		r.n--
		r.bytes -= len(l)
		total += len(l)
		out = append(out, l)
	}
	return out
}

// drain removes every line, appending them to dst.
func (r *ring) drain(dst [][]byte) [][]byte {
	for r.n > 0 {
		l := r.buf[r.head]
		r.buf[r.head] = nil
		r.head = (r.head + 1) % len(r.buf)
		r.n--
		dst = append(dst, l)
	}
	r.bytes = 0
	return dst
}
