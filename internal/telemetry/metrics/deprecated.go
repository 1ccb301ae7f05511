package metrics

import (
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/versioning"
)

// MaxDeprecatedPrincipals caps the distinct principal label values of
// moat_deprecated_requests_total per route; requests of further principals
// are counted under versioning.OverflowKey ("_other").
const MaxDeprecatedPrincipals = versioning.DefaultMaxPrincipals

// maxLabelLen bounds a principal, version or operation label value.
const maxLabelLen = 128

// deprecatedUse counts the requests of deprecated API versions and
// operations by route, version (or operation) and principal, from the
// findings the versioning stages note. It is safe for concurrent use.
type deprecatedUse struct {
	vec *prometheus.CounterVec

	mu   sync.RWMutex
	seen map[string]map[string]struct{} // route -> principals with their own label value
}

func newDeprecatedUse() *deprecatedUse {
	return &deprecatedUse{
		vec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_deprecated_requests_total",
			Help: "Requests admitted to a deprecated API version or OpenAPI operation, by route, version (the version, or the operation's operationId or METHOD path) and principal (subject; _anonymous; _other past 10000 per route)."},
			[]string{"route", "version", "principal"}),
		seen: map[string]map[string]struct{}{},
	}
}

// observe counts ex if a versioning stage noted a deprecated version or
// operation; route is the route's label value.
func (d *deprecatedUse) observe(route string, ex *gateway.Exchange) {
	v, isVersion := ex.Findings[versioning.FindingDeprecatedVersion].(string)
	op, isOperation := ex.Findings[versioning.FindingDeprecatedOperation].(string)
	if !isVersion && !isOperation {
		return
	}
	p := d.principal(route, ex.Principal)
	if isVersion {
		d.vec.WithLabelValues(route, labelValue(v), p).Inc()
	}
	if isOperation {
		d.vec.WithLabelValues(route, labelValue(op), p).Inc()
	}
}

// principal returns the principal label value of p on route: its subject
// while fewer than MaxDeprecatedPrincipals others have been seen on the
// route, versioning.AnonymousKey without a subject, versioning.OverflowKey
// past the cap.
func (d *deprecatedUse) principal(route string, p *gateway.Principal) string {
	if p == nil || p.Subject == "" {
		return versioning.AnonymousKey
	}
	name := labelValue(p.Subject)
	d.mu.RLock()
	_, ok := d.seen[route][name]
	d.mu.RUnlock()
	if ok {
		return name
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	set := d.seen[route]
	if set == nil {
		set = map[string]struct{}{}
		d.seen[route] = set
	}
	if _, ok := set[name]; ok {
		return name
	}
	if len(set) >= MaxDeprecatedPrincipals {
		return versioning.OverflowKey
	}
	set[name] = struct{}{}
	return name
}

// labelValue makes s a valid label value: valid UTF-8, at most maxLabelLen
// bytes (cut at a rune boundary).
func labelValue(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	if len(s) <= maxLabelLen {
		return s
	}
	cut := maxLabelLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
