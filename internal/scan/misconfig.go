package scan

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

func token() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// reachable returns a safe operation without path parameters that some
// identity (or no identity) got 2xx from, and that identity.
func (sc *scanner) reachable() (*Operation, *Identity) {
	for _, op := range sc.spec.Operations {
		if op.Method != "GET" || len(op.pathParams()) > 0 {
			continue
		}
		m := sc.status[op.String()]
		if r := m[""]; r != nil && r.ok() {
			return op, nil
		}
		for _, id := range sc.identities() {
			if r := m[id.Name]; r != nil && r.ok() {
				return op, id
			}
		}
	}
	return nil, nil
}

// probeCORS sends a reachable operation an arbitrary Origin and the null
// origin, with the identity's credentials.
func (sc *scanner) probeCORS(ctx context.Context) error {
	op, id := sc.reachable()
	path := "/"
	if op != nil {
		path = buildPath(op, nil, "", "", "")
	}
	for _, origin := range []string{"https://moat-scan.invalid", "null"} {
		res, err := sc.send(ctx, &request{probe: "cors", op: op, identity: id, method: "GET", path: path, header: http.Header{"Origin": {origin}}})
		if err != nil {
			return err
		}
		if res == nil {
			continue
		}
		acao := strings.TrimSpace(res.header.Get("Access-Control-Allow-Origin"))
		creds := strings.EqualFold(strings.TrimSpace(res.header.Get("Access-Control-Allow-Credentials")), "true")
		switch {
		case acao == origin && creds:
			sc.add(finding(RuleCORS, SeverityHigh, "CORS reflects origin "+origin+" with credentials",
				fmt.Sprintf("The API answered Origin: %s with Access-Control-Allow-Origin: %s and Access-Control-Allow-Credentials: true: any web site can read responses with the user's cookies or credentials.", origin, acao), res))
		case acao == origin:
			sc.add(finding(RuleCORS, SeverityLow, "CORS reflects origin "+origin,
				fmt.Sprintf("The API answered Origin: %s with Access-Control-Allow-Origin: %s (without credentials).", origin, acao), res))
		case acao == "*" && creds:
			sc.add(finding(RuleCORS, SeverityMedium, "CORS allows * with credentials",
				"The API sends Access-Control-Allow-Origin: * together with Access-Control-Allow-Credentials: true.", res))
		}
	}
	return nil
}

// probeTrace sends TRACE / with a marker header; an echo is a finding.
func (sc *scanner) probeTrace(ctx context.Context) error {
	tok := token()
	res, err := sc.send(ctx, &request{probe: "trace", method: "TRACE", path: "/", header: http.Header{"X-Moat-Scan": {tok}}})
	if err != nil || res == nil {
		return err
	}
	if res.ok() && bytes.Contains(res.body, []byte(tok)) {
		sc.add(finding(RuleTrace, SeverityMedium, "TRACE echoes requests",
			fmt.Sprintf("TRACE / answered %d with the request headers in the body (cross-site tracing can read credentials).", res.status), res))
	}
	return nil
}

// probeTLS tries TLS 1.0 and 1.1 handshakes and a TLS 1.2 handshake
// offering only insecure cipher suites on https targets.
func (sc *scanner) probeTLS(ctx context.Context) error {
	if sc.s.base.Scheme != "https" {
		return nil
	}
	host := sc.s.base.Hostname()
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		st, err := sc.s.handshake(ctx, "tls", &tls.Config{ServerName: host, InsecureSkipVerify: true, MinVersion: v, MaxVersion: v}) //nolint:gosec // probing the server, no data sent
		if stop(err) {
			return err
		}
		if err == nil {
			sc.add(Finding{Rule: RuleWeakTLS, Severity: SeverityMedium, Title: tls.VersionName(st.Version) + " accepted",
				Message: fmt.Sprintf("The server completed a %s handshake; allow TLS 1.2 and later only.", tls.VersionName(st.Version)), URL: sc.s.base.String()})
		}
	}
	var weak []uint16
	for _, cs := range tls.InsecureCipherSuites() {
		if contains12(cs.SupportedVersions) {
			weak = append(weak, cs.ID)
		}
	}
	st, err := sc.s.handshake(ctx, "tls", &tls.Config{ServerName: host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: weak}) //nolint:gosec // probing the server
	if stop(err) {
		return err
	}
	if err == nil {
		sc.add(Finding{Rule: RuleWeakTLS, Severity: SeverityMedium, Title: "insecure cipher suite " + tls.CipherSuiteName(st.CipherSuite),
			Message: fmt.Sprintf("The server negotiated %s, an insecure cipher suite.", tls.CipherSuiteName(st.CipherSuite)), URL: sc.s.base.String()})
	}
	return nil
}

func contains12(vs []uint16) bool {
	for _, v := range vs {
		if v == tls.VersionTLS12 {
			return true
		}
	}
	return false
}

