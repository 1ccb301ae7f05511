package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/moat-gateway/moat/internal/jsonlex"
)

// The fast checker proves a JSON body valid against a response schema by
// walking its text once (per schema branch), without decoding it into a
// tree and without allocating on the common paths. It decides exactly what
// the full validator (santhosh-tekuri/jsonschema on the decoded body)
// decides, or says it cannot tell; the filter then runs the full validator,
// which also explains the violations. A body the checker proves valid is
// valid for the full validator: that is the one property the response
// filter relies on (FuzzChecker pins it).
//
// It covers the keywords OpenAPI response schemas use: type, enum, const,
// format, $ref, allOf, anyOf, oneOf, not, properties, required,
// additionalProperties, patternProperties, propertyNames,
// min/maxProperties, items, prefixItems, min/maxItems, uniqueItems (an
// array of two or more elements is left to the full validator),
// min/maxLength, pattern, minimum, maximum, exclusiveMinimum,
// exclusiveMaximum, multipleOf. A schema that uses anything else anywhere
// (if/then/else, dependent*, unevaluated*, contains, $dynamicRef, content
// assertions, vocabulary extensions, another draft than 2020-12) or that
// refers to itself without descending into a property or item is not
// compiled: its bodies always go to the full validator.

// verdict is what the checker concludes about a value.
type verdict uint8

const (
	valid     verdict = iota
	invalid           // the full validator reports at least one violation
	undecided         // the checker cannot tell
)

// JSON types as a bit set.
const (
	tNull uint8 = 1 << iota
	tBoolean
	tNumber
	tInteger
	tString
	tArray
	tObject
)

var typeBits = map[string]uint8{"null": tNull, "boolean": tBoolean, "number": tNumber, "integer": tInteger,
	"string": tString, "array": tArray, "object": tObject}

// Limits of the checker: a larger schema is not compiled; a body that
// needs more work than checkBudget times its length plus checkBudgetBase
// is left to the full validator.
const (
	maxCheckNodes   = 1 << 16
	checkBudget     = 16
	checkBudgetBase = 1 << 12
	maxNumberText   = 400 // longer number literals are not evaluated exactly (costlyNumber)
	maxDupScan      = 32  // members compared pairwise for duplicates; more use a map
)

// checker is the compiled form of one response schema. It is immutable and
// safe for concurrent use.
type checker struct {
	root *cnode
}

// cnode is one compiled schema.
type cnode struct {
	src      *jsonschema.Schema
	trivial  bool  // every value is valid
	nothing  bool  // no value is valid (the false schema)
	types    uint8 // 0: any type
	enums    []*enumSet
	format   *jsonschema.Format
	fmtBits  int // 32 or 64: an integer format probed to match the int32/int64 range check
	own      bool
	ref      *cnode
	allOf    []*cnode
	anyOf    []*cnode
	oneOf    []*cnode
	not      *cnode
	building bool // on the stack of the same-value cycle check
	done     bool // cycle check finished

	// objects
	objKeys   bool
	minProps  int // -1: none
	maxProps  int
	members   map[string]member // nil when there are few: see list
	list      []namedMember     // the members when there are at most maxListedMembers
	reqAll    uint64            // one bit per required name
	patterns  []patternProp
	addlFalse bool
	addl      *cnode
	propNames *cnode

	// arrays
	arrKeys  bool
	minItems int
	maxItems int
	prefix   []*cnode
	items    *cnode
	unique   bool

	// strings
	strKeys bool
	minLen  int
	maxLen  int
	pattern jsonschema.Regexp

	// numbers
	numKeys    bool
	minimum    *bound
	maximum    *bound
	exMinimum  *bound
	exMaximum  *bound
	multipleOf *bound
}

// member is what an object schema says about one member name: the schema
// of its value (nil when it is only required) and its required bit.
type member struct {
	node *cnode
	req  uint64
}

type namedMember struct {
	name string
	member
}

// maxListedMembers is the most members an object schema keeps in a list,
// compared name by name: for a few names that is faster than hashing.
const maxListedMembers = 8

// lookup returns what n says about the member called name.
func (n *cnode) lookup(name []byte) (member, bool) {
	if n.members != nil {
		m, ok := n.members[string(name)]
		return m, ok
	}
	for i := range n.list {
		if string(name) == n.list[i].name {
			return n.list[i].member, true
		}
	}
	return member{}, false
}

