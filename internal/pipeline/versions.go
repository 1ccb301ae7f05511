package pipeline

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/router"
	"github.com/moat-gateway/moat/internal/validate/openapi"
	"github.com/moat-gateway/moat/internal/versioning"
)

// versionGroup is one method of routes that share a host and path shape
// and serve different versions: the router gets one dispatching route for
// it, which picks the member by the version the request names.
type versionGroup struct {
	host, template, method string
	members                []int // indexes into the route specs, in configuration order
}

// routeGrouping says how the route specs are registered with the router.
type routeGrouping struct {
	grouped []bool            // by spec: the route is a member of a version group
	taken   []map[string]bool // by spec: methods registered by a group, or left out after a conflict reported here
	groups  []versionGroup
}

// ownMethods returns the methods spec i registers itself.
func (g *routeGrouping) ownMethods(i int, methods []string) []string {
	if len(g.taken[i]) == 0 {
		return methods
	}
	var out []string
	for _, m := range methods {
		if !g.taken[i][strings.ToUpper(m)] {
			out = append(out, m)
		}
	}
	return out
}

// groupVersions finds the routes that the router would see as one: the same
// host pattern, path shape (parameter names aside) and method. Such routes
// form a version group when each has a version block read from the same
// header or from the media type, with distinct versions, at most one
// default, and the same parameter names (see versioning.CheckGroup). Any
// other overlap is a problem naming both routes. Invalid hosts and
// templates are left for the router to report.
func groupVersions(specs []routeSpec, probs *config.Problems) *routeGrouping {
	g := &routeGrouping{grouped: make([]bool, len(specs)), taken: make([]map[string]bool, len(specs))}
	type slot struct {
		key, method string
	}
	bySlot := map[slot][]int{}
	var order []slot
	params := make([][]string, len(specs))
	for i, spec := range specs {
		key, ps, err := router.Shape(spec.rc.Host, spec.rc.Path)
		if err != nil {
			continue
		}
		params[i] = ps
		for _, m := range spec.rc.Methods {
			s := slot{key, strings.ToUpper(m)}
			if bySlot[s] == nil {
				order = append(order, s)
			}
			bySlot[s] = append(bySlot[s], i)
		}
	}
	// One problem per set of routes and reason, however many methods
	// they share.
	type conflict struct {
		at      int // the spec the problem is reported on
		routes  string
		msg     string
		methods []string
	}
	var conflicts []*conflict
	byMsg := map[string]*conflict{}
	for _, s := range order {
		idx := bySlot[s]
		if len(idx) < 2 {
			continue
		}
		members := make([]versioning.Member, len(idx))
		for j, i := range idx {
			members[j] = versioning.Member{Name: specName(specs[i]), Version: specs[i].rc.Version}
		}
		err := versioning.CheckGroup(members)
		if err == nil {
			for _, i := range idx[1:] {
				if !slices.Equal(params[i], params[idx[0]]) {
					err = fmt.Errorf("%s and %s name the path parameters differently (%s, %s): give them the same names",
						members[0].Name, specName(specs[i]), specs[idx[0]].rc.Path, specs[i].rc.Path)
					break
				}
			}
		}
		// The router sees the first route of the slot, or the group; the
		// others would only repeat the conflict reported here.
		for _, i := range idx[1:] {
			g.taken[i] = mapWith(g.taken[i], s.method)
		}
		if err != nil {
			names := make([]string, len(members))
			for j, m := range members {
				names[j] = m.Name
			}
			routes := strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
			msg := err.Error()
			c := byMsg[routes+"\x00"+msg]
			if c == nil {
				c = &conflict{at: idx[1], routes: routes, msg: msg}
				byMsg[routes+"\x00"+msg] = c
				conflicts = append(conflicts, c)
			}
			c.methods = append(c.methods, s.method)
			continue
		}
		g.taken[idx[0]] = mapWith(g.taken[idx[0]], s.method)
		for _, i := range idx {
			g.grouped[i] = true
		}
		first := specs[idx[0]].rc
		g.groups = append(g.groups, versionGroup{host: first.Host, template: first.Path, method: s.method, members: idx})
	}
	for _, c := range conflicts {
		rc := specs[c.at].rc
		probs.Add(specs[c.at].path, fmt.Errorf("%w: %s %s%s is served by %s: %s",
			router.ErrConflict, strings.Join(c.methods, ", "), rc.Host, rc.Path, c.routes, c.msg))
	}
	return g
}

