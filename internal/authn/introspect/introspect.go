// Package introspect authenticates opaque OAuth 2.0 bearer tokens by asking
// the authorization server's introspection endpoint (RFC 7662) about them.
//
// Answers are cached by the SHA-256 of the token, so the endpoint sees a
// token about once per cache_ttl rather than once per request: an active
// token for at most cache_ttl and never past its exp, an inactive one for
// at most 10 seconds (enough to absorb a flood of requests with one bad
// token). Concurrent requests with the same uncached token share one call.
// Required scopes are checked on every request, against the cached answer
// too.
//
// When the endpoint cannot answer (unreachable, timed out, a status other
// than 200, a response that is too large or not an introspection response),
// Authenticate fails closed with an error wrapping ErrUnavailable, which is
// not an *authn.Failure: the authentication stage answers 503, the request
// is refused, and the next request asks again (failures are not cached).
package introspect

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moat-gateway/moat/internal/authn"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// Reasons for refusing a bearer token.
const (
	// ReasonTokenMalformed: the Authorization header uses the Bearer
	// scheme but carries no token, or one that is oversized or not token68.
	ReasonTokenMalformed = "token_malformed"
	// ReasonTokenInactive: the endpoint reports the token inactive
	// (unknown, expired, revoked), or its exp has passed.
	ReasonTokenInactive = "token_inactive"
	// ReasonTokenScopeMissing: the token is active but lacks a scope the
	// authenticator requires.
	ReasonTokenScopeMissing = "token_scope_missing"
	// ReasonTokenNoSubject: the token is active but the endpoint names
	// neither its sub nor its username.
	ReasonTokenNoSubject = "token_no_subject"
)

// Kind is the Principal.Kind of introspected principals.
const Kind = "introspection"

// ErrUnavailable is wrapped by every error that is the endpoint's fault
// rather than the token's: the endpoint could not be reached or did not
// answer in time, answered with a status other than 200, or sent a response
// that is too large or not a valid introspection response. The request
// fails closed.
var ErrUnavailable = errors.New("introspection endpoint unavailable")

const (
	defaultCacheTTL  = time.Minute
	defaultTimeout   = 2 * time.Second
	inactiveTTL      = 10 * time.Second // longest an inactive answer is cached
	maxResponseSize  = 64 << 10
	maxTokenLength   = 8 << 10
	defaultCacheSize = 10_000
	evictionScan     = 8 // cached entries looked at for an expired one when the cache is full
)

// Authenticator checks bearer tokens with an RFC 7662 introspection
// endpoint. Create it with New; the zero value is not usable. It is safe
// for concurrent use.
type Authenticator struct {
	name       string
	endpoint   string
	clientAuth string // Authorization header value with the client secret: never logged
	required   []string
	ttl        time.Duration
	timeout    time.Duration
	transport  *http.Transport
	client     *http.Client
	log        *slog.Logger
	now        func() time.Time // replaced in tests
	maxEntries int

	mu    sync.Mutex
	cache map[[sha256.Size]byte]*entry
	calls map[[sha256.Size]byte]*call
}

// result is the endpoint's answer about one token; immutable.
type result struct {
	active  bool
	subject string
	scopes  []string
	claims  map[string]any // the whole response
	exp     time.Time      // zero: no exp
}

// entry is a cached result.
type entry struct {
	res   *result
	until time.Time
}

// call is an introspection request in flight, shared by every request
// with the same token; res and err are set before done is closed.
type call struct {
	done    chan struct{}
	res     *result
	err     error
	waiters int // requests waiting; guarded by Authenticator.mu (tests)
}