type patternProp struct {
	re   jsonschema.Regexp
	node *cnode
}

// bound is a number a schema compares values with, also as an int64 when
// it is an integer that fits one.
type bound struct {
	r     *big.Rat
	i     int64
	isInt bool
}

func newBound(r *big.Rat) *bound {
	if r == nil {
		return nil
	}
	b := &bound{r: r}
	if r.IsInt() && r.Num().IsInt64() {
		b.i, b.isInt = r.Num().Int64(), true
	}
	return b
}

// enumSet is one enum or const: the values a value must be one of.
type enumSet struct {
	strs       map[string]bool
	nums       []*big.Rat
	null       bool
	t, f       bool
	containers bool // holds objects or arrays, which the checker does not compare
	opaque     bool // holds values of a kind the checker does not know
}

var errUnsupported = errors.New("uses keywords the fast checker does not implement")

// compileChecker compiles s. It returns an error wrapping errUnsupported
// when s (or a schema it reaches) uses something the checker does not
// implement; the caller then validates every body with the full validator.
func compileChecker(s *jsonschema.Schema) (*checker, error) {
	if s == nil {
		return nil, fmt.Errorf("no schema: %w", errUnsupported)
	}
	c := &checkCompiler{memo: map[*jsonschema.Schema]*cnode{}}
	root := c.node(s)
	if c.err != nil {
		return nil, c.err
	}
	for _, n := range c.all {
		if err := sameValueCycle(n); err != nil {
			return nil, err
		}
	}
	for _, n := range c.all {
		n.trivial = isTrivial(n, 0)
	}
	return &checker{root: root}, nil
}

type checkCompiler struct {
	memo map[*jsonschema.Schema]*cnode
	all  []*cnode
	err  error
}

func (c *checkCompiler) fail(s *jsonschema.Schema, what string) {
	if c.err == nil {
		c.err = fmt.Errorf("schema %s %s: %w", s.Location, what, errUnsupported)
	}
}

