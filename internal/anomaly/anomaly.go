// Package anomaly detects abusive traffic patterns per principal and per
// client address over sliding windows (authentication-failure spikes,
// object enumeration, volume spikes, WAF bursts), sends alerts to a webhook
// or Alertmanager, and optionally blocks the subject for a while through a
// Blocker that every instance shares. See docs/anomaly.md.
//
// The gateway calls (*Detector).Observe once per finished exchange; Observe
// never blocks on I/O: alerts and blocks are handed to a bounded queue
// served by a background goroutine.
package anomaly

import (
	"context"
	"hash/maphash"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

// Reasons the block stage refuses requests with.
const (
	ReasonTemporarilyBlocked    = "temporarily_blocked"     // 403 (or 429): the client address or principal is blocked after an alert
	ReasonBlockStoreUnavailable = "block_store_unavailable" // 503: the block store did not answer and on_store_error is fail_closed
)

// Detector names, as in the configuration and the alertname label
// (moat_<detector>).
const (
	DetectorAuthFailures = "auth_failures"
	DetectorEnumeration  = "enumeration"
	DetectorVolumeSpike  = "volume_spike"
	DetectorWAFBurst     = "waf_burst"
)

// Subject kinds: what an alert or a block is about.
const (
	KindIP        = "ip"
	KindPrincipal = "principal"
)

// Signals: what exactly was counted when a detector fired.
const (
	SignalAuthFailures    = "auth_failures"
	SignalDistinctObjects = "distinct_objects"
	SignalNotFound        = "owner_mismatch_or_404"
	SignalRequests        = "requests"
	SignalWAFHits         = "waf_hits"
)

const (
	detAuth = iota
	detEnum
	detVolume
	detWAF
	numDetectors
)

var detectorNames = [numDetectors]string{DetectorAuthFailures, DetectorEnumeration, DetectorVolumeSpike, DetectorWAFBurst}

const (
	numShards     = 32
	evictSample   = 8  // subjects looked at to choose one to evict
	maxObjectIDs  = 16 // object IDs of one observation that count
	numSamples    = 4  // recent requests kept per subject for alerts
	actionQueue   = 1024
	blockTimeout  = 2 * time.Second
	sweepInterval = time.Minute
)

// Observation is what the detector learns from one finished exchange. The
// gateway fills it with ObservationFrom.
type Observation struct {
	At           time.Time
	PrincipalKey string     // "authenticator:subject", or "" when unauthenticated
	ClientIP     netip.Addr // the real client address
	Status       int        // status sent to the client
	ReasonID     string     // reason of a denial, or ""
	RouteName    string
	ObjectIDs    []string // object identifiers touched: an owner finding, path parameter values
	WAFHit       bool     // the WAF blocked the request, or would have in detect mode
}

// Sample is one recent request of the subject, included in alerts.
type Sample struct {
	At       time.Time `json:"at"`
	Route    string    `json:"route,omitempty"`
	Status   int       `json:"status"`
	ReasonID string    `json:"reason_id,omitempty"`
}

// Alert is one detector firing for one subject.
type Alert struct {
	Detector     string
	Signal       string // what was counted (see the Signal constants)
	Severity     string
	SubjectKind  string // KindIP or KindPrincipal
	Subject      string // the principal key, the IPv4 address or the IPv6 prefix (2001:db8::/64)
	Count        int    // events in the window when it fired
	Threshold    int    // count that fires it (volume_spike: max(min_requests, factor x baseline))
	Baseline     float64
	Window       time.Duration
	At           time.Time
	EndsAt       time.Time // end of the cooldown, or of the block when later
	Sample       []Sample  // most recent first
	BlockedUntil time.Time // zero when the alert did not block
}

// Notifier receives alerts; Alerter is one. Notify must not block.
type Notifier interface {
	Notify(Alert)
}

// Options holds what a Detector needs besides its configuration.
type Options struct {
	Notifier Notifier // nil: alerts are only logged
	Blocker  Blocker  // nil: no blocks, whatever block.enabled says
	Log      *slog.Logger
	Now      func() time.Time // for the idle sweep; default time.Now
	// Recent keeps the alerts the Detector handles, for RecentAlerts; nil
	// gives the Detector a ring of its own of DefaultRecentAlerts. Share
	// one ring between the Detectors successive reloads build to keep the
	// history.
	Recent *AlertRing
}

type detectorSettings struct {
	on       bool
	block    bool
	window   time.Duration
	cooldown int64
	thresh   int
	severity string
}

// Detector watches observations and fires alerts. Build it with New, call
// Start to run its background work, Observe from any number of goroutines,
// and Close when done. A Detector is safe for concurrent use.
type Detector struct {
	det        [numDetectors]detectorSettings
	distinct   int // enumeration distinct_objects, 0 off
	factor     float64
	minReq     int
	warmup     int64 // periods of the volume window
	alpha      float64
	idleTTL    time.Duration
	ipv6Prefix int
	blockFor   time.Duration
	perShard   int

	seed   maphash.Seed
	shards [numShards]shard

	notifier Notifier
	blocker  Blocker
	recent   *AlertRing
	log      *slog.Logger
	now      func() time.Time

	actions   chan Alert
	stop      chan struct{}
	wg        sync.WaitGroup
	startOnce sync.Once
	stopOnce  sync.Once

	observed      atomic.Uint64
	fired         [numDetectors]atomic.Uint64
	actionsLost   atomic.Uint64
	evicted       atomic.Uint64
	expired       atomic.Uint64
	blocks        atomic.Uint64
	blockFailures atomic.Uint64
}

type shard struct {
	mu         sync.Mutex
	ips        map[netip.Prefix]*subject
	principals map[string]*subject
	_          [64]byte // keep shards on separate cache lines
}

// subject is the state of one client address or principal. The windows of
// the rarer events are allocated when first needed.
type subject struct {
	lastSeen  int64
	volume    window
	base      baseline
	auth      *window
	notFound  *window
	waf       *window
	objects   *distinct
	lastAlert [numDetectors]int64
	samples   [numSamples]sample
	next      uint8
}

type sample struct {
	at     int64
	route  string
	reason string
	status int
}

// New builds a Detector from a defaulted, validated configuration. It starts
// nothing; see Start.
func New(c *config.Anomaly, o Options) *Detector {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Recent == nil {
		o.Recent = NewAlertRing(DefaultRecentAlerts)
	}
	d := &Detector{
		seed: maphash.MakeSeed(), notifier: o.Notifier, blocker: o.Blocker, recent: o.Recent, log: o.Log, now: o.Now,
		actions: make(chan Alert, actionQueue), stop: make(chan struct{}),
		idleTTL: c.IdleTTL.D(), ipv6Prefix: c.IPv6Prefix, blockFor: c.Block.Duration.D(),
		perShard: max(1, c.MaxSubjects/numShards),
	}
	if !c.Block.Enabled {
		d.blocker = nil
	}
	for i, x := range []*config.AnomalyDetector{&c.Detectors.AuthFailures, &c.Detectors.Enumeration, &c.Detectors.VolumeSpike, &c.Detectors.WAFBurst} {
		d.det[i] = detectorSettings{on: c.IsEnabled() && x.IsEnabled(), block: x.Blocks(), window: x.Window.D(),
			cooldown: int64(x.Cooldown), thresh: x.Threshold, severity: x.Severity}
	}
	d.distinct = c.Detectors.Enumeration.DistinctObjects
	v := &c.Detectors.VolumeSpike
	d.factor, d.minReq = v.Factor, v.MinRequests
	d.warmup = int64(math.Ceil(float64(v.Warmup) / float64(v.Window)))
	// An EWMA over N periods: alpha = 2/(N+1).
	d.alpha = 2 / (float64(v.Baseline)/float64(v.Window) + 1)
	for i := range d.shards {
		d.shards[i].ips = make(map[netip.Prefix]*subject)
		d.shards[i].principals = make(map[string]*subject)
	}
	return d
}

// Start runs the background work: the action worker (blocks and alert
// hand-off) and the periodic sweep of idle subjects. It is idempotent.
func (d *Detector) Start() {
	d.startOnce.Do(func() {
		d.wg.Add(2)
		go d.work()
		go d.sweeper()
	})
}

// Close stops the background work. Alerts still queued are handed on until
// the queue is empty; blocks in flight finish within their own timeout.
func (d *Detector) Close() {
	d.stopOnce.Do(func() { close(d.stop) })
	d.wg.Wait()
}

// IPSubject returns the subject an address is counted and blocked as: the
// IPv4 address, or the IPv6 prefix of the given length (IPv4-mapped IPv6
// addresses count as IPv4).
func IPSubject(a netip.Addr, ipv6Prefix int) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, err := a.Prefix(ipv6Prefix)
	if err != nil {
		return netip.PrefixFrom(a, a.BitLen())
	}
	return p
}

