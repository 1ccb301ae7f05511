package router

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/moat-gateway/moat/internal/httpsyntax"
)

// Builder collects routes for a Router. Call Add for every route, then Build.
// A Builder is not safe for concurrent use. Its zero value is ready to use,
// like the one NewBuilder returns.
type Builder[T any] struct {
	trees map[hostPattern]*bnode[T]
}

// bnode is a trie node while routes are being added.
type bnode[T any] struct {
	static   map[string]*bnode[T]
	param    *bnode[T]
	catchAll *bnode[T]
	routes   []route[T]
}

// NewBuilder returns an empty Builder.
func NewBuilder[T any]() *Builder[T] {
	return &Builder[T]{}
}

// Add registers v for requests to host whose method is one of methods and
// whose path matches template. host is a pattern as described on
// ValidateHost and template a path template as described on
// ValidateTemplate. Methods are HTTP tokens and are upper-cased; a GET route
// also answers HEAD.
//
// Add returns an error and registers nothing if the host pattern is invalid
// (ErrInvalidHost), the template is invalid (ErrInvalidTemplate), methods is
// empty, holds a duplicate, a non-token, TRACE or CONNECT
// (ErrInvalidMethod), or a route with the same host pattern, method and
// template shape already exists (ErrConflict; the message names both
// templates). Shape ignores parameter names: "/u/{id}" and "/u/{uid}" for
// the same host and method conflict, while "/u/{id}" and "/u/{uid}/x" do
// not. Several problems are joined into one error.
func (b *Builder[T]) Add(host string, methods []string, template string, v T) error {
	hp, herr := parseHostPattern(host)
	segs, terr := parseTemplate(template)
	ms, merr := normalizeMethods(methods)
	if err := errors.Join(herr, terr, merr); err != nil {
		return err
	}
	if b.trees == nil {
		b.trees = map[hostPattern]*bnode[T]{}
	}
	root := b.trees[hp]
	if root == nil {
		root = &bnode[T]{}
		b.trees[hp] = root
	}
	n := root.insert(segs)
	var errs []error
	for _, m := range ms {
		for _, rt := range n.routes {
			if rt.method == m {
				errs = append(errs, fmt.Errorf("%w: %s %s%s has the same host, method and path shape as %s",
					ErrConflict, m, hostPrefix(hp), template, rt.template))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	var names []string
	for _, s := range segs {
		if s.kind != segStatic {
			names = append(names, s.text)
		}
	}
	for _, m := range ms {
		n.routes = append(n.routes, route[T]{method: m, template: template, names: names, value: v})
	}
	return nil
}

// hostPrefix returns how a host pattern is written before a template in
// messages: "api.example.com/u/{id}", or nothing for any host.
func hostPrefix(hp hostPattern) string {
	if hp.kind == hostAny {
		return ""
	}
	return hp.String()
}

// insert returns the node for segs below n, creating missing nodes. Nodes
// created for a route that then fails to register stay empty, which changes
// no match result.
func (n *bnode[T]) insert(segs []segment) *bnode[T] {
	for _, s := range segs {
		var next **bnode[T]
		switch s.kind {
		case segParam:
			next = &n.param
		case segCatchAll:
			next = &n.catchAll
		default:
			c := n.static[s.text]
			if c == nil {
				c = &bnode[T]{}
				if n.static == nil {
					n.static = map[string]*bnode[T]{}
				}
				n.static[s.text] = c
			}
			n = c
			continue
		}
		if *next == nil {
			*next = &bnode[T]{}
		}
		n = *next
	}
	return n
}

// normalizeMethods upper-cases and checks a route's methods.
func normalizeMethods(methods []string) ([]string, error) {
	if len(methods) == 0 {
		return nil, fmt.Errorf("%w: at least one method is required", ErrInvalidMethod)
	}
	out := make([]string, 0, len(methods))
	var errs []error
	for _, m := range methods {
		up := strings.ToUpper(m)
		switch {
		case !httpsyntax.IsToken(m):
			errs = append(errs, fmt.Errorf("%w %q: not an HTTP token", ErrInvalidMethod, m))
		case up == "TRACE" || up == "CONNECT":
			errs = append(errs, fmt.Errorf("%w %q: refused by the gateway", ErrInvalidMethod, m))
		case slices.Contains(out, up):
			errs = append(errs, fmt.Errorf("%w %q: listed twice", ErrInvalidMethod, m))
		default:
			out = append(out, up)
		}
	}
	return out, errors.Join(errs...)
}

// Build compiles the routes added so far into a Router. The Router shares
// nothing mutable with the Builder: later calls to Add do not change it, and
// Build may be called again.
func (b *Builder[T]) Build() *Router[T] {
	r := &Router[T]{}
	for hp, root := range b.trees {
		t := root.compile()
		switch hp.kind {
		case hostExact:
			if r.exact == nil {
				r.exact = map[string]*node[T]{}
			}
			r.exact[hp.name] = t
		case hostWildcard:
			if r.wild == nil {
				r.wild = map[string]*node[T]{}
			}
			r.wild[hp.name] = t
		default:
			r.any = t
		}
	}
	return r
}

// compile returns the immutable copy of the trie below n.
func (n *bnode[T]) compile() *node[T] {
	c := &node[T]{routes: slices.Clone(n.routes)}
	for _, rt := range n.routes {
		c.allow = union(c.allow, []string{rt.method})
		if rt.method == "GET" {
			c.allow = union(c.allow, []string{"HEAD"})
		}
	}
	slices.Sort(c.allow)
	if n.param != nil {
		c.param = n.param.compile()
	}
	if n.catchAll != nil {
		c.catchAll = n.catchAll.compile()
	}
	if len(n.static) > maxLinear {
		c.static = make(map[string]*node[T], len(n.static))
		for k, v := range n.static {
			c.static[k] = v.compile()
		}
		return c
	}
	for _, k := range slices.Sorted(maps.Keys(n.static)) {
		c.keys = append(c.keys, k)
		c.kids = append(c.kids, n.static[k].compile())
	}
	return c
}
