package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// anyOwnID fills a path parameter with the first identity's own IDs.
func (sc *scanner) anyOwnID(p Param) string {
	for _, id := range sc.o.Identities {
		if v := sc.ownID(id.Name, p); v != "" {
			return v
		}
	}
	return ""
}

// probeUnauthenticated sends each operation whose security requirement
// needs credentials without any; 2xx is a finding.
func (sc *scanner) probeUnauthenticated(ctx context.Context) error {
	for _, op := range sc.opsToRun(func(o *Operation) bool { return o.Secured }) {
		res, err := sc.send(ctx, &request{probe: "unauthenticated", op: op, method: op.Method, path: buildPath(op, sc.anyOwnID, "", "", "")})
		if err != nil {
			return err
		}
		if res == nil {
			continue
		}
		sc.record(op, nil, res)
		if res.ok() {
			sev := SeverityHigh
			if op.Admin {
				sev = SeverityCritical
			}
			sc.add(finding(RuleUnauthenticated, sev, "reachable without credentials",
				fmt.Sprintf("%s requires credentials in the document but answered %d to a request without any.", op, res.status), res))
		}
	}
	return nil
}

// probeBOLA requests, as each non-admin identity, the objects another
// identity read with IDs only that identity saw; 2xx is a finding.
func (sc *scanner) probeBOLA(ctx context.Context) error {
	if len(sc.o.Identities) < 2 {
		sc.notes.add("bola: skipped, needs two identities (--auth twice)")
		return nil
	}
	if sc.o.DryRun {
		for _, op := range sc.opsToRun(func(o *Operation) bool { return o.Safe() && len(o.pathParams()) > 0 }) {
			for _, a := range sc.identities() {
				if a.Admin {
					continue
				}
				for _, b := range sc.identities() {
					if a != b {
						sc.s.plan = append(sc.s.plan, PlanEntry{Probe: "bola", Method: op.Method, Path: op.Path + " (IDs of " + b.Name + ")", Identity: a.Name})
					}
				}
			}
		}
		return nil
	}
	for _, op := range sc.opsToRun(func(o *Operation) bool { return o.Safe() && len(o.pathParams()) > 0 }) {
		tried := 0
		for _, obj := range sc.objects[op.String()] {
			if tried >= 3 {
				break
			}
			tried++
			for _, a := range sc.identities() {
				if a.Name == obj.owner || a.Admin || sc.readOwn(op, a.Name, obj.path) {
					continue // A's own object: reading it is no finding
				}
				res, err := sc.send(ctx, &request{probe: "bola", op: op, identity: a, method: op.Method, path: obj.path})
				if err != nil {
					return err
				}
				if res == nil || !res.ok() {
					continue
				}
				same := bytes.Equal(bytes.TrimSpace(res.body), bytes.TrimSpace(obj.body))
				holdsID := false
				for _, v := range obj.ids {
					holdsID = holdsID || bytes.Contains(res.body, []byte(v))
				}
				if !same && !holdsID {
					continue // answered 2xx but not with the object
				}
				sc.add(finding(RuleBOLA, SeverityHigh, fmt.Sprintf("%s reads objects of %s", a.Name, obj.owner),
					fmt.Sprintf("%s read %s, the object %s read with IDs from its own responses (%s), and got %d.", a.Name, obj.path, obj.owner, strings.Join(obj.ids, ", "), res.status), res).
					withEvidence(string(res.body[:min(len(res.body), 200)])))
			}
		}
	}
	return nil
}

// readOwn reports whether the identity read the path with its own IDs
// during discovery.
func (sc *scanner) readOwn(op *Operation, identity, path string) bool {
	for _, o := range sc.objects[op.String()] {
		if o.owner == identity && o.path == path {
			return true
		}
	}
	return false
}

// probeFunctionLevel calls admin operations as each non-admin identity;
// 2xx is a finding.
func (sc *scanner) probeFunctionLevel(ctx context.Context) error {
	var nonAdmin []*Identity
	for _, id := range sc.identities() {
		if !id.Admin {
			nonAdmin = append(nonAdmin, id)
		}
	}
	if len(nonAdmin) == 0 {
		sc.notes.add("function-level: skipped, needs an identity not marked --admin")
		return nil
	}
	for _, op := range sc.opsToRun(func(o *Operation) bool { return o.Admin }) {
		for _, id := range nonAdmin {
			res, err := sc.send(ctx, &request{probe: "function-level", op: op, identity: id, method: op.Method,
				path: buildPath(op, func(p Param) string { return sc.ownID(id.Name, p) }, "", "", "")})
			if err != nil {
				return err
			}
			if res == nil || !res.ok() {
				continue
			}
			sev := SeverityHigh
			if op.AdminWhy == "DELETE" {
				sev = SeverityMedium
			}
			sc.add(finding(RuleBFLA, sev, "admin operation open to "+id.Name,
				fmt.Sprintf("%s is an admin operation (%s) but answered %d to %s, who is not marked admin.", op, op.AdminWhy, res.status, id.Name), res))
		}
	}
	return nil
}

