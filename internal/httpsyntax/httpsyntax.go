// Package httpsyntax holds the few pieces of HTTP grammar (RFC 9110) that
// configuration validation and several stages check, written once.
// golang.org/x/net/http/httpguts has the same checks but brings x/net/idna
// and x/text along; these are a few lines.
package httpsyntax

// IsTchar reports whether c may appear in a token (RFC 9110 section 5.6.2):
// method names, header field names, parameter names.
func IsTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// IsToken reports whether s is a non-empty token.
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !IsTchar(s[i]) {
			return false
		}
	}
	return true
}

// LowerASCII lowercases ASCII letters only and returns s itself when it has
// none. Unicode case folding is wrong for protocol elements: it would let the
// Kelvin sign stand for "k" in a header name or host.
func LowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
