package payload

import "unicode/utf8"

// jsonLimits are the bounds scanJSON enforces. Every field must be at least 1.
type jsonLimits struct {
	maxDepth  int // nesting of objects and arrays
	maxKeys   int // members of one object
	maxArray  int // elements of one array
	maxString int // bytes between the quotes of one string, as sent
	maxNumber int // characters of one number literal
}

// finding is the outcome of a check: the zero value means the input passed.
// It is returned by value so that the passing path allocates nothing.
type finding struct {
	reason string // a Reason constant, "" when the input passed
	at     int64  // byte offset where the violation was found
	got    int64  // the measured value, when the reason is a limit
	limit  int64  // the limit crossed, when the reason is a limit
	part   int    // 1-based multipart part the violation is in; 0 for the body itself
}

func (f finding) ok() bool { return f.reason == "" }

// jsonFrame is one open container: an object or an array, and how many
// members or elements it has had so far.
type jsonFrame struct {
	n   int
	obj bool
}

// Scanner states: what the next significant byte must start.
const (
	jsValue = iota // a value
	jsAfter        // ',' or the closing bracket of the container, or the end of input at depth 0
	jsKey          // an object member's key (after '{' has been followed by something other than '}', or after ',')
)

// jsonClass classifies bytes for the scanner's inner loops.
var (
	jsonSpace [256]bool // JSON whitespace: space, tab, LF, CR
	jsonPlain [256]bool // string bytes that need no attention: ASCII, not a control, not '"' or '\\'
)

func init() {
	for _, c := range []byte{' ', '\t', '\n', '\r'} {
		jsonSpace[c] = true
	}
	for c := 0x20; c < 0x80; c++ {
		jsonPlain[c] = c != '"' && c != '\\'
	}
}