// FormatIPSubject formats an IP subject as alerts and block keys name it:
// a bare address for a full-length prefix, else the prefix.
func FormatIPSubject(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// event is the classification of one observation.
type event struct {
	authFail bool
	notFound bool
	waf      bool
	hashes   []uint64
}

// isAuthFailure reports whether an exchange is a failed authentication: a
// 401 other than missing credentials, or a refusal by the lockout.
func isAuthFailure(status int, reason string) bool {
	return status == 401 && reason != reasonCredentialsMissing || reason == reasonLockedOut
}

// Observe counts one finished exchange and fires the detectors it crosses.
// It takes one or two shard locks, allocates nothing in the common case and
// never waits for I/O: alerts go to a bounded queue, and are counted as lost
// (ActionsLost) when it is full. Observations of requests refused as
// temporarily_blocked are ignored, so a blocked client does not keep firing.
// A zero At is taken as now.
func (d *Detector) Observe(o Observation) {
	if o.ReasonID == ReasonTemporarilyBlocked {
		return
	}
	d.observed.Add(1)
	if o.At.IsZero() {
		o.At = d.now()
	}
	ev := event{
		authFail: isAuthFailure(o.Status, o.ReasonID),
		notFound: o.Status == 404 || o.ReasonID == reasonOwnerMismatch,
		waf:      o.WAFHit,
	}
	var hbuf [maxObjectIDs]uint64
	if d.det[detEnum].on && d.distinct > 0 {
		for i, id := range o.ObjectIDs {
			if i == maxObjectIDs {
				break
			}
			if id != "" {
				ev.hashes = append(hbuf[:len(ev.hashes)], maphash.String(d.seed, id))
			}
		}
	}
	var abuf [2 * numDetectors]Alert
	fired := abuf[:0]
	now := o.At.UnixNano()
	if o.ClientIP.IsValid() {
		p := IPSubject(o.ClientIP, d.ipv6Prefix)
		b := p.Addr().As16()
		sh := &d.shards[maphash.Bytes(d.seed, b[:])%numShards]
		sh.mu.Lock()
		s := sh.ips[p]
		if s == nil {
			s = &subject{}
			d.makeRoom(sh, now)
			sh.ips[p] = s
		}
		fired = d.update(s, &o, &ev, o.PrincipalKey == "", now, fired, KindIP)
		sh.mu.Unlock()
		for i := range fired {
			fired[i].Subject = FormatIPSubject(p)
		}
	}
	if o.PrincipalKey != "" {
		sh := &d.shards[maphash.String(d.seed, o.PrincipalKey)%numShards]
		sh.mu.Lock()
		s := sh.principals[o.PrincipalKey]
		if s == nil {
			s = &subject{}
			d.makeRoom(sh, now)
			sh.principals[o.PrincipalKey] = s
		}
		n := len(fired)
		fired = d.update(s, &o, &ev, true, now, fired, KindPrincipal)
		sh.mu.Unlock()
		for i := n; i < len(fired); i++ {
			fired[i].Subject = o.PrincipalKey
		}
	}
	for _, a := range fired {
		d.fired[d.index(a.Detector)].Add(1)
		select {
		case d.actions <- a:
		default:
			d.actionsLost.Add(1)
		}
	}
}

func (d *Detector) index(name string) int {
	for i, n := range detectorNames {
		if n == name {
			return i
		}
	}
	return 0
}

// update counts the observation for one subject (under its shard's lock)
// and appends the alerts it fires. own says whether this subject owns the
// events that are charged to one subject only (enumeration and WAF hits):
// the principal, or the address when there is none, so that the users
// behind one NAT address do not add up to a false alarm.
func (d *Detector) update(s *subject, o *Observation, ev *event, own bool, now int64, fired []Alert, kind string) []Alert {
	s.lastSeen = now
	s.samples[s.next%numSamples] = sample{at: now, route: o.RouteName, reason: o.ReasonID, status: o.Status}
	s.next++
	fire := func(det int, signal string, count, thresh int) bool {
		st := &d.det[det]
		if s.lastAlert[det] != 0 && now-s.lastAlert[det] < st.cooldown {
			return false
		}
		s.lastAlert[det] = now
		fired = append(fired, d.alert(s, det, signal, kind, count, thresh, o.At))
		return true
	}
	if st := &d.det[detAuth]; st.on && ev.authFail {
		if s.auth == nil {
			s.auth = new(window)
		}
		if n := int(s.auth.add(bucketOf(o.At, st.window), 1)); n >= st.thresh {
			fire(detAuth, SignalAuthFailures, n, st.thresh)
		}
	}
	if st := &d.det[detWAF]; st.on && own && ev.waf {
		if s.waf == nil {
			s.waf = new(window)
		}
		if n := int(s.waf.add(bucketOf(o.At, st.window), 1)); n >= st.thresh {
			fire(detWAF, SignalWAFHits, n, st.thresh)
		}
	}
	if st := &d.det[detEnum]; st.on && own {
		if ev.notFound {
			if s.notFound == nil {
				s.notFound = new(window)
			}
			if n := int(s.notFound.add(bucketOf(o.At, st.window), 1)); n >= st.thresh {
				fire(detEnum, SignalNotFound, n, st.thresh)
			}
		}
		if len(ev.hashes) > 0 {
			if s.objects == nil {
				s.objects = new(distinct)
			}
			for _, h := range ev.hashes {
				if n, ok := s.objects.add(h, now, int64(st.window), d.distinct); ok {
					fire(detEnum, SignalDistinctObjects, n, d.distinct)
					break
				}
			}
		}
	}
	if st := &d.det[detVolume]; st.on {
		n := int(s.volume.add(bucketOf(o.At, st.window), 1))
		s.base.add(now/int64(st.window), d.alpha)
		if s.base.periods >= d.warmup && n >= d.minReq && float64(n) > d.factor*s.base.avg {
			th := max(d.minReq, int(math.Floor(d.factor*s.base.avg))+1)
			if fire(detVolume, SignalRequests, n, th) {
				fired[len(fired)-1].Baseline = s.base.avg
			}
		}
	}
	return fired
}

// alert builds an alert for subject s; Subject is filled in by the caller
// once the lock is released.
func (d *Detector) alert(s *subject, det int, signal, kind string, count, thresh int, at time.Time) Alert {
	st := &d.det[det]
	a := Alert{Detector: detectorNames[det], Signal: signal, Severity: st.severity, SubjectKind: kind,
		Count: count, Threshold: thresh, Window: st.window, At: at,
		EndsAt: at.Add(max(time.Duration(st.cooldown), st.window))}
	a.Sample = make([]Sample, 0, numSamples)
	for i := range numSamples {
		x := s.samples[(int(s.next)-1-i+2*numSamples)%numSamples]
		if x.at == 0 {
			break
		}
		a.Sample = append(a.Sample, Sample{At: time.Unix(0, x.at).UTC(), Route: x.route, Status: x.status, ReasonID: x.reason})
	}
	return a
}

// makeRoom evicts one subject of a full shard (under its lock): among a
// few looked at, the one seen least recently. Go's randomised map
// iteration makes the sample random.
func (d *Detector) makeRoom(sh *shard, now int64) {
	if len(sh.ips)+len(sh.principals) < d.perShard {
		return
	}
	var (
		oldestIP  netip.Prefix
		oldestKey string
		isIP      bool
		oldest    int64 = math.MaxInt64
		seen      int
	)
	for k, s := range sh.ips {
		if s.lastSeen < oldest {
			oldest, oldestIP, isIP = s.lastSeen, k, true
		}
		if seen++; seen == evictSample {
			break
		}
	}
	seen = 0
	for k, s := range sh.principals {
		if s.lastSeen < oldest {
			oldest, oldestKey, isIP = s.lastSeen, k, false
		}
		if seen++; seen == evictSample {
			break
		}
	}
	if isIP {
		delete(sh.ips, oldestIP)
	} else {
		delete(sh.principals, oldestKey)
	}
	d.evicted.Add(1)
}

// Sweep forgets the subjects not seen for idle_ttl before now. Start runs it
// every minute; tests call it with their own clock.
func (d *Detector) Sweep(now time.Time) {
	cut := now.Add(-d.idleTTL).UnixNano()
	for i := range d.shards {
		sh := &d.shards[i]
		sh.mu.Lock()
		for k, s := range sh.ips {
			if s.lastSeen < cut {
				delete(sh.ips, k)
				d.expired.Add(1)
			}
		}
		for k, s := range sh.principals {
			if s.lastSeen < cut {
				delete(sh.principals, k)
				d.expired.Add(1)
			}
		}
		sh.mu.Unlock()
	}
}

func (d *Detector) sweeper() {
	defer d.wg.Done()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.Sweep(d.now())
		}
	}
}

