package scan

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Errors a probe sees from the sender. Probes stop on errBudget and
// errDeadline, skip the request on the others.
var (
	errBudget      = errors.New("request budget exhausted")
	errDryRun      = errors.New("dry run: not sent")
	errDestructive = errors.New("method changes data: needs --allow-destructive")
	errOffTarget   = errors.New("url host is not the target host")
)

// maxBody bounds how much of a response body the scanner reads.
const maxBody = 1 << 20

// PlanEntry is one request the scan would send (dry run) or sent.
type PlanEntry struct {
	Probe    string `json:"probe"`
	Method   string `json:"method"`
	Path     string `json:"path"`
	Identity string `json:"identity,omitempty"` // "" for none
}

// request is one request a probe asks the sender for.
type request struct {
	probe    string
	op       *Operation // nil for target-wide probes
	identity *Identity  // nil: no credentials
	method   string
	path     string // escaped path relative to the target base, with query
	header   http.Header
	body     []byte
	// replaceAuth, when set, is sent instead of the identity's own header
	// value (JWT probes).
	replaceAuth string
}

// response is what the sender read.
type response struct {
	status int
	header http.Header
	body   []byte
	url    string
	req    *request
}

func (r *response) ok() bool { return r != nil && r.status >= 200 && r.status < 300 }

// sender sends every request of a scan: it pins the target host, refuses
// redirects elsewhere, counts requests against the budget, paces them to
// the rate and bounds each with a timeout. A sender is used by one
// goroutine.
type sender struct {
	base        *url.URL
	client      *http.Client
	max         int
	used        int
	interval    time.Duration
	next        time.Time
	now         func() time.Time
	reqTimeout  time.Duration
	dryRun      bool
	destructive bool
	plan        []PlanEntry
	notes       *notes
	onRequest   func(used int)
	tlsConfig   *tls.Config

	mu      sync.Mutex
	hopUsed int // redirect hops, counted inside CheckRedirect
}

func newSender(base *url.URL, o *Options) *sender {
	s := &sender{
		base: base, max: o.MaxRequests, now: o.Now, reqTimeout: o.RequestTimeout,
		dryRun: o.DryRun, destructive: o.AllowDestructive,
		interval: time.Duration(float64(time.Second) / o.Rate),
	}
	tc := o.TLSConfig
	if tc == nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tc = tc.Clone()
	if o.Insecure {
		tc.InsecureSkipVerify = true
	}
	s.tlsConfig = tc
	tr := &http.Transport{
		Proxy:                 nil, // never send the target's traffic through another host
		DialContext:           (&net.Dialer{Timeout: o.RequestTimeout}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   o.RequestTimeout,
		ResponseHeaderTimeout: o.RequestTimeout,
		MaxIdleConnsPerHost:   2,
		DisableCompression:    false,
	}
	s.client = &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if !sameOrigin(req.URL, base) {
				s.notes.add(fmt.Sprintf("redirect to %s refused: not the target host", redactURL(req.URL)))
				return http.ErrUseLastResponse
			}
			if len(via) >= 3 {
				return http.ErrUseLastResponse
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.used+s.hopUsed >= s.max {
				return http.ErrUseLastResponse
			}
			s.hopUsed++
			return nil
		},
	}
	return s
}

// sameOrigin reports whether u has the base's scheme, host and port.
func sameOrigin(u, base *url.URL) bool {
	return strings.EqualFold(u.Scheme, base.Scheme) && strings.EqualFold(u.Host, base.Host)
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	return c.String()
}

// remaining returns how many requests the budget still allows.
func (s *sender) remaining() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max - s.used - s.hopUsed
}

// count returns the requests sent so far, redirect hops included.
func (s *sender) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used + s.hopUsed
}