func (c *checkCompiler) node(s *jsonschema.Schema) *cnode {
	if s == nil || c.err != nil {
		return nil
	}
	if n, ok := c.memo[s]; ok {
		return n
	}
	if len(c.all) >= maxCheckNodes {
		c.fail(s, "is too large")
		return nil
	}
	n := &cnode{src: s, minProps: -1, maxProps: -1, minItems: -1, maxItems: -1, minLen: -1, maxLen: -1}
	c.memo[s] = n
	c.all = append(c.all, n)
	if s.Bool != nil {
		n.nothing = !*s.Bool
		return n
	}
	switch {
	case s.DraftVersion != 2020:
		c.fail(s, fmt.Sprintf("is draft %d", s.DraftVersion))
	case s.RecursiveRef != nil || s.DynamicRef != nil:
		c.fail(s, "has a dynamic reference")
	case s.If != nil || s.Then != nil || s.Else != nil:
		c.fail(s, "has if/then/else")
	case len(s.Dependencies) > 0 || len(s.DependentRequired) > 0 || len(s.DependentSchemas) > 0:
		c.fail(s, "has dependencies")
	case s.UnevaluatedProperties != nil || s.UnevaluatedItems != nil:
		c.fail(s, "has unevaluated keywords")
	case s.Contains != nil || s.MinContains != nil || s.MaxContains != nil:
		c.fail(s, "has contains")
	case s.Items != nil || s.AdditionalItems != nil:
		c.fail(s, "has draft-7 items")
	case s.ContentEncoding != nil || s.ContentMediaType != nil || s.ContentSchema != nil:
		c.fail(s, "asserts content")
	case len(s.Extensions) > 0:
		c.fail(s, "has vocabulary extensions")
	case len(s.Required) > 64:
		c.fail(s, "requires more than 64 properties")
	}
	if c.err != nil {
		return n
	}

	if s.Types != nil {
		for _, t := range s.Types.ToStrings() {
			n.types |= typeBits[t]
		}
	}
	if s.Const != nil {
		n.enums = append(n.enums, newEnumSet([]any{*s.Const}))
	}
	if s.Enum != nil {
		n.enums = append(n.enums, newEnumSet(s.Enum.Values))
	}
	if s.Format != nil {
		n.format = s.Format
		n.fmtBits = probeIntFormat(s.Format)
	}
	n.ref = c.node(s.Ref)
	for _, sub := range s.AllOf {
		n.allOf = append(n.allOf, c.node(sub))
	}
	for _, sub := range s.AnyOf {
		n.anyOf = append(n.anyOf, c.node(sub))
	}
	for _, sub := range s.OneOf {
		n.oneOf = append(n.oneOf, c.node(sub))
	}
	n.not = c.node(s.Not)

	// objects
	if s.MinProperties != nil {
		n.minProps = *s.MinProperties
	}
	if s.MaxProperties != nil {
		n.maxProps = *s.MaxProperties
	}
	if len(s.Properties) > 0 || len(s.Required) > 0 {
		n.members = make(map[string]member, len(s.Properties)+len(s.Required))
		for name, sub := range s.Properties {
			n.members[name] = member{node: c.node(sub)}
		}
		for i, name := range s.Required {
			m := n.members[name]
			if m.req == 0 { // a name listed twice is required once
				m.req = 1 << i
				n.reqAll |= m.req
			}
			n.members[name] = m
		}
		if len(n.members) <= maxListedMembers {
			for name, m := range n.members {
				n.list = append(n.list, namedMember{name, m})
			}
			n.members = nil
		}
	}
	for re, sub := range s.PatternProperties {
		n.patterns = append(n.patterns, patternProp{re: re, node: c.node(sub)})
	}
	switch ap := s.AdditionalProperties.(type) {
	case nil:
	case bool:
		n.addlFalse = !ap
	case *jsonschema.Schema:
		n.addl = c.node(ap)
	default:
		c.fail(s, "has an unknown additionalProperties")
	}
	n.propNames = c.node(s.PropertyNames)
	n.objKeys = n.minProps >= 0 || n.maxProps >= 0 || n.members != nil || n.list != nil || n.patterns != nil ||
		n.addlFalse || n.addl != nil || n.propNames != nil

	// arrays
	if s.MinItems != nil {
		n.minItems = *s.MinItems
	}
	if s.MaxItems != nil {
		n.maxItems = *s.MaxItems
	}
	for _, sub := range s.PrefixItems {
		n.prefix = append(n.prefix, c.node(sub))
	}
	n.items = c.node(s.Items2020)
	n.unique = s.UniqueItems
	n.arrKeys = n.minItems >= 0 || n.maxItems >= 0 || n.prefix != nil || n.items != nil || n.unique

	// strings
	if s.MinLength != nil {
		n.minLen = *s.MinLength
	}
	if s.MaxLength != nil {
		n.maxLen = *s.MaxLength
	}
	n.pattern = s.Pattern
	n.strKeys = n.minLen >= 0 || n.maxLen >= 0 || n.pattern != nil

	// numbers
	n.minimum, n.maximum = newBound(s.Minimum), newBound(s.Maximum)
	n.exMinimum, n.exMaximum = newBound(s.ExclusiveMinimum), newBound(s.ExclusiveMaximum)
	n.multipleOf = newBound(s.MultipleOf)
	n.numKeys = n.minimum != nil || n.maximum != nil || n.exMinimum != nil || n.exMaximum != nil || n.multipleOf != nil

	n.own = n.types != 0 || n.enums != nil || n.format != nil || n.objKeys || n.arrKeys || n.strKeys || n.numKeys
	return n
}

func newEnumSet(values []any) *enumSet {
	e := &enumSet{}
	for _, v := range values {
		switch v := v.(type) {
		case nil:
			e.null = true
		case bool:
			if v {
				e.t = true
			} else {
				e.f = true
			}
		case string:
			if e.strs == nil {
				e.strs = map[string]bool{}
			}
			e.strs[v] = true
		case json.Number:
			if r, ok := new(big.Rat).SetString(string(v)); ok {
				e.nums = append(e.nums, r)
			} else {
				e.opaque = true // not comparable here: let the full validator decide
			}
		case map[string]any, []any:
			e.containers = true
		default:
			e.opaque = true
		}
	}
	return e
}

