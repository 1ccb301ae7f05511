// Package scan is moat scan: an active security scanner for an HTTP API
// described by an OpenAPI 3.0 or 3.1 document. It probes one target host
// for the OWASP API Security Top 10 2023 problems that can be seen from
// outside (broken object and function level authorization, authentication
// gaps, excessive data exposure, missing rate limits, injection error
// signatures, SSRF, misconfiguration, undocumented endpoints, weak JWTs)
// within a request budget and a rate, and reports findings as a table,
// JSON, SARIF 2.1.0 or HTML. See docs/scan.md.
package scan

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Identity is one set of credentials: a header sent with each request made
// as this identity. Value is a secret: it never appears in reports or logs.
type Identity struct {
	Name   string
	Header string
	Value  string
	Admin  bool
}

// LogValue redacts the credential.
func (i Identity) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", i.Name), slog.String("header", i.Header), slog.String("value", "REDACTED"))
}

// ParseIdentity parses NAME=HEADER: VALUE (the --auth flag), e.g.
// alice=Authorization: Bearer eyJ...
func ParseIdentity(spec string) (Identity, error) {
	name, hv, ok := strings.Cut(spec, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return Identity{}, errors.New("identity must be NAME=HEADER: VALUE")
	}
	h, v, ok := strings.Cut(hv, ":")
	h, v = strings.TrimSpace(h), strings.TrimSpace(v)
	if !ok || h == "" || v == "" {
		return Identity{}, fmt.Errorf("identity %s: want HEADER: VALUE after the =", name)
	}
	for _, r := range h {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", r) {
			return Identity{}, fmt.Errorf("identity %s: %q is not a header name", name, h)
		}
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		return Identity{}, fmt.Errorf("identity %s: header value holds a control character", name)
	}
	return Identity{Name: name, Header: h, Value: v}, nil
}

// Options configure a scan. The zero value of a field selects its
// default (see applyDefaults).
type Options struct {
	Target           string     // base URL: scheme, host, optional base path
	Spec             *Spec      // the loaded document
	Identities       []Identity // in the order given; at most a handful
	AllowDestructive bool       // allow POST, PUT, PATCH, DELETE
	DryRun           bool       // plan only: send nothing
	MaxRequests      int        // default 500
	Rate             float64    // requests per second, default 10
	RequestTimeout   time.Duration
	Timeout          time.Duration // the whole scan, default 10m
	Probes           []string      // probe names to run; empty runs all
	Insecure         bool          // skip TLS certificate verification
	TLSConfig        *tls.Config   // base TLS client configuration (tests: RootCAs)
	CanaryAddr       string        // SSRF canary listen address, default 127.0.0.1:0
	SSRFWait         time.Duration // how long to wait for late canary hits, default 2s
	Burst            int           // rate-limit probe burst size, default 30
	Progress         io.Writer     // progress output (stderr); nil for none
	ProgressTTY      bool          // Progress is a terminal: redraw one line
	Now              func() time.Time
}

