package expr

import (
	"net/textproto"
	"net/url"
	"reflect"
	"strings"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"

	"github.com/moat-gateway/moat/internal/gateway"
)

// The request's maps (headers, query, params) are views over the Exchange:
// a lookup by key reads only that key; only iteration, size(), equality and
// conversion build the whole map (lazyMap.full).

// lazyMap implements traits.Mapper over a lookup function.
type lazyMap[T mapSource] struct{ src T }

type mapSource interface {
	// lookup returns the value for name, and whether there is one.
	lookup(name string) (string, bool)
	// all returns the whole map.
	all() map[string]string
}

type headerMap = lazyMap[headerSource]
type queryMap = lazyMap[querySource]
type paramMap = lazyMap[paramSource]

func newHeaderMap(ex *gateway.Exchange) headerMap { return headerMap{headerSource{ex}} }
func newQueryMap(ex *gateway.Exchange) queryMap   { return queryMap{querySource{ex}} }
func newParamMap(ex *gateway.Exchange) paramMap   { return paramMap{paramSource{ex}} }

func (m lazyMap[T]) full() traits.Mapper { return types.NewStringStringMap(celAdapter, m.src.all()) }

// Find implements traits.Mapper.
func (m lazyMap[T]) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key), false
	}
	v, ok := m.src.lookup(string(k))
	if !ok {
		return nil, false
	}
	return types.String(v), true
}

// Contains implements traits.Container.
func (m lazyMap[T]) Contains(key ref.Val) ref.Val {
	v, found := m.Find(key)
	if !found && v != nil {
		return v
	}
	return types.Bool(found)
}

// Get implements traits.Indexer.
func (m lazyMap[T]) Get(key ref.Val) ref.Val {
	v, found := m.Find(key)
	if !found {
		if v != nil {
			return v
		}
		return types.NewErr("no such key: %v", key)
	}
	return v
}

func (m lazyMap[T]) Iterator() traits.Iterator                   { return m.full().Iterator() }
func (m lazyMap[T]) Size() ref.Val                               { return m.full().Size() }
func (m lazyMap[T]) Equal(o ref.Val) ref.Val                     { return m.full().Equal(o) }
func (m lazyMap[T]) ConvertToNative(t reflect.Type) (any, error) { return m.full().ConvertToNative(t) }
func (m lazyMap[T]) ConvertToType(t ref.Type) ref.Val            { return m.full().ConvertToType(t) }
func (m lazyMap[T]) Type() ref.Type                              { return types.MapType }
func (m lazyMap[T]) Value() any                                  { return m.src.all() }

// headerSource reads request headers by lower-case (or any case) name.
// Values of a header sent several times are joined with ", ".
type headerSource struct{ ex *gateway.Exchange }

func (s headerSource) lookup(name string) (string, bool) {
	h := s.ex.Request.Header
	vs, ok := h[name]
	if !ok {
		var buf [64]byte
		if c, valid := canonicalHeaderKey(name, buf[:0]); valid && c != nil {
			vs, ok = h[string(c)]
		} else if valid {
			vs, ok = h[textproto.CanonicalMIMEHeaderKey(name)]
		}
	}
	if !ok || len(vs) == 0 {
		return "", false
	}
	if len(vs) == 1 {
		return vs[0], true
	}
	return strings.Join(vs, ", "), true
}

func (s headerSource) all() map[string]string {
	h := s.ex.Request.Header
	m := make(map[string]string, len(h))
	for k, vs := range h {
		lk := strings.ToLower(k)
		if prev, ok := m[lk]; ok {
			m[lk] = prev + ", " + strings.Join(vs, ", ")
			continue
		}
		m[lk] = strings.Join(vs, ", ")
	}
	return m
}

// canonicalHeaderKey writes the canonical form of name into buf (as
// textproto does: upper case after start and '-', lower case elsewhere)
// without allocating. It returns valid=false for names that cannot be
// header names, and a nil slice when name does not fit in buf.
func canonicalHeaderKey(name string, buf []byte) ([]byte, bool) {
	if name == "" {
		return nil, false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || c == ':' {
			return nil, false
		}
	}
	if len(name) > cap(buf) {
		return nil, true
	}
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case upper && 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		buf = append(buf, c)
		upper = c == '-'
	}
	return buf, true
}

