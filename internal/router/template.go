package router

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// segKind is the kind of one template segment. The order of the constants is
// the matching precedence: a lower kind is more specific.
type segKind uint8

const (
	segStatic   segKind = iota // literal text, compared case-sensitively
	segParam                   // {name}: exactly one non-empty segment
	segCatchAll                // {name...}: the rest of the path, possibly empty
)

// segment is one parsed template segment: the static text, or the parameter
// name without braces and dots.
type segment struct {
	kind segKind
	text string
}

// ValidateTemplate reports whether template is a valid path template, so that
// configuration validation can point at a bad route before anything is built.
// It returns nil for a template that Builder.Add accepts, and otherwise an
// error wrapping ErrInvalidTemplate that names the offending segment.
//
// The grammar: the template starts with "/"; the text after it is split on "/"
// into segments. A segment is static text (no "{" or "}"), "{name}" or, as
// the last segment only, the catch-all "{name...}". A name matches
// [A-Za-z_][A-Za-z0-9_]* and is unique within the template. Only the last
// segment may be empty, which is how "/" and a trailing slash ("/books/")
// are written. Static segments "." and ".." are refused because the gateway
// rejects such paths before routing, and so is text that is not UTF-8 or
// holds control characters.
//
// When matching, static text is compared literally and case-sensitively, and
// a trailing slash is significant: "/books" and "/books/" are different
// templates. "{name}" matches one non-empty segment. "{name...}" matches the
// rest of the path from its position, without the leading slash, including
// an empty rest: "/files/{p...}" matches "/files/" (p is "") and
// "/files/a/b" (p is "a/b"), but not "/files".
func ValidateTemplate(template string) error {
	_, err := parseTemplate(template)
	return err
}

// parseTemplate splits a template into segments, enforcing the grammar
// described on ValidateTemplate.
func parseTemplate(tpl string) ([]segment, error) {
	if tpl == "" || tpl[0] != '/' {
		return nil, fmt.Errorf("%w %q: must start with \"/\"", ErrInvalidTemplate, tpl)
	}
	if !utf8.ValidString(tpl) {
		return nil, fmt.Errorf("%w %q: not valid UTF-8", ErrInvalidTemplate, tpl)
	}
	segErr := func(i int, s, format string, args ...any) error {
		return fmt.Errorf("%w %q: segment %d %q: %s", ErrInvalidTemplate, tpl, i, s, fmt.Sprintf(format, args...))
	}
	var segs []segment
	for start := 1; ; {
		end := len(tpl)
		if k := strings.IndexByte(tpl[start:], '/'); k >= 0 {
			end = start + k
		}
		s := tpl[start:end]
		last := end == len(tpl)
		i := len(segs) + 1
		switch {
		case s == "":
			if !last {
				return nil, segErr(i, s, "empty segment (\"//\") is allowed only as a trailing slash")
			}
			segs = append(segs, segment{kind: segStatic})
		case strings.ContainsAny(s, "{}"):
			if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
				return nil, segErr(i, s, "a parameter must be the whole segment, as in {id}")
			}
			name, kind := s[1:len(s)-1], segParam
			if n, ok := strings.CutSuffix(name, "..."); ok {
				name, kind = n, segCatchAll
				if !last {
					return nil, segErr(i, s, "a catch-all parameter must be the last segment")
				}
			}
			if !validName(name) {
				return nil, segErr(i, s, "parameter name must match [A-Za-z_][A-Za-z0-9_]*")
			}
			for _, prev := range segs {
				if prev.kind != segStatic && prev.text == name {
					return nil, segErr(i, s, "parameter name %q is used twice", name)
				}
			}
			segs = append(segs, segment{kind: kind, text: name})
		case s == "." || s == "..":
			return nil, segErr(i, s, "dot segments never match: the gateway rejects such paths")
		default:
			for _, r := range s {
				if r < 0x20 || r == 0x7f {
					return nil, segErr(i, s, "control character %U", r)
				}
			}
			segs = append(segs, segment{kind: segStatic, text: s})
		}
		if last {
			return segs, nil
		}
		start = end + 1
	}
}

// validName reports whether s matches [A-Za-z_][A-Za-z0-9_]*.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
