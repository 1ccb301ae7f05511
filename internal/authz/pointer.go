package authz

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/moat-gateway/moat/internal/config"
)

// pointer is a parsed property path: JSON pointer segments, unescaped. A
// segment "*" matches every array element and every object member.
type pointer []string

const wildcard = "*"

// parsePointer parses a property path (see config.CheckPropertyPointer).
func parsePointer(s string) (pointer, error) {
	if err := config.CheckPropertyPointer(s); err != nil {
		return nil, err
	}
	return splitPointer(s), nil
}

// splitPointer splits a syntactically valid pointer into unescaped
// segments. "" (the whole document) has no segments.
func splitPointer(s string) []string {
	if s == "" {
		return nil
	}
	segs := strings.Split(s[1:], "/")
	for i, seg := range segs {
		if strings.IndexByte(seg, '~') >= 0 {
			segs[i] = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
		}
	}
	return segs
}

// parseConcrete parses a pointer taken from a request (a JSON Patch path):
// RFC 6901 syntax, where "*" is a plain key.
func parseConcrete(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	if s[0] != '/' {
		return nil, fmt.Errorf("%q is not a JSON pointer", truncate(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '~' && (i+1 >= len(s) || (s[i+1] != '0' && s[i+1] != '1')) {
			return nil, fmt.Errorf("%q is not a JSON pointer", truncate(s))
		}
	}
	return splitPointer(s), nil
}

// String formats the pointer as written in configuration.
func (p pointer) String() string { return formatPath(p) }

// formatPath escapes and joins segments into a JSON pointer.
func formatPath(segs []string) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		if strings.ContainsAny(s, "~/") {
			s = strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
		}
		b.WriteString(s)
	}
	return b.String()
}

// segmentMatches reports whether a pattern segment matches a concrete one.
// Object member names match ASCII- and Unicode-case-insensitively, as
// encoding/json and many other decoders bind them, so that "Owner_ID"
// cannot slip past a rule on /owner_id.
func segmentMatches(pattern, seg string) bool {
	return pattern == wildcard || pattern == seg || strings.EqualFold(pattern, seg)
}

// walk calls fn for every value in doc at a path matching p, with the
// concrete path, until fn returns false. Object members are matched
// case-insensitively (segmentMatches); array elements by canonical decimal
// index or "*". It returns false when fn stopped it.
func (p pointer) walk(doc any, fn func(path []string, v any) bool) bool {
	var path []string
	var rec func(v any, i int) bool
	rec = func(v any, i int) bool {
		if i == len(p) {
			return fn(path, v)
		}
		seg := p[i]
		switch x := v.(type) {
		case map[string]any:
			if seg != wildcard {
				// Fast path for the exact key, then every other spelling.
				if e, ok := x[seg]; ok {
					path = append(path, seg)
					cont := rec(e, i+1)
					path = path[:len(path)-1]
					if !cont {
						return false
					}
				}
			}
			for k, e := range x {
				if k == seg || !segmentMatches(seg, k) {
					continue
				}
				path = append(path, k)
				cont := rec(e, i+1)
				path = path[:len(path)-1]
				if !cont {
					return false
				}
			}
		case []any:
			if seg == wildcard {
				for j, e := range x {
					path = append(path, strconv.Itoa(j))
					cont := rec(e, i+1)
					path = path[:len(path)-1]
					if !cont {
						return false
					}
				}
				return true
			}
			j, ok := arrayIndex(seg)
			if ok && j < len(x) {
				path = append(path, seg)
				cont := rec(x[j], i+1)
				path = path[:len(path)-1]
				return cont
			}
		}
		return true
	}
	return rec(doc, 0)
}

// arrayIndex parses a canonical RFC 6901 array index: 0, or digits without
// a leading zero.
func arrayIndex(s string) (int, bool) {
	if s == "" || len(s) > 9 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// prefixMatches reports whether the first n segments of concrete match
// those of pattern.
func prefixMatches(pattern, concrete []string, n int) bool {
	for i := 0; i < n; i++ {
		if !segmentMatches(pattern[i], concrete[i]) {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