// querySource reads query parameters as net/url.ParseQuery does (pairs
// separated by '&'; pairs with a ';' or a bad escape are skipped), without
// parsing parameters other than the one asked for. Values of a parameter
// sent several times are joined with ", ".
type querySource struct{ ex *gateway.Exchange }

func (s querySource) lookup(name string) (string, bool) {
	raw := s.ex.Request.URL.RawQuery
	var first string
	var b *strings.Builder
	found := false
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, ok := unescapeQuery(k)
		if !ok || k != name {
			continue
		}
		v, ok = unescapeQuery(v)
		if !ok {
			continue
		}
		switch {
		case !found:
			first, found = v, true
		case b == nil:
			b = &strings.Builder{}
			b.WriteString(first)
			fallthrough
		default:
			b.WriteString(", ")
			b.WriteString(v)
		}
	}
	if b != nil {
		return b.String(), true
	}
	return first, found
}

func unescapeQuery(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, true
	}
	u, err := url.QueryUnescape(s)
	return u, err == nil
}

func (s querySource) all() map[string]string {
	q, _ := url.ParseQuery(s.ex.Request.URL.RawQuery)
	m := make(map[string]string, len(q))
	for k, vs := range q {
		m[k] = strings.Join(vs, ", ")
	}
	return m
}

// paramSource reads the route's path parameters.
type paramSource struct{ ex *gateway.Exchange }

func (s paramSource) lookup(name string) (string, bool) {
	for _, p := range s.ex.Params {
		if p.Key == name {
			return p.Value, true
		}
	}
	return "", false
}

func (s paramSource) all() map[string]string {
	m := make(map[string]string, len(s.ex.Params))
	for _, p := range s.ex.Params {
		m[p.Key] = p.Value
	}
	return m
}

// normalizeHost returns the request host in lower case without port or
// trailing dot. It allocates only when the host has upper-case letters.
func normalizeHost(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			host = host[1:i]
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

var (
	_ traits.Mapper = headerMap{}
	_ traits.Mapper = queryMap{}
	_ traits.Mapper = paramMap{}
)

// stringList is a list(string) view over a principal's roles or scopes: it
// wraps one pointer (no allocation) and answers `x in list` without
// building a CEL list.
type stringList[T listSource] struct{ src T }

type listSource interface{ items() []string }

type roles struct{ p *gateway.Principal }
type scopes struct{ p *gateway.Principal }

func (r roles) items() []string  { return r.p.Roles }
func (s scopes) items() []string { return s.p.Scopes }

func (l stringList[T]) full() traits.Lister { return types.NewStringList(celAdapter, l.src.items()) }

// Contains implements traits.Container.
func (l stringList[T]) Contains(v ref.Val) ref.Val {
	s, ok := v.(types.String)
	if !ok {
		return l.full().Contains(v)
	}
	for _, it := range l.src.items() {
		if it == string(s) {
			return types.True
		}
	}
	return types.False
}

// Size implements traits.Sizer.
func (l stringList[T]) Size() ref.Val { return types.Int(len(l.src.items())) }

func (l stringList[T]) Add(o ref.Val) ref.Val     { return l.full().Add(o) }
func (l stringList[T]) Get(i ref.Val) ref.Val     { return l.full().Get(i) }
func (l stringList[T]) Iterator() traits.Iterator { return l.full().Iterator() }
func (l stringList[T]) Equal(o ref.Val) ref.Val   { return l.full().Equal(o) }
func (l stringList[T]) ConvertToNative(t reflect.Type) (any, error) {
	return l.full().ConvertToNative(t)
}
func (l stringList[T]) ConvertToType(t ref.Type) ref.Val { return l.full().ConvertToType(t) }
func (l stringList[T]) Type() ref.Type                   { return types.ListType }
func (l stringList[T]) Value() any                       { return l.src.items() }

var (
	_ traits.Lister = stringList[roles]{}
	_ traits.Lister = stringList[scopes]{}
)
