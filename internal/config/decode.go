package config

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// decoder fills Go values from a YAML AST strictly: unknown keys, duplicate
// keys and wrong types are problems, and decoding goes on after each one so
// that every problem in the file is reported at once.
type decoder struct {
	*problems
	anchors map[string]ast.Node
	depth   int
	values  int  // values decoded so far, aliases expanded
	over    bool // the budget ran out; decoding stopped
}

// Bounds on what one file may make the decoder do: aliases can make a small
// file expand to an enormous document ("billion laughs").
const (
	maxDepth    = 64
	maxProblems = 200
)

// maxValues bounds the values one file decodes to; a variable so that tests
// can reach it with a small file. 10,000 routes take about 100,000.
var maxValues = 1_000_000

var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

func decodeYAML(file string, data []byte, out any) (map[string]position, error) {
	d := &decoder{problems: &problems{file: file, pos: map[string]position{}}, anchors: map[string]ast.Node{}}
	f, err := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		d.list = append(d.list, syntaxProblem(file, err))
		return d.pos, d.err()
	}
	if len(f.Docs) > 1 {
		d.add("", "the file holds %d YAML documents; moat reads exactly one", len(f.Docs))
		return d.pos, d.err()
	}
	if len(f.Docs) == 0 || f.Docs[0] == nil || f.Docs[0].Body == nil {
		d.add("", "the file is empty")
		return d.pos, d.err()
	}
	// Register every anchor first, wherever it stands: an anchor under a key
	// the decoder skips (x-defaults: &d ...) is still a valid alias target.
	ast.Walk(anchorCollector(d.anchors), f.Docs[0].Body)
	d.decode(f.Docs[0].Body, reflect.ValueOf(out).Elem(), "")
	return d.pos, d.err()
}

// anchorCollector records each anchor's node by name; a later anchor of the
// same name replaces an earlier one.
type anchorCollector map[string]ast.Node

func (a anchorCollector) Visit(n ast.Node) ast.Visitor {
	if an, ok := n.(*ast.AnchorNode); ok && an.Name != nil {
		a[an.Name.GetToken().Value] = an.Value
	}
	return a
}

// syntaxProblem turns a goccy syntax error into a Problem with its position.
func syntaxProblem(file string, err error) Problem {
	p := Problem{File: file, Msg: "invalid YAML: " + err.Error()}
	if se, ok := err.(interface{ GetMessage() string }); ok {
		p.Msg = "invalid YAML: " + se.GetMessage()
	}
	if te, ok := err.(interface{ GetToken() *token.Token }); ok && te.GetToken() != nil {
		p.Line, p.Col = te.GetToken().Position.Line, te.GetToken().Position.Column
	}
	return p
}

func nodePos(n ast.Node) position {
	if t := n.GetToken(); t != nil && t.Position != nil {
		return position{t.Position.Line, t.Position.Column}
	}
	return position{}
}

func (d *decoder) fail(n ast.Node, path, format string, args ...any) {
	d.addAt(nodePos(n), path, format, args...)
}

// resolve strips tags and anchors and follows aliases.
func (d *decoder) resolve(n ast.Node, path string) ast.Node {
	for i := 0; i < 16 && n != nil; i++ {
		switch v := n.(type) {
		case *ast.TagNode:
			n = v.Value
		case *ast.AnchorNode:
			n = v.Value
		case *ast.AliasNode:
			target, ok := d.anchors[v.Value.GetToken().Value]
			if !ok {
				d.fail(n, path, "unknown alias *%s", v.Value.GetToken().Value)
				return nil
			}
			n = target
		default:
			return n
		}
	}
	return n
}

