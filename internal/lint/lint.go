// Package lint is moat lint: it reads a gateway configuration and reports
// the weaknesses of the gateway's own security posture (public routes,
// routes without rate limits, WAF off, CORS too wide, short HMAC secrets,
// plain-text listeners, masking off, response filtering off where an
// OpenAPI document declares response schemas, no audit trail, ...)
// without starting anything or sending a request. Findings reuse moat
// scan's types, so the report is written as a table, JSON, SARIF 2.1.0 or
// HTML by scan.WriteReport. See docs/lint.md.
package lint

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/scan"
	"github.com/moat-gateway/moat/internal/validate/openapi"
)

// Tool is the tool name lint reports carry (scan.Report.Tool, the SARIF
// tool.driver.name).
const Tool = "moat-lint"

// Rule IDs. Each is documented in docs/lint.md.
const (
	RulePublicRoute           = "public-route"
	RuleNoRateLimit           = "route-without-rate-limit"
	RuleWAFOff                = "waf-off"
	RuleWAFDetectOnly         = "waf-detect-only"
	RuleCORSAnyOrigin         = "cors-any-origin"
	RuleCORSWidePattern       = "cors-wide-pattern"
	RuleCORSCredentials       = "cors-credentials-wildcard"
	RuleCORSPlainHTTP         = "cors-plain-http-origin"
	RuleShortHMACSecret       = "short-hmac-secret"
	RuleAuditKeyMissing       = "audit-key-missing"
	RuleListenerPlain         = "listener-without-tls"
	RuleHSTSOff               = "hsts-disabled"
	RuleAdminInsecure         = "admin-insecure"
	RuleMaskingOff            = "masking-off"
	RuleResponseFilteringOff  = "response-filtering-off"
	RuleAllowAnyAuthenticated = "allow-any-authenticated"
	RuleQueryKey              = "api-key-in-query"
	RuleAuditOff              = "audit-off"
	RuleAdminOff              = "admin-off"
	RuleSecurityHeadersOff    = "security-headers-off"
	RuleBruteForceOff         = "brute-force-off"
)

const docsBase = "https://github.com/moat-gateway/moat/blob/main/docs/lint.md#"

func rule(id, name, desc, owasp, fix string) scan.Rule {
	return scan.Rule{ID: id, Name: name, Description: desc, OWASP: owasp, HelpURI: docsBase + id, Owner: scan.OwnerGateway, Remediation: fix}
}

