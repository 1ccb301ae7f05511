package anomaly

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// testConfig returns the defaulted configuration after mod changed it.
func testConfig(tb testing.TB, mod func(*config.Anomaly)) *config.Anomaly {
	tb.Helper()
	c := &config.Anomaly{}
	if mod != nil {
		mod(c)
	}
	c.ApplyDefaults()
	if ps := c.Validate(); len(ps) > 0 {
		tb.Fatalf("invalid test configuration: %v", ps)
	}
	return c
}

// drain returns the alerts queued by Observe (the worker is not started).
func drain(d *Detector) []Alert {
	var out []Alert
	for {
		select {
		case a := <-d.actions:
			out = append(out, a)
		default:
			return out
		}
	}
}

// fired summarises alerts as "detector/kind/subject/signal", sorted.
func fired(as []Alert) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Detector + "/" + a.SubjectKind + "/" + a.Subject + "/" + a.Signal
	}
	slices.Sort(out)
	return out
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestAttackTrafficFiresExpectedDetectors(t *testing.T) {
	tests := []struct {
		desc    string
		traffic func(d *Detector)
		want    []string
	}{
		{
			desc: "credential stuffing from one address",
			traffic: func(d *Detector) {
				for i := range 200 {
					d.Observe(Observation{At: t0.Add(time.Duration(i) * 500 * time.Millisecond), ClientIP: ip("203.0.113.9"),
						Status: 401, ReasonID: "basic_invalid", RouteName: "login"})
				}
			},
			want: []string{"auth_failures/ip/203.0.113.9/auth_failures"},
		},
		{
			desc: "lockout refusals count as failures",
			traffic: func(d *Detector) {
				for i := range 25 {
					d.Observe(Observation{At: t0.Add(time.Duration(i) * time.Second), ClientIP: ip("203.0.113.10"),
						Status: 429, ReasonID: "auth_locked_out"})
				}
			},
			want: []string{"auth_failures/ip/203.0.113.10/auth_failures"},
		},
		{
			desc: "BOLA probing by one principal across 500 IDs",
			traffic: func(d *Detector) {
				for i := range 500 {
					o := Observation{At: t0.Add(time.Duration(i) * 200 * time.Millisecond), ClientIP: ip("198.51.100.7"),
						PrincipalKey: "jwt:mallory", RouteName: "orders", ObjectIDs: []string{strconv.Itoa(1000 + i)}, Status: 403, ReasonID: "owner_mismatch"}
					if i%10 == 0 {
						o.Status, o.ReasonID = 200, "" // the few it happens to own
					}
					d.Observe(o)
				}
			},
			want: []string{"enumeration/principal/jwt:mallory/owner_mismatch_or_404"},
		},
		{
			desc: "unprotected object IDs walked with 200s",
			traffic: func(d *Detector) {
				for i := range 500 {
					d.Observe(Observation{At: t0.Add(time.Duration(i) * 200 * time.Millisecond), ClientIP: ip("198.51.100.8"),
						PrincipalKey: "apikey:scraper", RouteName: "invoices", ObjectIDs: []string{"inv-" + strconv.Itoa(i)}, Status: 200})
				}
			},
			want: []string{"enumeration/principal/apikey:scraper/distinct_objects"},
		},
		{
			desc: "unauthenticated 404 probing counts per address",
			traffic: func(d *Detector) {
				for i := range 80 {
					d.Observe(Observation{At: t0.Add(time.Duration(i) * time.Second), ClientIP: ip("192.0.2.44"), Status: 404, ReasonID: "route_not_found"})
				}
			},
			want: []string{"enumeration/ip/192.0.2.44/owner_mismatch_or_404"},
		},
		{
			desc: "WAF burst",
			traffic: func(d *Detector) {
				for i := range 30 {
					d.Observe(Observation{At: t0.Add(time.Duration(i) * 3 * time.Second), ClientIP: ip("192.0.2.66"), Status: 403, ReasonID: "waf_blocked", WAFHit: true})
				}
			},
			want: []string{"waf_burst/ip/192.0.2.66/waf_hits"},
		},
		{
			desc: "volume spike after a warm baseline",
			traffic: func(d *Detector) {
				at := t0
				for range 30 * 20 { // 20 requests a minute for 30 minutes
					at = at.Add(3 * time.Second)
					d.Observe(Observation{At: at, ClientIP: ip("192.0.2.80"), PrincipalKey: "jwt:batch", RouteName: "items", Status: 200})
				}
				for range 1000 { // then 1000 in 50 seconds
					at = at.Add(50 * time.Millisecond)
					d.Observe(Observation{At: at, ClientIP: ip("192.0.2.80"), PrincipalKey: "jwt:batch", RouteName: "items", Status: 200})
				}
			},
			want: []string{"volume_spike/ip/192.0.2.80/requests", "volume_spike/principal/jwt:batch/requests"},
		},
		{
			desc: "IPv6 addresses rotating within a /64 count as one",
			traffic: func(d *Detector) {
				for i := range 40 {
					d.Observe(Observation{At: t0.Add(time.Duration(i) * time.Second), ClientIP: ip(fmt.Sprintf("2001:db8:1:2::%x", i+1)), Status: 401, ReasonID: "api_key_unknown"})
				}
			},
			want: []string{"auth_failures/ip/2001:db8:1:2::/64/auth_failures"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			d := New(testConfig(t, nil), Options{})
			tt.traffic(d)
			if got := fired(drain(d)); !slices.Equal(got, tt.want) {
				t.Errorf("fired %q, want %q", got, tt.want)
			}
		})
	}
}