func (d *decoder) decode(n ast.Node, v reflect.Value, path string) {
	if d.over {
		return
	}
	if d.values++; d.values > maxValues || len(d.list) >= maxProblems {
		d.over = true
		// A problem of the whole file: no position, so it is listed first.
		msg := fmt.Sprintf("more than %d problems; decoding stopped at %s", maxProblems, path)
		if len(d.list) < maxProblems {
			msg = fmt.Sprintf("the document expands to more than %d values (through aliases?); decoding stopped at %s", maxValues, path)
		}
		d.list = append(d.list, Problem{File: d.file, Msg: msg})
		return
	}
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		d.fail(n, path, "nesting deeper than %d levels", maxDepth)
		return
	}
	if _, seen := d.pos[path]; !seen {
		d.pos[path] = nodePos(n)
	}
	n = d.resolve(n, path)
	if n == nil {
		return
	}
	if n.Type() == ast.NullType {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshalerType) {
		s, ok := scalarText(n)
		if !ok {
			d.fail(n, path, "expected %s, found %s", typeName(v.Type()), kindOf(n))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.fail(n, path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			d.fail(n, path, "expected a list, found %s", kindOf(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(seq.Values), len(seq.Values))
		for i, item := range seq.Values {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		s, ok := scalarText(n)
		if !ok {
			d.fail(n, path, "expected a string, found %s", kindOf(n))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := n.(*ast.BoolNode)
		if !ok {
			d.fail(n, path, "expected true or false, found %s", kindOf(n))
			return
		}
		v.SetBool(b.Value)
	case reflect.Int, reflect.Int64, reflect.Int32:
		in, ok := n.(*ast.IntegerNode)
		if !ok {
			d.fail(n, path, "expected an integer, found %s", kindOf(n))
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(in.GetToken().Value, "_", ""), 0, 64)
		if err != nil || v.OverflowInt(i) {
			d.fail(n, path, "integer %s out of range", in.GetToken().Value)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		var f float64
		switch x := n.(type) {
		case *ast.FloatNode:
			f = x.Value
		case *ast.IntegerNode:
			i, err := strconv.ParseInt(x.GetToken().Value, 0, 64)
			if err != nil {
				d.fail(n, path, "number %s out of range", x.GetToken().Value)
				return
			}
			f = float64(i)
		default:
			d.fail(n, path, "expected a number, found %s", kindOf(n))
			return
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail(n, path, "expected a finite number")
			return
		}
		v.SetFloat(f)
	default:
		d.fail(n, path, "unsupported field type %s", v.Type())
	}
}

func (d *decoder) decodeStruct(n ast.Node, v reflect.Value, path string) {
	if n == nil {
		return
	}
	m, ok := n.(*ast.MappingNode)
	if !ok {
		if mv, ok2 := n.(*ast.MappingValueNode); ok2 {
			m = &ast.MappingNode{Values: []*ast.MappingValueNode{mv}}
		} else {
			d.fail(n, path, "expected a mapping (key: value), found %s", kindOf(n))
			return
		}
	}
	fields := structFields(v.Type())
	// Merge keys (<<: *defaults) first, so that the mapping's own keys
	// override what they bring, as YAML merge keys do.
	for _, mv := range m.Values {
		if _, ok := mv.Key.(*ast.MergeKeyNode); !ok {
			continue
		}
		switch src := d.resolve(mv.Value, path).(type) {
		case *ast.MappingNode, *ast.MappingValueNode:
			d.decodeStruct(src, v, path)
		case *ast.SequenceNode:
			for i := len(src.Values) - 1; i >= 0; i-- { // earlier entries win
				if item := d.resolve(src.Values[i], path); item != nil { // nil: an unknown alias, reported
					d.decodeStruct(item, v, path)
				}
			}
		case nil:
		default:
			d.fail(mv.Value, path, "a merge key (<<) takes a mapping or a list of mappings, found %s", kindOf(src))
		}
	}
	seen := map[string]bool{}
	for _, mv := range m.Values {
		if _, ok := mv.Key.(*ast.MergeKeyNode); ok {
			continue
		}
		key, ok := scalarText(d.resolve(mv.Key, path))
		if !ok {
			d.fail(mv.Key, path, "expected a field name, found %s", kindOf(mv.Key))
			continue
		}
		p := join(path, key)
		if strings.HasPrefix(key, "x-") {
			continue // extension keys hold anchors and notes; moat ignores them
		}
		if seen[key] {
			d.fail(mv.Key, p, "duplicate field %q", key)
			continue
		}
		seen[key] = true
		idx, ok := fields.byName[key]
		if !ok {
			msg := fmt.Sprintf("unknown field %q", key)
			if s := closest(key, fields.names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.fail(mv.Key, p, "%s", msg)
			continue
		}
		d.pos[p] = nodePos(mv.Key)
		d.decode(mv.Value, v.FieldByIndex(idx), p)
	}
}

func (d *decoder) decodeMap(n ast.Node, v reflect.Value, path string) {
	m, ok := n.(*ast.MappingNode)
	if !ok {
		if mv, ok2 := n.(*ast.MappingValueNode); ok2 {
			m = &ast.MappingNode{Values: []*ast.MappingValueNode{mv}}
		} else {
			d.fail(n, path, "expected a mapping (name: value), found %s", kindOf(n))
			return
		}
	}
	if v.Type().Key().Kind() != reflect.String {
		d.fail(n, path, "unsupported map key type %s", v.Type().Key())
		return
	}
	out := reflect.MakeMapWithSize(v.Type(), len(m.Values))
	for _, mv := range m.Values {
		key, ok := scalarText(d.resolve(mv.Key, path))
		if !ok {
			d.fail(mv.Key, path, "expected a name, found %s", kindOf(mv.Key))
			continue
		}
		p := join(path, key)
		if out.MapIndex(reflect.ValueOf(key)).IsValid() {
			d.fail(mv.Key, p, "duplicate key %q", key)
			continue
		}
		d.pos[p] = nodePos(mv.Key)
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(mv.Value, elem, p)
		out.SetMapIndex(reflect.ValueOf(key), elem)
	}
	v.Set(out)
}

// scalarText returns the literal text of a scalar node. Numbers and booleans
// are accepted where a string is expected, as they were written.
func scalarText(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.LiteralNode:
		return x.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return n.GetToken().Value, true
	}
	return "", false
}

func kindOf(n ast.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return fmt.Sprintf("the string %q", truncate(n.GetToken().Value))
	case *ast.IntegerNode, *ast.FloatNode:
		return "the number " + truncate(n.GetToken().Value)
	case *ast.BoolNode:
		return n.GetToken().Value
	case *ast.NullNode:
		return "null"
	}
	return "a " + strings.ToLower(n.Type().String())
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func typeName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return "a duration (500ms, 30s, 7d)"
	case reflect.TypeFor[Size]():
		return "a size (512, 64KiB, 1MiB)"
	case reflect.TypeFor[URL]():
		return "a URL"
	case reflect.TypeFor[Prefix]():
		return "an IP address or CIDR prefix"
	}
	return "a scalar"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

type fieldSet struct {
	byName map[string][]int // field name -> index path (inline structs add a step)
	names  []string
}

var fieldCache sync.Map // reflect.Type -> *fieldSet

func structFields(t reflect.Type) *fieldSet {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.(*fieldSet)
	}
	fs := &fieldSet{byName: map[string][]int{}}
	addFields(fs, t, nil)
	fieldCache.Store(t, fs)
	return fs
}

// addFields adds the fields of t, under the index path at, to fs. An
// embedded struct tagged `yaml:",inline"` contributes its own fields, as if
// they were declared in t.
func addFields(fs *fieldSet, t reflect.Type, at []int) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		idx := append(append([]int(nil), at...), i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" && opts == "inline" && f.Anonymous && f.Type.Kind() == reflect.Struct {
			addFields(fs, f.Type, idx)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fs.byName[name] = idx
		fs.names = append(fs.names, name)
	}
}

// closest returns the candidate nearest to s by edit distance, if near enough
// to be a likely typo.
func closest(s string, candidates []string) string {
	best, bestD := "", len(s)/2+2
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