func (o *Options) applyDefaults() {
	if o.MaxRequests <= 0 {
		o.MaxRequests = 500
	}
	if o.Rate <= 0 {
		o.Rate = 10
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.CanaryAddr == "" {
		o.CanaryAddr = "127.0.0.1:0"
	}
	if o.SSRFWait <= 0 {
		o.SSRFWait = 2 * time.Second
	}
	if o.Burst <= 0 {
		o.Burst = 30
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Probe names, in the order they run. Each is documented in docs/scan.md.
var ProbeNames = []string{
	"discovery", "unauthenticated", "bola", "function-level", "jwt",
	"cors", "trace", "tls", "inventory", "rate-limit", "ssrf",
	"mass-assignment", "injection",
}

// Report is the result of a scan.
type Report struct {
	// Tool names the tool in the table, HTML and SARIF output; "" is
	// moat-scan. Other moat commands (moat lint) reuse Report and
	// WriteReport with their own Tool and Rules.
	Tool string `json:"tool,omitempty"`
	// Rules are the rules the report's findings name (the SARIF rules);
	// nil means the scan rules (Rules).
	Rules           []Rule        `json:"-"`
	Target          string        `json:"target"`
	Spec            string        `json:"spec"`
	SpecVersion     string        `json:"spec_version"`
	Started         time.Time     `json:"started"`
	Duration        time.Duration `json:"duration_ns"`
	Requests        int           `json:"requests"`
	MaxRequests     int           `json:"max_requests"`
	DryRun          bool          `json:"dry_run,omitempty"`
	Plan            []PlanEntry   `json:"plan,omitempty"`
	Findings        []Finding     `json:"findings"`
	Notes           []string      `json:"notes,omitempty"`
	BudgetExhausted bool          `json:"budget_exhausted,omitempty"`
	TimedOut        bool          `json:"timed_out,omitempty"`
}

// Count returns the number of findings at or above the severity.
func (r *Report) Count(min Severity) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity >= min {
			n++
		}
	}
	return n
}

// scanner holds one scan's state. It is used by one goroutine.
type scanner struct {
	o     Options
	spec  *Spec
	s     *sender
	notes notes
	prog  *progress

	findings []Finding
	seen     map[string]bool

	// discovery results
	owned   map[string][]idValue            // identity name -> IDs seen in its responses
	status  map[string]map[string]*response // op string -> identity name ("" none) -> a response
	objects map[string][]ownedObject        // op string -> concrete paths filled with an identity's IDs
	secrets []string                        // identity header values, redacted from evidence

	hdr headerStats
}

// ownedObject is a concrete path an identity read with its own IDs.
type ownedObject struct {
	owner string
	path  string
	ids   []string
	body  []byte
}

// Run scans the target and returns the report. The error is non-nil only
// when the scan could not start (bad target, canary listener); findings,
// budget exhaustion and timeouts are part of the report.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.applyDefaults()
	if o.Spec == nil {
		return nil, errors.New("no spec")
	}
	base, err := url.Parse(o.Target)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("target %q must be an http or https URL", o.Target)
	}
	if base.User != nil || base.RawQuery != "" || base.Fragment != "" {
		return nil, fmt.Errorf("target %q must not hold user info, a query or a fragment", o.Target)
	}
	names := map[string]bool{}
	for _, id := range o.Identities {
		if names[id.Name] {
			return nil, fmt.Errorf("identity %s given twice", id.Name)
		}
		names[id.Name] = true
	}
	for _, p := range o.Probes {
		if !contains(ProbeNames, p) {
			return nil, fmt.Errorf("unknown probe %q (probes: %s)", p, strings.Join(ProbeNames, ", "))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	sc := &scanner{
		o: o, spec: o.Spec, seen: map[string]bool{},
		owned: map[string][]idValue{}, status: map[string]map[string]*response{}, objects: map[string][]ownedObject{},
	}
	for _, id := range o.Identities {
		sc.secrets = append(sc.secrets, id.Value)
		if _, tok, ok := strings.Cut(id.Value, " "); ok {
			sc.secrets = append(sc.secrets, tok)
		}
	}
	sc.s = newSender(base, &o)
	sc.s.notes = &sc.notes
	sc.prog = newProgress(o.Progress, o.ProgressTTY, o.MaxRequests)
	sc.s.onRequest = func(n int) { sc.prog.request(n, len(sc.findings)) }

	start := o.Now()
	rep := &Report{Target: redactURL(base), Spec: o.Spec.File, SpecVersion: o.Spec.Version, Started: start.UTC(), MaxRequests: o.MaxRequests, DryRun: o.DryRun}

	probes := map[string]func(context.Context) error{
		"discovery":       sc.discovery,
		"unauthenticated": sc.probeUnauthenticated,
		"bola":            sc.probeBOLA,
		"function-level":  sc.probeFunctionLevel,
		"jwt":             sc.probeJWT,
		"cors":            sc.probeCORS,
		"trace":           sc.probeTrace,
		"tls":             sc.probeTLS,
		"inventory":       sc.probeInventory,
		"rate-limit":      sc.probeRateLimit,
		"ssrf":            sc.probeSSRF,
		"mass-assignment": sc.probeMassAssignment,
		"injection":       sc.probeInjection,
	}
	for _, name := range ProbeNames {
		if len(o.Probes) > 0 && name != "discovery" && !contains(o.Probes, name) {
			continue
		}
		sc.prog.probe(name, sc.s.count())
		err := probes[name](ctx)
		switch {
		case err == nil:
		case errors.Is(err, errBudget):
			rep.BudgetExhausted = true
			sc.notes.add(fmt.Sprintf("request budget (%d) exhausted during %s; later probes did not run", o.MaxRequests, name))
		case ctx.Err() != nil:
			rep.TimedOut = true
			sc.notes.add(fmt.Sprintf("scan timeout (%s) reached during %s", o.Timeout, name))
		default:
			sc.notes.add(fmt.Sprintf("%s: %v", name, err))
		}
		if rep.BudgetExhausted || rep.TimedOut {
			break
		}
	}
	sc.finishHeaders()
	sc.prog.done(sc.s.count(), len(sc.findings))

	rep.Duration = o.Now().Sub(start)
	rep.Requests = sc.s.count()
	rep.Plan = sc.s.plan
	rep.Notes = sc.notes.list
	rep.Findings = sc.findings
	if rep.Findings == nil {
		rep.Findings = []Finding{}
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool { return rep.Findings[i].Severity > rep.Findings[j].Severity })
	return rep, nil
}

// stop reports whether a sender error ends the current probe (budget,
// timeout) rather than one request.
func stop(err error) bool {
	return errors.Is(err, errBudget) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// send sends a request and runs the passive checks on the response. It
// returns (nil, nil) for a request that failed on its own (connection
// error, dry run, refused method) so probes skip it, and an error only
// when the probe must stop.
func (sc *scanner) send(ctx context.Context, r *request) (*response, error) {
	res, err := sc.s.do(ctx, r)
	if err != nil {
		if stop(err) {
			return nil, err
		}
		if !errors.Is(err, errDryRun) && !errors.Is(err, errDestructive) {
			sc.notes.add(fmt.Sprintf("%s: %v", r.probe, err))
		}
		return nil, nil
	}
	sc.passive(res)
	return res, nil
}

// add records a finding once per rule, operation and title.
func (sc *scanner) add(f Finding) {
	r := ruleByID(f.Rule)
	if r == nil {
		panic("scan: unknown rule " + f.Rule)
	}
	f.OWASP, f.Owner = r.OWASP, r.Owner
	f.Evidence = sc.redact(f.Evidence)
	k := f.fingerprint()
	if sc.seen[k] {
		return
	}
	sc.seen[k] = true
	sc.findings = append(sc.findings, f)
}

// redact removes the identities' credentials from evidence and bounds it.
func (sc *scanner) redact(s string) string {
	for _, sec := range sc.secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "REDACTED")
		}
	}
	s = strings.Map(func(r rune) rune {
		if r < ' ' && r != '\n' && r != '\t' {
			return -1
		}
		return r
	}, s)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// finding fills the request fields of a finding from a response.