// Rules lists every lint rule in a stable order (the SARIF rule order).
var Rules = []scan.Rule{
	rule(RulePublicRoute, "Public route", "A route is reachable without authentication (public: true).", "API2:2023",
		"Confirm the route is meant to be public; otherwise give it an auth block."),
	rule(RuleNoRateLimit, "Route without rate limit", "No rate limit, quota or concurrency limit applies to the route: none on the route, none on its upstream and, for authenticated routes, no default plan.", "API4:2023",
		"List a rate limit in the route's or upstream's rate_limits, or set default_plan for authenticated routes."),
	rule(RuleWAFOff, "Public route without WAF", "A public route has no WAF block or one with enabled: false.", "API8:2023",
		"Add a waf block to the route (docs/waf.md)."),
	rule(RuleWAFDetectOnly, "WAF in detection mode", "The WAF of a public route is in mode detect: attacks are recorded, not blocked.", "API8:2023",
		"Set waf.mode: block once the false positives are tuned away."),
	rule(RuleCORSAnyOrigin, "CORS allows any origin", "allow_origins contains *: every web site may read the API's responses from a browser.", "API8:2023",
		"List the exact origins of your front ends in allow_origins."),
	rule(RuleCORSWidePattern, "CORS pattern too wide", "An allow_origins pattern's wildcard spans a public suffix (https://*.co.uk, https://*.github.io): any site registered there matches.", "API8:2023",
		"Anchor patterns on a domain you own (https://*.example.com) or list exact origins."),
	rule(RuleCORSCredentials, "CORS credentials with a wildcard", "allow_credentials is true together with a wildcard origin: any matching site may make credentialed requests and read the answers.", "API8:2023",
		"With allow_credentials, list exact origins only."),
	rule(RuleCORSPlainHTTP, "CORS allows a plain-http origin", "allow_origins holds an http:// origin that is not loopback: a network attacker can inject script into that origin and read the API.", "API8:2023",
		"Allow https:// origins only (http://localhost is fine for development)."),
	rule(RuleShortHMACSecret, "Short HMAC secret", "A JWT issuer's HS256/384/512 secret or the audit key is shorter than 32 bytes and may be brute-forced offline.", "API2:2023",
		"Use a random secret of at least 32 bytes (openssl rand -base64 48), or asymmetric keys."),
	rule(RuleAuditKeyMissing, "Audit chain without key", "The audit block sets no key: events are not HMAC-chained, so moat audit verify cannot detect edited or deleted events.", "API8:2023",
		"Set audit.key to a random secret of at least 32 bytes (env:NAME)."),
	rule(RuleListenerPlain, "Listener without TLS", "A listener on a non-loopback address serves plain HTTP: credentials and data cross the network in clear text.", "API8:2023",
		"Add tls to the listener, or make it redirect_https; skip only when a TLS-terminating proxy on the same host is the only client."),
	rule(RuleHSTSOff, "HSTS disabled", "A TLS listener sets hsts.disabled: browsers may be downgraded to plain HTTP.", "API8:2023",
		"Remove hsts.disabled."),
	rule(RuleAdminInsecure, "Admin listener in clear text", "The admin listener binds a non-loopback address without TLS (insecure: true): admin tokens cross the network in clear text.", "API8:2023",
		"Bind the admin listener to loopback or give it tls."),
	rule(RuleMaskingOff, "Masking off", "An authenticated route whose methods return bodies (any method but HEAD, OPTIONS and DELETE) has no masking block, or one that runs no detector and has no field rule: personal data and secrets the upstream leaks reach the client unmasked.", "API3:2023",
		"Add a masking block (docs/masking.md), with field rules for properties the client must never see."),
	rule(RuleResponseFilteringOff, "Response filtering off", "An OpenAPI document with JSON response schemas applies (the route's openapi, or an upstream's openapi for its generated routes), but response_filtering.mode is log: properties the schemas do not declare reach the client and are only logged.", "API3:2023",
		"Set response_filtering.mode to strip (the default) or block (docs/response-filtering.md)."),
	rule(RuleAllowAnyAuthenticated, "Any authenticated principal allowed", "The route's auth says allow_any_authenticated: every principal any of its authenticators accepts may use every method, with no role, scope, owner or policy rule.", "API5:2023",
		"Require roles or scopes, and bind object IDs with owner rules (docs/authorization.md)."),
	rule(RuleQueryKey, "API key accepted in the query string", "The route accepts API keys in the URL (allow_query_key): keys leak into logs, browser history and Referer headers.", "API2:2023",
		"Send keys in a header and remove allow_query_key."),
	rule(RuleAuditOff, "No audit trail", "The configuration has no audit block: no tamper-evident record of requests, denials and configuration changes.", "API8:2023",
		"Add an audit block with a key and at least one sink (docs/audit.md)."),
	rule(RuleAdminOff, "No admin listener", "The configuration has no admin block: no metrics, health endpoints or denial events to monitor the gateway with.", "API9:2023",
		"Add an admin block bound to loopback (docs/admin.md)."),
	rule(RuleSecurityHeadersOff, "Security headers off", "security_headers.disabled is true: responses lack nosniff, frame and content security policies, and upstream headers such as Server leak.", "API8:2023",
		"Remove security_headers.disabled."),
	rule(RuleBruteForceOff, "Brute-force lockout off", "brute_force.disabled is true while routes authenticate: credential guessing is limited only by rate limits.", "API2:2023",
		"Remove brute_force.disabled."),
}

// minSecretBytes is the shortest HMAC secret lint accepts, as config
// validation does for JWT secrets and the audit key.
const minSecretBytes = 32

// Load reads the configuration at path with config.Load (which refuses an
// invalid configuration) and lints it.
func Load(path string, now time.Time) (*scan.Report, error) {
	c, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	return Check(c, path, now), nil
}

// Check lints a loaded configuration. file names it in the report (the
// SARIF artifact location). Check changes nothing in c. It reads the
// OpenAPI document of each openapi block whose response_filtering is in
// log mode (a relative spec path is relative to c.File(), as moat serve
// resolves it); a document that does not load is a report note.
func Check(c *config.Config, file string, now time.Time) *scan.Report {
	l := &linter{c: c, docs: map[string]docInfo{}}
	l.routes()
	l.upstreams()
	l.cors()
	l.secrets()
	l.listeners()
	l.global()
	sort.SliceStable(l.out, func(i, j int) bool {
		if l.out[i].Severity != l.out[j].Severity {
			return l.out[i].Severity > l.out[j].Severity
		}
		return l.out[i].Line < l.out[j].Line
	})
	if l.out == nil {
		l.out = []scan.Finding{}
	}
	return &scan.Report{Tool: Tool, Rules: Rules, Spec: file, Started: now.UTC(), Findings: l.out, Notes: l.notes}
}

