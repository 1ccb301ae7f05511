package proxy

import (
	"fmt"
	"net/url"
	"sync/atomic"
	"time"
)

// target is one base URL of an upstream with its health state. Its fields are
// fixed after New except the atomics, so it is safe for concurrent use.
type target struct {
	url       *url.URL
	str       string // url.String(), for logs, audit and Status
	escBase   string // escaped base path without trailing slashes; "" for the root
	healthURL string // URL of the active health check, if any

	healthy      atomic.Bool  // active health; true unless checks decided otherwise
	failures     atomic.Int32 // consecutive passive failures
	ejectedUntil atomic.Int64 // end of the passive ejection, Unix nanoseconds; 0 when never ejected
}

func newTarget(u *url.URL) (*target, error) {
	if u == nil {
		return nil, fmt.Errorf("empty target URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("target %s: scheme must be http or https", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("target %s: missing host", u.Redacted())
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("target %s: credentials, query and fragment are not allowed", u.Redacted())
	}
	c := *u
	t := &target{url: &c, str: c.String(), escBase: trimSlash(c.EscapedPath())}
	t.healthy.Store(true)
	return t, nil
}

// recordSuccess ends a run of failures.
func (t *target) recordSuccess() {
	if t.failures.Load() != 0 {
		t.failures.Store(0)
	}
}

// recordFailure counts a failed request. When the run reaches max it ejects
// the target until now+ejection, restarts the count and reports true.
func (t *target) recordFailure(now time.Time, max int32, ejection time.Duration) bool {
	if t.failures.Add(1) < max {
		return false
	}
	t.failures.Store(0)
	t.ejectedUntil.Store(now.Add(ejection).UnixNano())
	return true
}
