package openapi

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Responses holds, for every operation of a document, the compiled schema
// and the Shape of each JSON response it declares: what response filtering
// (internal/exposure/schema) checks and strips upstream responses against.
// It is built once per document by Document.CompileResponses, immutable,
// and safe for concurrent use.
type Responses struct {
	doc     *Document
	entries map[*MediaType]*ResponseSchema
}

// ResponseSchema is the compiled form of one JSON media type of one
// declared response.
type ResponseSchema struct {
	Status    string  // the response key: "200", "2XX" or "default"
	MediaType string  // the content key: application/json, application/*...
	Schema    *Schema // compiled ForResponse: writeOnly properties are not required
	Shape     *Shape  // the properties the schema declares, for stripping
}

// maxShapes bounds the shapes one document's responses expand to.
const maxShapes = 1 << 16

// CompileResponses compiles the schema and builds the Shape of every JSON
// media type, with a schema, of every response of every operation. Call it
// once per document at configuration load. It returns an error naming the
// schema when one does not compile or is too large to shape.
func (d *Document) CompileResponses() (*Responses, error) {
	var root any
	if err := json.Unmarshal(d.json, &root); err != nil {
		return nil, fmt.Errorf("%s: decoding the document: %w", d.name, err)
	}
	sb := &shapeBuilder{root: root, refs: map[string]*Shape{}, merged: map[[2]*Shape]*Shape{}}
	r := &Responses{doc: d, entries: map[*MediaType]*ResponseSchema{}}
	for _, op := range d.ops {
		for _, resp := range op.Responses {
			for _, mt := range resp.Content {
				if !mt.json || mt.Schema == "" {
					continue
				}
				s, err := d.CompileSchema(mt.Schema, ForResponse)
				if err != nil {
					return nil, err
				}
				v, ok := lookup(root, mt.Schema)
				if !ok {
					return nil, fmt.Errorf("%s: schema %s does not resolve", d.where(mt.Schema), mt.Schema)
				}
				shape := sb.build(v, 0)
				if sb.err != nil {
					return nil, fmt.Errorf("%s: schema %s: %w", d.where(mt.Schema), mt.Schema, sb.err)
				}
				r.entries[mt] = &ResponseSchema{Status: resp.Status, MediaType: mt.Type, Schema: s, Shape: shape}
			}
		}
	}
	return r, nil
}

// Document returns the document r was compiled from.
func (r *Responses) Document() *Document { return r.doc }

// Lookup returns the compiled schema of op's response for status and
// contentType (a Content-Type value): the exact status, else its range
// ("2XX"), else "default" (Operation.ResponseFor), then the media type by
// exact type, type/*, */* (Response.MediaTypeFor). ok is false when the
// document declares no such response, no such media type, or one that is
// not JSON or has no schema; declared reports whether the status and media
// type are declared at all, whatever their schema.
func (r *Responses) Lookup(op *Operation, status int, contentType string) (rs *ResponseSchema, declared, ok bool) {
	resp, found := op.ResponseFor(status)
	if !found {
		return nil, false, false
	}
	mt, found := resp.MediaTypeFor(contentType)
	if !found {
		return nil, false, false
	}
	rs, ok = r.entries[mt]
	return rs, true, ok
}

// Shape is the structure a response schema declares, as response filtering
// needs it: for an object, the properties it declares (and which of them
// are writeOnly) and whether it admits others; for an array, the shape of
// its elements. A nil *Shape stands for any value: nothing in it is
// undeclared. A Shape may be cyclic (recursive schemas); it is immutable
// once built.
//
// allOf, anyOf and oneOf merge their branches' declarations: a property
// declared in any branch is declared (anyOf and oneOf are not evaluated per
// value, so the union is the conservative choice), and any branch that
// admits undeclared properties makes the object admit them. A schema that
// declares no properties and does not set additionalProperties: false
// admits every property. additionalProperties (true or a schema),
// patternProperties and unevaluatedProperties other than false admit
// undeclared properties; only an additionalProperties schema gives them a
// shape. if/then/else, dependentSchemas, prefixItems and the array form of
// items are not shaped: what they describe is kept as it is.
type Shape struct {
	props    map[string]*Property
	declares bool   // properties or additionalProperties/unevaluatedProperties: false
	open     bool   // undeclared members are admitted
	extra    *Shape // the shape of undeclared members when open; nil: any
	items    *Shape // the shape of array elements; nil: any
	building bool   // under construction (a recursive reference)
}