type linter struct {
	c     *config.Config
	out   []scan.Finding
	notes []string
	docs  map[string]docInfo // OpenAPI documents loaded, by resolved path
}

// docInfo is what lint needs of an OpenAPI document.
type docInfo struct {
	schemas bool  // some operation declares a JSON response schema
	err     error // the document did not load
}

func ruleByID(id string) *scan.Rule {
	for i := range Rules {
		if Rules[i].ID == id {
			return &Rules[i]
		}
	}
	panic("lint: unknown rule " + id)
}

// add records a finding. where is the route name or the configuration
// path (listeners[0]); line is its line when known.
func (l *linter) add(id string, sev scan.Severity, where string, line int, format string, args ...any) {
	r := ruleByID(id)
	l.out = append(l.out, scan.Finding{
		Rule: id, OWASP: r.OWASP, Severity: sev, Title: r.Name, Message: fmt.Sprintf(format, args...),
		Operation: where, Line: line, Owner: r.Owner,
	})
}

// routeName is how a route is named in findings.
func routeName(i int, r *config.Route) string {
	if r.Name != "" {
		return r.Name
	}
	return fmt.Sprintf("routes[%d]", i)
}

func (l *linter) routes() {
	c := l.c
	for i, r := range c.Routes {
		if r == nil {
			continue
		}
		name := routeName(i, r)
		desc := strings.Join(r.Methods, ",") + " " + r.Path
		if r.Public {
			l.add(RulePublicRoute, scan.SeverityInfo, name, r.Line, "route %s (%s) is public: anyone may call it.", name, desc)
			switch w := r.WAF; {
			case !w.IsOn():
				l.add(RuleWAFOff, scan.SeverityMedium, name, r.Line, "public route %s (%s) has no WAF: injection and protocol attacks reach the upstream uninspected.", name, desc)
			case w.Mode == "detect":
				l.add(RuleWAFDetectOnly, scan.SeverityLow, name, r.Line, "the WAF of public route %s (%s) only records attacks (mode: detect).", name, desc)
			}
		}
		if !l.limited(r) {
			sev, who := scan.SeverityLow, "authenticated"
			if r.Public {
				sev, who = scan.SeverityMedium, "public"
			}
			l.add(RuleNoRateLimit, sev, name, r.Line, "%s route %s (%s) has no rate limit: one client can exhaust the upstream or enumerate objects.", who, name, desc)
		}
		if r.OpenAPI != nil {
			l.responseFiltering(r.OpenAPI, r.ResponseFiltering, name, r.Line, fmt.Sprintf("route %s (%s)", name, desc))
		}
		if r.Auth != nil {
			switch m := r.Masking; {
			case !returnsBody(r.Methods):
			case m == nil:
				l.add(RuleMaskingOff, scan.SeverityLow, name, r.Line, "authenticated route %s (%s) has no masking block: data the upstream leaks (cards, keys, undeclared fields) reaches the client.", name, desc)
			case len(m.Detectors) == 0 && len(m.Fields) == 0:
				l.add(RuleMaskingOff, scan.SeverityLow, name, r.Line, "the masking block of authenticated route %s (%s) runs no detector (detectors: []) and has no field rule: it masks nothing.", name, desc)
			}
			if r.Auth.AllowAnyAuthenticated {
				l.add(RuleAllowAnyAuthenticated, scan.SeverityLow, name, r.Line, "route %s (%s) lets every authenticated principal in (allow_any_authenticated): authorization is left to the upstream.", name, desc)
			}
			if r.Auth.AllowQueryKey {
				l.add(RuleQueryKey, scan.SeverityLow, name, r.Line, "route %s (%s) accepts API keys in the query string.", name, desc)
			}
		}
	}
}

// returnsBody reports whether some method of a route answers with a body
// that may carry data: any but HEAD, OPTIONS and DELETE (deletions answer
// 204 or a status, not the record).
func returnsBody(methods []string) bool {
	if len(methods) == 0 {
		return true
	}
	for _, m := range methods {
		switch m {
		case http.MethodHead, http.MethodOptions, http.MethodDelete:
		default:
			return true
		}
	}
	return false
}