// probeIntFormat returns 32 or 64 when f behaves, at the edges, as the
// range check of the OpenAPI format int32 or int64 on integer literals, so
// that the checker may apply that check itself without allocating; 0
// otherwise (f.Validate is then called for every value).
func probeIntFormat(f *jsonschema.Format) int {
	ok := func(s string) bool { return f.Validate(json.Number(s)) == nil }
	switch f.Name {
	case "int32":
		if ok("2147483647") && ok("-2147483648") && !ok("2147483648") && !ok("-2147483649") {
			return 32
		}
	case "int64":
		if ok("999999999999999999") && ok("-999999999999999999") && !ok("9223372036854775808") {
			return 64
		}
	}
	return 0
}

// sameValueCycle refuses a schema that reaches itself through $ref, allOf,
// anyOf, oneOf or not without descending into a member or an element: the
// full validator reports such a cycle as an error, the checker would not
// end.
func sameValueCycle(n *cnode) error {
	if n == nil || n.done {
		return nil
	}
	if n.building {
		return fmt.Errorf("schema %s refers to itself for the same value: %w", n.src.Location, errUnsupported)
	}
	n.building = true
	for _, l := range [][]*cnode{{n.ref, n.not}, n.allOf, n.anyOf, n.oneOf} {
		for _, sub := range l {
			if err := sameValueCycle(sub); err != nil {
				return err
			}
		}
	}
	n.building, n.done = false, true
	return nil
}

// isTrivial reports whether every value is valid for n. Same-value cycles
// were refused, so the recursion ends; depth bounds it anyway.
func isTrivial(n *cnode, depth int) bool {
	if n == nil {
		return true
	}
	if n.nothing || n.own || len(n.oneOf) > 0 || n.not != nil || depth > 64 {
		return false
	}
	if !isTrivial(n.ref, depth+1) {
		return false
	}
	for _, sub := range n.allOf {
		if !isTrivial(sub, depth+1) {
			return false
		}
	}
	if len(n.anyOf) == 0 {
		return true
	}
	for _, sub := range n.anyOf {
		if isTrivial(sub, depth+1) {
			return true
		}
	}
	return false
}

// checkRun is the state of one check. Runs are pooled: the member-name
// stack keeps its memory between bodies.
type checkRun struct {
	in     []byte
	budget int
	names  [][]byte // member names of the objects being walked, innermost last
	used   int      // the most names held during this run
}

// maxPooledNames bounds the member-name stack a pooled run keeps.
const maxPooledNames = 1 << 12

var runPool = sync.Pool{New: func() any { return &checkRun{names: make([][]byte, 0, 64)} }}

// valid reports whether body, one JSON value that the rewriter accepted,
// is valid against the schema. false means invalid or undecided: ask the
// full validator.
func (c *checker) valid(body []byte) bool {
	return c != nil && c.check(body) == valid
}

// check returns the verdict on body.
func (c *checker) check(body []byte) verdict {
	r := runPool.Get().(*checkRun)
	r.in, r.budget = body, checkBudget*len(body)+checkBudgetBase
	v := undecided
	if pos := jsonlex.SkipWS(body, 0); pos < len(body) {
		end, ev := r.value(c.root, pos)
		if end > 0 && jsonlex.SkipWS(body, end) == len(body) {
			v = ev
		}
	}
	r.in = nil
	if cap(r.names) > maxPooledNames {
		r.names = make([][]byte, 0, 64)
	} else {
		clear(r.names[:r.used]) // no references into this body stay in the pool
		r.names = r.names[:0]
	}
	r.used = 0
	runPool.Put(r)
	return v
}

