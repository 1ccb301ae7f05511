// Package router matches a request's host, method and path to the route
// registered for them, and extracts path parameters.
//
// Routes are registered on a Builder at configuration load and compiled by
// Build into an immutable Router, which the request path only reads. The
// Router keeps one trie per host pattern; matching costs time proportional to
// the number of path segments (and host labels), not to the number of
// routes, and allocates nothing on success when the caller's params slice has
// room.
//
// Precedence, from most to least important:
//
//  1. Host: the exact host, then wildcard patterns from the longest suffix to
//     the shortest, then the any-host routes. The first host tree that has a
//     route for the path and method wins.
//  2. Path, segment by segment from the left: a static segment beats {param},
//     which beats {catch-all...}. Matching backtracks, so a more specific
//     branch that lacks the method falls through to a less specific one.
//  3. Method: an exact method; a HEAD request also matches GET routes. The
//     method is checked at each candidate template in the order above, so a
//     GET route on a more specific template answers HEAD before an explicit
//     HEAD route on a less specific one; on the same template, an explicit
//     HEAD route is preferred.
//
// The router neither synthesises OPTIONS answers nor validates paths: the
// caller rejects dot segments, empty segments and encoded slashes first.
//
// Backtracking visits, in the worst case, every template that matches the
// path, which depends on how the configured templates overlap (a static and a
// param child at each of d levels gives up to 2^d branches), never on the
// number of routes that do not match.
package router

import (
	"errors"
	"slices"
)

// Errors returned by Builder.Add, ValidateTemplate and ValidateHost, wrapped
// with details; test for them with errors.Is.
var (
	ErrInvalidTemplate = errors.New("invalid path template")
	ErrInvalidHost     = errors.New("invalid host pattern")
	ErrInvalidMethod   = errors.New("invalid method")
	ErrConflict        = errors.New("route conflict")
)

// Param is one path parameter of a matched route: the name from the
// template, without braces, and the segment (or, for a catch-all, the rest of
// the path) it matched.
type Param struct{ Key, Value string }

// Router finds the route registered for a host, method and path. A Router is
// built by Builder.Build, is immutable, and is safe for concurrent use. The
// zero Router matches nothing.
type Router[T any] struct {
	exact map[string]*node[T] // by normalised host
	wild  map[string]*node[T] // by the suffix after "*."
	any   *node[T]            // "" and "*"
}

// maxLinear is the number of static children up to which a node keeps them
// in a slice searched linearly; above it, a map. Comparing a handful of short
// strings is cheaper than hashing.
const maxLinear = 8

// node is one position in a compiled trie. The root stands for the leading
// "/"; each edge consumes one path segment.
type node[T any] struct {
	keys     []string            // static children (few): segment text
	kids     []*node[T]          // static children (few): nodes, parallel to keys
	static   map[string]*node[T] // static children (many), instead of keys/kids
	param    *node[T]            // {name}
	catchAll *node[T]            // {name...}; a leaf
	routes   []route[T]          // routes whose template ends here
	allow    []string            // sorted methods of routes, with HEAD if GET
}

// route is one registered host + method + template.
type route[T any] struct {
	method   string
	template string   // as written, for conflict messages
	names    []string // parameter names in path order
	value    T
}

// Match finds the most specific route for a request; see the package
// documentation for the order of precedence. host is the request's Host
// (with or without a port; it is normalised here), method is compared
// case-sensitively with the upper-case methods of the routes, and path is
// the decoded, validated URL path, which must start with "/"; its segments
// are compared literally.
//
// On success, ok is true, v is the route's value and params holds its path
// parameters in template order, appended to dst[:0] (so Match does not
// allocate when dst has room for them); params aliases dst.
//
// Otherwise ok is false and params is dst[:0]. If some route matches the
// host and path but not the method, allow lists the methods that would match
// (the union over every matching host tree and template), sorted,
// deduplicated, with HEAD wherever GET is allowed: the caller answers 405
// with an Allow header. If no route matches the path, allow is nil: the
// caller answers 404. allow is freshly allocated and the caller may keep it.
func (r *Router[T]) Match(host, method, path string, dst []Param) (v T, params []Param, allow []string, ok bool) {
	params = dst[:0]
	if path == "" || path[0] != '/' {
		return v, params, nil, false
	}
	var tbuf [8]*node[T]
	trees := r.trees(host, tbuf[:0])
	for _, t := range trees {
		if rt, ps := t.match(path, 1, method, params); rt != nil {
			for i, name := range rt.names {
				ps[i].Key = name
			}
			return rt.value, ps, nil, true
		}
	}
	for _, t := range trees {
		allow = t.collect(path, 1, allow)
	}
	slices.Sort(allow)
	return v, params, allow, false
}