// New builds the Authenticator called name (its key under authenticators)
// from cfg: it checks the endpoint URL, reads the CA file and prepares the
// HTTP client. The endpoint must be https, or http on a loopback address
// (a sidecar); client_id and client_secret are required and sent with
// HTTP Basic, form-encoded as RFC 6749 section 2.3.1 says. The endpoint is
// verified with the CAs of ca_file when set (else the system roots), with
// TLS 1.2 or later, and reached directly, not through HTTP(S)_PROXY. Zero
// durations take the defaults (cache_ttl 60s, timeout 2s). Errors name the
// field and never contain the secret. A nil log discards logs.
func New(name string, cfg *config.IntrospectionAuth, log *slog.Logger) (*Authenticator, error) {
	field := "authenticators." + name + ".introspection"
	if cfg == nil {
		return nil, fmt.Errorf("%s: no configuration", field)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkEndpoint(cfg.Endpoint); err != nil {
		return nil, fmt.Errorf("%s.endpoint: %w", field, err)
	}
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("%s.client_id: required", field)
	}
	if cfg.ClientSecret.Value() == "" {
		return nil, fmt.Errorf("%s.client_secret: required", field)
	}
	for i, s := range cfg.RequiredScopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return nil, fmt.Errorf("%s.required_scopes[%d]: %q is not a scope", field, i, s)
		}
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pool, err := loadCAs(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.ca_file: %w", field, err)
		}
		tlsConfig.RootCAs = pool
	}
	a := &Authenticator{
		name:     name,
		endpoint: cfg.Endpoint,
		clientAuth: "Basic " + base64.StdEncoding.EncodeToString(
			[]byte(url.QueryEscape(cfg.ClientID)+":"+url.QueryEscape(cfg.ClientSecret.Value()))),
		required:   slices.Clone(cfg.RequiredScopes),
		ttl:        orDefault(cfg.CacheTTL.D(), defaultCacheTTL),
		timeout:    orDefault(cfg.Timeout.D(), defaultTimeout),
		log:        log.With("authenticator", name),
		now:        time.Now,
		maxEntries: defaultCacheSize,
		cache:      make(map[[sha256.Size]byte]*entry),
		calls:      make(map[[sha256.Size]byte]*call),
	}
	a.log.Debug("introspection authenticator ready", "endpoint", cfg.Endpoint, "cache_ttl", a.ttl, "timeout", a.timeout)
	a.transport = &http.Transport{
		Proxy:                  nil, // the endpoint is reached directly, whatever HTTPS_PROXY says
		DialContext:            (&net.Dialer{Timeout: a.timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:        tlsConfig,
		TLSHandshakeTimeout:    a.timeout,
		ResponseHeaderTimeout:  a.timeout,
		MaxIdleConns:           64,
		MaxIdleConnsPerHost:    64,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: maxResponseSize,
		ForceAttemptHTTP2:      true,
	}
	a.client = &http.Client{
		Transport: a.transport,
		// A redirect is answered as it is (and refused as not 200): the
		// client credentials and the token are not sent elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return a, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// checkEndpoint accepts https URLs, and http URLs on loopback addresses.
func checkEndpoint(raw string) error {
	if raw == "" {
		return errors.New("required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Host == "":
		return errors.New("not an absolute http(s) URL")
	case u.User != nil:
		return errors.New("must not contain credentials; set client_id and client_secret")
	case u.Fragment != "":
		return errors.New("must not have a fragment")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return errors.New("plain http is allowed only to a loopback address; tokens and the client secret would cross the network in clear")
	}
	return errors.New("not an absolute http(s) URL")
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loadCAs reads a PEM CA bundle; it names the file on error.
func loadCAs(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificates", path)
	}
	return pool, nil
}

// Challenge returns `Bearer realm="moat"`.
func (a *Authenticator) Challenge() string { return `Bearer realm="moat"` }

// Close closes the idle connections to the endpoint. Authenticate still
// works afterwards, opening new ones; there is no background work to stop.
func (a *Authenticator) Close() error {
	a.transport.CloseIdleConnections()
	return nil
}

// Authenticate checks the request's bearer token. It returns
// authn.ErrNoCredentials when there is no Authorization header or it names
// another scheme (an introspection authenticator claims every Bearer
// token, so list it after authenticators of more specific bearer tokens);
// a *authn.Failure with ReasonTokenMalformed, ReasonTokenInactive,
// ReasonTokenNoSubject or ReasonTokenScopeMissing; an error wrapping
// ErrUnavailable when the endpoint cannot answer, or the context's error
// when ctx ends first; else the token's Principal.
func (a *Authenticator) Authenticate(ctx context.Context, ex *gateway.Exchange) (*gateway.Principal, error) {
	token, err := bearerToken(ex.Request.Header)
	if err != nil {
		return nil, err
	}
	res, err := a.lookup(ctx, token)
	if err != nil {
		return nil, err
	}
	if !res.active {
		return nil, authn.Fail(ReasonTokenInactive, "the endpoint reports the token inactive")
	}
	if !res.exp.IsZero() && !a.now().Before(res.exp) {
		return nil, authn.Fail(ReasonTokenInactive, "token expired at %s", res.exp.UTC().Format(time.RFC3339))
	}
	if res.subject == "" {
		return nil, authn.Fail(ReasonTokenNoSubject, "the endpoint names neither sub nor username")
	}
	for _, s := range a.required {
		if !slices.Contains(res.scopes, s) {
			f := authn.Fail(ReasonTokenScopeMissing, "token lacks scope %q", s)
			f.Identity = res.subject
			return nil, f
		}
	}
	return &gateway.Principal{
		Subject:       res.subject,
		Authenticator: a.name,
		Kind:          Kind,
		Scopes:        slices.Clone(res.scopes),
		Claims:        maps.Clone(res.claims),
		ExpiresAt:     res.exp,
	}, nil
}

// bearerToken returns the token of a Bearer Authorization header,
// authn.ErrNoCredentials, or a ReasonTokenMalformed Failure. Several
// Authorization headers of which one is Bearer are refused: which one the
// upstream would honour is ambiguous.
func bearerToken(h http.Header) (string, error) {
	vals := h["Authorization"]
	rest, found := "", false
	for _, v := range vals {
		if scheme, r, _ := strings.Cut(v, " "); strings.EqualFold(scheme, "Bearer") {
			rest, found = r, true
		}
	}
	if !found {
		return "", authn.ErrNoCredentials
	}
	if len(vals) > 1 {
		return "", authn.Fail(ReasonTokenMalformed, "%d Authorization headers", len(vals))
	}
	token := strings.Trim(rest, " \t")
	switch {
	case token == "":
		return "", authn.Fail(ReasonTokenMalformed, "no token after the Bearer scheme")
	case len(token) > maxTokenLength:
		return "", authn.Fail(ReasonTokenMalformed, "token longer than %d bytes", maxTokenLength)
	case !isToken68(token):
		return "", authn.Fail(ReasonTokenMalformed, "token is not token68")
	}
	return token, nil
}

// isToken68 reports whether s matches RFC 9110's token68:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isToken68(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

// lookup returns the cached answer about token or asks the endpoint,
// joining a call already in flight for the same token. The call runs on
// its own goroutine, bounded by the timeout and not cancelled with ctx, so
// one client going away does not fail the others waiting on it.
func (a *Authenticator) lookup(ctx context.Context, token string) (*result, error) {
	key := sha256.Sum256([]byte(token))
	now := a.now()
	a.mu.Lock()
	if e, ok := a.cache[key]; ok {
		if now.Before(e.until) {
			a.mu.Unlock()
			return e.res, nil
		}
		delete(a.cache, key)
	}
	c, ok := a.calls[key]
	if !ok {
		c = &call{done: make(chan struct{})}
		a.calls[key] = c
		go a.fetch(context.WithoutCancel(ctx), key, token, c)
	}
	c.waiters++
	a.mu.Unlock()

	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for token introspection: %w", ctx.Err())
	}
}

// fetch asks the endpoint, caches a good answer and completes c.
func (a *Authenticator) fetch(ctx context.Context, key [sha256.Size]byte, token string, c *call) {
	var res *result
	var err error
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("%w: introspection panicked: %v", ErrUnavailable, p)
		}
		now := a.now()
		a.mu.Lock()
		delete(a.calls, key)
		if err == nil {
			a.storeLocked(key, res, now)
		}
		c.res, c.err = res, err
		a.mu.Unlock()
		close(c.done)
	}()
	// A failure is not logged here: the authentication stage logs the
	// refused request once.
	res, err = a.introspect(ctx, token)
}

// storeLocked caches res from now: an active answer for the TTL but not
// past its exp, an inactive one for at most inactiveTTL. A full cache
// first drops an expired entry among a few, else an arbitrary one. a.mu is
// held.
func (a *Authenticator) storeLocked(key [sha256.Size]byte, res *result, now time.Time) {
	ttl := a.ttl
	if !res.active {
		ttl = min(ttl, inactiveTTL)
	}
	until := now.Add(ttl)
	if res.active && !res.exp.IsZero() && res.exp.Before(until) {
		until = res.exp
	}
	if !until.After(now) {
		return
	}
	if _, ok := a.cache[key]; !ok && len(a.cache) >= a.maxEntries {
		var victim [sha256.Size]byte
		found, scanned := false, 0
		for k, e := range a.cache {
			if !now.Before(e.until) {
				victim, found = k, true
				break
			}
			if !found {
				victim, found = k, true
			}
			if scanned++; scanned >= evictionScan {
				break
			}
		}
		if found {
			delete(a.cache, victim)
		}
	}
	a.cache[key] = &entry{res: res, until: until}
}

// introspect makes one introspection request.
func (a *Authenticator) introspect(ctx context.Context, token string) (*result, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.endpoint, strings.NewReader(form))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", a.clientAuth)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s answered status %d", ErrUnavailable, a.endpoint, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the response of %s: %w", ErrUnavailable, a.endpoint, err)
	}
	if len(body) > maxResponseSize {
		return nil, fmt.Errorf("%w: the response of %s is larger than %d bytes", ErrUnavailable, a.endpoint, maxResponseSize)
	}
	res, err := parseResponse(body)
	if err != nil {
		return nil, fmt.Errorf("%w: the response of %s: %w", ErrUnavailable, a.endpoint, err)
	}
	return res, nil
}