// scanJSON checks in one pass, without building anything, that b is exactly
// one JSON document (RFC 8259: whitespace around a single value of any
// kind) and that it stays within l. It accepts a subset of what
// encoding/json.Valid accepts: the same grammar, plus the requirement that
// strings be valid UTF-8 (encoding/json replaces invalid bytes with U+FFFD;
// passing them on would let the gateway and the upstream read different
// strings). Escaped lone surrogates (\ud800) are accepted, as encoding/json
// does.
//
// It returns the first violation in document order: invalid_json for
// syntax, or the limit reason. Its memory use is one frame per open
// container (at most l.maxDepth), on the stack for documents up to 64 deep.
func scanJSON(b []byte, l *jsonLimits) finding {
	var buf [64]jsonFrame
	stack := buf[:0]
	n := len(b)
	i := 0
	state := jsValue
	for {
		for i < n && jsonSpace[b[i]] {
			i++
		}
		switch state {
		case jsValue:
			if i >= n {
				return invalidJSON(i)
			}
			switch c := b[i]; c {
			case '{', '[':
				if len(stack) >= l.maxDepth {
					return finding{reason: ReasonJSONTooDeep, at: int64(i), got: int64(len(stack) + 1), limit: int64(l.maxDepth)}
				}
				i++
				for i < n && jsonSpace[b[i]] {
					i++
				}
				if c == '{' {
					if i < n && b[i] == '}' {
						i++
						state = jsAfter
						continue
					}
					stack = append(stack, jsonFrame{obj: true})
					state = jsKey
					continue
				}
				if i < n && b[i] == ']' {
					i++
					state = jsAfter
					continue
				}
				stack = append(stack, jsonFrame{n: 1}) // the first element follows; maxArray >= 1
				continue                               // state stays jsValue
			case '"':
				end, ok := scanString(b, i)
				if !ok {
					return invalidJSON(end)
				}
				if size := end - i - 2; size > l.maxString {
					return finding{reason: ReasonJSONStringTooLong, at: int64(i), got: int64(size), limit: int64(l.maxString)}
				}
				i = end
			case 't':
				if n-i < 4 || string(b[i:i+4]) != "true" {
					return invalidJSON(i)
				}
				i += 4
			case 'f':
				if n-i < 5 || string(b[i:i+5]) != "false" {
					return invalidJSON(i)
				}
				i += 5
			case 'n':
				if n-i < 4 || string(b[i:i+4]) != "null" {
					return invalidJSON(i)
				}
				i += 4
			default:
				end, ok := scanNumber(b, i)
				if !ok {
					return invalidJSON(end)
				}
				if size := end - i; size > l.maxNumber {
					return finding{reason: ReasonJSONNumberTooLong, at: int64(i), got: int64(size), limit: int64(l.maxNumber)}
				}
				i = end
			}
			state = jsAfter

		case jsAfter:
			if len(stack) == 0 {
				if i != n {
					return invalidJSON(i) // data after the document
				}
				return finding{}
			}
			if i >= n {
				return invalidJSON(i)
			}
			top := &stack[len(stack)-1]
			switch c := b[i]; {
			case c == ',':
				i++
				if top.obj {
					state = jsKey
					continue
				}
				top.n++
				if top.n > l.maxArray {
					return finding{reason: ReasonJSONArrayTooLong, at: int64(i), got: int64(top.n), limit: int64(l.maxArray)}
				}
				state = jsValue
			case c == '}' && top.obj, c == ']' && !top.obj:
				i++
				stack = stack[:len(stack)-1]
			default:
				return invalidJSON(i)
			}

		case jsKey:
			if i >= n || b[i] != '"' {
				return invalidJSON(i)
			}
			end, ok := scanString(b, i)
			if !ok {
				return invalidJSON(end)
			}
			if size := end - i - 2; size > l.maxString {
				return finding{reason: ReasonJSONStringTooLong, at: int64(i), got: int64(size), limit: int64(l.maxString)}
			}
			top := &stack[len(stack)-1]
			top.n++
			if top.n > l.maxKeys {
				return finding{reason: ReasonJSONTooManyKeys, at: int64(i), got: int64(top.n), limit: int64(l.maxKeys)}
			}
			i = end
			for i < n && jsonSpace[b[i]] {
				i++
			}
			if i >= n || b[i] != ':' {
				return invalidJSON(i)
			}
			i++
			state = jsValue
		}
	}
}

func invalidJSON(at int) finding {
	return finding{reason: reasonInvalidJSON, at: int64(at)}
}

// scanString scans the string whose opening quote is b[i]. It returns the
// index just past the closing quote and true, or the index of the offending
// byte and false: a control character, a bad escape, invalid UTF-8, or the
// end of input.
func scanString(b []byte, i int) (int, bool) {
	n := len(b)
	i++
	for {
		for i < n && jsonPlain[b[i]] {
			i++
		}
		if i >= n {
			return i, false
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\':
			if i+1 >= n {
				return i, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if n-i < 6 || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return i, false
				}
				i += 6
			default:
				return i, false
			}
		case c < 0x20:
			return i, false
		default: // c >= 0x80: a multi-byte UTF-8 sequence
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return i, false
			}
			i += size
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// scanNumber scans the number starting at b[i] (RFC 8259 section 6:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?). It returns the index just
// past it and true, or the index of the offending byte and false. What
// follows the number is the caller's concern.
func scanNumber(b []byte, i int) (int, bool) {
	n := len(b)
	if i < n && b[i] == '-' {
		i++
	}
	switch {
	case i >= n:
		return i, false
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i++
		for i < n && isDigit(b[i]) {
			i++
		}
	default:
		return i, false
	}
	if i < n && b[i] == '.' {
		i++
		if i >= n || !isDigit(b[i]) {
			return i, false
		}
		for i < n && isDigit(b[i]) {
			i++
		}
	}
	if i < n && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < n && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= n || !isDigit(b[i]) {
			return i, false
		}
		for i < n && isDigit(b[i]) {
			i++
		}
	}
	return i, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
