package pipeline

import (
	"fmt"
	"path/filepath"
	"sort"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/exposure/schema"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/validate/openapi"
	"github.com/moat-gateway/moat/internal/versioning"
)

// routeSpec is one route to compile: a configured route, or one generated
// from an upstream's OpenAPI document with the stage that validates it.
type routeSpec struct {
	path     string // field path for problems: routes[3], or upstreams.api.openapi (GET /books/{id})
	rc       *config.Route
	validate gateway.RequestStage // OpenAPI request validation, or nil
	response *schema.Filter       // response filtering (schema, writeOnly, deny_fields), or nil
	// deprecation announces, counts and retires the deprecated operations
	// of the document; nil when it deprecates none.
	deprecation *versioning.Operations
}

// filterConfig is the response filtering block to use, or the defaults.
func filterConfig(c *config.ResponseFiltering) config.ResponseFiltering {
	if c == nil {
		return config.ResponseFiltering{}
	}
	return *c
}

// specPath resolves an OpenAPI document path relative to the configuration
// file.
func specPath(cfg *config.Config, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(cfg.File()), p)
}

// loadSpec loads the document of an openapi block.
func loadSpec(cfg *config.Config, oc *config.OpenAPI) (*openapi.Document, error) {
	var opts []openapi.LoadOption
	if oc.BasePath != nil {
		opts = append(opts, openapi.WithBasePath(*oc.BasePath))
	}
	return openapi.Load(specPath(cfg, oc.Spec), opts...)
}

// routeSpecs returns the routes to compile: those generated from every
// upstream's OpenAPI document (one per operation, upstreams by name), then
// the configured ones, with their validation stages. Generated routes take
// their authentication and authorization from x-moat-auth, their limits
// from x-moat-rate-limits, their object-level rules from x-moat-owner and
// their read-only properties from the schema; an operation without
// x-moat-auth is refused (zero trust), like a configured route without
// auth or public.
func routeSpecs(cfg *config.Config, state *State, probs *config.Problems) []routeSpec {
	var out []routeSpec
	names := make([]string, 0, len(cfg.Upstreams))
	for name, u := range cfg.Upstreams {
		if u != nil && u.OpenAPI != nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		oc := cfg.Upstreams[name].OpenAPI
		ppath := "upstreams." + name + ".openapi"
		doc, err := loadSpec(cfg, oc)
		if err != nil {
			probs.Add(ppath+".spec", err)
			continue
		}
		resp, err := doc.CompileResponses()
		if err != nil {
			probs.Add(ppath+".spec", err)
			continue
		}
		opts := openapi.OptionsFrom(oc, true, state.Shadow(), name)
		for _, op := range doc.Operations() {
			opath := fmt.Sprintf("%s (%s)", ppath, op.String())
			rc, err := generatedRoute(cfg, name, op)
			if err != nil {
				probs.Add(opath, err)
				continue
			}
			v, err := doc.Validator(op, opts)
			if err != nil {
				probs.Add(opath, err)
				continue
			}
			f, err := schema.New(filterConfig(oc.ResponseFiltering), resp, op)
			if err != nil {
				probs.Add(ppath+".response_filtering", err)
				continue
			}
			out = append(out, routeSpec{path: opath, rc: rc, validate: v, response: f, deprecation: generatedDeprecation(op)})
		}
	}
	for i, rc := range cfg.Routes {
		spec := routeSpec{path: fmt.Sprintf("routes[%d]", i), rc: rc}
		if oc := rc.OpenAPI; oc != nil {
			doc, err := loadSpec(cfg, oc)
			if err != nil {
				probs.Add(spec.path+".openapi.spec", err)
			} else if d, err := doc.Dispatcher(openapi.OptionsFrom(oc, false, state.Shadow(), rc.Name)); err != nil {
				probs.Add(spec.path+".openapi", err)
			} else if resp, err := doc.CompileResponses(); err != nil {
				probs.Add(spec.path+".openapi.spec", err)
			} else if f, err := schema.New(filterConfig(rc.ResponseFiltering), resp, nil); err != nil {
				probs.Add(spec.path+".response_filtering", err)
			} else {
				spec.validate, spec.response = d, f
				spec.deprecation = documentDeprecation(doc)
			}
		} else if rc.ResponseFiltering != nil {
			f, err := schema.New(*rc.ResponseFiltering, nil, nil)
			if err != nil {
				probs.Add(spec.path+".response_filtering", err)
			}
			spec.response = f
		}
		out = append(out, spec)
	}
	return out
}