// latestExp bounds exp: the year 9999.
const latestExp = 253402300799

// parseResponse parses an introspection response: a JSON object whose
// active member is a boolean. For an active token, sub and username must
// be strings, scope a space-separated string (or, as some servers send, an
// array of strings) and exp a number of seconds since the epoch, when
// present. The other members are kept as claims, unchecked.
func parseResponse(body []byte) (*result, error) {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	active, ok := m["active"].(bool)
	if !ok {
		return nil, errors.New(`"active" is missing or not a boolean`)
	}
	if !active {
		return &result{}, nil
	}
	res := &result{active: true, claims: m}
	for _, name := range []string{"sub", "username"} {
		v, present := m[name]
		if !present {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%q is not a string", name)
		}
		if res.subject == "" {
			res.subject = s
		}
	}
	switch v := m["scope"].(type) {
	case nil:
	case string:
		res.scopes = strings.Fields(v)
	case []any:
		for _, s := range v {
			str, ok := s.(string)
			if !ok {
				return nil, errors.New(`"scope" is neither a string nor an array of strings`)
			}
			res.scopes = append(res.scopes, str)
		}
	default:
		return nil, errors.New(`"scope" is neither a string nor an array of strings`)
	}
	if v, present := m["exp"]; present {
		exp, ok := v.(float64)
		if !ok || exp <= 0 || exp > latestExp || math.IsNaN(exp) {
			return nil, errors.New(`"exp" is not a time in seconds since the epoch`)
		}
		res.exp = time.Unix(int64(exp), 0)
	}
	return res, nil
}

var _ authn.Authenticator = (*Authenticator)(nil)