// value checks the value at pos against n and returns the offset after it
// (-1 when the text is not what was expected) and the verdict.
func (r *checkRun) value(n *cnode, pos int) (int, verdict) {
	if r.budget--; r.budget < 0 {
		return -1, undecided
	}
	if n == nil || n.trivial {
		return r.skip(pos), valid
	}
	if n.nothing {
		return r.skip(pos), invalid
	}
	end, v := -1, valid
	if n.own {
		switch c := r.in[pos]; {
		case c == '{':
			end, v = r.object(n, pos)
		case c == '[':
			end, v = r.array(n, pos)
		case c == '"':
			end, v = r.str(n, pos)
		case c == 't' || c == 'f' || c == 'n':
			end, v = r.literal(n, pos)
		default:
			end, v = r.number(n, pos)
		}
		if v != valid {
			return end, v
		}
	}
	// Applicators check the same value; whichever parses it first tells
	// where it ends.
	same := func(sub *cnode) verdict {
		if sub == nil || sub.trivial {
			return valid
		}
		e, sv := r.value(sub, pos)
		if end < 0 {
			end = e
		}
		return sv
	}
	if n.ref != nil {
		v = and(v, same(n.ref))
	}
	for _, sub := range n.allOf {
		if v == invalid {
			break
		}
		v = and(v, same(sub))
	}
	if len(n.anyOf) > 0 && v != invalid {
		some := invalid
		for _, sub := range n.anyOf {
			sv := same(sub)
			if sv == valid {
				some = valid
				break
			}
			if sv == undecided {
				some = undecided
			}
		}
		v = and(v, some)
	}
	if len(n.oneOf) > 0 && v != invalid {
		matched, unsure := 0, false
		for _, sub := range n.oneOf {
			switch same(sub) {
			case valid:
				matched++
			case undecided:
				unsure = true
			}
			if matched > 1 {
				break
			}
		}
		switch {
		case matched > 1:
			v = invalid
		case unsure:
			v = and(v, undecided)
		case matched == 0:
			v = invalid
		}
	}
	if n.not != nil && v != invalid {
		switch same(n.not) {
		case valid:
			v = invalid
		case undecided:
			v = and(v, undecided)
		}
	}
	if end < 0 && v != undecided {
		end = r.skip(pos)
	}
	return end, v
}

// and combines the verdicts of two conditions that must both hold.
func and(a, b verdict) verdict {
	switch {
	case a == invalid || b == invalid:
		return invalid
	case a == undecided || b == undecided:
		return undecided
	}
	return valid
}

// typeOK reports whether n's type keyword admits the type t.
func typeOK(n *cnode, t uint8) bool { return n.types == 0 || n.types&t != 0 }

func (r *checkRun) object(n *cnode, pos int) (int, verdict) {
	if !typeOK(n, tObject) || enumsRefuse(n.enums) {
		return r.skip(pos), invalid
	}
	if n.enums != nil || n.format != nil {
		return r.skip(pos), undecided
	}
	if !n.objKeys {
		return -1, valid
	}
	in := r.in
	base := len(r.names)
	defer func() { r.names = r.names[:base] }()
	var seen map[string]bool // member names, once there are too many to compare pairwise
	var got uint64           // required bits present
	count := 0
	v := valid
	i := jsonlex.SkipWS(in, pos+1)
	if i < len(in) && in[i] == '}' {
		i++
	} else {
		for {
			if i >= len(in) || in[i] != '"' {
				return -1, undecided
			}
			keyPos := i
			raw, escaped, next, err := jsonlex.String(in, i)
			if err != nil {
				return -1, undecided
			}
			name := raw
			if escaped || !isUTF8(raw) {
				s, ok := decodeString(in[keyPos:next])
				if !ok {
					return -1, undecided
				}
				name = []byte(s)
			}
			// A repeated name: the decoded object keeps the last value
			// only. Leave such bodies to the full validator.
			count++
			if seen == nil && count > maxDupScan {
				seen = make(map[string]bool, 2*count)
				for _, k := range r.names[base:] {
					seen[string(k)] = true
				}
			}
			if seen != nil {
				if seen[string(name)] {
					return r.skip(pos), undecided
				}
				seen[string(name)] = true
			} else {
				for _, k := range r.names[base:] {
					if bytes.Equal(k, name) {
						return r.skip(pos), undecided
					}
				}
			}
			r.names = append(r.names, name)
			r.used = max(r.used, len(r.names))

			i = jsonlex.SkipWS(in, next)
			if i >= len(in) || in[i] != ':' {
				return -1, undecided
			}
			i = jsonlex.SkipWS(in, i+1)

			m, _ := n.lookup(name)
			got |= m.req
			// Once the object is invalid, its members are only walked for
			// repeated names, which would make that verdict wrong.
			end := -1
			if v != invalid {
				var mv verdict
				end, mv = r.member(n, name, m.node, keyPos, i)
				if mv == undecided {
					return r.skip(pos), undecided
				}
				v = and(v, mv)
			}
			if end < 0 {
				end = r.skip(i)
				if end < 0 {
					return -1, undecided
				}
			}
			i = jsonlex.SkipWS(in, end)
			if i >= len(in) {
				return -1, undecided
			}
			if in[i] == '}' {
				i++
				break
			}
			if in[i] != ',' {
				return -1, undecided
			}
			i = jsonlex.SkipWS(in, i+1)
		}
	}
	if got != n.reqAll || (n.minProps >= 0 && count < n.minProps) || (n.maxProps >= 0 && count > n.maxProps) {
		return i, invalid
	}
	return i, v
}

