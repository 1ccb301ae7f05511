package audit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// Options holds what New needs besides the configuration.
type Options struct {
	Log     *slog.Logger     // process log for delivery problems; default slog.Default()
	BaseDir string           // relative audit.dir and file paths are taken from here: the configuration file's directory
	Now     func() time.Time // clock of chain-start events and file rotation; default time.Now
	Stdout  io.Writer        // where the stdout sink writes; default os.Stdout
}

// Auditor records audit events and delivers them to its sinks. New opens
// everything (the directory lock, the chain state, each sink's spool);
// Start starts delivery; Close flushes and releases. Record is safe for
// concurrent use and never blocks. A nil *Auditor records nothing, so
// callers need no check.
type Auditor struct {
	log   *slog.Logger
	now   func() time.Time
	host  string
	queue chan *[]byte
	pool  sync.Pool

	mu      sync.RWMutex // Record holds it shared; Close exclusively to stop intake
	closed  bool
	startMu sync.Mutex
	started bool

	chain     chain
	state     *stateFile
	startInfo *ChainInfo
	pipes     []*pipe
	lock      *os.File
	stop      chan struct{}
	chainDone chan struct{}
	stateErr  bool // a state write failed (logged once)

	recorded    atomic.Uint64
	dropped     atomic.Uint64
	lastSeq     atomic.Uint64 // the chain's sequence, published for Stats
	dropWarn    atomic.Int64  // unix nanos of the last queue-full log line
	reported    uint64        // drops already told in an audit_events_dropped event
	closeOnce   sync.Once
	closeResult error
}

// Stats are the Auditor's counters, for metrics. Counters only grow.
type Stats struct {
	QueueDepth    int    // events waiting for the chain goroutine
	QueueCapacity int    // audit.queue_size
	Recorded      uint64 // events accepted by Record
	Dropped       uint64 // events Record refused: queue full, or after Close
	Sequence      uint64 // event.sequence of the last event chained
	Sinks         []SinkStats
}

// SinkStats are one sink's counters.
type SinkStats struct {
	Name, Type          string
	MemoryDepth         int    // events waiting in memory
	SpoolBytes          int64  // bytes in the spool on disk
	SpoolEvents         int64  // events in the spool not yet delivered
	Delivered           uint64 // events the sink accepted
	Failures            uint64 // failed delivery attempts (each retried)
	Rejected            uint64 // events dropped because the sink refused them for good (HTTP 400, 413, 422)
	Dropped             uint64 // events dropped because the spool was full, could not be written, or lost a segment
	SpoolDiscardedBytes int64  // bytes cut from the spool as torn or corrupt (after a crash)
}

// New builds an Auditor from a configuration block (defaults are applied to
// a copy; problems are reported as an error, with audit. field paths). It takes an exclusive lock on
// the audit directory, reads the chain state, opens each sink's spool (cut
// to its last good record) and each sink's destination settings. It starts
// nothing; an error leaves nothing open.
func New(cfg config.Audit, o Options) (_ *Auditor, err error) {
	// Defaults go into a deep copy: the caller's configuration is not ours.
	cfg.Sinks = append([]config.AuditSink(nil), cfg.Sinks...)
	for i := range cfg.Sinks {
		s := &cfg.Sinks[i]
		if s.File != nil {
			f := *s.File
			s.File = &f
		}
		if s.Syslog != nil {
			y := *s.Syslog
			s.Syslog = &y
		}
		if s.HTTP != nil {
			h := *s.HTTP
			s.HTTP = &h
		}
	}
	cfg.ApplyDefaults()
	if ps := cfg.Validate(); len(ps) > 0 {
		errs := make([]error, len(ps))
		for i, p := range ps {
			errs[i] = fmt.Errorf("audit.%s: %s", p.Path, p.Msg)
		}
		return nil, errors.Join(errs...)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	a := &Auditor{log: o.Log, now: o.Now, host: cfg.Hostname, queue: make(chan *[]byte, cfg.QueueSize),
		stop: make(chan struct{}), chainDone: make(chan struct{})}
	a.pool.New = func() any { b := make([]byte, 0, 2048); return &b }
	if a.host == "" {
		a.host, _ = os.Hostname()
	}
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	dir := resolve(o.BaseDir, cfg.Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating audit directory: %w", err)
	}
	if a.lock, err = lockDir(dir); err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { unlockDir(a.lock) })

	anySync := false
	for _, s := range cfg.Sinks {
		anySync = anySync || s.Sync
	}
	st, prev, reason, err := openState(filepath.Join(dir, "chain.state"), anySync)
	if err != nil {
		return nil, err
	}
	a.state = st
	cleanup = append(cleanup, func() { st.f.Close() })
	if reason == "state_lost" {
		a.log.Error("audit chain state is damaged; a new chain starts and moat audit verify will report the break", "file", st.f.Name())
	}
	var key []byte
	if cfg.Key.IsSet() {
		key = []byte(cfg.Key.Value())
	}
	a.startInfo = startChain(&a.chain, prev, reason, key)

	for _, sc := range cfg.Sinks {
		sk, err := a.buildSink(sc, o)
		if err != nil {
			return nil, fmt.Errorf("audit sink %s: %w", sc.Name, err)
		}
		cleanup = append(cleanup, func() { sk.close() })
		sp, err := openSpool(filepath.Join(dir, "spool", sc.Name), int64(sc.SpoolMaxSize), sc.Sync, a.log.With("sink", sc.Name))
		if err != nil {
			return nil, fmt.Errorf("audit sink %s: %w", sc.Name, err)
		}
		cleanup = append(cleanup, func() { sp.close() })
		if n := sp.records.Load(); n > 0 {
			a.log.Info("audit spool holds undelivered events; delivering them first", "sink", sc.Name, "events", n, "bytes", sp.size.Load())
		}
		a.pipes = append(a.pipes, newPipe(sc.Name, sc.Type, sk, sp, pipeConfig{
			batchN: sc.BatchSize, batchBytes: int(sc.BatchBytes), memN: sc.MemoryQueue,
			linger: sc.FlushInterval.D(), retryMin: sc.RetryInitial.D(), retryMax: sc.RetryMax.D(),
		}, a.log))
	}
	return a, nil
}

