// Package versioning is the API-version stage of a route: it checks the
// version a client asked for (in a header or a media-type parameter),
// announces deprecation and sunset (RFC 9745 Deprecation, RFC 8594 Sunset,
// Link rel="deprecation"), refuses a version past its sunset, and counts
// the use of deprecated versions per principal.
//
// Routes that serve several versions on one host, method and path form a
// version group: a Selector picks the member whose version a request names
// before any stage runs. Operations stages do the same announcing,
// retiring and counting for operations an OpenAPI document deprecates.
// docs/versioning.md describes the configuration.
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
// New or NewMember, immutable afterwards except for its usage counter, and
// safe for concurrent use.
type Stage struct {
	value   string // normalised version
	from    string
	header  string // canonical request header, for from header
	def     bool
	grouped bool // one version of a group sharing the route's path (NewMember)
	now     func() time.Time
	vary    string // Vary value added to responses; "" for none
	notice  *Notice
	usage   *Counter
}

// verdict is what a request says about the stage's version.
type verdict uint8

const (
	served      verdict = iota // the request names the version, or none and the route is the default
	required                   // the request names no version and the route is not the default
	unsupported                // the request names another version
)

// New builds the stage for cfg (defaults are applied to a copy) with the
// clock now (time.Now when nil). It returns (nil, nil) for a nil cfg, and an
// error naming every problem of an invalid block.
func New(cfg *config.Version, now func() time.Time) (*Stage, error) {
	return build(cfg, now, false)
}

// NewMember builds the stage of a route that shares its host, method and
// path with routes of other versions (a version group, see Selector). It
// differs from New's in two ways, because the route also receives the
// requests that name no version of the group: it checks the version the
// request names before the sunset, so a request for an unserved version
// gets 406 (or 400 for none) rather than this version's 410, and its
// responses carry this version's Deprecation, Sunset and Link only when the
// request selected it.
func NewMember(cfg *config.Version, now func() time.Time) (*Stage, error) {
	return build(cfg, now, true)
}

func build(cfg *config.Version, now func() time.Time, grouped bool) (*Stage, error) {
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
	s := &Stage{value: normalize(c.Value), from: c.From, def: c.Default, grouped: grouped, now: now, usage: NewCounter(DefaultMaxPrincipals)}
	switch c.From {
	case config.VersionFromHeader:
		s.header = http.CanonicalHeaderKey(c.Header)
		s.vary = s.header
	case config.VersionFromMediaType:
		s.vary = "Accept"
	}
	var at, sunset time.Time
	if c.Deprecated {
		at, _ = time.Parse(time.RFC3339, c.DeprecatedAt) // validated, required
	}
	if c.Sunset != "" {
		sunset, _ = time.Parse(time.RFC3339, c.Sunset) // validated
	}
	s.notice = NewNotice(c.Deprecated, at, sunset, c.Link)
	return s, nil
}

// ProcessRequest refuses a request past the version's sunset (410
// api_version_retired), then, for from header or media_type, a request that
// names another version (406 version_not_supported) or none when the route
// is not the default (400 version_required). A member of a version group
// (NewMember) checks the version first and the sunset after. A deprecated
// version in use (from deprecated_at on) is counted for the principal and
// noted in the finding deprecated_version.
func (s *Stage) ProcessRequest(_ context.Context, ex *gateway.Exchange) error {
	now := s.now()
	if !s.grouped && s.notice.Retired(now) {
		return s.retired()
	}
	switch s.verdict(ex.Request) {
	case required:
		if s.from == config.VersionFromHeader {
			return gateway.Rejectf(http.StatusBadRequest, ReasonVersionRequired, "no %s header", s.header)
		}
		return gateway.Rejectf(http.StatusBadRequest, ReasonVersionRequired, "Accept names no version")
	case unsupported:
		if s.from == config.VersionFromHeader {
			return gateway.Rejectf(http.StatusNotAcceptable, ReasonVersionNotSupported, "%s names %q; the route serves %s",
				s.header, clip(strings.Join(ex.Request.Header.Values(s.header), ", ")), s.value)
		}
		return gateway.Rejectf(http.StatusNotAcceptable, ReasonVersionNotSupported, "Accept names no acceptable version %s", s.value)
	}
	if s.notice.Retired(now) {
		return s.retired()
	}
	if s.notice.InEffect(now) {
		s.usage.Add(principalKey(ex.Principal))
		ex.Note(FindingDeprecatedVersion, s.value)
	}
	return nil
}

