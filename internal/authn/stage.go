package authn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/ratelimit"
)

// Reasons the authentication stage itself answers with; authenticators
// declare their own for bad credentials.
const (
	ReasonCredentialsMissing = "credentials_missing"
	ReasonLockedOut          = "auth_locked_out"
	ReasonAuthnUnavailable   = "authn_unavailable"
)

// Named is an authenticator with its configuration name.
type Named struct {
	Name string
	Authenticator
}

// Headers names the request headers that carry the principal upstream.
// Client-sent copies are always removed, on every route.
type Headers struct {
	Disabled      bool
	Subject       string
	Authenticator string
	Roles         string
	Scopes        string
	Claims        map[string]string // claim name -> header
}

// StageOptions configures a route's authentication stage.
type StageOptions struct {
	Authenticators []Named // tried in order; none: the stage only strips spoofed principal headers
	Headers        Headers
	// Credentials are the request headers that can carry credentials
	// (Authorization, API key headers); they are removed before proxying
	// unless PassCredential.
	Credentials    []string
	QueryParams    []string // query parameters carrying credentials, removed likewise
	PassCredential bool
	Lockout        *Lockout // nil: no brute-force protection
}

// Stage authenticates requests and forwards the principal. It is immutable
// and safe for concurrent use.
type Stage struct {
	o          StageOptions
	challenges []string
	strip      []string // canonical principal header names
}

// NewStage builds a route's authentication stage.
func NewStage(o StageOptions) *Stage {
	s := &Stage{o: o}
	for _, a := range o.Authenticators {
		if c := a.Challenge(); c != "" {
			s.challenges = append(s.challenges, c)
		}
	}
	h := o.Headers
	for _, name := range []string{h.Subject, h.Authenticator, h.Roles, h.Scopes} {
		if name != "" {
			s.strip = append(s.strip, http.CanonicalHeaderKey(name))
		}
	}
	for _, name := range h.Claims {
		s.strip = append(s.strip, http.CanonicalHeaderKey(name))
	}
	for i, c := range o.Credentials {
		o.Credentials[i] = http.CanonicalHeaderKey(c)
	}
	return s
}

// ProcessRequest removes client-sent principal headers, then (on routes with
// authenticators) finds the first authenticator whose credential the request
// carries: a good credential sets ex.Principal and its headers; a bad one
// answers 401 with the authenticator's reason; none answers 401
// credentials_missing with every challenge. Clients locked out after
// repeated failures get 429 auth_locked_out without their credential being
// checked.
func (s *Stage) ProcessRequest(ctx context.Context, ex *gateway.Exchange) error {
	r := ex.Request
	for _, h := range s.strip {
		delete(r.Header, h)
	}
	if len(s.o.Authenticators) == 0 {
		return nil
	}
	if lo := s.o.Lockout; lo != nil {
		if locked, retry, err := lo.Locked(ctx, ex); err != nil {
			return &gateway.Reject{Status: http.StatusServiceUnavailable, ReasonID: ReasonAuthnUnavailable, Err: err}
		} else if locked {
			return &gateway.Reject{Status: http.StatusTooManyRequests, ReasonID: ReasonLockedOut,
				Header: http.Header{"Retry-After": {strconv.FormatInt(int64((retry+time.Second-1)/time.Second), 10)}}}
		}
	}
	for _, a := range s.o.Authenticators {
		p, err := a.Authenticate(ctx, ex)
		if errors.Is(err, ErrNoCredentials) {
			continue
		}
		var f *Failure
		switch {
		case errors.As(err, &f):
			if lo := s.o.Lockout; lo != nil {
				lo.Failed(ctx, ex, f.Identity)
			}
			// The client learns that its credential was refused, not why:
			// the exact reason is for logs and audit.
			rej := &gateway.Reject{Status: http.StatusUnauthorized, ReasonID: f.ReasonID, PublicReason: gateway.ReasonInvalidCredentials,
				Detail: a.Name + ": " + f.Error()}
			if c := a.Challenge(); c != "" {
				rej.Header = http.Header{"Www-Authenticate": {c}}
			}
			return rej
		case err != nil:
			return &gateway.Reject{Status: http.StatusServiceUnavailable, ReasonID: ReasonAuthnUnavailable, Detail: a.Name, Err: err}
		case p == nil:
			return &gateway.Reject{Status: http.StatusInternalServerError, ReasonID: gateway.ReasonInternalError, Detail: a.Name + " returned no principal"}
		}
		if p.Authenticator == "" {
			p.Authenticator = a.Name
		}
		ex.Principal = p
		s.forward(r, p)
		return nil
	}
	rej := &gateway.Reject{Status: http.StatusUnauthorized, ReasonID: ReasonCredentialsMissing}
	if len(s.challenges) > 0 {
		rej.Header = http.Header{"Www-Authenticate": s.challenges}
	}
	return rej
}

