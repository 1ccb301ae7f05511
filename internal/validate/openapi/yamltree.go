package openapi

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"go.yaml.in/yaml/v4"
)

// maxNodes bounds the values one document converts to, aliases expanded.
const maxNodes = 4 << 20

// converter turns the YAML node tree of the document into the JSON value
// the schema compiler reads (objects as map[string]any, numbers as
// json.Number, as in a request body), and records the position of every
// object, array and key under its JSON pointer.
type converter struct {
	name  string
	pos   map[string]position
	nodes int
}

// value converts n, found at the JSON pointer ptr. Positions are recorded
// only outside aliases (record), so a pointer always names the text it was
// written in.
func (c *converter) value(n *yaml.Node, ptr string, depth int, record bool) (any, error) {
	if c.nodes++; c.nodes > maxNodes {
		return nil, fmt.Errorf("%s: the document expands to more than %d values (aliases?)", c.name, maxNodes)
	}
	if depth > maxDepth {
		return nil, fmt.Errorf("%s:%d:%d: nested deeper than %d levels", c.name, n.Line, n.Column, maxDepth)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return nil, fmt.Errorf("%s: expected one YAML document", c.name)
		}
		return c.value(n.Content[0], ptr, depth+1, record)
	case yaml.AliasNode:
		return c.value(n.Alias, ptr, depth+1, false)
	case yaml.MappingNode:
		if record {
			c.pos[ptr] = position{n.Line, n.Column}
		}
		m := make(map[string]any, len(n.Content)/2)
		if err := c.mapping(n, m, ptr, depth, record); err != nil {
			return nil, err
		}
		return m, nil
	case yaml.SequenceNode:
		if record {
			c.pos[ptr] = position{n.Line, n.Column}
		}
		l := make([]any, len(n.Content))
		for i, e := range n.Content {
			p := ptr + "/" + strconv.Itoa(i)
			if record {
				c.pos[p] = position{e.Line, e.Column}
			}
			v, err := c.value(e, p, depth+1, record)
			if err != nil {
				return nil, err
			}
			l[i] = v
		}
		return l, nil
	case yaml.ScalarNode:
		return c.scalar(n)
	}
	return nil, fmt.Errorf("%s:%d:%d: unexpected YAML node", c.name, n.Line, n.Column)
}

// mapping converts the entries of a mapping node into m. Merge keys
// ("<<: *base") add the entries of the merged mappings that m does not set
// itself; a key written twice is an error, since tools disagree on which
// copy counts.
func (c *converter) mapping(n *yaml.Node, m map[string]any, ptr string, depth int, record bool) error {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s:%d:%d: a mapping key must be a scalar", c.name, k.Line, k.Column)
		}
		if k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if _, dup := m[k.Value]; dup {
			return fmt.Errorf("%s:%d:%d: key %q appears twice", c.name, k.Line, k.Column, k.Value)
		}
		p := ptr + "/" + escapeToken(k.Value)
		val, err := c.value(v, p, depth+1, record)
		if err != nil {
			return err
		}
		if record {
			c.pos[p] = position{k.Line, k.Column}
		}
		m[k.Value] = val
	}
	for _, mv := range merges {
		srcs := []*yaml.Node{mv}
		if mv.Kind == yaml.SequenceNode {
			srcs = mv.Content
		}
		for _, s := range srcs {
			for s.Kind == yaml.AliasNode {
				s = s.Alias
			}
			if s.Kind != yaml.MappingNode {
				return fmt.Errorf("%s:%d:%d: a merge key needs a mapping", c.name, mv.Line, mv.Column)
			}
			extra := map[string]any{}
			if err := c.mapping(s, extra, ptr, depth+1, false); err != nil {
				return err
			}
			for k, v := range extra {
				if _, set := m[k]; !set {
					m[k] = v
				}
			}
		}
	}
	return nil
}

// scalar converts a scalar by its resolved tag.
func (c *converter) scalar(n *yaml.Node) (any, error) {
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, fmt.Errorf("%s:%d:%d: %w", c.name, n.Line, n.Column, err)
		}
		return b, nil
	case "!!int", "!!float":
		if isJSONNumber(n.Value) {
			return json.Number(n.Value), nil
		}
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, fmt.Errorf("%s:%d:%d: %w", c.name, n.Line, n.Column, err)
		}
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("%s:%d:%d: %s is not a JSON number", c.name, n.Line, n.Column, n.Value)
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
	case "!!str", "!!timestamp", "!!binary":
		return n.Value, nil
	}
	return nil, fmt.Errorf("%s:%d:%d: YAML tag %s is not supported", c.name, n.Line, n.Column, n.ShortTag())
}

// isJSONNumber reports whether s is a JSON number literal, of any length.
func isJSONNumber(s string) bool {
	if len(s) <= maxNumberLength {
		return isNumber(s)
	}
	// Long literals: the same grammar, checked without the length bound.
	i := 0
	if s[0] == '-' {
		i++
	}
	seenDigit := false
	for ; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= '0' && ch <= '9':
			seenDigit = true
		case ch == '.' || ch == 'e' || ch == 'E' || ch == '+' || ch == '-':
		default:
			return false
		}
	}
	return seenDigit && json.Valid([]byte(s))
}