// trees appends to dst the roots of the host tries that apply to host, most
// specific first: exact, wildcard suffixes from the longest to the shortest,
// any host.
func (r *Router[T]) trees(host string, dst []*node[T]) []*node[T] {
	if len(r.exact) > 0 || len(r.wild) > 0 {
		dst = r.hostTrees(host, dst)
	}
	if r.any != nil {
		dst = append(dst, r.any)
	}
	return dst
}

// hostTrees appends to dst the exact and wildcard tries that apply to host.
// It is apart from trees so that routers without host patterns skip
// normalising the host.
func (r *Router[T]) hostTrees(host string, dst []*node[T]) []*node[T] {
	var buf [hostBufLen]byte
	h := requestHost(host, &buf)
	if len(h) == 0 {
		return dst
	}
	if t := r.exact[string(h)]; t != nil {
		dst = append(dst, t)
	}
	if len(r.wild) == 0 {
		return dst
	}
	// Each suffix after a dot, "b.example.com", "example.com", "com": one map
	// lookup per label, however many wildcard patterns exist. A leading or
	// doubled dot means an empty label, which no pattern matches.
	for i := 0; i < len(h); i++ {
		if h[i] != '.' {
			continue
		}
		if i == 0 || h[i-1] == '.' {
			break
		}
		if t := r.wild[string(h[i+1:])]; t != nil {
			dst = append(dst, t)
		}
	}
	return dst
}

// match finds the most specific route below n for the path segment starting
// at path[start] and those after it, preferring static, then param, then
// catch-all children, and backtracking when a branch has no route for the
// method. It appends parameter values (without keys) to ps and returns the
// route and the extended ps, or nil.
func (n *node[T]) match(path string, start int, method string, ps []Param) (*route[T], []Param) {
	end := segmentEnd(path, start)
	seg := path[start:end]
	if c := n.child(seg); c != nil {
		if rt, out := c.next(path, end, method, ps); rt != nil {
			return rt, out
		}
	}
	if n.param != nil && seg != "" {
		if rt, out := n.param.next(path, end, method, append(ps, Param{Value: seg})); rt != nil {
			return rt, out
		}
	}
	if n.catchAll != nil {
		if rt := n.catchAll.find(method); rt != nil {
			return rt, append(ps, Param{Value: path[start:]})
		}
	}
	return nil, ps
}

// next continues match in n, reached by the segment that ended at path[end].
func (n *node[T]) next(path string, end int, method string, ps []Param) (*route[T], []Param) {
	if end == len(path) {
		return n.find(method), ps
	}
	return n.match(path, end+1, method, ps)
}

// collect appends to allow the methods of every route below n whose
// template matches the path from path[start], deduplicated but unsorted.
func (n *node[T]) collect(path string, start int, allow []string) []string {
	end := segmentEnd(path, start)
	seg := path[start:end]
	if c := n.child(seg); c != nil {
		allow = c.collectNext(path, end, allow)
	}
	if n.param != nil && seg != "" {
		allow = n.param.collectNext(path, end, allow)
	}
	if n.catchAll != nil {
		allow = union(allow, n.catchAll.allow)
	}
	return allow
}

// collectNext continues collect in n, reached by the segment that ended at
// path[end].
func (n *node[T]) collectNext(path string, end int, allow []string) []string {
	if end == len(path) {
		return union(allow, n.allow)
	}
	return n.collect(path, end+1, allow)
}

// segmentEnd returns the index of the "/" that ends the segment starting at
// path[start], or len(path). Segments are short, so a plain loop beats
// strings.IndexByte and its call into assembly.
func segmentEnd(path string, start int) int {
	end := start
	for end < len(path) && path[end] != '/' {
		end++
	}
	return end
}

// union appends to dst the methods of src it does not hold yet.
func union(dst, src []string) []string {
	for _, m := range src {
		if !slices.Contains(dst, m) {
			dst = append(dst, m)
		}
	}
	return dst
}

// child returns the static child for segment text seg, or nil.
func (n *node[T]) child(seg string) *node[T] {
	if n.static != nil {
		return n.static[seg]
	}
	for i, k := range n.keys {
		if k == seg {
			return n.kids[i]
		}
	}
	return nil
}

// find returns the route of n for method, or nil. HEAD falls back to GET.
func (n *node[T]) find(method string) *route[T] {
	for i := range n.routes {
		if n.routes[i].method == method {
			return &n.routes[i]
		}
	}
	if method == "HEAD" {
		return n.find("GET")
	}
	return nil
}
