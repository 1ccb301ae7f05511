package scan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// payload is one injection attempt.
type payload struct {
	kind  string // sql, nosql, command, path traversal
	value string
	sigs  []signature
}

var payloads = []payload{
	{"SQL", "'", sqlSignatures},
	{"SQL", `"`, sqlSignatures},
	{"SQL", "1' OR '1'='1", sqlSignatures},
	{"NoSQL", `{"$gt":""}`, nosqlSignatures},
	{"NoSQL", `';return true;var x='`, nosqlSignatures},
	{"command", ";id", commandSignatures},
	{"command", "$(id)", commandSignatures},
	{"command", "|id", commandSignatures},
	{"path traversal", "../../../../../../../../etc/passwd", fileSignatures},
	{"path traversal", "....//....//....//....//....//etc/passwd", fileSignatures},
}

// maxInjectionParams bounds the parameters the injection probe tries.
const maxInjectionParams = 20

// probeInjection sends each string query and path parameter of the safe
// operations a benign value, then each payload; a signature in a payload's
// response that the benign response lacks is a finding.
func (sc *scanner) probeInjection(ctx context.Context) error {
	params := 0
	for _, op := range sc.opsToRun(func(o *Operation) bool { return o.Safe() }) {
		id := sc.callerFor(op)
		for _, p := range op.Params {
			if (p.In != "query" && p.In != "path") || !isStringParam(p) || params >= maxInjectionParams {
				continue
			}
			params++
			fill := func(q Param) string { return sc.ownID(idName(id), q) }
			benign := scalarString(sample(p.Schema, false, 0))
			if p.In == "path" {
				if v := fill(p); v != "" {
					benign = v
				}
			}
			base, err := sc.send(ctx, &request{probe: "injection", op: op, identity: id, method: op.Method, path: buildPath(op, fill, p.In, p.Name, benign)})
			if err != nil {
				return err
			}
			found := map[string]bool{}
			for _, pl := range payloads {
				if found[pl.kind] {
					continue
				}
				res, err := sc.send(ctx, &request{probe: "injection", op: op, identity: id, method: op.Method, path: buildPath(op, fill, p.In, p.Name, pl.value)})
				if err != nil {
					return err
				}
				if res == nil {
					continue
				}
				sigs := concat(pl.sigs, stackSignatures)
				m := matchSignature(res.body, sigs)
				if m == nil {
					continue
				}
				if base != nil {
					if bm := matchSignature(base.body, sigs); bm != nil && bm.what == m.what {
						continue // the benign value provokes it too: not the payload's doing
					}
				}
				found[pl.kind] = true
				sc.add(finding(RuleInjection, m.sev, fmt.Sprintf("%s payload in %s parameter %s provokes %s", pl.kind, p.In, p.Name, m.what),
					fmt.Sprintf("The %s payload %q in the %s parameter %s provoked %s (status %d) that the benign value %q did not: the value reaches an interpreter unescaped.", pl.kind, pl.value, p.In, p.Name, m.what, res.status, benign), res).
					withEvidence(m.excerpt))
			}
		}
	}
	return nil
}

// callerFor returns the identity that got 2xx from the operation during
// discovery, the first identity when the operation is secured, or nil.
func (sc *scanner) callerFor(op *Operation) *Identity {
	m := sc.status[op.String()]
	if r := m[""]; r != nil && r.ok() {
		return nil
	}
	for _, id := range sc.identities() {
		if r := m[id.Name]; r != nil && r.ok() {
			return id
		}
	}
	if op.Secured && len(sc.o.Identities) > 0 {
		return &sc.o.Identities[0]
	}
	return nil
}

// urlParamName matches parameter names that likely take a URL.
var urlParamName = regexp.MustCompile(`(?i)(url|uri|callback|webhook|link|redirect|dest|feed|endpoint)`)

func isURLParam(p Param) bool {
	if p.Schema != nil && (p.Schema.Format == "uri" || p.Schema.Format == "url" || p.Schema.Format == "uri-reference") {
		return true
	}
	return isStringParam(p) && urlParamName.MatchString(p.Name)
}

// canary is the loopback listener SSRF payloads point at. It records the
// tokens in the paths it is asked for.
type canary struct {
	ln   net.Listener
	srv  *http.Server
	mu   sync.Mutex
	hits map[string]string // token -> remote address
}

func startCanary(addr string) (*canary, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("starting ssrf canary: %w", err)
	}
	c := &canary{ln: ln, hits: map[string]string{}}
	c.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok, ok := strings.CutPrefix(r.URL.Path, "/moat-canary/"); ok {
			c.mu.Lock()
			if len(c.hits) < 1000 {
				c.hits[tok] = r.RemoteAddr
			}
			c.mu.Unlock()
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("moat scan canary\n"))
	})}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

func (c *canary) url(tok string) string {
	return "http://" + c.ln.Addr().String() + "/moat-canary/" + tok
}

func (c *canary) hit(tok string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.hits[tok]
	return ok
}

func (c *canary) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.srv.Shutdown(ctx)
}

// probeSSRF sends each URL-valued query parameter (format uri, or a name
// like url, callback, webhook) the canary's URL with a fresh token and
// waits, bounded by SSRFWait, for the target to fetch it.
func (sc *scanner) probeSSRF(ctx context.Context) error {
	type sent struct {
		tok string
		res *response
		p   Param
		op  *Operation
	}
	var cands []struct {
		op *Operation
		p  Param
	}
	for _, op := range sc.opsToRun(nil) {
		for _, p := range op.Params {
			if p.In == "query" && isURLParam(p) {
				cands = append(cands, struct {
					op *Operation
					p  Param
				}{op, p})
			}
		}
	}
	if len(cands) == 0 {
		return nil
	}
	var c *canary
	if !sc.o.DryRun {
		var err error
		if c, err = startCanary(sc.o.CanaryAddr); err != nil {
			return err
		}
		defer c.close()
	}
	var pending []sent
	for _, cand := range cands {
		tok := token()
		u := "http://127.0.0.1/moat-canary/" + tok
		if c != nil {
			u = c.url(tok)
		}
		id := sc.callerFor(cand.op)
		res, err := sc.send(ctx, &request{probe: "ssrf", op: cand.op, identity: id, method: cand.op.Method,
			path: buildPath(cand.op, func(q Param) string { return sc.ownID(idName(id), q) }, "query", cand.p.Name, u)})
		if err != nil {
			return err
		}
		if res != nil {
			pending = append(pending, sent{tok, res, cand.p, cand.op})
		}
	}
	if c == nil {
		return nil
	}
	deadline := sc.o.Now().Add(sc.o.SSRFWait)
	for {
		left := pending[:0]
		for _, s := range pending {
			if c.hit(s.tok) {
				sc.add(finding(RuleSSRF, SeverityHigh, "server fetches the URL in "+s.p.Name,
					fmt.Sprintf("The query parameter %s of %s made the server request the scanner's canary URL: the server fetches URLs it is given.", s.p.Name, s.op), s.res))
				continue
			}
			left = append(left, s)
		}
		pending = left
		if len(pending) == 0 || !sc.o.Now().Before(deadline) {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(ctx.Err())
		case <-t.C:
		}
	}
}
