package mask

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/jsonlex"
)

// actionSkip is the field action that turns the detectors off in a value.
const actionSkip = config.MaskingActionSkip

// redactedField replaces the value of a member whose field rule is mask.
const redactedField = `"[REDACTED]"`

// MaskJSON masks a JSON document. It parses body in one pass (RFC 8259,
// strict: one value, no trailing data, nesting at most MaxDepth) and
// rewrites only what it must: a string with a match is re-encoded with the
// match masked; a member with a field rule is masked or removed; an integer
// of 13-19 digits that is a card number becomes a masked string. Everything
// else (key order, number text, whitespace, escapes in unchanged strings) is
// copied byte for byte, and out is body itself when nothing changes.
//
// Field rules apply first, by member name, at any depth; detectors then
// run on member names and string values (and integers, for cards) outside
// skipped, masked and removed values. Findings carry RFC 6901 pointers.
//
// out is nil when Blocked(findings) (scanning stops at the first block
// finding). A body larger than MaxBody is returned unscanned with
// OversizeFinding (out nil when that blocks). A body that is not valid JSON
// returns an error wrapping ErrInvalidJSON and no output; the caller decides
// (MaskText over it is the safe fallback).
func (m *Masker) MaskJSON(body []byte) (out []byte, findings []Finding, err error) {
	if int64(len(body)) > m.maxBody {
		f := m.OversizeFinding()
		if f.Action == ActionBlock {
			return nil, []Finding{f}, nil
		}
		return body, []Finding{f}, nil
	}
	w := walker{m: m, in: body}
	w.path = w.pathBuf[:0]
	w.skipWS()
	if err := w.value(0); err != nil {
		return nil, nil, err
	}
	if !w.fs.blocked {
		w.skipWS()
		if w.pos != len(body) {
			return nil, nil, w.fail("data after the top-level value")
		}
	}
	if w.fs.blocked {
		return nil, w.fs.list, nil
	}
	if w.out == nil {
		return body, w.fs.list, nil
	}
	return append(w.out, body[w.copied:]...), w.fs.list, nil
}

// seg is one step of the path to the current value: an object member name
// or an array index.
type seg struct {
	key   []byte // decoded name; nil for an array element
	index int
}

// walker is the state of one MaskJSON call.
type walker struct {
	m        *Masker
	in       []byte
	pos      int
	out      []byte // nil until the first edit
	copied   int    // in[:copied] has been dealt with (copied to out or replaced)
	fs       findingList
	path     []seg
	pathBuf  [16]seg
	quiet    int    // > 0: inside a value that is masked, removed or skipped: no detectors
	noRules  int    // > 0: inside a masked or removed value: no field rules, no edits
	scratch  []byte // an escaped string, decoded
	masked   []byte // a string with its matches masked
	quoted   []byte // masked, quoted: the replacement, copied out by edit
	matches  []match
	dropNext bool // the next comma of the current object goes with a removed first member
}

func (w *walker) fail(format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", ErrInvalidJSON, w.pos, fmt.Sprintf(format, args...))
}

// edit replaces in[start:end] with repl in the output. Edits come in
// increasing, non-overlapping order.
func (w *walker) edit(start, end int, repl []byte) {
	if w.out == nil {
		w.out = make([]byte, 0, len(w.in)+64)
	}
	w.out = append(w.out, w.in[w.copied:start]...)
	w.out = append(w.out, repl...)
	w.copied = end
}

func (w *walker) skipWS() { w.pos = jsonlex.SkipWS(w.in, w.pos) }

// pointer renders the current path as an RFC 6901 JSON pointer.
func (w *walker) pointer() string {
	var buf [256]byte // most pointers fit: the string is the one allocation
	b := buf[:0]
	for _, s := range w.path {
		b = append(b, '/')
		if s.key == nil {
			b = strconv.AppendInt(b, int64(s.index), 10)
			continue
		}
		for _, c := range s.key {
			switch c {
			case '~':
				b = append(b, "~0"...)
			case '/':
				b = append(b, "~1"...)
			default:
				b = append(b, c)
			}
		}
	}
	return string(b)
}

func (w *walker) find(detector, action string) {
	if !w.fs.keeps(action) {
		w.fs.add(Finding{Detector: detector, Action: action}) // not listed: only counts for blocking
		return
	}
	w.fs.add(Finding{Detector: detector, Path: w.pointer(), Action: action})
}

