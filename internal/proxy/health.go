package proxy

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

// Fallbacks for a zero health_check block; config applies the same values.
const (
	defaultHealthPath     = "/healthz"
	defaultHealthInterval = 10 * time.Second
	defaultHealthTimeout  = 2 * time.Second
	defaultHealthyCount   = 2
	defaultUnhealthyCount = 3
	healthBodyDrainLimit  = 64 << 10
	healthCheckUserAgent  = "moat-health-check"
)

// healthCheck is the compiled active health check of an upstream.
type healthCheck struct {
	path      string
	interval  time.Duration
	timeout   time.Duration
	healthy   int   // consecutive successes that make an unhealthy target healthy
	unhealthy int   // consecutive failures that make a healthy target unhealthy
	expect    []int // statuses that pass; empty: any 2xx
}

func newHealthCheck(c *config.HealthCheck) *healthCheck {
	h := &healthCheck{
		path:      c.Path,
		interval:  orDefault(c.Interval.D(), defaultHealthInterval),
		timeout:   orDefault(c.Timeout.D(), defaultHealthTimeout),
		healthy:   c.HealthyThreshold,
		unhealthy: c.UnhealthyThreshold,
		expect:    slices.Clone(c.ExpectStatus),
	}
	if h.path == "" {
		h.path = defaultHealthPath
	}
	if h.healthy <= 0 {
		h.healthy = defaultHealthyCount
	}
	if h.unhealthy <= 0 {
		h.unhealthy = defaultUnhealthyCount
	}
	return h
}

func (h *healthCheck) pass(status int) bool {
	if len(h.expect) == 0 {
		return status >= 200 && status < 300
	}
	return slices.Contains(h.expect, status)
}

// healthLoop checks t at once and then every interval until ctx ends,
// flipping its health after enough consecutive results and logging each
// change.
func (u *Upstream) healthLoop(ctx context.Context, t *target) {
	defer u.wg.Done()
	tick := time.NewTicker(u.health.interval)
	defer tick.Stop()
	var passes, fails int
	for {
		ok, why := u.probe(ctx, t)
		if ctx.Err() != nil {
			return
		}
		if ok {
			passes, fails = passes+1, 0
		} else {
			passes, fails = 0, fails+1
		}
		switch healthy := t.healthy.Load(); {
		case healthy && fails >= u.health.unhealthy:
			t.healthy.Store(false)
			u.log.Warn("upstream target health changed", "target", t.str, "healthy", false, "reason", why)
		case !healthy && passes >= u.health.healthy:
			t.healthy.Store(true)
			u.log.Info("upstream target health changed", "target", t.str, "healthy", true)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probe sends one health check to t and reports whether it passed, and if
// not, why (for the log).
func (u *Upstream) probe(ctx context.Context, t *target) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, u.health.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.healthURL, nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("User-Agent", healthCheckUserAgent)
	res, err := u.rt.RoundTrip(req) // no redirects, no cookies
	if err != nil {
		return false, err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, healthBodyDrainLimit)) // lets the connection be reused
	_ = res.Body.Close()
	if !u.health.pass(res.StatusCode) {
		return false, "status " + strconv.Itoa(res.StatusCode)
	}
	return true, ""
}