// Property is one declared property of an object Shape.
type Property struct {
	Shape     *Shape
	WriteOnly bool // writeOnly: true: the property never leaves the gateway
}

// Member returns what s says about an object member called name: its
// shape, whether it is declared (or admitted as an additional property),
// and whether it is writeOnly. On a nil Shape every member is declared.
func (s *Shape) Member(name string) (sub *Shape, declared, writeOnly bool) {
	if s == nil {
		return nil, true, false
	}
	if p, ok := s.props[name]; ok {
		return p.Shape, true, p.WriteOnly
	}
	if s.open || !s.declares {
		return s.extra, true, false
	}
	return nil, false, false
}

// Items returns the shape of the elements of an array s describes; nil
// for any.
func (s *Shape) Items() *Shape {
	if s == nil {
		return nil
	}
	return s.items
}

// Closed reports whether s refuses members it does not declare: whether
// stripping can remove anything at the top level of an object.
func (s *Shape) Closed() bool { return s != nil && s.declares && !s.open }

// shapeBuilder builds shapes from the document tree; references are built
// once (refs) so recursive schemas become cyclic shapes.
type shapeBuilder struct {
	root   any
	refs   map[string]*Shape
	merged map[[2]*Shape]*Shape
	count  int
	err    error
}

func (b *shapeBuilder) newShape() *Shape {
	if b.count++; b.count > maxShapes && b.err == nil {
		b.err = fmt.Errorf("the response schemas expand to more than %d shapes: simplify them", maxShapes)
	}
	return &Shape{}
}

// build returns the shape of the schema v.
func (b *shapeBuilder) build(v any, depth int) *Shape {
	s, ok := v.(map[string]any)
	if !ok || b.err != nil {
		return nil // true, false, or not a schema: nothing to shape
	}
	if depth > maxDepth {
		b.err = fmt.Errorf("schemas nested deeper than %d", maxDepth)
		return nil
	}
	out := b.newShape()
	var branches []*Shape
	if ref, ok := s["$ref"].(string); ok {
		branches = append(branches, b.ref(ref, depth))
	}
	if props, ok := s["properties"].(map[string]any); ok {
		out.declares = true
		out.props = make(map[string]*Property, len(props))
		for name, sub := range props {
			out.props[name] = &Property{Shape: b.build(sub, depth+1), WriteOnly: schemaFlag(b.root, sub, "writeOnly")}
		}
	}
	switch ap := s["additionalProperties"].(type) {
	case bool:
		if ap {
			out.open = true
		} else {
			out.declares = true
		}
	case map[string]any:
		out.open = true
		out.extra = b.build(ap, depth+1)
	}
	if _, ok := s["patternProperties"].(map[string]any); ok {
		out.open, out.extra = true, nil
	}
	switch up := s["unevaluatedProperties"].(type) {
	case bool:
		if up {
			out.open, out.extra = true, nil
		} else {
			out.declares = true
		}
	case map[string]any:
		out.open, out.extra = true, nil
	}
	if items, ok := s["items"].(map[string]any); ok {
		out.items = b.build(items, depth+1)
	}
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		l, _ := s[k].([]any)
		for _, sub := range l {
			bs := b.build(sub, depth+1)
			if k != "allOf" && (bs == nil || !bs.declares) && objectish(sub) {
				// A free-form object branch admits every property. (bs
				// may be shared with other schemas: it is not modified.)
				bs = &Shape{declares: true, open: true}
			}
			branches = append(branches, bs)
		}
	}
	if len(branches) == 1 && out.props == nil && !out.declares && !out.open && out.items == nil {
		return branches[0] // a bare $ref, or one branch: its shape, possibly still being built
	}
	for _, br := range branches {
		out = b.merge(out, br)
	}
	return out
}