func finding(rule string, sev Severity, title, msg string, res *response) Finding {
	f := Finding{Rule: rule, Severity: sev, Title: title, Message: msg}
	if res != nil {
		f.URL = res.url
		if res.req != nil {
			f.Method = res.req.method
			if res.req.op != nil {
				f.Operation = res.req.op.String()
				f.Line = res.req.op.Line
			}
			if res.req.identity != nil {
				f.Identity = res.req.identity.Name
			}
		}
	}
	return f
}

// opsToRun returns the operations a probe may call: safe ones always,
// data-changing ones with --allow-destructive.
func (sc *scanner) opsToRun(filter func(*Operation) bool) []*Operation {
	var out []*Operation
	for _, op := range sc.spec.Operations {
		if op.Method == "HEAD" || op.Method == "OPTIONS" {
			continue
		}
		if !op.Safe() && !sc.o.AllowDestructive {
			continue
		}
		if filter == nil || filter(op) {
			out = append(out, op)
		}
	}
	return out
}

func (sc *scanner) identities() []*Identity {
	out := make([]*Identity, len(sc.o.Identities))
	for i := range sc.o.Identities {
		out[i] = &sc.o.Identities[i]
	}
	return out
}

func idName(id *Identity) string {
	if id == nil {
		return ""
	}
	return id.Name
}

