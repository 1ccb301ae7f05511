// Package cors implements the CORS stage: it answers preflight requests,
// refuses cross-origin requests from origins that are not allowed, and is the
// single source of the Access-Control-* headers on every response of a route
// (those the upstream sends are removed).
package cors

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/cors/origin"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/httpsyntax"
)

// Header names, canonical.
const (
	hOrigin           = "Origin"
	hVary             = "Vary"
	hRequestMethod    = "Access-Control-Request-Method"
	hRequestHeaders   = "Access-Control-Request-Headers"
	hAllowOrigin      = "Access-Control-Allow-Origin"
	hAllowMethods     = "Access-Control-Allow-Methods"
	hAllowHeaders     = "Access-Control-Allow-Headers"
	hAllowCredentials = "Access-Control-Allow-Credentials"
	hExposeHeaders    = "Access-Control-Expose-Headers"
	hMaxAge           = "Access-Control-Max-Age"
)

// preflightVary lists what a preflight answer depends on.
var preflightVary = []string{hOrigin, hRequestMethod, hRequestHeaders}

// safelisted are the CORS-safelisted request header names, always allowed.
var safelisted = map[string]struct{}{
	"accept":           {},
	"accept-language":  {},
	"content-language": {},
	"content-type":     {},
}

// CORS is the compiled CORS policy of one route. It is built by New,
// immutable afterwards, and safe for concurrent use. It is both a request
// stage (place it first in the route's pipeline) and a response stage.
type CORS struct {
	origins      *origin.Matcher
	methods      map[string]struct{}
	allowMethods string // Access-Control-Allow-Methods value
	anyHeader    bool   // allow_headers holds "*"
	headers      map[string]struct{}
	expose       string // Access-Control-Expose-Headers value, or ""
	credentials  bool
	maxAge       string // Access-Control-Max-Age value, in seconds
	denyUnknown  bool
}

// New compiles a CORS policy. It returns (nil, nil) when cfg is nil or
// disabled: the route then has no CORS stage. routeMethods are the route's
// methods, used when cfg.AllowMethods is empty (HEAD is then added when GET is
// served, as the router does).
//
// New returns an error, naming every problem, for: an empty or invalid
// allow_origins list (see origin.Validate), "*" together with
// allow_credentials, no methods at all, method or header names that are not
// tokens, and a negative max_age.
func New(cfg *config.CORS, routeMethods []string) (*CORS, error) {
	if cfg == nil || cfg.Disabled {
		return nil, nil
	}
	var errs []error
	c := &CORS{
		credentials: cfg.AllowCredentials,
		denyUnknown: cfg.DenyUnknownOrigins == nil || *cfg.DenyUnknownOrigins,
	}

	if len(cfg.AllowOrigins) == 0 {
		errs = append(errs, errors.New("allow_origins: at least one origin is required (or set disabled: true)"))
	}
	origins, err := origin.NewMatcher(cfg.AllowOrigins)
	if err != nil {
		errs = append(errs, err)
	}
	c.origins = origins
	if origins != nil && origins.Any() && cfg.AllowCredentials {
		errs = append(errs, errors.New(`allow_origins: "*" cannot be combined with allow_credentials; list the origins`))
	}

	methods, derived := cfg.AllowMethods, false
	if len(methods) == 0 {
		methods, derived = routeMethods, true
	}
	c.methods = make(map[string]struct{}, len(methods)+1)
	var order []string
	addMethod := func(m string) {
		if _, dup := c.methods[m]; !dup {
			c.methods[m] = struct{}{}
			order = append(order, m)
		}
	}
	for i, m := range methods {
		m = strings.ToUpper(strings.TrimSpace(m))
		if !httpsyntax.IsToken(m) {
			errs = append(errs, fmt.Errorf("allow_methods[%d]: %q is not a method", i, m))
			continue
		}
		addMethod(m)
	}
	if _, get := c.methods[http.MethodGet]; get && derived {
		addMethod(http.MethodHead)
	}
	if len(methods) == 0 {
		errs = append(errs, errors.New("allow_methods: no methods (neither allow_methods nor the route's methods)"))
	}
	c.allowMethods = strings.Join(order, ", ")

	c.headers = make(map[string]struct{}, len(cfg.AllowHeaders))
	for i, h := range cfg.AllowHeaders {
		h = strings.TrimSpace(h)
		switch {
		case h == "*":
			c.anyHeader = true
		case !httpsyntax.IsToken(h):
			errs = append(errs, fmt.Errorf("allow_headers[%d]: %q is not a header name", i, h))
		default:
			c.headers[strings.ToLower(h)] = struct{}{}
		}
	}

	expose := make([]string, 0, len(cfg.ExposeHeaders))
	for i, h := range cfg.ExposeHeaders {
		h = strings.TrimSpace(h)
		if !httpsyntax.IsToken(h) {
			errs = append(errs, fmt.Errorf("expose_headers[%d]: %q is not a header name", i, h))
			continue
		}
		expose = append(expose, h)
	}
	c.expose = strings.Join(expose, ", ")

	maxAge := cfg.MaxAge.D()
	switch {
	case maxAge < 0:
		errs = append(errs, errors.New("max_age: must not be negative"))
	case maxAge == 0:
		maxAge = config.DefaultCORSMaxAge.D()
	}
	c.maxAge = strconv.FormatInt(int64(maxAge/time.Second), 10)

	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cors: %w", err)
	}
	return c, nil
}

