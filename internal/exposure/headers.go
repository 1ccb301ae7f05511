// Package exposure limits what responses reveal: security headers and the
// removal of leaky upstream headers, masking of personal data and secrets,
// and safe errors (upstream error bodies replaced by problem documents).
package exposure

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// Secure defaults of the security headers, used when a field is empty.
const (
	DefaultContentTypeOptions    = "nosniff"
	DefaultFrameOptions          = "DENY"
	DefaultContentSecurityPolicy = "default-src 'none'; frame-ancestors 'none'"
	DefaultReferrerPolicy        = "no-referrer"
	DefaultCacheControl          = "no-store"
)

const (
	hCacheControl = "Cache-Control"
	hHSTS         = "Strict-Transport-Security"
	off           = "off"
)

// field is one header the stage sets, with its canonical name.
type field struct{ name, value string }

// Headers is the security-headers response stage. It is built by NewHeaders,
// immutable afterwards, and safe for concurrent use.
//
// Everything is computed at NewHeaders, including the Strict-Transport-Security
// value of the listener the stage serves; per response it only checks whether
// the exchange arrived over TLS.
type Headers struct {
	set          []field    // overwrite whatever the upstream sent
	cacheControl string     // set only when the response has no Cache-Control; "" for none
	remove       headerList // names and name prefixes removed
}

// NewHeaders builds the security-headers stage. It returns (nil, nil) when
// cfg.Disabled is set: no stage. HSTS belongs to the listener, not to the
// route: the server computes each TLS listener's value once with HSTSValue and
// hands it to the pipeline in gateway.Listener, which this stage reads.
//
// Empty fields of cfg take the secure defaults (the Default* constants); the
// value "off" (any case) omits a header. NewHeaders returns an error, naming
// every problem, for values with control characters, remove entries that are
// not header names or are a lone "*".
func NewHeaders(cfg config.SecurityHeaders) (*Headers, error) {
	if cfg.Disabled {
		return nil, nil
	}
	var errs []error
	h := &Headers{}
	for _, f := range []struct {
		path, name, value, def string
	}{
		{"content_type_options", "X-Content-Type-Options", cfg.ContentTypeOptions, DefaultContentTypeOptions},
		{"frame_options", "X-Frame-Options", cfg.FrameOptions, DefaultFrameOptions},
		{"content_security_policy", "Content-Security-Policy", cfg.ContentSecurityPolicy, DefaultContentSecurityPolicy},
		{"referrer_policy", "Referrer-Policy", cfg.ReferrerPolicy, DefaultReferrerPolicy},
		{"cache_control", hCacheControl, cfg.CacheControl, DefaultCacheControl},
	} {
		v, err := headerValue(f.value, f.def)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.path, err))
			continue
		}
		switch {
		case v == "":
		case f.name == hCacheControl:
			h.cacheControl = v
		default:
			h.set = append(h.set, field{f.name, v})
		}
	}

	remove := cfg.Remove
	if len(remove) == 0 {
		remove = DefaultLeakyHeaders
	}
	var rerrs []error
	h.remove, rerrs = compileHeaderList(remove)
	errs = append(errs, rerrs...)

	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("security headers: %w", err)
	}
	return h, nil
}

// HSTSValue returns the Strict-Transport-Security value for cfg, ignoring
// cfg.Disabled: "max-age=<seconds>" (config.DefaultHSTSMaxAge, a year, when
// MaxAge is 0), then "; includeSubDomains" unless IncludeSubdomains is false,
// then "; preload" when set. It returns an error for a negative max-age, and
// for preload without includeSubDomains or with a max-age under a year.
func HSTSValue(cfg config.HSTS) (string, error) {
	maxAge := cfg.MaxAge.D()
	if maxAge < 0 {
		return "", errors.New("max_age must not be negative")
	}
	if maxAge == 0 {
		maxAge = config.DefaultHSTSMaxAge.D()
	}
	sub := cfg.IncludeSubdomains == nil || *cfg.IncludeSubdomains
	if cfg.Preload && (!sub || maxAge < 365*24*time.Hour) {
		return "", errors.New("preload requires include_subdomains and a max_age of at least 365d")
	}
	v := "max-age=" + strconv.FormatInt(int64(maxAge/time.Second), 10)
	if sub {
		v += "; includeSubDomains"
	}
	if cfg.Preload {
		v += "; preload"
	}
	return v, nil
}

// ProcessResponse hardens the headers of res, an upstream response or one the
// gateway generated. In order, it:
//
//   - removes the configured headers (exact names, and every header starting
//     with a prefix entry) and any Strict-Transport-Security the upstream sent:
//     HSTS is a property of the gateway's listener, not of a backend;
//   - sets X-Content-Type-Options, X-Frame-Options, Content-Security-Policy
//     and Referrer-Policy, replacing the upstream's values;
//   - sets Cache-Control only when the response has none;
//   - sets Strict-Transport-Security when the exchange arrived over TLS
//     (ex.TLS != nil) and its listener has an HSTS value (ex.Listener.HSTS).
//
// It never rejects; it returns an error only when res is nil.
func (h *Headers) ProcessResponse(_ context.Context, ex *gateway.Exchange, res *http.Response) error {
	if res == nil {
		return errors.New("security headers: no response")
	}
	if res.Header == nil {
		res.Header = make(http.Header, len(h.set)+2)
	}
	hdr := res.Header
	h.remove.strip(hdr)
	delete(hdr, hHSTS)
	for _, f := range h.set {
		hdr[f.name] = []string{f.value}
	}
	if h.cacheControl != "" && len(hdr[hCacheControl]) == 0 {
		hdr[hCacheControl] = []string{h.cacheControl}
	}
	if ex != nil && ex.TLS != nil && ex.Listener != nil && ex.Listener.HSTS != "" {
		hdr[hHSTS] = []string{ex.Listener.HSTS}
	}
	return nil
}

// headerValue returns the value to send for a configured value v with default
// def: def when v is empty, "" when v is "off".
func headerValue(v, def string) (string, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return def, nil
	case strings.EqualFold(v, off):
		return "", nil
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return "", errors.New("header values must not contain control characters")
		}
	}
	return v, nil
}

var _ gateway.ResponseStage = (*Headers)(nil)
