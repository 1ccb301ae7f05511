package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/moat-gateway/moat/internal/jsonlex"
	"github.com/moat-gateway/moat/internal/validate/openapi"
)

// MaxDepth is the deepest nesting of arrays and objects a body may have.
const MaxDepth = 512

// maxListed bounds the removed or undeclared pointers one response records.
const maxListed = 32

// errInvalidJSON is wrapped by every syntax error of rewrite.
var errInvalidJSON = errors.New("invalid json")

// Removal causes.
const (
	CauseUndeclared = "undeclared" // not declared by the response schema
	CauseWriteOnly  = "write_only" // writeOnly in the response schema
	CauseDenyField  = "deny_field" // named in deny_fields
)

// Removal is one member removed from (or, for undeclared members in log and
// block modes, found in) a response: its location and why. The location
// holds member names from the upstream, clipped; never values.
type Removal struct {
	Pointer string `json:"pointer"`
	Cause   string `json:"cause"`
}

// rewriter walks one JSON body along a Shape and removes members: those
// named in deny, writeOnly ones, and undeclared ones when strip is set (or
// records undeclared ones otherwise). Key order, number text, whitespace and
// escapes of everything kept are copied byte for byte.
type rewriter struct {
	in       []byte
	pos      int
	out      []byte // nil until the first edit
	copied   int    // in[:copied] has been dealt with
	deny     map[string]bool
	strip    bool
	path     []step // member names and array indexes, for pointers
	removed  []Removal
	found    []Removal // undeclared members kept
	nRemoved int
	nFound   int
	dropNext bool // the next comma of the current object goes with a removed first member
}

// step is one level of the path to the current value: a member name (as
// the upstream sent it, decoded) or an array index.
type step struct {
	name  []byte
	index int // -1 for a member
}

// rewrite applies the rewriter to body and returns the result (body itself
// when nothing changed). It fails, wrapping errInvalidJSON, when body is not
// one strict RFC 8259 value nested at most MaxDepth deep.
func (w *rewriter) rewrite(body []byte, shape *openapi.Shape) ([]byte, error) {
	w.in = body
	w.skipWS()
	if err := w.value(shape, 0); err != nil {
		return nil, err
	}
	w.skipWS()
	if w.pos != len(w.in) {
		return nil, w.fail("data after the top-level value")
	}
	if w.out == nil {
		return body, nil
	}
	return append(w.out, body[w.copied:]...), nil
}

func (w *rewriter) fail(format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", errInvalidJSON, w.pos, fmt.Sprintf(format, args...))
}

// edit replaces in[start:end] with nothing in the output.
func (w *rewriter) cut(start, end int) {
	if w.out == nil {
		w.out = make([]byte, 0, len(w.in))
	}
	w.out = append(w.out, w.in[w.copied:start]...)
	w.copied = end
}

func (w *rewriter) skipWS() { w.pos = jsonlex.SkipWS(w.in, w.pos) }

func (w *rewriter) pointer() string {
	var buf [256]byte // most pointers fit: the string is the one allocation
	b := buf[:0]
	for _, st := range w.path {
		b = append(b, '/')
		if st.index >= 0 {
			b = strconv.AppendInt(b, int64(st.index), 10)
			continue
		}
		s := st.name
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == '~':
				b = append(b, "~0"...)
			case c == '/':
				b = append(b, "~1"...)
			case c < 0x20 || c >= 0x7f:
				b = append(b, '?') // upstream text in logs: printable ASCII only
			default:
				b = append(b, c)
			}
		}
		if len(b) > 512 {
			return string(b[:512]) + "..."
		}
	}
	return string(b)
}

func (w *rewriter) record(list *[]Removal, n *int, cause string) {
	*n++
	if len(*list) < maxListed {
		if *list == nil {
			*list = make([]Removal, 0, maxListed/4)
		}
		*list = append(*list, Removal{Pointer: w.pointer(), Cause: cause})
	}
}

func (w *rewriter) value(shape *openapi.Shape, depth int) error {
	if w.pos >= len(w.in) {
		return w.fail("unexpected end of input")
	}
	switch c := w.in[w.pos]; {
	case c == '{':
		return w.object(shape, depth+1)
	case c == '[':
		return w.array(shape, depth+1)
	case c == '"':
		_, _, err := w.str()
		return err
	case c == '-' || jsonlex.IsDigit(c):
		return w.number()
	case c == 't':
		return w.literal("true")
	case c == 'f':
		return w.literal("false")
	case c == 'n':
		return w.literal("null")
	}
	return w.fail("unexpected character %q", w.in[w.pos])
}