// record keeps the response of an operation per identity.
func (sc *scanner) record(op *Operation, id *Identity, res *response) {
	m := sc.status[op.String()]
	if m == nil {
		m = map[string]*response{}
		sc.status[op.String()] = m
	}
	if prev, ok := m[idName(id)]; !ok || (!prev.ok() && res.ok()) {
		m[idName(id)] = res
	}
}

// discovery calls every safe operation once per identity (or once without
// credentials when none are given): first those without path parameters,
// collecting object IDs, then those with path parameters filled with the
// identity's own IDs. The responses feed the passive checks and the later
// probes.
func (sc *scanner) discovery(ctx context.Context) error {
	ids := sc.identities()
	if len(ids) == 0 {
		ids = []*Identity{nil}
	}
	for pass := 0; pass < 2; pass++ {
		for _, id := range ids {
			for _, op := range sc.opsToRun(func(o *Operation) bool { return o.Safe() && (len(o.pathParams()) > 0) == (pass == 1) }) {
				var used []string
				path := buildPath(op, func(p Param) string {
					v := sc.ownID(idName(id), p)
					if v != "" {
						used = append(used, v)
					}
					return v
				}, "", "", "")
				res, err := sc.send(ctx, &request{probe: "discovery", op: op, identity: id, method: op.Method, path: path})
				if err != nil {
					return err
				}
				if res == nil {
					continue
				}
				sc.record(op, id, res)
				if res.ok() {
					found := collectIDs(res.body, res.header.Get("Location"))
					if op.Admin {
						for i := range found {
							found[i].Rank += 2
						}
					}
					sc.owned[idName(id)] = appendIDs(sc.owned[idName(id)], found)
					if len(used) > 0 && id != nil {
						sc.objects[op.String()] = append(sc.objects[op.String()], ownedObject{owner: id.Name, path: path, ids: used, body: res.body})
					}
				}
			}
		}
	}
	return nil
}

func appendIDs(list, more []idValue) []idValue {
	for _, v := range more {
		if len(list) >= 200 {
			break
		}
		i := indexID(list, v)
		switch {
		case i < 0:
			list = append(list, v)
		case v.Rank < list[i].Rank:
			list[i].Rank = v.Rank
		}
	}
	return list
}

func indexID(list []idValue, v idValue) int {
	for i, x := range list {
		if x.Key == v.Key && x.Value == v.Value {
			return i
		}
	}
	return -1
}

// ownID returns an ID the identity saw that fits the parameter, likeliest
// the identity's own first (lowest rank): a key with the parameter's name,
// else a plain "id" or a Location segment; "" when none.
func (sc *scanner) ownID(identity string, p Param) string {
	best, bestRank := "", 1<<30
	for _, v := range sc.owned[identity] {
		r := v.Rank * 2
		switch {
		case normName(v.Key) == normName(p.Name):
		case v.Key == "id" || v.Key == "location":
			r++
		default:
			continue
		}
		if r < bestRank {
			best, bestRank = v.Value, r
		}
	}
	return best
}
