// Package versioning is the API-version stage of a route: it checks the
// version a client asked for (in a header or a media-type parameter),
// announces deprecation and sunset (RFC 9745 Deprecation, RFC 8594 Sunset,
// Link rel="deprecation"), refuses a version past its sunset, and counts
// the use of deprecated versions per principal.
//
// The router matches host, method and path only, so a route with a version
// block serves exactly one version: a request for another one is refused
// (406 version_not_supported) rather than sent to the route of that version.
// docs/versioning.md describes the configuration and this limit.
package versioning

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// Reason IDs returned by the stage (docs/reasons.md).
const (
	// ReasonVersionNotSupported (406): the request names a version the
	// route does not serve.
	ReasonVersionNotSupported = "version_not_supported"
	// ReasonVersionRequired (400): the request names no version and the
	// route is not the default version.
	ReasonVersionRequired = "version_required"
	// ReasonVersionRetired (410): the route's version is past its sunset.
	ReasonVersionRetired = "api_version_retired"
)

// FindingDeprecatedVersion is the finding key under which the stage records
// the deprecated version a request used.
const FindingDeprecatedVersion = "deprecated_version"

// DefaultMaxPrincipals bounds the principals counted separately by Usage;
// past it, further principals are counted under OverflowKey.
const DefaultMaxPrincipals = 10000

// Keys of Usage that are not principals.
const (
	// AnonymousKey counts requests without a principal.
	AnonymousKey = "_anonymous"
	// OverflowKey counts principals seen after DefaultMaxPrincipals others.
	OverflowKey = "_other"
)

// maxAcceptLen bounds the part of an Accept header that is parsed.
const maxAcceptLen = 4096

// Stage is the versioning stage of one route: a request stage (version
// check, sunset) and a response stage (deprecation headers). It is built by
// New, immutable afterwards except for its usage counter, and safe for
// concurrent use.
type Stage struct {
	value   string // normalised version
	from    string
	header  string // canonical request header, for from header
	def     bool
	now     func() time.Time
	vary    string // Vary value added to responses; "" for none
	headers []field
	depAt   time.Time // zero when not deprecated
	sunset  time.Time // zero when none
	usage   *Counter
}

type field struct{ name, value string }

// New builds the stage for cfg (defaults are applied to a copy) with the
// clock now (time.Now when nil). It returns (nil, nil) for a nil cfg, and an
// error naming every problem of an invalid block.
func New(cfg *config.Version, now func() time.Time) (*Stage, error) {
	if cfg == nil {
		return nil, nil
	}
	c := *cfg
	c.ApplyDefaults()
	if probs := c.Validate("version"); len(probs) > 0 {
		msgs := make([]string, len(probs))
		for i, p := range probs {
			msgs[i] = p.Path + ": " + p.Msg
		}
		return nil, fmt.Errorf("building versioning: %s", strings.Join(msgs, "; "))
	}
	if now == nil {
		now = time.Now
	}
	s := &Stage{value: normalize(c.Value), from: c.From, def: c.Default, now: now, usage: NewCounter(DefaultMaxPrincipals)}
	switch c.From {
	case config.VersionFromHeader:
		s.header = http.CanonicalHeaderKey(c.Header)
		s.vary = s.header
	case config.VersionFromMediaType:
		s.vary = "Accept"
	}
	if c.Deprecated {
		s.depAt, _ = time.Parse(time.RFC3339, c.DeprecatedAt) // validated
		// RFC 9745: a Structured Field Date, @ and Unix seconds.
		s.headers = append(s.headers, field{"Deprecation", "@" + strconv.FormatInt(s.depAt.Unix(), 10)})
	}
	if c.Sunset != "" {
		s.sunset, _ = time.Parse(time.RFC3339, c.Sunset) // validated
		s.headers = append(s.headers, field{"Sunset", s.sunset.UTC().Format(http.TimeFormat)})
	}
	if c.Link != "" {
		if c.Deprecated {
			s.headers = append(s.headers, field{"Link", "<" + c.Link + `>; rel="deprecation"; type="text/html"`})
		}
		if c.Sunset != "" {
			s.headers = append(s.headers, field{"Link", "<" + c.Link + `>; rel="sunset"; type="text/html"`})
		}
	}
	return s, nil
}

