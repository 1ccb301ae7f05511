package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/moat-gateway/moat/internal/httpsyntax"
)

// Authorization is a route's authorization: who, once authenticated, may do
// what. It lives in the route's auth block. Every rule that is set must
// pass (see docs/authorization.md for the evaluation order). A route with
// auth must either set at least one access rule (roles, scopes, methods,
// policies, owner) or say allow_any_authenticated: true; ValidateAuthorization
// refuses anything else (default deny).
type Authorization struct {
	AllowAnyAuthenticated bool                   `yaml:"allow_any_authenticated" jsonschema:"description=Let every authenticated principal in without further access rules. Required when the route has no roles or scopes or methods or policies or owner rule; not allowed together with them."`
	Roles                 *Requirement           `yaml:"roles,omitempty" jsonschema:"description=Roles the principal must hold on every method of the route (403 role_required)."`
	Scopes                *Requirement           `yaml:"scopes,omitempty" jsonschema:"description=Scopes the principal must hold on every method of the route (403 scope_required)."`
	Methods               map[string]*MethodRule `yaml:"methods,omitempty" jsonschema:"description=Function-level rules per HTTP method (upper case). When set a method not listed is refused (403 method_denied); HEAD follows GET unless listed. A method with an empty rule ({}) needs only the route-level rules."`
	Policies              []Policy               `yaml:"policies" jsonschema:"description=CEL expressions over principal and request and route that must all be true (403 policy_denied)."`
	Owner                 []OwnerRule            `yaml:"owner" jsonschema:"description=Object-level rules (BOLA): bind object identifiers in the path or query or JSON body to the principal (403 owner_mismatch)."`
	Properties            *PropertyRules         `yaml:"properties,omitempty" jsonschema:"description=Property-level rules (mass assignment): body properties clients may not set or only some roles may set (403 property_denied)."`
	Body                  bool                   `yaml:"body" jsonschema:"description=Let policies and owner expressions read the parsed JSON body as request.body (bounded by the route's max_body and payload limits)."`
	CostLimit             uint64                 `yaml:"cost_limit" jsonschema:"description=Runtime cost limit of each CEL expression of this route; an expression whose estimated worst case is 100 times over it does not load. Default 10000.,minimum=0,maximum=1000000"`
}

// Requirement is a set of roles or scopes. any_of: the principal holds at
// least one; all_of: the principal holds every one. With both, both apply.
type Requirement struct {
	AnyOf []string `yaml:"any_of" jsonschema:"description=The principal must hold at least one of these."`
	AllOf []string `yaml:"all_of" jsonschema:"description=The principal must hold every one of these."`
}

// MethodRule is what one HTTP method of a route requires, on top of the
// route-level roles and scopes.
type MethodRule struct {
	Roles  *Requirement `yaml:"roles,omitempty" jsonschema:"description=Roles required for this method (403 role_required)."`
	Scopes *Requirement `yaml:"scopes,omitempty" jsonschema:"description=Scopes required for this method (403 scope_required)."`
}

// Policy is one named CEL authorization expression.
type Policy struct {
	Name string `yaml:"name" jsonschema:"description=Name used in logs and audit when the policy denies. Default policies[i]."`
	Expr string `yaml:"expr" jsonschema:"description=CEL expression that must evaluate to true; for example 'admin' in principal.roles || request.params.owner == principal.subject. An evaluation error denies."`
}

// Owner rule locations and match modes.
const (
	OwnerInPath  = "path"
	OwnerInQuery = "query"
	OwnerInBody  = "body"

	OwnerMatchEqual  = "equal"
	OwnerMatchMember = "member"

	// OwnerClaimSubject names the principal's subject in OwnerRule.Claim.
	OwnerClaimSubject = "sub"
)

// OwnerRule binds one object identifier in the request to the principal.
// The identifier is found by In with Name (path parameter, query
// parameter) or Pointer (JSON body). It is then checked either against a
// claim (Match equal or member) or by Expr. OpenAPI documents declare the
// same rule with x-moat-owner on a parameter or schema property; see
// docs/authorization.md.
type OwnerRule struct {
	In       string `yaml:"in" jsonschema:"description=Where the identifier is.,enum=path,enum=query,enum=body"`
	Name     string `yaml:"name" jsonschema:"description=Path or query parameter name (in: path or query)."`
	Pointer  string `yaml:"pointer" jsonschema:"description=JSON pointer to the identifier in the body (in: body) such as /owner_id; a * segment matches every array element or object member (/items/*/account_id)."`
	Claim    string `yaml:"claim" jsonschema:"description=Claim the identifier must match; sub means the principal's subject whatever the authenticator. Not with expr."`
	Match    string `yaml:"match" jsonschema:"description=equal: the identifier equals the claim. member: the claim is a list holding the identifier. Default equal.,enum=equal,enum=member"`
	Expr     string `yaml:"expr" jsonschema:"description=CEL expression over principal and request and route and object_id (the identifier as a string) that must be true. Not with claim."`
	Required bool   `yaml:"required" jsonschema:"description=Refuse requests that do not carry the identifier (query and body; a path parameter is always present). Default false: the rule applies when the identifier is present."`
}