// target resolves a probe path against the target base URL.
func (s *sender) target(path string) (*url.URL, error) {
	p, q, _ := strings.Cut(path, "?")
	u := *s.base
	u.RawPath = ""
	joined := strings.TrimSuffix(s.base.EscapedPath(), "/") + "/" + strings.TrimPrefix(p, "/")
	dec, err := url.PathUnescape(joined)
	if err != nil {
		return nil, fmt.Errorf("building url: %w", err)
	}
	u.Path, u.RawPath = dec, joined
	u.RawQuery = q
	u.Fragment = ""
	if !sameOrigin(&u, s.base) {
		return nil, errOffTarget
	}
	return &u, nil
}

// do sends r, or in a dry run records it. It returns errBudget when the
// budget is spent, errDestructive for a data-changing method without
// --allow-destructive, and the context's error when the scan is over.
func (s *sender) do(ctx context.Context, r *request) (*response, error) {
	if !safeMethod(r.method) && r.method != "TRACE" && !s.destructive {
		return nil, errDestructive
	}
	u, err := s.target(r.path)
	if err != nil {
		return nil, err
	}
	idName := ""
	if r.identity != nil {
		idName = r.identity.Name
	}
	if s.dryRun {
		s.plan = append(s.plan, PlanEntry{Probe: r.probe, Method: r.method, Path: u.RequestURI(), Identity: idName})
		return nil, errDryRun
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.used+s.hopUsed >= s.max {
		s.mu.Unlock()
		return nil, errBudget
	}
	s.used++
	used := s.used + s.hopUsed
	s.mu.Unlock()
	if err := s.pace(ctx); err != nil {
		return nil, err
	}
	if s.onRequest != nil {
		s.onRequest(used)
	}

	rctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(rctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("User-Agent", "moat-scan")
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if r.identity != nil {
		v := r.identity.Value
		if r.replaceAuth != "" {
			v = r.replaceAuth
		}
		req.Header.Set(r.identity.Header, v)
	}
	res, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s %s: %w", r.method, u.Path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return &response{status: res.StatusCode, header: res.Header, body: b, url: redactURL(res.Request.URL) + queryOf(res.Request.URL), req: r}, nil
}

func queryOf(u *url.URL) string {
	if u.RawQuery == "" {
		return ""
	}
	return "?" + u.RawQuery
}

// pace waits until the next request slot allowed by the rate.
func (s *sender) pace(ctx context.Context) error {
	now := s.now()
	slot := s.next
	if slot.Before(now) {
		slot = now
	}
	s.next = slot.Add(s.interval)
	d := slot.Sub(now)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// handshake opens a TLS connection to the target with cfg and closes it;
// it counts against the budget like a request. It returns the negotiated
// state, or the handshake error.
func (s *sender) handshake(ctx context.Context, probe string, cfg *tls.Config) (*tls.ConnectionState, error) {
	if s.dryRun {
		s.plan = append(s.plan, PlanEntry{Probe: probe, Method: "TLS", Path: s.base.Host})
		return nil, errDryRun
	}
	s.mu.Lock()
	if s.used+s.hopUsed >= s.max {
		s.mu.Unlock()
		return nil, errBudget
	}
	s.used++
	used := s.used + s.hopUsed
	s.mu.Unlock()
	if err := s.pace(ctx); err != nil {
		return nil, err
	}
	if s.onRequest != nil {
		s.onRequest(used)
	}
	host := s.base.Host
	if s.base.Port() == "" {
		host = net.JoinHostPort(s.base.Hostname(), "443")
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: s.reqTimeout}, Config: cfg}
	hctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	c, err := d.DialContext(hctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st := c.(*tls.Conn).ConnectionState()
	return &st, nil
}

// notes collects scan notes (skipped probes, refused redirects) without
// duplicates.
type notes struct {
	mu   sync.Mutex
	list []string
	seen map[string]bool
}

func (n *notes) add(s string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.seen == nil {
		n.seen = map[string]bool{}
	}
	if !n.seen[s] {
		n.seen[s] = true
		n.list = append(n.list, s)
	}
}