// forward sets the principal headers and removes the credential.
func (s *Stage) forward(r *http.Request, p *gateway.Principal) {
	if !s.o.PassCredential {
		for _, h := range s.o.Credentials {
			delete(r.Header, h)
		}
		if len(s.o.QueryParams) > 0 && r.URL.RawQuery != "" {
			q := r.URL.Query()
			for _, k := range s.o.QueryParams {
				q.Del(k)
			}
			r.URL.RawQuery = q.Encode()
		}
	}
	h := s.o.Headers
	if h.Disabled {
		return
	}
	set := func(name, v string) {
		if name != "" && v != "" && !strings.ContainsAny(v, "\r\n\x00") {
			r.Header[http.CanonicalHeaderKey(name)] = []string{v}
		}
	}
	set(h.Subject, p.Subject)
	set(h.Authenticator, p.Authenticator)
	set(h.Roles, strings.Join(p.Roles, ","))
	set(h.Scopes, strings.Join(p.Scopes, " "))
	for claim, name := range h.Claims {
		switch v := p.Claims[claim].(type) {
		case string:
			set(name, v)
		case float64:
			set(name, strconv.FormatFloat(v, 'f', -1, 64))
		case bool:
			set(name, strconv.FormatBool(v))
		}
	}
}

// Lockout counts authentication failures per client address (and per
// claimed identity) in a rate-limit store, so that it is shared by every
// instance when the store is Redis. Past MaxFailures within Window the
// client is locked out for Cooldown.
type Lockout struct {
	Store       ratelimit.Store
	MaxFailures int64
	Window      time.Duration
	Cooldown    time.Duration
	Policy      ratelimit.Policy // when a shared store cannot answer
	IPv6Prefix  int
}

func (l *Lockout) failures() ratelimit.Limit {
	return ratelimit.Limit{Rate: l.MaxFailures, Period: l.Window, Burst: l.MaxFailures}
}

func (l *Lockout) lock() ratelimit.Limit {
	return ratelimit.Limit{Rate: 1, Period: l.Cooldown, Burst: 1}
}

func (l *Lockout) client(ex *gateway.Exchange) string {
	a := ex.ClientIP
	if a.Is6() && !a.Is4In6() && l.IPv6Prefix > 0 && l.IPv6Prefix < 128 {
		if p, err := a.Prefix(l.IPv6Prefix); err == nil {
			return p.String()
		}
	}
	return a.Unmap().String()
}

// Locked reports whether the client is locked out, and for how long. It
// reads the lock without charging it: a check whose cost exceeds the burst is
// never admitted and never charged, and its Remaining tells whether the lock
// is set.
func (l *Lockout) Locked(ctx context.Context, ex *gateway.Exchange) (bool, time.Duration, error) {
	checks := []ratelimit.Check{{Key: "authlock:" + l.client(ex), Limit: l.lock(), Cost: 2, OnUnavailable: l.Policy, LocalShare: 1}}
	results := make([]ratelimit.Result, 1)
	_, err := l.Store.Allow(ctx, time.Now(), checks, results)
	if err != nil {
		return false, 0, err
	}
	return results[0].Remaining == 0, results[0].ResetAfter, nil
}

// Failed records a failure; past the threshold it sets the lock.
func (l *Lockout) Failed(ctx context.Context, ex *gateway.Exchange, identity string) {
	now := time.Now()
	keys := []string{"authfail:" + l.client(ex)}
	if identity != "" {
		// Hashed: a claimed user name may be a mistyped password, and must
		// not reach a shared store in clear.
		sum := sha256.Sum256([]byte(identity))
		keys = append(keys, "authfail-id:"+hex.EncodeToString(sum[:16]))
	}
	for _, k := range keys {
		res := make([]ratelimit.Result, 1)
		ok, err := l.Store.Allow(ctx, now, []ratelimit.Check{{Key: k, Limit: l.failures(), OnUnavailable: l.Policy, LocalShare: 1}}, res)
		if err == nil && !ok {
			l.Store.Allow(ctx, now, []ratelimit.Check{{Key: "authlock:" + l.client(ex), Limit: l.lock(), OnUnavailable: l.Policy, LocalShare: 1}}, res)
			return
		}
	}
}

var _ gateway.RequestStage = (*Stage)(nil)