// member checks the member named name (its name at keyPos, its value at
// pos) against the object keywords of n: propertyNames, then properties
// (prop is its property schema, nil if none), patternProperties, or else
// additionalProperties. It returns the offset after the value, or -1 when
// it did not parse it.
func (r *checkRun) member(n *cnode, name []byte, prop *cnode, keyPos, pos int) (int, verdict) {
	if n.propNames != nil {
		if _, v := r.value(n.propNames, keyPos); v != valid {
			return -1, v
		}
	}
	end, v := -1, valid
	apply := func(sub *cnode) {
		if v != valid {
			return
		}
		e, sv := r.value(sub, pos)
		if e >= 0 {
			end = e
		}
		v = sv
	}
	evaluated := false
	if prop != nil {
		evaluated = true
		apply(prop)
	}
	if n.patterns != nil {
		s := string(name)
		for _, p := range n.patterns {
			if p.re.MatchString(s) {
				evaluated = true
				apply(p.node)
			}
		}
	}
	if !evaluated {
		switch {
		case n.addlFalse:
			return end, invalid
		case n.addl != nil:
			apply(n.addl)
		}
	}
	return end, v
}

// bail ends the walk of a container whose verdict v is already invalid or
// undecided: the end of the value is found by skipping it from pos.
func (r *checkRun) bail(pos int, v verdict) (int, verdict) {
	if v == valid {
		v = undecided
	}
	return r.skip(pos), v
}

func (r *checkRun) array(n *cnode, pos int) (int, verdict) {
	if !typeOK(n, tArray) || enumsRefuse(n.enums) {
		return r.skip(pos), invalid
	}
	if n.enums != nil || n.format != nil {
		return r.skip(pos), undecided
	}
	if !n.arrKeys {
		return -1, valid
	}
	in := r.in
	v := valid
	count := 0
	i := jsonlex.SkipWS(in, pos+1)
	if i < len(in) && in[i] == ']' {
		i++
	} else {
		for {
			if i >= len(in) {
				return -1, undecided
			}
			sub := n.items
			if count < len(n.prefix) {
				sub = n.prefix[count]
			}
			count++
			end, sv := r.value(sub, i)
			if v = and(v, sv); v == invalid || end < 0 {
				return r.bail(pos, v)
			}
			i = jsonlex.SkipWS(in, end)
			if i >= len(in) {
				return -1, undecided
			}
			if in[i] == ']' {
				i++
				break
			}
			if in[i] != ',' {
				return -1, undecided
			}
			i = jsonlex.SkipWS(in, i+1)
		}
	}
	if (n.minItems >= 0 && count < n.minItems) || (n.maxItems >= 0 && count > n.maxItems) {
		return i, invalid
	}
	if n.unique && count > 1 {
		return i, undecided
	}
	return i, v
}

func (r *checkRun) str(n *cnode, pos int) (int, verdict) {
	raw, escaped, end, err := jsonlex.String(r.in, pos)
	if err != nil {
		return -1, undecided
	}
	r.budget -= len(raw) / 8
	if !typeOK(n, tString) {
		return end, invalid
	}
	if n.enums == nil && n.format == nil && !n.strKeys {
		return end, valid
	}
	// The string as the full validator sees it: escapes decoded, invalid
	// UTF-8 replaced. Without either, the raw bytes are that string.
	plain := !escaped && isUTF8(raw)
	var s string
	if !plain {
		var ok bool
		if s, ok = decodeString(r.in[pos:end]); !ok {
			return end, undecided
		}
	}
	for _, e := range n.enums {
		var in bool
		if plain {
			in = e.strs[string(raw)]
		} else {
			in = e.strs[s]
		}
		if !in {
			if e.opaque {
				return end, undecided
			}
			return end, invalid
		}
	}
	if plain && (n.format != nil || n.pattern != nil) {
		s = string(raw)
	}
	if n.format != nil && n.format.Validate(s) != nil {
		return end, invalid
	}
	if n.minLen >= 0 || n.maxLen >= 0 {
		var l int
		if plain {
			l = utf8.RuneCount(raw)
		} else {
			l = utf8.RuneCountInString(s)
		}
		if (n.minLen >= 0 && l < n.minLen) || (n.maxLen >= 0 && l > n.maxLen) {
			return end, invalid
		}
	}
	if n.pattern != nil && !n.pattern.MatchString(s) {
		return end, invalid
	}
	return end, valid
}