func (w *rewriter) literal(lit string) error {
	if len(w.in)-w.pos < len(lit) || string(w.in[w.pos:w.pos+len(lit)]) != lit {
		return w.fail("invalid literal")
	}
	w.pos += len(lit)
	return nil
}

func (w *rewriter) object(shape *openapi.Shape, depth int) error {
	if depth > MaxDepth {
		return w.fail("nesting deeper than %d", MaxDepth)
	}
	w.pos++ // '{'
	w.skipWS()
	if w.pos < len(w.in) && w.in[w.pos] == '}' {
		w.pos++
		return nil
	}
	saveDrop := w.dropNext
	w.dropNext = false
	defer func() { w.dropNext = saveDrop }()
	kept := false // a member of this object is in the output
	comma := -1   // offset of the comma before the current member
	for {
		if w.pos >= len(w.in) || w.in[w.pos] != '"' {
			return w.fail("expected a member name")
		}
		keyStart := w.pos
		raw, escaped, err := w.str()
		if err != nil {
			return err
		}
		key := raw
		if escaped {
			var k string
			if err := json.Unmarshal(w.in[keyStart:w.pos], &k); err != nil {
				return w.fail("invalid member name")
			}
			key = []byte(k)
		}
		w.skipWS()
		if w.pos >= len(w.in) || w.in[w.pos] != ':' {
			return w.fail("expected ':'")
		}
		w.pos++
		w.skipWS()

		w.path = append(w.path, step{name: key, index: -1})
		sub, declared, writeOnly := shape.Member(string(key))
		cause := ""
		switch {
		case len(w.deny) > 0 && w.denied(key):
			cause = CauseDenyField
		case writeOnly:
			cause = CauseWriteOnly
		case !declared && w.strip:
			cause = CauseUndeclared
		case !declared:
			w.record(&w.found, &w.nFound, CauseUndeclared)
		}
		if cause != "" {
			w.record(&w.removed, &w.nRemoved, cause)
			sub = nil
		}
		if err := w.value(sub, depth); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
		if cause != "" {
			if kept {
				w.cut(comma, w.pos)
			} else {
				w.cut(keyStart, w.pos)
				w.dropNext = true
			}
		} else {
			kept = true
		}
		w.skipWS()
		if w.pos >= len(w.in) {
			return w.fail("unexpected end of input in an object")
		}
		switch w.in[w.pos] {
		case '}':
			w.pos++
			return nil
		case ',':
			comma = w.pos
			w.pos++
			w.skipWS()
			if w.dropNext {
				w.cut(comma, w.pos)
				w.dropNext = false
			}
		default:
			return w.fail("expected ',' or '}'")
		}
	}
}

func (w *rewriter) array(shape *openapi.Shape, depth int) error {
	if depth > MaxDepth {
		return w.fail("nesting deeper than %d", MaxDepth)
	}
	w.pos++ // '['
	w.skipWS()
	if w.pos < len(w.in) && w.in[w.pos] == ']' {
		w.pos++
		return nil
	}
	items := shape.Items()
	w.path = append(w.path, step{})
	for i := 0; ; i++ {
		w.path[len(w.path)-1].index = i
		if err := w.value(items, depth); err != nil {
			return err
		}
		w.skipWS()
		if w.pos >= len(w.in) {
			return w.fail("unexpected end of input in an array")
		}
		switch w.in[w.pos] {
		case ']':
			w.pos++
			w.path = w.path[:len(w.path)-1]
			return nil
		case ',':
			w.pos++
			w.skipWS()
		default:
			return w.fail("expected ',' or ']'")
		}
	}
}

// denied reports whether the member name key is in the deny-list: compared
// as normalize does, without allocating.
func (w *rewriter) denied(key []byte) bool {
	var buf [64]byte
	n := 0
	for _, c := range key {
		switch {
		case c == '_' || c == '-':
			continue
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		if n == len(buf) {
			return false // longer than any deny_fields name
		}
		buf[n] = c
		n++
	}
	return w.deny[string(buf[:n])]
}

// str parses the string at w.pos and returns its raw content (between the
// quotes) and whether it has escapes.
func (w *rewriter) str() (raw []byte, escaped bool, err error) {
	raw, escaped, next, serr := jsonlex.String(w.in, w.pos)
	if serr != nil {
		w.pos = serr.Pos
		return nil, false, w.fail("%s", serr.Msg)
	}
	w.pos = next
	return raw, escaped, nil
}

func (w *rewriter) number() error {
	i, _, serr := jsonlex.Number(w.in, w.pos)
	if serr != nil {
		w.pos = serr.Pos
		return w.fail("%s", serr.Msg)
	}
	w.pos = i
	return nil
}