// ProcessRequest refuses a request past the version's sunset (410
// api_version_retired), then, for from header or media_type, a request that
// names another version (406 version_not_supported) or none when the route
// is not the default (400 version_required). A deprecated version in use
// (from deprecated_at on) is counted for the principal and noted in the
// finding deprecated_version.
func (s *Stage) ProcessRequest(_ context.Context, ex *gateway.Exchange) error {
	now := s.now()
	if !s.sunset.IsZero() && !now.Before(s.sunset) {
		return &gateway.Reject{Status: http.StatusGone, ReasonID: ReasonVersionRetired,
			Detail: "version " + s.value + " was retired at " + s.sunset.UTC().Format(time.RFC3339)}
	}
	switch s.from {
	case config.VersionFromHeader:
		vals := ex.Request.Header.Values(s.header)
		if len(vals) == 0 {
			if !s.def {
				return gateway.Rejectf(http.StatusBadRequest, ReasonVersionRequired, "no %s header", s.header)
			}
			break
		}
		if len(vals) > 1 || normalize(strings.TrimSpace(vals[0])) != s.value {
			return gateway.Rejectf(http.StatusNotAcceptable, ReasonVersionNotSupported, "%s names %q; the route serves %s",
				s.header, clip(strings.Join(vals, ", ")), s.value)
		}
	case config.VersionFromMediaType:
		named, match := AcceptedVersion(ex.Request.Header.Values("Accept"), s.value)
		switch {
		case match:
		case !named && s.def:
		case !named:
			return gateway.Rejectf(http.StatusBadRequest, ReasonVersionRequired, "Accept names no version")
		default:
			return gateway.Rejectf(http.StatusNotAcceptable, ReasonVersionNotSupported, "Accept names no acceptable version %s", s.value)
		}
	}
	if !s.depAt.IsZero() && !now.Before(s.depAt) {
		s.usage.Add(principalKey(ex.Principal))
		ex.Note(FindingDeprecatedVersion, s.value)
	}
	return nil
}

// ProcessResponse adds the Deprecation, Sunset and Link headers of the
// version (from the start: a future deprecation date announces it) and,
// for from header or media_type, Vary with the header the version came
// from. It runs on upstream and gateway-generated responses alike and never
// rejects.
func (s *Stage) ProcessResponse(_ context.Context, _ *gateway.Exchange, res *http.Response) error {
	if res == nil {
		return errors.New("versioning: no response")
	}
	if res.Header == nil {
		res.Header = make(http.Header, len(s.headers)+1)
	}
	for _, f := range s.headers {
		if f.name == "Link" {
			res.Header.Add(f.name, f.value)
		} else {
			res.Header.Set(f.name, f.value)
		}
	}
	if s.vary != "" {
		res.Header.Add("Vary", s.vary)
	}
	return nil
}

// Usage returns a snapshot of the deprecated-version requests counted per
// principal key (see Counter).
func (s *Stage) Usage() map[string]uint64 { return s.usage.Snapshot() }

// Version returns the version the stage serves, normalised.
func (s *Stage) Version() string { return s.value }

// AcceptedVersion looks for a version in Accept field values: a version
// media-type parameter (application/json; version=2) or a vendor subtype
// with a .v<version> segment (application/vnd.example.v2+json). named
// reports whether any acceptable media range (q > 0) names a version, match
// whether one names want (normalised, see New). Unparseable ranges are
// skipped; at most 4KiB of the header is read.
func AcceptedVersion(accept []string, want string) (named, match bool) {
	total := 0
	for _, line := range accept {
		if total += len(line); total > maxAcceptLen {
			break
		}
		for r := range strings.SplitSeq(line, ",") {
			r = strings.TrimSpace(r)
			if r == "" {
				continue
			}
			mt, params, err := mime.ParseMediaType(r)
			if err != nil {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
					continue
				}
			}
			v, ok := params["version"]
			if !ok {
				v, ok = vendorVersion(mt)
			}
			if !ok {
				continue
			}
			named = true
			if normalize(v) == want {
				return true, true
			}
		}
	}
	return named, false
}

// vendorVersion finds the version of a vendor media type such as
// application/vnd.example.v2+json: the last dot-separated segment of the
// subtype (before any +suffix) that is v followed by a digit.
func vendorVersion(mt string) (string, bool) {
	_, sub, ok := strings.Cut(mt, "/")
	if !ok || !strings.HasPrefix(sub, "vnd.") {
		return "", false
	}
	if i := strings.IndexByte(sub, '+'); i >= 0 {
		sub = sub[:i]
	}
	segs := strings.Split(sub[len("vnd."):], ".")
	for i := len(segs) - 1; i >= 0; i-- {
		sg := segs[i]
		if len(sg) >= 2 && sg[0] == 'v' && sg[1] >= '0' && sg[1] <= '9' {
			// "v2.1" is written with a dot: join the segments after it.
			return strings.Join(segs[i:], "."), true
		}
	}
	return "", false
}

// normalize returns the form in which versions are compared: lower case,
// with a leading v before a digit removed (V2, v2 and 2 are equal).
func normalize(v string) string {
	v = strings.ToLower(v)
	if len(v) >= 2 && v[0] == 'v' && v[1] >= '0' && v[1] <= '9' {
		v = v[1:]
	}
	return v
}

// principalKey names a principal in the usage counter: its subject, or
// AnonymousKey.
func principalKey(p *gateway.Principal) string {
	if p == nil || p.Subject == "" {
		return AnonymousKey
	}
	return p.Subject
}

// clip bounds client text copied into a Reject's Detail.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

var (
	_ gateway.RequestStage  = (*Stage)(nil)
	_ gateway.ResponseStage = (*Stage)(nil)
)
