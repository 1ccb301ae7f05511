// Package authz implements the authorization stage: after authentication
// has established a principal, it decides whether that principal may make
// this request. It covers function-level rules (roles, scopes, per-method
// requirements: OWASP API5), CEL policies, object-level rules binding
// identifiers in the request to the principal (API1, BOLA) and
// property-level rules refusing bodies that set read-only or
// role-restricted properties (API3, mass assignment).
//
// Every denial is a 403 with a distinct reason (role_required,
// scope_required, method_denied, policy_denied, owner_mismatch,
// property_denied). Details name the rule and never carry a value from the
// request; the object identifier an ownership rule refused goes to audit
// only, as the finding object_id.
package authz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/expr"
	"github.com/moat-gateway/moat/internal/gateway"
)

// Reasons the authorization stage refuses requests with; all are 403.
const (
	ReasonMethodDenied   = "method_denied"   // the route lists methods and not this one
	ReasonRoleRequired   = "role_required"   // a roles requirement is not met
	ReasonScopeRequired  = "scope_required"  // a scopes requirement is not met
	ReasonPolicyDenied   = "policy_denied"   // a CEL policy is false or failed to evaluate
	ReasonOwnerMismatch  = "owner_mismatch"  // an object identifier does not belong to the principal
	ReasonPropertyDenied = "property_denied" // the body sets a read-only or role-restricted property
)

// FindingObjectID is the finding (Exchange.Note key) holding the object
// identifier an ownership rule refused.
const FindingObjectID = "object_id"

// Observer is told about authorization outcomes that feed anomaly
// detection. Its methods are called on the request path, synchronously,
// from many goroutines: they must be safe for concurrent use and fast.
type Observer interface {
	// OwnerMismatch records that the principal (see PrincipalKey) asked
	// for an object it does not own: repeated mismatches suggest ID
	// enumeration.
	OwnerMismatch(principalKey, objectID string)
}

// PrincipalKey identifies a principal for counting: the authenticator name
// and the subject, so equal subjects from different authenticators differ.
func PrincipalKey(p *gateway.Principal) string {
	if p == nil {
		return ""
	}
	return p.Authenticator + ":" + p.Subject
}

// Options holds what the stage needs besides its configuration.
type Options struct {
	// Observer, when not nil, is told about ownership mismatches.
	Observer Observer
	// Template is the route's path template (/orgs/{org}/books/{id}).
	// When set, New refuses owner rules on path parameters the template
	// does not have.
	Template string
}

// Stage enforces one route's authorization. It is built by New at
// configuration load, immutable, and safe for concurrent use.
type Stage struct {
	route    string
	methods  map[string]*requirements // nil when the route has no method rules
	route0   requirements             // route-level roles and scopes
	policies []policy
	owners   []*ownerRule
	props    *propertyRules
	observer Observer
}

type policy struct {
	name string
	prg  *expr.Program
}

// New compiles a route's authorization. cfg must have passed
// config.ValidateAuthorization (New checks it again and returns the same
// problems). Every CEL expression is compiled and type-checked here;
// errors name the field and the expression, and the line:column inside it.
// routeName is used in error messages.
func New(cfg config.Authorization, routeName string, opts Options) (*Stage, error) {
	var errs []error
	for _, p := range config.ValidateAuthorization(&cfg, "") {
		if p.Path == "" {
			errs = append(errs, errors.New(p.Msg))
		} else {
			errs = append(errs, fmt.Errorf("%s: %s", p.Path, p.Msg))
		}
	}
	s := &Stage{route: routeName, observer: opts.Observer}
	s.route0 = newRequirements(cfg.Roles, cfg.Scopes)
	if cfg.Methods != nil {
		s.methods = make(map[string]*requirements, len(cfg.Methods))
		for m, r := range cfg.Methods {
			req := &requirements{}
			if r != nil {
				*req = newRequirements(r.Roles, r.Scopes)
			}
			s.methods[m] = req
		}
	}
	eopts := expr.Options{Body: cfg.Body, CostLimit: cfg.CostLimit}
	for i, p := range cfg.Policies {
		name := p.Name
		if name == "" {
			name = fmt.Sprintf("policies[%d]", i)
		}
		if strings.TrimSpace(p.Expr) == "" {
			continue // reported by validation
		}
		prg, err := expr.Compile(p.Expr, expr.Bool, eopts)
		if err != nil {
			errs = append(errs, fmt.Errorf("policies[%d] (%s): expression %q: %w%s", i, name, p.Expr, err, bodyHint(err, cfg.Body)))
			continue
		}
		s.policies = append(s.policies, policy{name: name, prg: prg})
	}
	params := templateParams(opts.Template)
	for i, o := range cfg.Owner {
		r, err := newOwnerRule(o, i, eopts, params)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.owners = append(s.owners, r)
	}
	if cfg.Properties != nil {
		pr, err := newPropertyRules(cfg.Properties)
		if err != nil {
			errs = append(errs, err)
		}
		s.props = pr
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("route %s: authorization: %w", routeName, errors.Join(errs...))
	}
	return s, nil
}

// bodyHint explains an undefined request.body.
func bodyHint(err error, body bool) string {
	if !body && strings.Contains(err.Error(), "undefined field 'body'") {
		return " (set body: true to let expressions read the request body)"
	}
	return ""
}