// upstreams checks the routes generated from upstreams' OpenAPI documents.
func (l *linter) upstreams() {
	names := make([]string, 0, len(l.c.Upstreams))
	for n, u := range l.c.Upstreams {
		if u != nil && u.OpenAPI != nil {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		where := "upstreams." + n + ".openapi"
		oc := l.c.Upstreams[n].OpenAPI
		l.responseFiltering(oc, oc.ResponseFiltering, where, 0, "the routes generated from "+where)
	}
}

// responseFiltering reports response-filtering-off when the document of
// oc declares JSON response schemas and rf is in log mode. A nil rf is
// the default, strip. The document is loaded only then, once per path;
// one that does not load is a note (moat serve would refuse it).
func (l *linter) responseFiltering(oc *config.OpenAPI, rf *config.ResponseFiltering, where string, line int, what string) {
	if rf == nil || rf.Mode != config.ResponseModeLog {
		return
	}
	path := oc.Spec
	if path != "" && !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(l.c.File()), path)
	}
	d, ok := l.docs[path]
	if !ok {
		d = loadDoc(path)
		l.docs[path] = d
	}
	switch {
	case d.err != nil:
		l.notes = append(l.notes, fmt.Sprintf("%s: response filtering not checked: %v", where, d.err))
	case d.schemas:
		l.add(RuleResponseFilteringOff, scan.SeverityLow, where, line, "%s: the document %s declares response schemas, but response_filtering.mode is log: properties they do not declare reach the client and are only logged.", what, oc.Spec)
	}
}

// loadDoc loads the OpenAPI document at path and reports whether some
// operation declares a schema for a JSON response (application/json, a
// +json type, or a range such as */* that covers JSON): what response
// filtering checks.
func loadDoc(path string) docInfo {
	doc, err := openapi.Load(path)
	if err != nil {
		return docInfo{err: err}
	}
	for _, op := range doc.Operations() {
		for _, r := range op.Responses {
			for _, mt := range r.Content {
				if mt.Schema != "" && jsonRange(mt.Type) {
					return docInfo{schemas: true}
				}
			}
		}
	}
	return docInfo{}
}

// jsonRange reports whether a media type key (lower case, maybe with
// parameters) covers JSON bodies.
func jsonRange(key string) bool {
	t, _, _ := strings.Cut(key, ";")
	t = strings.TrimSpace(t)
	typ, sub, _ := strings.Cut(t, "/")
	switch {
	case t == "*/*", t == "application/*", t == "application/json":
		return true
	case typ == "application" && strings.HasSuffix(sub, "+json"):
		return true
	}
	return false
}

// limited reports whether some rate limit, quota or concurrency limit
// applies to requests of the route.
func (l *linter) limited(r *config.Route) bool {
	if len(r.RateLimits) > 0 {
		return true
	}
	if u := l.c.Upstreams[r.Upstream]; u != nil && len(u.RateLimits) > 0 {
		return true
	}
	// Plans apply to authenticated principals; without a default plan a
	// principal that names none meets no plan limit.
	if r.Auth != nil && l.c.DefaultPlan != "" {
		if p := l.c.Plans[l.c.DefaultPlan]; p != nil && len(p.RateLimits) > 0 {
			return true
		}
	}
	return false
}

func (l *linter) cors() {
	if p := l.c.CORS; p != nil {
		l.corsPolicy(p, "cors", 0)
	}
	for i, r := range l.c.Routes {
		if r != nil && r.CORS != nil {
			l.corsPolicy(r.CORS, routeName(i, r), r.Line)
		}
	}
}

func (l *linter) corsPolicy(p *config.CORS, where string, line int) {
	if p.Disabled {
		return
	}
	wildcard := false
	for _, o := range p.AllowOrigins {
		if o == "*" {
			wildcard = true
			l.add(RuleCORSAnyOrigin, scan.SeverityMedium, where, line, "%s: allow_origins contains *: any web site may read responses from a browser.", where)
			continue
		}
		scheme, host, ok := strings.Cut(o, "://")
		if !ok {
			continue
		}
		hostOnly := host
		if h, _, err := net.SplitHostPort(host); err == nil {
			hostOnly = h
		}
		if suffix, ok := strings.CutPrefix(hostOnly, "*."); ok {
			wildcard = true
			if isPublicSuffix(suffix) {
				l.add(RuleCORSWidePattern, scan.SeverityHigh, where, line, "%s: origin pattern %s matches every site registered under the public suffix %s.", where, o, suffix)
			}
		}
		if strings.EqualFold(scheme, "http") && !isLoopbackHost(hostOnly) {
			l.add(RuleCORSPlainHTTP, scan.SeverityLow, where, line, "%s: allow_origins holds the plain-http origin %s.", where, o)
		}
	}
	if wildcard && p.AllowCredentials {
		l.add(RuleCORSCredentials, scan.SeverityHigh, where, line, "%s: allow_credentials with a wildcard origin: every matching site may make credentialed requests and read the answers.", where)
	}
}