// IsPreflight reports whether r is a CORS preflight: an OPTIONS request with
// a non-empty Origin and Access-Control-Request-Method.
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get(hOrigin) != "" && r.Header.Get(hRequestMethod) != ""
}

// ProcessRequest applies the policy to the client request. A request without
// Origin passes untouched. A preflight is answered here: 403
// cors_origin_denied for an origin that is not allowed, 403
// cors_preflight_denied for a method or header that is not, and otherwise a
// *gateway.Answer 204 carrying the preflight headers. Any other request with
// an Origin that is not allowed gets 403 cors_origin_denied when
// deny_unknown_origins is on (the default), and passes without CORS headers
// when it is off.
func (c *CORS) ProcessRequest(_ context.Context, ex *gateway.Exchange) error {
	if ex == nil || ex.Request == nil {
		return errors.New("cors: exchange has no request")
	}
	r := ex.Request
	origin, ok := requestOrigin(r.Header)
	if !ok {
		return nil
	}
	if IsPreflight(r) {
		h := make(http.Header, 7)
		if rej := c.preflight(r, origin, h); rej != nil {
			return rej
		}
		return &gateway.Answer{Status: http.StatusNoContent, Header: h}
	}
	if c.origins.Match(origin) || !c.denyUnknown {
		return nil
	}
	return gateway.Rejectf(http.StatusForbidden, gateway.ReasonCORSOriginDenied, "origin %q is not allowed", clip(origin))
}

// ProcessResponse makes the gateway the only source of CORS headers on the
// response: it removes every Access-Control-* header already there, then, for
// a request whose Origin is allowed, sets Access-Control-Allow-Origin,
// Access-Control-Allow-Credentials and Access-Control-Expose-Headers. It
// always adds Origin to Vary (once).
//
// The client request is ex.Request, or res.Request when ex has none. On a
// preflight the preflight headers are computed again from the request, so
// running ProcessResponse on the Answer from ProcessRequest (as the gateway
// does for every locally generated response) leaves it unchanged, and a
// preflight answered any other way never carries an upstream's CORS headers.
func (c *CORS) ProcessResponse(_ context.Context, ex *gateway.Exchange, res *http.Response) error {
	if res == nil {
		return errors.New("cors: no response")
	}
	if res.Header == nil {
		res.Header = make(http.Header)
	}
	h := res.Header
	stripAccessControl(h)

	r := res.Request
	if ex != nil && ex.Request != nil {
		r = ex.Request
	}
	if r == nil {
		addVary(h, hOrigin)
		return nil
	}
	origin, ok := requestOrigin(r.Header)
	if ok && IsPreflight(r) {
		_ = c.preflight(r, origin, h) // sets nothing when the preflight is denied
		addVary(h, preflightVary...)
		return nil
	}
	addVary(h, hOrigin)
	if !ok || !c.origins.Match(origin) {
		return nil
	}
	c.setAllowOrigin(h, origin)
	if c.expose != "" {
		h[hExposeHeaders] = []string{c.expose}
	}
	return nil
}

