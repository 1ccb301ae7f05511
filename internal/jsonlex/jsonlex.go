// Package jsonlex holds the lexical pieces of RFC 8259 JSON that moat's
// single-pass JSON rewriters share (response masking, response filtering):
// whitespace, strings and numbers, scanned in place without allocating.
// The rewriters keep their own walk over objects and arrays, since each
// decides differently what to keep; what a JSON string or number is, is
// written once here.
package jsonlex

import "unicode/utf8"

// SyntaxError is a lexical error at byte offset Pos of the input.
type SyntaxError struct {
	Pos int
	Msg string
}

func (e *SyntaxError) Error() string { return e.Msg }

// SkipWS returns the offset of the first byte at or after pos that is not
// JSON whitespace (space, tab, LF, CR).
func SkipWS(in []byte, pos int) int {
	for pos < len(in) {
		switch in[pos] {
		case ' ', '\t', '\n', '\r':
			pos++
		default:
			return pos
		}
	}
	return pos
}

// String scans the JSON string whose opening quote is in[pos]. It returns
// the raw bytes between the quotes (escapes not decoded), whether it holds
// escapes, and the offset after the closing quote. Invalid escapes, control
// characters and a missing closing quote are errors.
func String(in []byte, pos int) (raw []byte, escaped bool, next int, err *SyntaxError) {
	start := pos + 1
	i := start
	for i < len(in) {
		c := in[i]
		if !strStop[c] {
			i++
			continue
		}
		switch {
		case c == '"':
			return in[start:i], escaped, i + 1, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(in) {
				return nil, false, i, &SyntaxError{i, "unterminated escape"}
			}
			switch in[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(in) || !IsHex4(in[i+2:i+6]) {
					return nil, false, i, &SyntaxError{i, "invalid \\u escape"}
				}
				i += 6
			default:
				return nil, false, i, &SyntaxError{i, "invalid escape"}
			}
		default: // c < 0x20
			return nil, false, i, &SyntaxError{i, "control character in a string"}
		}
	}
	return nil, false, i, &SyntaxError{i, "unterminated string"}
}

// strStop marks the bytes that end the plain run of a JSON string: '"',
// '\\' and control characters.
var strStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// Number scans the JSON number that starts at in[pos] and returns the offset
// after it, and whether it is an integer literal (no sign, fraction or
// exponent).
func Number(in []byte, pos int) (next int, integer bool, err *SyntaxError) {
	i := pos
	if in[i] == '-' {
		i++
	}
	switch {
	case i < len(in) && in[i] == '0':
		i++
	case i < len(in) && in[i] >= '1' && in[i] <= '9':
		for i < len(in) && IsDigit(in[i]) {
			i++
		}
	default:
		return i, false, &SyntaxError{i, "invalid number"}
	}
	integer = in[pos] != '-'
	if i < len(in) && in[i] == '.' {
		integer = false
		i++
		d := i
		for i < len(in) && IsDigit(in[i]) {
			i++
		}
		if i == d {
			return i, false, &SyntaxError{i, "invalid number"}
		}
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		integer = false
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		d := i
		for i < len(in) && IsDigit(in[i]) {
			i++
		}
		if i == d {
			return i, false, &SyntaxError{i, "invalid number"}
		}
	}
	return i, integer, nil
}

// IsDigit reports whether c is an ASCII digit.
func IsDigit(c byte) bool { return c >= '0' && c <= '9' }

// IsHex4 reports whether b holds only hexadecimal digits.
func IsHex4(b []byte) bool {
	for _, c := range b {
		if !(IsDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f')) {
			return false
		}
	}
	return true
}

// plain marks the ASCII bytes a JSON string holds as they are.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// AppendEscaped appends s escaped for the inside of a JSON string, as
// encoding/json and log/slog write it (without HTML escaping): \" and \\,
// \n, \r and \t, \u00XX for the other control characters, \ufffd for each
// byte of invalid UTF-8, and U+2028 and U+2029 escaped. The audit encoder
// and the access log share it, so both write the same bytes for a value.
func AppendEscaped(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plain[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}
