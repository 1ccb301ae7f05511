package versioning

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// Member is one route of a version group: routes that share a host, method
// and path and serve different versions of an API.
type Member struct {
	Name    string          // names the route in errors, such as "routes[1] (books-v2)"
	Version *config.Version // the route's version block, defaults applied; nil when it has none
	Route   *gateway.Route  // the compiled route; CheckGroup does not need it
}

// CheckGroup reports whether members may share a host, method and path as
// a version group: each has a version block with from header (the same
// header for all) or from media_type (for all), the versions differ once
// normalised, and at most one is the default. The error names the routes at
// fault.
func CheckGroup(members []Member) error {
	if len(members) < 2 {
		return errors.New("a version group needs at least two routes")
	}
	first := members[0]
	for i, m := range members {
		v := m.Version
		if v == nil {
			return fmt.Errorf("%s has no version block: routes that share a host, method and path must each serve a version named by header or media_type", m.Name)
		}
		if v.From != config.VersionFromHeader && v.From != config.VersionFromMediaType {
			return fmt.Errorf("%s takes its version from the %s, so it cannot share its path with other versions: use from header or media_type", m.Name, orPath(v.From))
		}
		if i == 0 {
			continue
		}
		if fv := first.Version; fv.From != v.From || (v.From == config.VersionFromHeader && http.CanonicalHeaderKey(fv.Header) != http.CanonicalHeaderKey(v.Header)) {
			return fmt.Errorf("%s reads the version from %s and %s from %s: the routes of a version group must read it from the same place",
				first.Name, source(fv), m.Name, source(v))
		}
		for _, o := range members[:i] {
			if normalize(o.Version.Value) == normalize(v.Value) {
				return fmt.Errorf("%s and %s both serve version %s", o.Name, m.Name, normalize(v.Value))
			}
			if o.Version.Default && v.Default {
				return fmt.Errorf("%s and %s are both default: true; at most one version of a group serves requests that name none", o.Name, m.Name)
			}
		}
	}
	return nil
}

// orPath names a version source in messages.
func orPath(from string) string {
	if from == "" {
		return config.VersionFromPath
	}
	return from
}

// source describes where a version block reads the version.
func source(v *config.Version) string {
	if v.From == config.VersionFromHeader {
		return "header " + http.CanonicalHeaderKey(v.Header)
	}
	return orPath(v.From)
}

// Selector picks, in a version group, the route whose version a request
// names. It is built by NewSelector, immutable, and safe for concurrent
// use.
type Selector struct {
	from     string
	header   string           // canonical, for from header
	values   []string         // normalised versions, by member
	routes   []*gateway.Route // by member
	fallback *gateway.Route   // the default member, or the first
}

// NewSelector returns the Selector of a version group (see CheckGroup);
// every member needs its Route. The members' version stages should be
// built with NewMember.
func NewSelector(members []Member) (*Selector, error) {
	if err := CheckGroup(members); err != nil {
		return nil, err
	}
	s := &Selector{from: members[0].Version.From, header: http.CanonicalHeaderKey(members[0].Version.Header)}
	for _, m := range members {
		if m.Route == nil {
			return nil, fmt.Errorf("%s: no route to select", m.Name)
		}
		s.values = append(s.values, normalize(m.Version.Value))
		s.routes = append(s.routes, m.Route)
		if m.Version.Default {
			s.fallback = m.Route
		}
	}
	if s.fallback == nil {
		s.fallback = s.routes[0]
	}
	return s, nil
}

// Pick returns the member that serves r, never nil:
//
//   - from header: the member whose version the header names, when it is
//     sent once;
//   - from media_type: among the acceptable ranges of Accept that name a
//     version of the group, the member of the one with the highest q (the
//     first of equals);
//   - otherwise the default member, or, without one, the first member.
//
// A request that names no version of the group thus reaches the default
// member, which serves it if it names none, or a member whose version stage
// refuses it: 400 version_required when it names none, 406
// version_not_supported when it names another version or repeats the
// header. CORS preflights, which carry no version, reach that member too.
// For from header, Pick allocates nothing.
func (s *Selector) Pick(r *http.Request) *gateway.Route {
	switch s.from {
	case config.VersionFromHeader:
		if vals := r.Header.Values(s.header); len(vals) == 1 {
			for i, v := range s.values {
				if sameVersion(vals[0], v) {
					return s.routes[i]
				}
			}
		}
	case config.VersionFromMediaType:
		best, bestQ := -1, 0.0
		for ar := range acceptedVersions(r.Header.Values("Accept")) {
			if ar.q <= bestQ {
				continue
			}
			for i, v := range s.values {
				if sameVersion(ar.value, v) {
					best, bestQ = i, ar.q
					break
				}
			}
		}
		if best >= 0 {
			return s.routes[best]
		}
	}
	return s.fallback
}