// PropertyRules restrict which body properties a request may set. Paths
// are JSON pointers; a * segment matches every array element or object
// member. A property is set when it is present in the body, even as null;
// a JSON Patch body (application/json-patch+json) sets the paths its
// operations write.
type PropertyRules struct {
	ReadOnly   []string            `yaml:"read_only" jsonschema:"description=Properties no request may set: for example /id or /items/*/price (the readOnly properties of the OpenAPI schema)."`
	WriteRoles map[string][]string `yaml:"write_roles" jsonschema:"description=Properties only principals with one of the listed roles may set: for example /discount: [sales-admin]."`
}

// DefaultAuthorizationCostLimit is the runtime cost limit of a route's CEL
// expressions when cost_limit is 0; it matches expr.DefaultCostLimit.
const DefaultAuthorizationCostLimit uint64 = 10_000

// MaxAuthorizationCostLimit bounds cost_limit.
const MaxAuthorizationCostLimit uint64 = 1_000_000

// ApplyDefaults fills defaults: owner rules match equal, cost_limit 10000.
func (a *Authorization) ApplyDefaults() {
	if a == nil {
		return
	}
	for i := range a.Owner {
		if a.Owner[i].Claim != "" && a.Owner[i].Match == "" {
			a.Owner[i].Match = OwnerMatchEqual
		}
	}
	if a.CostLimit == 0 {
		a.CostLimit = DefaultAuthorizationCostLimit
	}
}

// HasAccessRules reports whether a restricts who may call the route: roles,
// scopes, methods, policies or owner rules. Property rules alone do not.
func (a *Authorization) HasAccessRules() bool {
	return a != nil && (a.Roles != nil || a.Scopes != nil || a.Methods != nil || len(a.Policies) > 0 || len(a.Owner) > 0)
}