func resolve(base, p string) string {
	if filepath.IsAbs(p) || base == "" {
		return p
	}
	return filepath.Join(base, p)
}

func (a *Auditor) buildSink(sc config.AuditSink, o Options) (sink, error) {
	switch sc.Type {
	case "stdout":
		return &stdoutSink{w: o.Stdout}, nil
	case "file":
		f := sc.File
		s := newFileSink(resolve(o.BaseDir, f.Path), int64(f.MaxSize), f.MaxAge.D(), f.KeepFiles, f.KeepFor.D(), f.Compress, sc.Sync, o.Now, a.log.With("sink", sc.Name))
		if err := s.start(); err != nil {
			return nil, err
		}
		return s, nil
	case "syslog":
		y := sc.Syslog
		var tc *tls.Config
		if y.Transport == "tls" {
			var err error
			if tc, err = clientTLS(y.TLS); err != nil {
				return nil, err
			}
		}
		return newSyslogSink(y.Address, tc, y.DialTimeout.D(), y.WriteTimeout.D(), config.SyslogFacilities[y.Facility], a.host, y.AppName), nil
	case "http":
		h := sc.HTTP
		var tc *tls.Config
		if h.URL.Scheme == "https" {
			var err error
			if tc, err = clientTLS(h.TLS); err != nil {
				return nil, err
			}
		}
		return newHTTPSink(h.URL.String(), h.Format, h.Token.Value(), tc, h.Timeout.D(), a.host, h.Index, h.Source, h.SourceType), nil
	}
	return nil, fmt.Errorf("unknown sink type %q", sc.Type)
}

// Start starts the chain goroutine, which first records an
// audit_chain_start event, and one delivery goroutine per sink; spooled
// events from an earlier run are delivered first. Calling it again does
// nothing.
func (a *Auditor) Start() {
	if a == nil {
		return
	}
	a.startMu.Lock()
	defer a.startMu.Unlock()
	if a.started {
		return
	}
	a.started = true
	for _, p := range a.pipes {
		go p.run()
	}
	go a.runChain()
}

// Record encodes ev and queues it for the sinks. It never blocks: when the
// queue is full, or after Close, the event is counted as dropped, logged at
// most every 10 seconds, and the next event chained is an
// audit_events_dropped event saying how many. It keeps no reference to ev.
// Safe for concurrent use.
func (a *Auditor) Record(ev *Event) {
	if a == nil {
		return
	}
	bp := a.pool.Get().(*[]byte)
	*bp = appendEvent((*bp)[:0], ev, a.host)
	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		a.dropped.Add(1)
		a.put(bp)
		return
	}
	select {
	case a.queue <- bp:
		a.recorded.Add(1)
		a.mu.RUnlock()
	default:
		a.mu.RUnlock()
		a.put(bp)
		n := a.dropped.Add(1)
		now := time.Now().UnixNano()
		if last := a.dropWarn.Load(); now-last >= int64(10*time.Second) && a.dropWarn.CompareAndSwap(last, now) {
			a.log.Error("audit queue full: events are being dropped (see audit_events_dropped events and the dropped counter)",
				"queue_size", cap(a.queue), "dropped_total", n)
		}
	}
}

// RecordExchange records the event of a finished exchange (FromExchange
// with the current time). Call it once per exchange, after the response
// was written, on the goroutine that served it.
func (a *Auditor) RecordExchange(ex *gateway.Exchange) {
	if a == nil {
		return
	}
	ev := FromExchange(ex, time.Now())
	a.Record(&ev)
}

func (a *Auditor) put(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		a.pool.Put(bp)
	}
}

// chainBatch is how many queued events the chain goroutine takes at once.
const chainBatch = 256