func TestQuietTrafficFiresNothing(t *testing.T) {
	tests := []struct {
		desc    string
		traffic func(d *Detector)
	}{
		{
			desc: "missing credentials are not failures",
			traffic: func(d *Detector) {
				for i := range 500 {
					d.Observe(Observation{At: t0.Add(time.Duration(i) * time.Second), ClientIP: ip("192.0.2.1"), Status: 401, ReasonID: "credentials_missing"})
				}
			},
		},
		{
			desc: "failures spread wider than the window",
			traffic: func(d *Detector) {
				for i := range 200 { // one every 20s: 15 per 5 minutes, under 20
					d.Observe(Observation{At: t0.Add(time.Duration(i) * 20 * time.Second), ClientIP: ip("192.0.2.2"), Status: 401, ReasonID: "jwt_expired"})
				}
			},
		},
		{
			desc: "a new client's first burst is the rate limiter's business",
			traffic: func(d *Detector) {
				for i := range 2000 {
					d.Observe(Observation{At: t0.Add(time.Duration(i) * 10 * time.Millisecond), ClientIP: ip("192.0.2.3"), Status: 200})
				}
			},
		},
		{
			desc: "blocked requests are ignored",
			traffic: func(d *Detector) {
				for i := range 500 {
					d.Observe(Observation{At: t0.Add(time.Duration(i) * time.Second), ClientIP: ip("192.0.2.4"), Status: 403, ReasonID: ReasonTemporarilyBlocked, WAFHit: true})
				}
			},
		},
		{
			desc: "the same few objects read over and over",
			traffic: func(d *Detector) {
				for i := range 5000 {
					d.Observe(Observation{At: t0.Add(time.Duration(i) * 100 * time.Millisecond), ClientIP: ip("192.0.2.5"), PrincipalKey: "jwt:u",
						ObjectIDs: []string{strconv.Itoa(i % 150)}, Status: 200})
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			d := New(testConfig(t, nil), Options{})
			tt.traffic(d)
			if got := fired(drain(d)); len(got) > 0 {
				t.Errorf("fired %q, want nothing", got)
			}
		})
	}
}

// TestBenignReplayFiresNothing replays two hours of realistic mixed traffic:
// 300 principals, 30 of them behind one NAT address, reading and writing
// their own objects at steady but jittered rates that double in a busy
// hour, with occasional 404s, password typos, a WAF false positive now and
// then, and a few anonymous visitors.
func TestBenignReplayFiresNothing(t *testing.T) {
	d := New(testConfig(t, nil), Options{})
	rng := rand.New(rand.NewPCG(7, 11))
	type user struct {
		key     string
		addr    netip.Addr
		objects []string
		perMin  float64
	}
	var users []user
	for i := range 300 {
		u := user{key: fmt.Sprintf("jwt:user-%d", i), perMin: 2 + rng.Float64()*20}
		if i < 30 {
			u.addr = ip("198.51.100.200") // office NAT
		} else {
			u.addr = netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
		}
		for j := range 5 + rng.IntN(40) {
			u.objects = append(u.objects, fmt.Sprintf("%d-%d", i, j))
		}
		users = append(users, u)
	}
	const minutes = 120
	var n int
	for m := range minutes {
		busy := 1.0
		if m >= 60 && m < 90 {
			busy = 2.0
		}
		for _, u := range users {
			k := int(u.perMin*busy*(0.6+0.8*rng.Float64()) + 0.5)
			for range k {
				at := t0.Add(time.Duration(m)*time.Minute + time.Duration(rng.Int64N(int64(time.Minute))))
				o := Observation{At: at, ClientIP: u.addr, PrincipalKey: u.key, RouteName: "orders", Status: 200,
					ObjectIDs: []string{u.objects[rng.IntN(len(u.objects))]}}
				switch r := rng.IntN(1000); {
				case r < 20:
					o.Status, o.ReasonID = 404, ""
				case r < 22:
					o.Status, o.ReasonID, o.WAFHit = 403, "waf_blocked", true
				case r < 25:
					o.Status, o.ReasonID, o.PrincipalKey, o.ObjectIDs = 401, "basic_invalid", "", nil
				}
				d.Observe(o)
				n++
			}
		}
		for range 20 { // anonymous visitors on public pages
			d.Observe(Observation{At: t0.Add(time.Duration(m)*time.Minute + time.Duration(rng.Int64N(int64(time.Minute)))),
				ClientIP: netip.AddrFrom4([4]byte{172, 16, byte(rng.IntN(256)), byte(rng.IntN(256))}), RouteName: "home", Status: 200})
		}
	}
	if got := fired(drain(d)); len(got) > 0 {
		t.Errorf("benign replay of %d requests fired %d alerts: %q", n, len(got), got)
	}
	if n < 100000 {
		t.Fatalf("replay too small to mean anything: %d requests", n)
	}
}

func TestCooldown(t *testing.T) {
	d := New(testConfig(t, func(c *config.Anomaly) {
		c.Detectors.AuthFailures.Cooldown = config.Duration(10 * time.Minute)
	}), Options{})
	attack := func(from time.Time, n int) []Alert {
		for i := range n {
			d.Observe(Observation{At: from.Add(time.Duration(i) * time.Second), ClientIP: ip("203.0.113.1"), Status: 401, ReasonID: "basic_invalid"})
		}
		return drain(d)
	}
	if got := attack(t0, 100); len(got) != 1 || got[0].Count != 20 || got[0].Threshold != 20 {
		t.Fatalf("first attack fired %+v, want one alert at count 20", got)
	}
	if got := attack(t0.Add(3*time.Minute), 100); len(got) != 0 {
		t.Errorf("attack within the cooldown fired %q", fired(got))
	}
	if got := attack(t0.Add(11*time.Minute), 100); len(got) != 1 {
		t.Errorf("attack after the cooldown fired %d alerts, want 1", len(got))
	}
}

func TestAlertContent(t *testing.T) {
	d := New(testConfig(t, nil), Options{})
	for i := range 20 {
		d.Observe(Observation{At: t0.Add(time.Duration(i) * time.Second), ClientIP: ip("203.0.113.5"), Status: 401, ReasonID: "api_key_unknown", RouteName: "r" + strconv.Itoa(i)})
	}
	as := drain(d)
	if len(as) != 1 {
		t.Fatalf("got %d alerts, want 1", len(as))
	}
	a := as[0]
	if a.Detector != DetectorAuthFailures || a.Severity != "warning" || a.Window != 5*time.Minute || !a.At.Equal(t0.Add(19*time.Second)) ||
		!a.EndsAt.Equal(a.At.Add(10*time.Minute)) {
		t.Errorf("alert %+v", a)
	}
	var routes []string
	for _, s := range a.Sample {
		routes = append(routes, s.Route)
	}
	if want := []string{"r19", "r18", "r17", "r16"}; !slices.Equal(routes, want) {
		t.Errorf("sample routes %q, want %q", routes, want)
	}
}

func TestDisabledDetectorsStayQuiet(t *testing.T) {
	off := false
	d := New(testConfig(t, func(c *config.Anomaly) { c.Detectors.AuthFailures.Enabled = &off }), Options{})
	for i := range 100 {
		d.Observe(Observation{At: t0.Add(time.Duration(i) * time.Second), ClientIP: ip("203.0.113.5"), Status: 401, ReasonID: "api_key_unknown"})
	}
	if got := drain(d); len(got) != 0 {
		t.Errorf("disabled detector fired %q", fired(got))
	}
	d = New(testConfig(t, func(c *config.Anomaly) { c.Enabled = &off }), Options{})
	for i := range 100 {
		d.Observe(Observation{At: t0.Add(time.Duration(i) * time.Second), ClientIP: ip("203.0.113.5"), Status: 401, ReasonID: "api_key_unknown", WAFHit: true})
	}
	if got := drain(d); len(got) != 0 {
		t.Errorf("disabled detection fired %q", fired(got))
	}
}

func TestMemoryBounded(t *testing.T) {
	d := New(testConfig(t, func(c *config.Anomaly) { c.MaxSubjects = 64 }), Options{})
	for i := range 20000 {
		d.Observe(Observation{At: t0.Add(time.Duration(i) * time.Millisecond), ClientIP: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
			PrincipalKey: "k:" + strconv.Itoa(i), Status: 200})
	}
	st := d.Stats()
	if st.Subjects > 64 {
		t.Errorf("tracking %d subjects, max_subjects 64", st.Subjects)
	}
	if want := uint64(40000 - 64); st.Evicted < want {
		t.Errorf("evicted %d, want at least %d", st.Evicted, want)
	}
	if st.Observed != 20000 {
		t.Errorf("observed %d", st.Observed)
	}
}

func TestSweepForgetsIdleSubjects(t *testing.T) {
	d := New(testConfig(t, func(c *config.Anomaly) { c.IdleTTL = config.Duration(2 * time.Hour) }), Options{})
	d.Observe(Observation{At: t0, ClientIP: ip("192.0.2.1"), PrincipalKey: "a:b", Status: 200})
	d.Observe(Observation{At: t0.Add(90 * time.Minute), ClientIP: ip("192.0.2.2"), Status: 200})
	d.Sweep(t0.Add(2*time.Hour + time.Second))
	if st := d.Stats(); st.Subjects != 1 || st.Expired != 2 {
		t.Errorf("after sweep: %d subjects, %d expired; want 1 and 2", st.Subjects, st.Expired)
	}
}

func TestWindowSlides(t *testing.T) {
	var w window
	width := int64(30 * time.Second)
	at := func(d time.Duration) int64 { return t0.Add(d).UnixNano() / width }
	w.add(at(0), 5)
	w.add(at(4*time.Minute), 3)
	if got := w.sum(at(4*time.Minute + 59*time.Second)); got != 8 {
		t.Errorf("sum inside the window = %d, want 8", got)
	}
	if got := w.sum(at(5 * time.Minute)); got != 3 {
		t.Errorf("sum once the first bucket left = %d, want 3", got)
	}
	w.add(at(-time.Minute), 100) // late, and in the slot of a newer bucket
	if got := w.sum(at(4 * time.Minute)); got != 8 {
		t.Errorf("a late event changed the count to %d, want 8", got)
	}
	if got := w.sum(at(time.Hour)); got != 0 {
		t.Errorf("sum an hour later = %d, want 0", got)
	}
}

func TestDistinctBounded(t *testing.T) {
	var d distinct
	win := int64(time.Minute)
	for i := range 99 {
		if _, ok := d.add(uint64(i), int64(i)*int64(time.Second), win, 100); ok {
			t.Fatalf("fired at %d distinct values spread over 99s", i+1)
		}
		if len(d.seen) > 100 {
			t.Fatalf("holds %d values, limit 100", len(d.seen))
		}
	}
	base := int64(200 * time.Second)
	for i := range 100 {
		n, ok := d.add(uint64(1000+i), base+int64(i), win, 100)
		if ok != (i == 99) {
			t.Fatalf("value %d: fired %v (n=%d)", i, ok, n)
		}
	}
	if len(d.seen) != 0 {
		t.Errorf("kept %d values after firing", len(d.seen))
	}
}

func TestBaselineDecaysOverIdlePeriods(t *testing.T) {
	var b baseline
	for p := int64(1); p <= 100; p++ {
		for range 10 {
			b.add(p, 0.1)
		}
	}
	if b.avg < 9 || b.avg > 10 {
		t.Fatalf("steady average %f, want about 10", b.avg)
	}
	b.add(200, 0.1)
	if b.avg > 0.01 {
		t.Errorf("average after 99 idle periods %f, want near 0", b.avg)
	}
	if b.periods != 199 {
		t.Errorf("periods %d, want 199", b.periods)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		desc string
		mod  func(*config.Anomaly)
		want string
	}{
		{"volume threshold", func(c *config.Anomaly) { c.Detectors.VolumeSpike.Threshold = 5 }, "detectors.volume_spike.threshold"},
		{"window too short", func(c *config.Anomaly) { c.Detectors.WAFBurst.Window = config.Duration(time.Second) }, "detectors.waf_burst.window"},
		{"factor below 1", func(c *config.Anomaly) { c.Detectors.VolumeSpike.Factor = 0.5 }, "detectors.volume_spike.factor"},
		{"baseline field on another detector", func(c *config.Anomaly) { c.Detectors.AuthFailures.Factor = 3 }, "detectors.auth_failures"},
		{"distinct on another detector", func(c *config.Anomaly) { c.Detectors.WAFBurst.DistinctObjects = 3 }, "detectors.waf_burst.distinct_objects"},
		{"idle ttl shorter than baseline", func(c *config.Anomaly) { c.IdleTTL = config.Duration(time.Minute) }, "idle_ttl"},
		{"block status", func(c *config.Anomaly) { c.Block.Status = 401 }, "block.status"},
		{"on store error", func(c *config.Anomaly) { c.Block.OnStoreError = "local" }, "block.on_store_error"},
		{"max subjects", func(c *config.Anomaly) { c.MaxSubjects = 3 }, "max_subjects"},
		{"severity", func(c *config.Anomaly) { c.Detectors.Enumeration.Severity = "page" }, "detectors.enumeration.severity"},
		{"webhook url", func(c *config.Anomaly) { c.Alerts.Webhook = &config.AnomalyWebhook{} }, "alerts.webhook.url"},
		{"webhook header set by moat", func(c *config.Anomaly) {
			c.Alerts.Webhook = &config.AnomalyWebhook{Headers: map[string]config.Secret{"x-moat-signature": {}}}
		}, "alerts.webhook.headers.x-moat-signature"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			c := &config.Anomaly{}
			tt.mod(c)
			c.ApplyDefaults()
			var paths []string
			for _, p := range c.Validate() {
				paths = append(paths, p.Path)
			}
			if !slices.Contains(paths, tt.want) {
				t.Errorf("problems at %q, want one at %s", paths, tt.want)
			}
		})
	}
	c := &config.Anomaly{}
	c.ApplyDefaults()
	if ps := c.Validate(); len(ps) != 0 {
		t.Errorf("defaults invalid: %v", ps)
	}
	c2 := *c
	c2.ApplyDefaults()
	if c2.MaxSubjects != c.MaxSubjects || *c2.Detectors.VolumeSpike.Block || !*c2.Detectors.Enumeration.Block {
		t.Errorf("defaults not idempotent or wrong: %+v", c2)
	}
}

func TestOddTimesDoNotPanic(t *testing.T) {
	d := New(testConfig(t, nil), Options{})
	for _, at := range []time.Time{{}, time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), time.Unix(-1, 0), t0} {
		d.Observe(Observation{At: at, ClientIP: ip("192.0.2.1"), PrincipalKey: "a:b", Status: 401, ReasonID: "x", ObjectIDs: []string{"1"}, WAFHit: true})
	}
	if got := d.Stats().Observed; got != 4 {
		t.Errorf("observed %d", got)
	}
}