// ValidateAuthorization checks the authorization of a route that has an
// auth block; a is nil when the block has no authorization settings. path
// is the field path of the authorization settings (such as
// routes[3].auth). It returns every problem found, with field paths below
// path, and changes nothing. CEL expressions are compiled by the
// authorization stage (authz.New), not here.
//
// Default deny: a route must set an access rule or allow_any_authenticated.
func ValidateAuthorization(a *Authorization, path string) []Problem {
	var out []Problem
	add := func(field, format string, args ...any) {
		out = append(out, Problem{Path: join(path, field), Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case !a.HasAccessRules() && (a == nil || !a.AllowAnyAuthenticated):
		out = append(out, Problem{Path: path, Msg: "no authorization rule: every route with auth must say who may call it; " +
			"add roles, scopes, methods, policies or owner rules, or set allow_any_authenticated: true to admit every authenticated principal"})
	case a.HasAccessRules() && a.AllowAnyAuthenticated:
		add("allow_any_authenticated", "cannot be combined with roles, scopes, methods, policies or owner rules, which restrict access; remove it")
	}
	if a == nil {
		return out
	}
	validateRequirement(a.Roles, "roles", add)
	validateRequirement(a.Scopes, "scopes", add)
	if a.Methods != nil && len(a.Methods) == 0 {
		add("methods", "lists no method, so every request would be refused; list the methods the route serves")
	}
	for _, m := range slices.Sorted(maps.Keys(a.Methods)) {
		f := "methods." + m
		if !httpsyntax.IsToken(m) || strings.ToUpper(m) != m {
			add(f, "%q is not an upper-case HTTP method", m)
		}
		if r := a.Methods[m]; r != nil {
			validateRequirement(r.Roles, f+".roles", add)
			validateRequirement(r.Scopes, f+".scopes", add)
		}
	}
	names := map[string]int{}
	for i, p := range a.Policies {
		f := fmt.Sprintf("policies[%d]", i)
		if strings.TrimSpace(p.Expr) == "" {
			add(f+".expr", "an expression is required")
		}
		if p.Name != "" {
			if j, dup := names[p.Name]; dup {
				add(f+".name", "%q is also the name of policies[%d]", p.Name, j)
			}
			names[p.Name] = i
		}
	}
	for i, o := range a.Owner {
		validateOwnerRule(o, fmt.Sprintf("owner[%d]", i), add)
	}
	if pr := a.Properties; pr != nil {
		if len(pr.ReadOnly) == 0 && len(pr.WriteRoles) == 0 {
			add("properties", "set read_only or write_roles")
		}
		for i, p := range pr.ReadOnly {
			if err := CheckPropertyPointer(p); err != nil {
				add(fmt.Sprintf("properties.read_only[%d]", i), "%v", err)
			}
		}
		for _, p := range slices.Sorted(maps.Keys(pr.WriteRoles)) {
			f := "properties.write_roles." + p
			if err := CheckPropertyPointer(p); err != nil {
				add(f, "%v", err)
			}
			if len(pr.WriteRoles[p]) == 0 {
				add(f, "lists no role; use read_only for a property nobody may set")
			}
			for j, r := range pr.WriteRoles[p] {
				if strings.TrimSpace(r) == "" {
					add(fmt.Sprintf("%s[%d]", f, j), "empty role name")
				}
			}
		}
	}
	if a.CostLimit > MaxAuthorizationCostLimit {
		add("cost_limit", "must be at most %d", MaxAuthorizationCostLimit)
	}
	return out
}

func validateRequirement(r *Requirement, field string, add func(field, format string, args ...any)) {
	if r == nil {
		return
	}
	if len(r.AnyOf) == 0 && len(r.AllOf) == 0 {
		add(field, "set any_of or all_of")
	}
	for _, l := range []struct {
		name string
		vs   []string
	}{{"any_of", r.AnyOf}, {"all_of", r.AllOf}} {
		for i, v := range l.vs {
			if strings.TrimSpace(v) == "" || strings.TrimSpace(v) != v {
				add(fmt.Sprintf("%s.%s[%d]", field, l.name, i), "%q is not a name (empty or surrounded by spaces)", v)
			}
		}
	}
}

func validateOwnerRule(o OwnerRule, f string, add func(field, format string, args ...any)) {
	switch o.In {
	case OwnerInPath, OwnerInQuery:
		if o.Name == "" {
			add(f+".name", "the %s parameter name is required", o.In)
		}
		if o.Pointer != "" {
			add(f+".pointer", "only for in: body; use name")
		}
		if o.In == OwnerInPath && o.Required {
			add(f+".required", "a path parameter is always present; remove required")
		}
	case OwnerInBody:
		if o.Name != "" {
			add(f+".name", "only for in: path or query; use pointer")
		}
		if o.Pointer == "" {
			add(f+".pointer", "a JSON pointer to the identifier is required, such as /owner_id")
		} else if err := CheckPropertyPointer(o.Pointer); err != nil {
			add(f+".pointer", "%v", err)
		}
	default:
		add(f+".in", "must be path, query or body, not %q", o.In)
	}
	switch {
	case o.Claim == "" && o.Expr == "":
		add(f, "set claim (with match) or expr")
	case o.Claim != "" && o.Expr != "":
		add(f, "set claim or expr, not both")
	case o.Expr != "" && o.Match != "":
		add(f+".match", "only with claim")
	}
	if o.Match != "" && o.Match != OwnerMatchEqual && o.Match != OwnerMatchMember {
		add(f+".match", "must be equal or member, not %q", o.Match)
	}
}

// CheckPropertyPointer checks a property path: a JSON pointer (RFC 6901,
// ~0 and ~1 escapes) with at least one segment, where a segment * matches
// every array element or object member. The root pointer "" is refused:
// it names the whole body.
func CheckPropertyPointer(p string) error {
	if p == "" {
		return fmt.Errorf("%q: the whole body cannot be a property; name one, such as /id", p)
	}
	if p[0] != '/' {
		return fmt.Errorf("%q is not a JSON pointer: it must start with /", p)
	}
	for _, seg := range strings.Split(p[1:], "/") {
		for i := 0; i < len(seg); i++ {
			if seg[i] == '~' && (i+1 >= len(seg) || (seg[i+1] != '0' && seg[i+1] != '1')) {
				return fmt.Errorf("%q is not a JSON pointer: ~ must be followed by 0 or 1", p)
			}
		}
	}
	return nil
}