// runChain numbers, chains and fans out events until Close.
func (a *Auditor) runChain() {
	defer close(a.chainDone)
	lines := make([][]byte, 0, chainBatch+1)
	start := Event{Time: a.now(), Action: ActionChainStart, Category: "process", Types: [2]string{"start"}, Outcome: OutcomeSuccess,
		Message: "audit chain started", Chain: a.startInfo}
	lines = append(lines, a.seal(&start))
	a.fanOut(lines)
	for {
		select {
		case bp := <-a.queue:
			a.fanOut(a.collect(bp, lines[:0]))
		case <-a.stop:
			// Close holds intake shut: drain what is queued.
			for {
				select {
				case bp := <-a.queue:
					a.fanOut(a.collect(bp, lines[:0]))
					continue
				default:
				}
				break
			}
			if err := a.state.close(&a.chain); err != nil {
				a.log.Error("audit chain state could not be saved; the next start begins a new chain", "error", err)
			}
			for _, p := range a.pipes {
				p.stop()
			}
			return
		}
	}
}

// collect chains bp and whatever else is queued (up to chainBatch), after
// an audit_events_dropped event when Record dropped events since the last.
func (a *Auditor) collect(bp *[]byte, lines [][]byte) [][]byte {
	if d := a.dropped.Load(); d > a.reported {
		ev := Event{Time: a.now(), Action: ActionEventsDropped, Category: "process", Types: [2]string{"info"}, Outcome: OutcomeFailure,
			Message: "audit events were dropped: the queue was full", Dropped: d - a.reported}
		a.reported = d
		lines = append(lines, a.seal(&ev))
	}
	lines = append(lines, a.chain.seal(*bp))
	a.put(bp)
	for len(lines) < chainBatch {
		select {
		case bp := <-a.queue:
			lines = append(lines, a.chain.seal(*bp))
			a.put(bp)
			continue
		default:
		}
		break
	}
	return lines
}

func (a *Auditor) seal(ev *Event) []byte {
	var buf [2048]byte
	return a.chain.seal(appendEvent(buf[:0], ev, a.host))
}

// fanOut saves the chain state, then gives every sink the lines. The state
// goes first: should the process die in between, the next start links to
// events that were never delivered (a gap the verifier reports), rather than
// numbering new events with sequences already used.
func (a *Auditor) fanOut(lines [][]byte) {
	a.lastSeq.Store(a.chain.seq)
	if err := a.state.write(&a.chain); err != nil && !a.stateErr {
		a.stateErr = true
		a.log.Error("audit chain state could not be saved", "error", err)
	}
	for _, p := range a.pipes {
		p.push(lines)
	}
}

// Close stops intake (later Records count as dropped), chains what is
// queued, and lets every sink deliver what it holds until ctx is done; a
// sink that fails during shutdown is not retried. Whatever is left goes to
// the sinks' spools, delivered first at the next start. Close then releases
// files, connections and the directory lock. It returns errors from saving
// state and closing sinks; later calls return the same.
func (a *Auditor) Close(ctx context.Context) error {
	if a == nil {
		return nil
	}
	a.closeOnce.Do(func() { a.closeResult = a.close(ctx) })
	return a.closeResult
}

func (a *Auditor) close(ctx context.Context) error {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.Start()
	close(a.stop)
	<-a.chainDone
	for _, p := range a.pipes {
		select {
		case <-p.done:
		case <-ctx.Done():
			for _, q := range a.pipes {
				q.cancel()
			}
			<-p.done
		}
	}
	var errs []error
	for _, p := range a.pipes {
		p.cancel()
		if err := p.sink.close(); err != nil {
			errs = append(errs, fmt.Errorf("closing audit sink %s: %w", p.name, err))
		}
		if err := p.spool.close(); err != nil {
			errs = append(errs, fmt.Errorf("closing audit spool %s: %w", p.name, err))
		}
		if n := p.spool.records.Load(); n > 0 {
			a.log.Warn("audit events kept in the spool for the next start", "sink", p.name, "events", n)
		}
	}
	unlockDir(a.lock)
	return errors.Join(errs...)
}

// Stats returns the current counters. Safe for concurrent use.
func (a *Auditor) Stats() Stats {
	if a == nil {
		return Stats{}
	}
	s := Stats{QueueDepth: len(a.queue), QueueCapacity: cap(a.queue), Recorded: a.recorded.Load(), Dropped: a.dropped.Load()}
	s.Sequence = a.lastSeq.Load()
	for _, p := range a.pipes {
		p.mu.Lock()
		depth := p.ring.len()
		p.mu.Unlock()
		s.Sinks = append(s.Sinks, SinkStats{
			Name: p.name, Type: p.kind, MemoryDepth: depth,
			SpoolBytes: p.spool.size.Load(), SpoolEvents: p.spool.records.Load(),
			Delivered: p.delivered.Load(), Failures: p.failures.Load(), Rejected: p.rejected.Load(),
			Dropped:             p.dropped.Load() + uint64(p.spool.lost.Load()),
			SpoolDiscardedBytes: p.spool.discarded.Load(),
		})
	}
	return s
}