// probeMassAssignment sends each create or update with an undeclared
// is_admin property and readOnly properties set to marker values, then
// reads the object back: a reflected value is a finding. Needs
// --allow-destructive.
func (sc *scanner) probeMassAssignment(ctx context.Context) error {
	if !sc.o.AllowDestructive {
		sc.notes.add("mass-assignment: skipped, it writes data: give --allow-destructive")
		return nil
	}
	var id *Identity
	for _, i := range sc.identities() {
		if !i.Admin {
			id = i
			break
		}
	}
	for _, op := range sc.opsToRun(func(o *Operation) bool {
		return (o.Method == "POST" || o.Method == "PUT" || o.Method == "PATCH") && o.Body != nil
	}) {
		body, ok := sample(op.Body, true, 0).(map[string]any)
		if !ok {
			continue
		}
		props, _ := schemaProps(op.Body)
		injected := map[string]any{}
		if _, declared := props["is_admin"]; !declared {
			injected["is_admin"] = true
		}
		for _, name := range sortedKeys(props) {
			p := props[name]
			if p == nil || !p.ReadOnly {
				continue
			}
			injected[name] = readOnlyMarker(p)
		}
		if len(injected) == 0 {
			continue
		}
		for k, v := range injected {
			body[k] = v
		}
		b, _ := json.Marshal(body)
		path := buildPath(op, func(p Param) string { return sc.ownID(idName(id), p) }, "", "", "")
		res, err := sc.send(ctx, &request{probe: "mass-assignment", op: op, identity: id, method: op.Method, path: path, body: b})
		if err != nil {
			return err
		}
		if res == nil || !res.ok() {
			continue
		}
		readBacks := []*response{res}
		if loc := res.header.Get("Location"); loc != "" {
			if u, err := sc.s.base.Parse(loc); err == nil && sameOrigin(u, sc.s.base) {
				rel := strings.TrimPrefix(u.EscapedPath(), strings.TrimSuffix(sc.s.base.EscapedPath(), "/"))
				if r2, err := sc.send(ctx, &request{probe: "mass-assignment", op: sc.getFor(op), identity: id, method: "GET", path: rel}); err != nil {
					return err
				} else if r2 != nil {
					readBacks = append(readBacks, r2)
				}
			}
		} else if get := sc.getFor(op); get != nil && get != op && len(op.pathParams()) > 0 {
			if r2, err := sc.send(ctx, &request{probe: "mass-assignment", op: get, identity: id, method: "GET", path: path}); err != nil {
				return err
			} else if r2 != nil {
				readBacks = append(readBacks, r2)
			}
		}
		for _, rb := range readBacks {
			if !rb.ok() {
				continue
			}
			v, _ := decodeJSON(rb.body)
			obj, _ := v.(map[string]any)
			for _, k := range sortedKeys(injected) {
				got, ok := obj[k]
				if !ok || !sameJSON(got, injected[k]) {
					continue
				}
				kind := "undeclared"
				if _, declared := props[k]; declared {
					kind = "readOnly"
				}
				sc.add(finding(RuleMassAssignment, SeverityHigh, fmt.Sprintf("%s property %s accepted", kind, k),
					fmt.Sprintf("%s accepted the %s property %q and the object read back holds the value sent.", op, kind, k), res).
					withEvidence(fmt.Sprintf("%s: %v", k, got)))
			}
		}
	}
	return nil
}

// getFor returns the GET operation on the same path, or nil.
func (sc *scanner) getFor(op *Operation) *Operation {
	for _, o := range sc.spec.Operations {
		if o.Method == "GET" && o.Path == op.Path {
			return o
		}
	}
	return nil
}

func readOnlyMarker(s *openapi3.Schema) any {
	switch {
	case s.Type.Is("integer"), s.Type.Is("number"):
		return 987654321
	case s.Type.Is("boolean"):
		return true
	default:
		return "moat-scan-readonly"
	}
}

func sameJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y) || fmt.Sprint(a) == fmt.Sprint(b)
}