// generatedRoute is the configured route an operation of upstream's
// document stands for, defaulted and checked like one from the file.
func generatedRoute(cfg *config.Config, upstream string, op *openapi.Operation) (*config.Route, error) {
	a := op.Auth
	if a == nil {
		return nil, fmt.Errorf("no x-moat-auth: zero trust requires every operation to say how it is authenticated (x-moat-auth: [authenticator, ...] or {public: true}), on the operation or the document")
	}
	name := op.ID
	if name == "" {
		name = op.Method + " " + op.Path
	}
	maxBody := cfg.Server.MaxBody
	rc := &config.Route{Name: name, Path: op.Template, Methods: []string{op.Method}, Upstream: upstream,
		Public: a.Public, MaxBody: &maxBody, RateLimits: op.RateLimits}
	for _, n := range op.RateLimits {
		if _, ok := cfg.RateLimits[n]; !ok {
			return nil, fmt.Errorf("x-moat-rate-limits: unknown rate limit %q", n)
		}
	}
	if a.Public {
		if len(op.Owners) > 0 {
			return nil, fmt.Errorf("x-moat-owner on a public operation: ownership needs an authenticated principal")
		}
		return rc, nil
	}
	for _, n := range a.Authenticators {
		if _, ok := cfg.Authenticators[n]; !ok {
			return nil, fmt.Errorf("x-moat-auth: unknown authenticator %q", n)
		}
	}
	az := config.Authorization{AllowAnyAuthenticated: a.AllowAnyAuthenticated}
	if len(a.Roles) > 0 {
		az.Roles = &config.Requirement{AnyOf: a.Roles}
	}
	if len(a.Scopes) > 0 {
		az.Scopes = &config.Requirement{AnyOf: a.Scopes}
	}
	for _, o := range op.Owners {
		rule, err := ownerRule(op, o)
		if err != nil {
			return nil, err
		}
		az.Owner = append(az.Owner, rule)
	}
	if ro := op.ReadOnlyProperties(); len(ro) > 0 {
		az.Properties = &config.PropertyRules{ReadOnly: ro}
	}
	az.ApplyDefaults()
	if ps := config.ValidateAuthorization(&az, "x-moat-auth"); len(ps) > 0 {
		return nil, fmt.Errorf("%s: %s", ps[0].Path, ps[0].Msg)
	}
	rc.Auth = &config.RouteAuth{Authenticators: a.Authenticators, Authorization: az}
	return rc, nil
}

// ownerRule turns an x-moat-owner extension into an authorization owner
// rule: {claim, match, expr, required} on a path or query parameter, or on
// a body property.
func ownerRule(op *openapi.Operation, o openapi.Owner) (config.OwnerRule, error) {
	r := config.OwnerRule{In: o.In}
	switch o.In {
	case "path":
		r.Name = ""
		for _, p := range op.Parameters {
			if p.In == "path" && p.Name == o.Name {
				r.Name = p.RouterName
			}
		}
		if r.Name == "" {
			return r, fmt.Errorf("x-moat-owner on path parameter %q, which shares a path segment: not supported", o.Name)
		}
	case "query":
		r.Name = o.Name
	case "body":
		r.Pointer = o.Name
	default:
		return r, fmt.Errorf("x-moat-owner on a %s parameter: only path, query and body identifiers can be bound", o.In)
	}
	for k, v := range o.Value {
		switch k {
		case "claim":
			r.Claim, _ = v.(string)
		case "match":
			r.Match, _ = v.(string)
		case "expr":
			r.Expr, _ = v.(string)
		case "required":
			r.Required, _ = v.(bool)
		default:
			return r, fmt.Errorf("x-moat-owner: unknown field %q (claim, match, expr, required)", k)
		}
	}
	if r.Claim != "" && r.Match == "" {
		r.Match = config.OwnerMatchEqual
	}
	return r, nil
}