// templateParams returns the parameter names of a path template, or nil
// when there is no template.
func templateParams(t string) []string {
	if t == "" {
		return nil
	}
	names := []string{}
	for {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			return names
		}
		j := strings.IndexByte(t[i:], '}')
		if j < 0 {
			return names
		}
		names = append(names, strings.TrimSuffix(t[i+1:i+j], "..."))
		t = t[i+j+1:]
	}
}

// ProcessRequest implements gateway.RequestStage. Rules are checked in this
// order, and the first that fails answers: methods (method_denied), route
// roles and scopes, the method's roles and scopes (role_required,
// scope_required), policies in order (policy_denied), owner rules in order
// (owner_mismatch), property rules (property_denied). The body is read only
// by rules that need it, after every rule that does not.
//
// A request without a principal is an internal error: the stage belongs
// after authentication on routes with auth. A body that cannot be read or
// parsed is answered with the body's own reject (413, 400 invalid_json).
func (s *Stage) ProcessRequest(_ context.Context, ex *gateway.Exchange) error {
	p := ex.Principal
	if p == nil {
		return fmt.Errorf("authorization on route %s: no principal (authentication must run first)", s.route)
	}
	var mreq *requirements
	if s.methods != nil {
		m := ex.Request.Method
		r, ok := s.methods[m]
		if !ok && m == http.MethodHead {
			r, ok = s.methods[http.MethodGet]
		}
		if !ok {
			return gateway.Rejectf(http.StatusForbidden, ReasonMethodDenied, "method %s is not listed in the route's auth.methods", m)
		}
		mreq = r
	}
	if rej := s.route0.check(p, ""); rej != nil {
		return rej
	}
	if mreq != nil {
		if rej := mreq.check(p, ex.Request.Method); rej != nil {
			return rej
		}
	}
	for i := range s.policies {
		pol := &s.policies[i]
		ok, err := pol.prg.EvalBool(ex)
		if err != nil {
			if rej := bodyReject(err); rej != nil {
				return rej
			}
			return &gateway.Reject{Status: http.StatusForbidden, ReasonID: ReasonPolicyDenied,
				Detail: "policy " + pol.name + " failed to evaluate", Err: err}
		}
		if !ok {
			return &gateway.Reject{Status: http.StatusForbidden, ReasonID: ReasonPolicyDenied, Detail: "policy " + pol.name + " denied"}
		}
	}
	for _, o := range s.owners {
		if err := o.check(ex, p, s.observer); err != nil {
			return err
		}
	}
	if s.props != nil {
		if err := s.props.check(ex, p); err != nil {
			return err
		}
	}
	return nil
}

// bodyReject returns the body's own reject (413, 400) carried by an
// evaluation error, or nil.
func bodyReject(err error) *gateway.Reject {
	var rej *gateway.Reject
	if errors.As(err, &rej) {
		return rej
	}
	return nil
}

// requirements are roles and scopes a principal must hold.
type requirements struct {
	rolesAny, rolesAll   []string
	scopesAny, scopesAll []string
}

func newRequirements(roles, scopes *config.Requirement) requirements {
	var r requirements
	if roles != nil {
		r.rolesAny, r.rolesAll = slices.Clone(roles.AnyOf), slices.Clone(roles.AllOf)
	}
	if scopes != nil {
		r.scopesAny, r.scopesAll = slices.Clone(scopes.AnyOf), slices.Clone(scopes.AllOf)
	}
	return r
}

// check returns a 403 when p lacks a role or scope; method names the
// method rule in the detail ("" for the route-level rule).
func (r *requirements) check(p *gateway.Principal, method string) *gateway.Reject {
	where := "route"
	if method != "" {
		where = "method " + method
	}
	if len(r.rolesAny) > 0 && !holdsAny(p.Roles, r.rolesAny) {
		return gateway.Rejectf(http.StatusForbidden, ReasonRoleRequired, "%s needs one of the roles %s", where, strings.Join(r.rolesAny, ", "))
	}
	if missing := firstMissing(p.Roles, r.rolesAll); missing != "" {
		return gateway.Rejectf(http.StatusForbidden, ReasonRoleRequired, "%s needs the role %s", where, missing)
	}
	if len(r.scopesAny) > 0 && !holdsAny(p.Scopes, r.scopesAny) {
		return scopeReject(p, fmt.Sprintf("%s needs one of the scopes %s", where, strings.Join(r.scopesAny, ", ")))
	}
	if missing := firstMissing(p.Scopes, r.scopesAll); missing != "" {
		return scopeReject(p, fmt.Sprintf("%s needs the scope %s", where, missing))
	}
	return nil
}

// scopeReject answers a missing scope; OAuth bearer principals get the
// RFC 6750 insufficient_scope challenge.
func scopeReject(p *gateway.Principal, detail string) *gateway.Reject {
	rej := &gateway.Reject{Status: http.StatusForbidden, ReasonID: ReasonScopeRequired, Detail: detail}
	if p.Kind == "jwt" || p.Kind == "introspection" {
		rej.Header = http.Header{"Www-Authenticate": {`Bearer error="insufficient_scope"`}}
	}
	return rej
}

func holdsAny(have, want []string) bool {
	for _, w := range want {
		if slices.Contains(have, w) {
			return true
		}
	}
	return false
}

func firstMissing(have, want []string) string {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return w
		}
	}
	return ""
}

var _ gateway.RequestStage = (*Stage)(nil)