func (r *checkRun) literal(n *cnode, pos int) (int, verdict) {
	var t uint8
	var lit string
	var val any
	switch r.in[pos] {
	case 't':
		t, lit, val = tBoolean, "true", true
	case 'f':
		t, lit, val = tBoolean, "false", false
	default:
		t, lit, val = tNull, "null", nil
	}
	end := pos + len(lit)
	if end > len(r.in) || string(r.in[pos:end]) != lit {
		return -1, undecided
	}
	if !typeOK(n, t) {
		return end, invalid
	}
	for _, e := range n.enums {
		var in bool
		switch val {
		case true:
			in = e.t
		case false:
			in = e.f
		default:
			in = e.null
		}
		if !in {
			if e.opaque {
				return end, undecided
			}
			return end, invalid
		}
	}
	if n.format != nil && n.format.Validate(val) != nil {
		return end, invalid
	}
	return end, valid
}

func (r *checkRun) number(n *cnode, pos int) (int, verdict) {
	end, _, err := jsonlex.Number(r.in, pos)
	if err != nil {
		return -1, undecided
	}
	text := r.in[pos:end]
	num := numText{text: text}
	if n.types != 0 && n.types&tNumber == 0 {
		if n.types&tInteger == 0 {
			return end, invalid
		}
		isInt, ok := num.isInteger()
		if !ok {
			return end, undecided
		}
		if !isInt {
			return end, invalid
		}
	}
	if n.enums == nil && n.format == nil && !n.numKeys {
		return end, valid
	}
	for _, e := range n.enums {
		found, ok := false, true
		for _, x := range e.nums {
			c, cok := num.cmp(&bound{r: x})
			if !cok {
				ok = false
				break
			}
			if c == 0 {
				found = true
				break
			}
		}
		if !ok {
			return end, undecided
		}
		if !found {
			if e.opaque {
				return end, undecided
			}
			return end, invalid
		}
	}
	if n.format != nil {
		switch i, plain := num.int64(); {
		case plain && n.fmtBits == 64:
		case plain && n.fmtBits == 32:
			if i < -1<<31 || i > 1<<31-1 {
				return end, invalid
			}
		default:
			if n.format.Validate(json.Number(text)) != nil {
				return end, invalid
			}
		}
	}
	if n.numKeys {
		if v := num.within(n.minimum, func(c int) bool { return c >= 0 }); v != valid {
			return end, v
		}
		if v := num.within(n.maximum, func(c int) bool { return c <= 0 }); v != valid {
			return end, v
		}
		if v := num.within(n.exMinimum, func(c int) bool { return c > 0 }); v != valid {
			return end, v
		}
		if v := num.within(n.exMaximum, func(c int) bool { return c < 0 }); v != valid {
			return end, v
		}
	}
	if m := n.multipleOf; m != nil {
		if i, plain := num.int64(); plain && m.isInt && m.i > 0 {
			if i%m.i != 0 {
				return end, invalid
			}
		} else {
			x := num.rat()
			if x == nil {
				return end, undecided
			}
			if !new(big.Rat).Quo(x, m.r).IsInt() {
				return end, invalid
			}
		}
	}
	return end, valid
}

// numText is a JSON number literal, compared without allocating when it is
// a plain integer of at most 18 digits.
type numText struct {
	text []byte
	r    *big.Rat
}