// retired is the refusal of a request past the sunset.
func (s *Stage) retired() error {
	return &gateway.Reject{Status: http.StatusGone, ReasonID: ReasonVersionRetired,
		Detail: "version " + s.value + " was retired at " + s.notice.Sunset().UTC().Format(time.RFC3339)}
}

// verdict says whether r names the stage's version. It reads only the
// header or Accept, and allocates nothing for from path or header.
func (s *Stage) verdict(r *http.Request) verdict {
	switch s.from {
	case config.VersionFromHeader:
		vals := r.Header.Values(s.header)
		switch {
		case len(vals) == 0 && s.def:
			return served
		case len(vals) == 0:
			return required
		case len(vals) > 1 || !sameVersion(vals[0], s.value):
			return unsupported
		}
	case config.VersionFromMediaType:
		named, match := AcceptedVersion(r.Header.Values("Accept"), s.value)
		switch {
		case match, !named && s.def:
			return served
		case !named:
			return required
		default:
			return unsupported
		}
	}
	return served
}

// ProcessResponse adds the Deprecation, Sunset and Link headers of the
// version (from the start: a future deprecation date announces it) and,
// for from header or media_type, Vary with the header the version came
// from. A member of a version group adds the first three only to responses
// to requests that selected its version. It runs on upstream and
// gateway-generated responses alike and never rejects.
func (s *Stage) ProcessResponse(_ context.Context, ex *gateway.Exchange, res *http.Response) error {
	if res == nil {
		return errors.New("versioning: no response")
	}
	if res.Header == nil {
		res.Header = make(http.Header, 4)
	}
	if !s.grouped || (ex != nil && ex.Request != nil && s.verdict(ex.Request) == served) {
		s.notice.Apply(res.Header)
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
	for v := range acceptedVersions(accept) {
		named = true
		if sameVersion(v.value, want) {
			return true, true
		}
	}
	return named, false
}

// acceptedRange is a version named by an acceptable media range, with the
// range's weight.
type acceptedRange struct {
	value string // as written
	q     float64
}

// acceptedVersions yields the version of every acceptable media range (q >
// 0) of accept that names one, in order; see AcceptedVersion.
func acceptedVersions(accept []string) func(yield func(acceptedRange) bool) {
	return func(yield func(acceptedRange) bool) {
		total := 0
		for _, line := range accept {
			if total += len(line); total > maxAcceptLen {
				return
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
				q := 1.0
				if qs, ok := params["q"]; ok {
					if q, err = strconv.ParseFloat(qs, 64); err != nil || !(q > 0) {
						continue
					}
				}
				v, ok := params["version"]
				if !ok {
					v, ok = vendorVersion(mt)
				}
				if ok && !yield(acceptedRange{v, q}) {
					return
				}
			}
		}
	}
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

// sameVersion reports whether raw, a version as a client wrote it (spaces
// around it ignored), names norm, a normalised configured version: ASCII
// letters compare case-insensitively and a leading v or V before a digit
// is ignored, as normalize does; other bytes compare exactly. Configured
// versions are ASCII (config.ValidateVersionValue), so no non-ASCII text
// names one. It allocates nothing.
func sameVersion(raw, norm string) bool {
	raw = strings.TrimSpace(raw)
	if len(raw) >= 2 && raw[0]|0x20 == 'v' && raw[1] >= '0' && raw[1] <= '9' {
		raw = raw[1:]
	}
	if len(raw) != len(norm) {
		return false
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != norm[i] {
			return false
		}
	}
	return true
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