// mapWith returns m, created when nil, with k set.
func mapWith(m map[string]bool, k string) map[string]bool {
	if m == nil {
		m = map[string]bool{}
	}
	m[k] = true
	return m
}

// specName names a route in problems: its field path and its name.
func specName(s routeSpec) string {
	if s.rc.Name == "" || strings.Contains(s.path, "(") {
		return s.path
	}
	return s.path + " (" + s.rc.Name + ")"
}

// addVersionGroups registers one dispatching route per version group,
// selecting among the compiled routes of its members.
func addVersionGroups(rb *router.Builder[*gateway.Route], g *routeGrouping, specs []routeSpec, built []*gateway.Route, probs *config.Problems) {
	for _, vg := range g.groups {
		members := make([]versioning.Member, len(vg.members))
		names := make([]string, len(vg.members))
		for j, i := range vg.members {
			members[j] = versioning.Member{Name: specName(specs[i]), Version: specs[i].rc.Version, Route: built[i]}
			names[j] = specs[i].rc.Name
		}
		at := specs[vg.members[0]].path
		sel, err := versioning.NewSelector(members)
		if err != nil {
			probs.Add(at, err)
			continue
		}
		d := &gateway.Route{Name: strings.Join(names, "|"), Template: vg.template, Pick: sel.Pick}
		if err := rb.Add(vg.host, []string{vg.method}, vg.template, d); err != nil {
			probs.Add(at, err)
		}
	}
}

// operationNotice is the deprecation notice of an OpenAPI operation, nil
// when it is not deprecated: deprecated: true, with the dates and link of
// its x-moat-deprecation. Without deprecated_at, the Deprecation header
// carries the Unix epoch (versioning.UnknownDeprecation).
func operationNotice(op *openapi.Operation) *versioning.Notice {
	if !op.Deprecated {
		return nil
	}
	d := op.Deprecation
	if d == nil {
		d = &openapi.Deprecation{}
	}
	return versioning.NewNotice(true, d.At, d.Sunset, d.Link)
}

// operationName names an operation in findings and metrics, as the
// Dispatcher's openapi_operation finding does.
func operationName(op *openapi.Operation) string {
	if op.ID != "" {
		return op.ID
	}
	return op.Method + " " + op.Path
}

// generatedDeprecation is the deprecation stage of the route generated
// from op, or nil when op is not deprecated.
func generatedDeprecation(op *openapi.Operation) *versioning.Operations {
	n := operationNotice(op)
	if n == nil {
		return nil
	}
	name := operationName(op)
	return versioning.NewOperations(func(*http.Request) (string, *versioning.Notice) { return name, n }, nil)
}

// documentDeprecation is the deprecation stage of a configured route that
// validates against doc: it finds each request's operation as the
// Dispatcher does. It is nil when doc deprecates no operation.
func documentDeprecation(doc *openapi.Document) *versioning.Operations {
	type entry struct {
		name string
		n    *versioning.Notice
	}
	notices := map[*openapi.Operation]entry{}
	for _, op := range doc.Operations() {
		if n := operationNotice(op); n != nil {
			notices[op] = entry{operationName(op), n}
		}
	}
	if len(notices) == 0 {
		return nil
	}
	return versioning.NewOperations(func(r *http.Request) (string, *versioning.Notice) {
		var buf [4]router.Param
		op, _, ok := doc.Match(r.Method, r.URL.Path, buf[:0])
		if !ok {
			return "", nil
		}
		e := notices[op]
		return e.name, e.n
	}, nil)
}