// preflight checks a preflight request with the given origin. When it is
// allowed it writes the preflight headers into h and returns nil; otherwise it
// leaves h alone and returns the Reject.
func (c *CORS) preflight(r *http.Request, origin string, h http.Header) *gateway.Reject {
	if !c.origins.Match(origin) {
		return gateway.Rejectf(http.StatusForbidden, gateway.ReasonCORSOriginDenied, "preflight: origin %q is not allowed", clip(origin))
	}
	method := r.Header.Get(hRequestMethod)
	if _, ok := c.methods[method]; !ok {
		return gateway.Rejectf(http.StatusForbidden, gateway.ReasonCORSPreflightDenied, "preflight: method %q is not allowed", clip(method))
	}
	var allowed []string
	for _, line := range r.Header[hRequestHeaders] {
		for name := range strings.SplitSeq(line, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if !c.headerAllowed(name) {
				return gateway.Rejectf(http.StatusForbidden, gateway.ReasonCORSPreflightDenied, "preflight: header %q is not allowed", clip(name))
			}
			allowed = append(allowed, name)
		}
	}

	c.setAllowOrigin(h, origin)
	h[hAllowMethods] = []string{c.allowMethods}
	if len(allowed) > 0 {
		h[hAllowHeaders] = []string{strings.Join(allowed, ", ")}
	}
	h[hMaxAge] = []string{c.maxAge}
	addVary(h, preflightVary...)
	return nil
}

// headerAllowed reports whether a requested header name may be sent.
func (c *CORS) headerAllowed(name string) bool {
	if !httpsyntax.IsToken(name) {
		return false
	}
	if c.anyHeader {
		return true
	}
	name = httpsyntax.LowerASCII(name)
	if _, ok := safelisted[name]; ok {
		return true
	}
	_, ok := c.headers[name]
	return ok
}

// setAllowOrigin sets Access-Control-Allow-Origin (and -Credentials) for an
// allowed origin: "*" when every origin is allowed (never with credentials,
// which New refuses), the request's own origin otherwise.
func (c *CORS) setAllowOrigin(h http.Header, origin string) {
	if c.origins.Any() {
		h[hAllowOrigin] = []string{"*"}
	} else {
		h[hAllowOrigin] = []string{origin}
	}
	if c.credentials {
		h[hAllowCredentials] = []string{"true"}
	}
}

// requestOrigin returns the request's Origin and whether it has one. Several
// Origin lines are not a valid origin: "" is returned, which matches only
// when every origin is allowed.
func requestOrigin(h http.Header) (string, bool) {
	v := h[hOrigin]
	switch {
	case len(v) == 0 || v[0] == "":
		return "", false
	case len(v) > 1:
		return "", true
	}
	return v[0], true
}

// stripAccessControl removes every Access-Control-* header from h.
func stripAccessControl(h http.Header) {
	const prefix = "Access-Control-"
	for k := range h {
		if len(k) >= len(prefix) && strings.EqualFold(k[:len(prefix)], prefix) {
			delete(h, k)
		}
	}
}

// addVary adds each of names to the Vary header of h unless it is already
// listed (case-insensitively) or Vary is "*". Missing names are appended to
// the last Vary line, so a single-line Vary stays a single line.
func addVary(h http.Header, names ...string) {
	lines := h[hVary]
	var missing []string
	for _, n := range names {
		if !listHas(lines, n) {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 || listHas(lines, "*") {
		return
	}
	add := strings.Join(missing, ", ")
	// Copy: the slices may be shared with the Reject or Answer they came from.
	out := make([]string, len(lines), len(lines)+1)
	copy(out, lines)
	switch n := len(out); {
	case n == 0:
		out = append(out, add)
	case strings.TrimSpace(out[n-1]) == "":
		out[n-1] = add
	default:
		out[n-1] += ", " + add
	}
	h[hVary] = out
}

// listHas reports whether the comma-separated header lines contain name.
func listHas(lines []string, name string) bool {
	for _, line := range lines {
		for v := range strings.SplitSeq(line, ",") {
			if strings.EqualFold(strings.TrimSpace(v), name) {
				return true
			}
		}
	}
	return false
}

// clip shortens client-supplied values quoted in internal details.
func clip(s string) string {
	const n = 128
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

var (
	_ gateway.RequestStage  = (*CORS)(nil)
	_ gateway.ResponseStage = (*CORS)(nil)
)