// isPublicSuffix reports whether domain is a public suffix (com, co.uk,
// github.io): a wildcard right above it matches other owners' sites.
func isPublicSuffix(domain string) bool {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if domain == "" || !strings.Contains(domain, ".") {
		return true
	}
	ps, _ := publicsuffix.PublicSuffix(domain)
	return ps == domain
}

func isLoopbackHost(h string) bool {
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") || strings.HasSuffix(strings.ToLower(h), ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (l *linter) secrets() {
	names := make([]string, 0, len(l.c.Authenticators))
	for n := range l.c.Authenticators {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := l.c.Authenticators[n]
		if a == nil || a.JWT == nil {
			continue
		}
		for i, iss := range a.JWT.Issuers {
			if iss.Secret.IsSet() && len(iss.Secret.Value()) < minSecretBytes {
				where := fmt.Sprintf("authenticators.%s.jwt.issuers[%d]", n, i)
				l.add(RuleShortHMACSecret, scan.SeverityHigh, where, 0, "%s (%s): the HMAC secret is %d bytes, fewer than %d; tokens can be forged after an offline brute force.", where, iss.Issuer, len(iss.Secret.Value()), minSecretBytes)
			}
		}
	}
	if a := l.c.Audit; a != nil {
		switch {
		case !a.Key.IsSet() || a.Key.Value() == "":
			l.add(RuleAuditKeyMissing, scan.SeverityMedium, "audit", 0, "audit.key is not set: events are not HMAC-chained and moat audit verify cannot detect tampering.")
		case len(a.Key.Value()) < minSecretBytes:
			l.add(RuleShortHMACSecret, scan.SeverityHigh, "audit", 0, "audit.key is %d bytes, fewer than %d.", len(a.Key.Value()), minSecretBytes)
		}
	}
}

func (l *linter) listeners() {
	for i, ln := range l.c.Listeners {
		where := fmt.Sprintf("listeners[%d]", i)
		if ln.Name != "" {
			where += " " + ln.Name
		}
		switch {
		case ln.TLS != nil:
			if ln.TLS.HSTS.Disabled {
				l.add(RuleHSTSOff, scan.SeverityLow, where, 0, "%s (%s) serves TLS with HSTS disabled.", where, ln.Address)
			}
		case ln.RedirectHTTPS != nil:
			// only redirects to HTTPS
		case !loopbackAddress(ln.Address):
			l.add(RuleListenerPlain, scan.SeverityMedium, where, 0, "%s serves plain HTTP on %s, which is not a loopback address.", where, ln.Address)
		}
	}
	if a := l.c.Admin; a != nil && a.TLS == nil && !loopbackAddress(a.Address) {
		l.add(RuleAdminInsecure, scan.SeverityHigh, "admin", 0, "the admin listener serves plain HTTP on %s: admin tokens cross the network in clear text.", a.Address)
	}
}

// loopbackAddress reports whether host:port binds a loopback address only.
// An empty host (":8080") binds every interface.
func loopbackAddress(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "" {
		return false
	}
	return isLoopbackHost(host)
}

func (l *linter) global() {
	c := l.c
	if c.Audit == nil {
		l.add(RuleAuditOff, scan.SeverityMedium, "", 0, "no audit block: requests, denials and configuration changes leave no tamper-evident record.")
	}
	if c.Admin == nil {
		l.add(RuleAdminOff, scan.SeverityInfo, "", 0, "no admin block: no metrics, health endpoints or recent denial events.")
	}
	if c.SecurityHeaders.Disabled {
		l.add(RuleSecurityHeadersOff, scan.SeverityMedium, "security_headers", 0, "security_headers.disabled is true.")
	}
	if c.BruteForce.Disabled {
		for _, r := range c.Routes {
			if r != nil && r.Auth != nil {
				l.add(RuleBruteForceOff, scan.SeverityLow, "brute_force", 0, "brute_force.disabled is true while routes authenticate.")
				break
			}
		}
	}
}