// int64 returns the value of a plain integer literal of at most 18 digits.
func (n *numText) int64() (int64, bool) {
	t := n.text
	neg := len(t) > 0 && t[0] == '-'
	if neg {
		t = t[1:]
	}
	if len(t) == 0 || len(t) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range t {
		if !jsonlex.IsDigit(c) {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

// rat returns the exact value, or nil for a costly literal (costlyNumber).
func (n *numText) rat() *big.Rat {
	if n.r != nil {
		return n.r
	}
	if costlyNumber(n.text) {
		return nil
	}
	r, ok := new(big.Rat).SetString(string(n.text))
	if !ok {
		return nil
	}
	n.r = r
	return r
}

// costlyNumber reports whether the JSON number literal text is too costly
// to evaluate exactly: more than maxNumberText bytes, or an exponent beyond
// ±999. Converting 1e999999 to a big.Rat takes tens of milliseconds, a
// million-digit integer over a second; within these bounds a literal costs
// a few microseconds.
func costlyNumber(text []byte) bool {
	if len(text) > maxNumberText {
		return true
	}
	e := bytes.IndexAny(text, "eE")
	if e < 0 {
		return false
	}
	exp := text[e+1:]
	if len(exp) > 0 && (exp[0] == '+' || exp[0] == '-') {
		exp = exp[1:]
	}
	for len(exp) > 1 && exp[0] == '0' {
		exp = exp[1:]
	}
	return len(exp) > 3
}

// hasCostlyNumber reports whether the JSON text body holds a costly number
// literal (costlyNumber) outside strings. body is valid JSON.
func hasCostlyNumber(body []byte) bool {
	for i := 0; i < len(body); {
		switch c := body[i]; {
		case c == '"':
			_, _, next, err := jsonlex.String(body, i)
			if err != nil {
				return false
			}
			i = next
		case c == '-' || jsonlex.IsDigit(c):
			next, _, err := jsonlex.Number(body, i)
			if err != nil {
				return false
			}
			if costlyNumber(body[i:next]) {
				return true
			}
			i = next
		default:
			i++
		}
	}
	return false
}

// within checks the number against one bound: ok says what a comparison
// result must be. A nil bound is no constraint.
func (n *numText) within(b *bound, ok func(c int) bool) verdict {
	if b == nil {
		return valid
	}
	c, decided := n.cmp(b)
	switch {
	case !decided:
		return undecided
	case !ok(c):
		return invalid
	}
	return valid
}

// isInteger reports whether the number is an integer (1.0 and 1e2 are);
// ok is false when that cannot be decided here.
func (n *numText) isInteger() (isInt, ok bool) {
	if bytes.IndexAny(n.text, ".eE") < 0 {
		return true, true
	}
	r := n.rat()
	if r == nil {
		return false, false
	}
	return r.IsInt(), true
}

// cmp compares the number with b: -1, 0 or +1; ok is false when that
// cannot be decided here.
func (n *numText) cmp(b *bound) (int, bool) {
	if i, plain := n.int64(); plain && b.isInt {
		switch {
		case i < b.i:
			return -1, true
		case i > b.i:
			return 1, true
		}
		return 0, true
	}
	r := n.rat()
	if r == nil {
		return 0, false
	}
	return r.Cmp(b.r), true
}

// enumsRefuse reports whether an enum or const cannot hold an object or an
// array (it has none, and nothing it does not know).
func enumsRefuse(enums []*enumSet) bool {
	for _, e := range enums {
		if !e.containers && !e.opaque {
			return true
		}
	}
	return false
}

// isUTF8 reports whether b is valid UTF-8, quickly for short ASCII text.
func isUTF8(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return utf8.Valid(b)
		}
	}
	return true
}

// decodeString decodes a quoted JSON string as encoding/json does
// (invalid UTF-8 becomes U+FFFD).
func decodeString(quoted []byte) (string, bool) {
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return "", false
	}
	return s, true
}

// skip returns the offset after the value at pos, or -1 when the text is
// not a JSON value there. It checks nothing and charges the budget for the
// bytes it passes.
func (r *checkRun) skip(pos int) int {
	in := r.in
	depth := 0
	i := pos
	for {
		if i >= len(in) {
			return -1
		}
		switch c := in[i]; {
		case c == '{' || c == '[':
			depth++
			i++
		case c == '}' || c == ']':
			depth--
			i++
		case c == '"':
			_, _, next, err := jsonlex.String(in, i)
			if err != nil {
				return -1
			}
			i = next
		case c == ',' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == 't':
			i += 4
		case c == 'f':
			i += 5
		case c == 'n':
			i += 4
		default:
			next, _, err := jsonlex.Number(in, i)
			if err != nil {
				return -1
			}
			i = next
		}
		if depth == 0 {
			if i > len(in) {
				return -1
			}
			r.budget -= (i - pos) / 8
			return i
		}
		if depth < 0 {
			return -1
		}
	}
}