// RecentAlerts returns up to limit of the alerts this Detector (and any
// other sharing its Options.Recent ring) handled, newest first; limit <= 0
// returns every alert kept. An alert appears once the background worker
// has handled it (blocked its subject when its detector blocks, logged it
// and handed it to the notifier), with BlockedUntil set when it blocked;
// alerts lost because the action queue was full (Stats.ActionsLost) never
// appear. It is safe for concurrent use and never nil.
func (d *Detector) RecentAlerts(limit int) []Alert { return d.recent.Recent(limit) }

// work blocks the subjects of alerts whose detector blocks, then logs the
// alerts and hands them to the notifier.
func (d *Detector) work() {
	defer d.wg.Done()
	for {
		select {
		case a := <-d.actions:
			d.act(a)
		case <-d.stop:
			for {
				select {
				case a := <-d.actions:
					d.act(a)
				default:
					return
				}
			}
		}
	}
}

func (d *Detector) act(a Alert) {
	if d.blocker != nil && d.det[d.index(a.Detector)].block {
		until := a.At.Add(d.blockFor)
		ctx, cancel := context.WithTimeout(context.Background(), blockTimeout)
		err := d.blocker.Block(ctx, a.SubjectKind, a.Subject, until)
		cancel()
		if err != nil {
			d.blockFailures.Add(1)
			d.log.Error("anomaly block failed", "detector", a.Detector, "subject_kind", a.SubjectKind, "subject", a.Subject, "error", err)
		} else {
			d.blocks.Add(1)
			a.BlockedUntil = until
			a.EndsAt = maxTime(a.EndsAt, until)
		}
	}
	attrs := []any{"detector", a.Detector, "signal", a.Signal, "severity", a.Severity, "subject_kind", a.SubjectKind,
		"subject", a.Subject, "count", a.Count, "threshold", a.Threshold, "window", a.Window.String()}
	if !a.BlockedUntil.IsZero() {
		attrs = append(attrs, "blocked_until", a.BlockedUntil)
	}
	d.log.Warn("anomaly detected", attrs...)
	d.recent.Add(a)
	if d.notifier != nil {
		d.notifier.Notify(a)
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Stats are a Detector's counters since New.
type Stats struct {
	Observed      uint64
	Subjects      int               // tracked now
	Fired         map[string]uint64 // alerts per detector
	ActionsLost   uint64            // alerts dropped because the action queue was full
	Evicted       uint64            // subjects evicted to stay under max_subjects
	Expired       uint64            // idle subjects forgotten by the sweep
	Blocks        uint64            // blocks written
	BlockFailures uint64            // blocks the store refused or did not answer
}

// Stats returns the counters; Subjects takes every shard lock in turn.
func (d *Detector) Stats() Stats {
	s := Stats{Observed: d.observed.Load(), ActionsLost: d.actionsLost.Load(), Evicted: d.evicted.Load(),
		Expired: d.expired.Load(), Blocks: d.blocks.Load(), BlockFailures: d.blockFailures.Load(),
		Fired: make(map[string]uint64, numDetectors)}
	for i, n := range detectorNames {
		s.Fired[n] = d.fired[i].Load()
	}
	for i := range d.shards {
		sh := &d.shards[i]
		sh.mu.Lock()
		s.Subjects += len(sh.ips) + len(sh.principals)
		sh.mu.Unlock()
	}
	return s
}