// objectish reports whether the schema v can describe an object: it has no
// type, or its type includes object.
func objectish(v any) bool {
	s, ok := v.(map[string]any)
	if !ok {
		return v == true
	}
	switch t := s["type"].(type) {
	case nil:
		_, ref := s["$ref"]
		return !ref
	case string:
		return t == "object"
	case []any:
		for _, x := range t {
			if x == "object" {
				return true
			}
		}
	}
	return false
}

// ref returns the shape of the schema a local reference points to.
func (b *shapeBuilder) ref(ref string, depth int) *Shape {
	if !strings.HasPrefix(ref, "#") {
		return nil
	}
	key := normalizePointer(ref)
	if s, ok := b.refs[key]; ok {
		return s
	}
	target, ok := lookup(b.root, ref)
	if !ok {
		return nil
	}
	// A placeholder first, so that a recursive reference finds it; it is
	// filled in with the built shape once that is done.
	ph := &Shape{building: true}
	b.refs[key] = ph
	built := b.build(target, depth+1)
	if built == nil {
		b.refs[key] = nil
		*ph = Shape{}
		ph.open = true
		return nil
	}
	*ph = *built
	ph.building = false
	return ph
}

// merge combines a shape with the shape of a branch of it (allOf, anyOf,
// oneOf, $ref): declared properties are united, and the object admits
// undeclared properties when either does. A branch still under
// construction (a schema composed with itself) cannot be merged: the
// result then admits everything, which never strips what the schema
// allows.
func (b *shapeBuilder) merge(a, br *Shape) *Shape {
	switch {
	case br == nil:
		return a
	case a == nil:
		return br
	case a == br:
		return a
	}
	key := [2]*Shape{a, br}
	if m, ok := b.merged[key]; ok {
		return m
	}
	if br.building || a.building {
		out := b.newShape()
		*out = Shape{props: a.props, declares: a.declares, open: true, items: a.items}
		return out
	}
	out := b.newShape()
	b.merged[key] = out
	out.declares = a.declares || br.declares
	switch {
	case !br.declares:
		out.open, out.extra = a.open, a.extra
		if br.open {
			out.open, out.extra = true, pick(a.open, a.extra, br.extra)
		}
	case !a.declares:
		out.open, out.extra = br.open, br.extra
		if a.open {
			out.open, out.extra = true, pick(br.open, br.extra, a.extra)
		}
	default:
		out.open = a.open || br.open
		if a.open && br.open {
			out.extra = b.merge(a.extra, br.extra)
			if a.extra == nil || br.extra == nil {
				out.extra = nil
			}
		} else if a.open {
			out.extra = a.extra
		} else if br.open {
			out.extra = br.extra
		}
	}
	out.items = b.merge(a.items, br.items)
	if len(a.props)+len(br.props) > 0 {
		out.props = make(map[string]*Property, len(a.props)+len(br.props))
		for n, p := range a.props {
			out.props[n] = p
		}
		for n, p := range br.props {
			q, ok := out.props[n]
			if !ok {
				out.props[n] = p
				continue
			}
			sub := b.merge(q.Shape, p.Shape)
			if q.Shape == nil || p.Shape == nil {
				sub = nil // one side admits any value
			}
			out.props[n] = &Property{Shape: sub, WriteOnly: q.WriteOnly || p.WriteOnly}
		}
	}
	return out
}

// pick returns the shape of undeclared members when two sides admit them:
// when both do with different shapes, any value.
func pick(aOpen bool, aExtra, bExtra *Shape) *Shape {
	if aOpen && aExtra != bExtra {
		return nil
	}
	return bExtra
}