// inventoryPaths are undocumented paths commonly left exposed, with the
// severity of finding each answering 2xx.
var inventoryPaths = []struct {
	path string
	sev  Severity
}{
	{"/.env", SeverityCritical},
	{"/actuator/env", SeverityHigh},
	{"/actuator/heapdump", SeverityHigh},
	{"/debug/pprof/", SeverityHigh},
	{"/actuator", SeverityMedium},
	{"/debug", SeverityMedium},
	{"/server-status", SeverityMedium},
	{"/.git/config", SeverityHigh},
	{"/swagger.json", SeverityLow},
	{"/openapi.json", SeverityLow},
	{"/v2/api-docs", SeverityLow},
	{"/swagger-ui/", SeverityLow},
}

// probeInventory requests undocumented paths and older API versions. A
// random path is requested first: when the target answers it 2xx
// (catch-all), only answers that differ from it count.
func (sc *scanner) probeInventory(ctx context.Context) error {
	base, err := sc.send(ctx, &request{probe: "inventory", method: "GET", path: "/moat-scan-" + token()})
	if err != nil {
		return err
	}
	differs := func(res *response) bool {
		if base == nil || !base.ok() {
			return true
		}
		return res.status != base.status || !bytes.Equal(res.body, base.body)
	}
	for _, c := range inventoryPaths {
		if sc.spec.documents(c.path) {
			continue
		}
		res, err := sc.send(ctx, &request{probe: "inventory", method: "GET", path: c.path})
		if err != nil {
			return err
		}
		if res != nil && res.ok() && differs(res) {
			sc.add(finding(RuleInventory, c.sev, "undocumented "+c.path+" exposed",
				fmt.Sprintf("%s is not in the document but answered %d without credentials.", c.path, res.status), res).
				withEvidence(string(res.body[:min(len(res.body), 120)])))
		}
	}
	// Older versions: /v1/... still served when the document is at /v2.
	v := sc.spec.basePathVersion()
	if v < 2 {
		return nil
	}
	tried := 0
	for _, op := range sc.spec.Operations {
		if tried >= 3 || op.Method != "GET" || len(op.pathParams()) > 0 {
			continue
		}
		// Only operations the current version answers 2xx say something.
		id := sc.callerFor(op)
		if r := sc.status[op.String()][idName(id)]; r == nil || !r.ok() {
			continue
		}
		old := versionPrefix.ReplaceAllString(buildPath(op, nil, "", "", ""), fmt.Sprintf("/v%d$2", v-1))
		if sc.spec.documents(strings.SplitN(old, "?", 2)[0]) {
			continue
		}
		tried++
		res, err := sc.send(ctx, &request{probe: "inventory", identity: id, method: "GET", path: old})
		if err != nil {
			return err
		}
		if res != nil && res.ok() && differs(res) {
			f := finding(RuleInventory, SeverityMedium, fmt.Sprintf("older API version /v%d still served", v-1),
				fmt.Sprintf("The document describes /v%d, but %s answered %d: an older, undocumented version is still running.", v, old, res.status), res)
			f.Operation = op.String()
			sc.add(f)
		}
	}
	return nil
}

// probeRateLimit sends a bounded burst to one reachable operation; no 429
// and no rate-limit headers is a finding.
func (sc *scanner) probeRateLimit(ctx context.Context) error {
	op, id := sc.reachable()
	if op == nil {
		sc.notes.add("rate-limit: skipped, no operation answered 2xx during discovery")
		return nil
	}
	if !sc.o.DryRun && sc.s.remaining() < sc.o.Burst {
		sc.notes.add(fmt.Sprintf("rate-limit: skipped, the remaining budget is below the burst of %d", sc.o.Burst))
		return nil
	}
	path := buildPath(op, nil, "", "", "")
	var last *response
	for i := 0; i < sc.o.Burst; i++ {
		res, err := sc.send(ctx, &request{probe: "rate-limit", op: op, identity: id, method: "GET", path: path})
		if err != nil {
			if errors.Is(err, errBudget) {
				return nil // inconclusive
			}
			return err
		}
		if res == nil {
			if sc.o.DryRun {
				continue
			}
			return nil // a failed request makes the burst inconclusive
		}
		if res.status == http.StatusTooManyRequests || hasRateLimitHeaders(res.header) {
			return nil
		}
		last = res
	}
	if last == nil {
		return nil
	}
	sc.add(finding(RuleRateLimit, SeverityLow, "no rate limit",
		fmt.Sprintf("%d requests at %.4g/s to %s got no 429 and no RateLimit, X-RateLimit or Retry-After headers.", sc.o.Burst, sc.o.Rate, op), last))
	return nil
}

func hasRateLimitHeaders(h http.Header) bool {
	for k := range h {
		l := strings.ToLower(k)
		if strings.HasPrefix(l, "ratelimit") || strings.HasPrefix(l, "x-ratelimit") || strings.HasPrefix(l, "x-rate-limit") || l == "retry-after" {
			return true
		}
	}
	return false
}
