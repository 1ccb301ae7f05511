package authz

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/expr"
	"github.com/moat-gateway/moat/internal/gateway"
)

// ownerRule is a compiled config.OwnerRule.
type ownerRule struct {
	label    string // owner[i] (in query "id"), for details
	in       string
	name     string  // path or query parameter
	ptr      pointer // body
	claim    string
	member   bool
	prg      *expr.Program // expr rules
	required bool
}

func newOwnerRule(o config.OwnerRule, i int, eopts expr.Options, params []string) (*ownerRule, error) {
	r := &ownerRule{in: o.In, name: o.Name, claim: o.Claim, member: o.Match == config.OwnerMatchMember, required: o.Required}
	switch o.In {
	case config.OwnerInPath:
		r.label = fmt.Sprintf("owner[%d] (path parameter %s)", i, o.Name)
		if params != nil && !slices.Contains(params, o.Name) {
			return nil, fmt.Errorf("owner[%d].name: the route's path has no parameter {%s}", i, o.Name)
		}
	case config.OwnerInQuery:
		r.label = fmt.Sprintf("owner[%d] (query parameter %s)", i, o.Name)
	case config.OwnerInBody:
		r.label = fmt.Sprintf("owner[%d] (body %s)", i, o.Pointer)
		ptr, err := parsePointer(o.Pointer)
		if err != nil {
			return nil, fmt.Errorf("owner[%d].pointer: %w", i, err)
		}
		r.ptr = ptr
	default:
		return nil, fmt.Errorf("owner[%d].in: must be path, query or body, not %q", i, o.In)
	}
	if o.Expr != "" {
		eopts.ObjectID = true
		prg, err := expr.Compile(o.Expr, expr.Bool, eopts)
		if err != nil {
			return nil, fmt.Errorf("owner[%d].expr: expression %q: %w%s", i, o.Expr, err, bodyHint(err, eopts.Body))
		}
		r.prg = prg
	} else if o.Claim == "" {
		return nil, fmt.Errorf("owner[%d]: set claim or expr", i)
	}
	return r, nil
}

// check finds the rule's identifiers in the request and checks each one.
// A missing identifier passes unless the rule is required (a missing path
// parameter never passes: the route and the rule disagree).
func (r *ownerRule) check(ex *gateway.Exchange, p *gateway.Principal, obs Observer) error {
	ids, err := r.locate(ex)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		if r.required || r.in == config.OwnerInPath {
			return gateway.Rejectf(http.StatusForbidden, ReasonOwnerMismatch, "%s: the request carries no object identifier", r.label)
		}
		return nil
	}
	for _, id := range ids {
		ok, why, err := r.owns(ex, p, id)
		if err != nil {
			if rej := bodyReject(err); rej != nil {
				return rej
			}
		}
		if ok {
			continue
		}
		ex.Note(FindingObjectID, id)
		if obs != nil {
			obs.OwnerMismatch(PrincipalKey(p), id)
		}
		return &gateway.Reject{Status: http.StatusForbidden, ReasonID: ReasonOwnerMismatch, Detail: r.label + ": " + why, Err: err}
	}
	return nil
}

// maxIDs bounds the identifiers one rule checks in one request (a body
// wildcard over a long array); more are refused rather than checked
// partially.
const maxIDs = 1000

// locate returns every identifier the rule applies to: one path
// parameter, every value of a repeated query parameter, every match of a
// body pointer. Values that are not scalars are refused.
func (r *ownerRule) locate(ex *gateway.Exchange) ([]string, error) {
	switch r.in {
	case config.OwnerInPath:
		for _, prm := range ex.Params {
			if prm.Key == r.name {
				return []string{prm.Value}, nil
			}
		}
		return nil, nil
	case config.OwnerInQuery:
		return queryValues(ex.Request.URL.RawQuery, r.name), nil
	}
	doc, err := ex.JSONBody()
	if err != nil {
		return nil, err
	}
	var ids []string
	var bad error
	r.ptr.walk(doc, func(path []string, v any) bool {
		if v == nil {
			return true // null: no identifier
		}
		id, ok := scalarString(v)
		if !ok {
			bad = gateway.Rejectf(http.StatusForbidden, ReasonOwnerMismatch, "%s: %s is not a string or number", r.label, formatPath(path))
			return false
		}
		if len(ids) == maxIDs {
			bad = gateway.Rejectf(http.StatusForbidden, ReasonOwnerMismatch, "%s: more than %d identifiers", r.label, maxIDs)
			return false
		}
		ids = append(ids, id)
		return true
	})
	if bad != nil {
		return nil, bad
	}
	return ids, nil
}

// queryValues returns every value of the query parameter name, parsed as
// net/url.ParseQuery does (pairs with ';' or bad escapes are skipped, so
// the upstream, which parses the same way, sees the same values).
func queryValues(raw, name string) []string {
	var out []string
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err := url.QueryUnescape(k)
		if err != nil || k != name {
			continue
		}
		if v, err = url.QueryUnescape(v); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// owns checks one identifier. why explains a refusal for the detail,
// without the identifier itself.
func (r *ownerRule) owns(ex *gateway.Exchange, p *gateway.Principal, id string) (ok bool, why string, err error) {
	if r.prg != nil {
		ok, err := r.prg.EvalBoolObject(ex, id)
		if err != nil {
			return false, "expression failed to evaluate", err
		}
		if !ok {
			return false, "expression denied", nil
		}
		return true, "", nil
	}
	if id == "" {
		return false, "empty object identifier", nil
	}
	var claim any
	if r.claim == config.OwnerClaimSubject {
		claim = p.Subject
	} else {
		c, found := p.Claims[r.claim]
		if !found {
			return false, "the principal has no claim " + r.claim, nil
		}
		claim = c
	}
	if r.member {
		if claimHolds(claim, id) {
			return true, "", nil
		}
		return false, "not in claim " + r.claim, nil
	}
	if s, ok := scalarString(claim); ok && s == id {
		return true, "", nil
	}
	return false, "does not equal claim " + r.claim, nil
}

// claimHolds reports whether a list claim holds id; a scalar claim is a
// list of one.
func claimHolds(claim any, id string) bool {
	switch c := claim.(type) {
	case []any:
		for _, e := range c {
			if s, ok := scalarString(e); ok && s == id {
				return true
			}
		}
		return false
	case []string:
		return slices.Contains(c, id)
	}
	s, ok := scalarString(claim)
	return ok && s == id
}

// scalarString returns the identifier form of a JSON or claim scalar:
// strings as they are, integral numbers in decimal (so 42, 42.0 and "42"
// compare equal), other numbers in Go's shortest form. Booleans, null,
// objects and arrays are not identifiers.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return strconv.FormatInt(i, 10), true
		}
		if isIntegerLiteral(string(x)) {
			return string(x), true // beyond int64: keep every digit
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return "", false
		}
		return floatString(f), true
	case float64:
		return floatString(x), true
	case float32:
		return floatString(float64(x)), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case int32:
		return strconv.FormatInt(int64(x), 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case uint32:
		return strconv.FormatUint(uint64(x), 10), true
	}
	return "", false
}

func isIntegerLiteral(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func floatString(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