func (w *walker) value(depth int) error {
	if w.pos >= len(w.in) {
		return w.fail("unexpected end of input")
	}
	switch c := w.in[w.pos]; {
	case c == '{':
		return w.object(depth + 1)
	case c == '[':
		return w.array(depth + 1)
	case c == '"':
		start := w.pos
		raw, escaped, err := w.str()
		if err != nil {
			return err
		}
		if w.quiet == 0 {
			w.detectString(start, raw, escaped)
		}
		return nil
	case c == '-' || isDigit(c):
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

func (w *walker) literal(lit string) error {
	if !hasPrefix(w.in, w.pos, lit) {
		return w.fail("invalid literal")
	}
	w.pos += len(lit)
	return nil
}

func (w *walker) object(depth int) error {
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
		keyEnd := w.pos
		key := raw
		if escaped {
			key = unescape(nil, raw)
		}
		w.skipWS()
		if w.pos >= len(w.in) || w.in[w.pos] != ':' {
			return w.fail("expected ':'")
		}
		w.pos++
		w.skipWS()
		valStart := w.pos

		w.path = append(w.path, seg{key: key})
		rule := ""
		if w.m.fields != nil && w.noRules == 0 {
			rule = w.fieldRule(key)
		}
		switch rule {
		case ActionRemove, ActionMask:
			w.find(DetectorField, rule)
			w.quiet++
			w.noRules++
			err = w.value(depth)
			w.quiet--
			w.noRules--
			if err != nil {
				return err
			}
			switch {
			case rule == ActionMask:
				if !hasPrefix(w.in, valStart, "null") {
					w.edit(valStart, w.pos, []byte(redactedField))
				}
				kept = true
			case kept:
				w.edit(comma, w.pos, nil)
			default:
				w.edit(keyStart, w.pos, nil)
				w.dropNext = true
			}
		case ActionBlock:
			w.find(DetectorField, ActionBlock)
			return nil
		default:
			if rule == ActionLog {
				w.find(DetectorField, ActionLog)
			}
			if w.quiet == 0 {
				w.detectKey(keyStart, keyEnd, raw, escaped)
				if w.fs.blocked {
					return nil
				}
			}
			if rule == actionSkip {
				w.quiet++
			}
			err = w.value(depth)
			if rule == actionSkip {
				w.quiet--
			}
			if err != nil {
				return err
			}
			kept = true
		}
		w.path = w.path[:len(w.path)-1]
		if w.fs.blocked {
			return nil
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
				w.edit(comma, w.pos, nil)
				w.dropNext = false
			}
		default:
			return w.fail("expected ',' or '}'")
		}
	}
}

// fieldRule returns the action of the field rule for a member name, or "".
func (w *walker) fieldRule(key []byte) string {
	if len(key) == 0 || !w.m.fieldFirst[key[0]] {
		return ""
	}
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
			return ""
		}
		buf[n] = c
		n++
	}
	return w.m.fields[string(buf[:n])]
}

func (w *walker) array(depth int) error {
	if depth > MaxDepth {
		return w.fail("nesting deeper than %d", MaxDepth)
	}
	w.pos++ // '['
	w.skipWS()
	if w.pos < len(w.in) && w.in[w.pos] == ']' {
		w.pos++
		return nil
	}
	w.path = append(w.path, seg{})
	for i := 0; ; i++ {
		w.path[len(w.path)-1].index = i
		if err := w.value(depth); err != nil {
			return err
		}
		if w.fs.blocked {
			return nil
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

// str parses the string at w.pos and returns its raw content (between the
// quotes) and whether it has escapes.
func (w *walker) str() (raw []byte, escaped bool, err error) {
	raw, escaped, next, serr := jsonlex.String(w.in, w.pos)
	if serr != nil {
		w.pos = serr.Pos
		return nil, false, w.fail("%s", serr.Msg)
	}
	w.pos = next
	return raw, escaped, nil
}

func (w *walker) number() error {
	start := w.pos
	i, integer, serr := jsonlex.Number(w.in, w.pos)
	if serr != nil {
		w.pos = serr.Pos
		return w.fail("%s", serr.Msg)
	}
	w.pos = i
	if integer && w.quiet == 0 && w.m.enabled[detCard] && i-start >= 13 && i-start <= 19 {
		if matchCard(w.in[start:i], 0) == i-start {
			w.found(detCard)
			if w.m.action[detCard] == ActionMask {
				repl := append([]byte{'"'}, w.m.replacement(nil, detCard, w.in[start:i])...)
				w.edit(start, i, append(repl, '"'))
			}
		}
	}
	return nil
}

// found records a detector finding at the current path.
func (w *walker) found(d detID) {
	w.find(detectors[d].name, w.m.action[d])
}

// detectString runs the detectors over a string value spanning
// in[start:w.pos] with raw content raw.
func (w *walker) detectString(start int, raw []byte, escaped bool) {
	if s := w.detect(raw, escaped); s != nil {
		w.edit(start, w.pos, s)
	}
}

// detectKey runs the detectors over a member name; a masked name is
// rewritten in place.
func (w *walker) detectKey(start, end int, raw []byte, escaped bool) {
	if s := w.detect(raw, escaped); s != nil {
		w.edit(start, end, s)
	}
}

// detect scans one string's content and returns its re-encoded, quoted
// replacement when a match is masked, or nil. The replacement is valid
// until the next call: the caller copies it out (edit).
func (w *walker) detect(raw []byte, escaped bool) []byte {
	text := raw
	if escaped {
		w.scratch = unescape(w.scratch[:0], raw)
		text = w.scratch
	}
	w.matches = w.m.scan(text, w.matches[:0])
	if len(w.matches) == 0 {
		return nil
	}
	masked := false
	for _, mt := range w.matches {
		w.found(mt.det)
		masked = masked || w.m.action[mt.det] == ActionMask
	}
	if !masked || w.fs.blocked {
		return nil
	}
	w.masked = w.m.apply(w.masked[:0], text, w.matches)
	w.quoted = quote(w.quoted[:0], w.masked)
	return w.quoted
}

// unescape appends the decoded content of a valid JSON string (raw, without
// quotes) to dst. Unpaired surrogates become U+FFFD, as in encoding/json.
func unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := rune(hex4(raw[i+2 : i+6]))
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if d := utf16.DecodeRune(r, rune(hex4(raw[i+2:i+6]))); d != utf8.RuneError {
						i += 6
						dst = utf8.AppendRune(dst, d)
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // " \ /
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst
}

func hex4(b []byte) int {
	v := 0
	for _, c := range b {
		switch {
		case isDigit(c):
			v = v*16 + int(c-'0')
		default:
			v = v*16 + int(c|0x20-'a') + 10
		}
	}
	return v
}

// quote appends s as a JSON string: '"' and '\' and control characters are
// escaped, everything else is copied.
func quote(dst, s []byte) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
