package openapi

import (
	"fmt"
	"strconv"
	"strings"
)

// maxDepth bounds every recursive walk over the document: nesting of
// schemas, of YAML nodes, and chains of $ref.
const maxDepth = 256

// escapeToken escapes one JSON pointer reference token (RFC 6901).
func escapeToken(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// unescapeToken reverses escapeToken.
func unescapeToken(s string) string {
	if !strings.Contains(s, "~") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
}

// child returns the pointer to member key (or index) of the value at ptr.
func child(ptr string, key any) string {
	switch k := key.(type) {
	case string:
		return ptr + "/" + escapeToken(k)
	case int:
		return ptr + "/" + strconv.Itoa(k)
	default:
		panic(fmt.Sprintf("openapi: pointer key of type %T", key))
	}
}

// lookup returns the value at the local JSON pointer ptr ("#/a/b") in
// root. The fragment is taken as written in a $ref: percent-decoding is
// applied first, as URI fragments require.
func lookup(root any, ptr string) (any, bool) {
	if !strings.HasPrefix(ptr, "#") {
		return nil, false
	}
	frag := ptr[1:]
	if strings.Contains(frag, "%") {
		if u, err := unescapePercent(frag); err == nil {
			frag = u
		}
	}
	if frag == "" {
		return root, true
	}
	if frag[0] != '/' {
		return nil, false // a plain-name fragment ($anchor): not a pointer
	}
	cur := root
	for _, tok := range strings.Split(frag[1:], "/") {
		tok = unescapeToken(tok)
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[tok]
			if !ok {
				return nil, false
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(v) {
				return nil, false
			}
			cur = v[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// unescapePercent decodes %XX escapes, as in a URI fragment.
func unescapePercent(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("bad escape")
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad escape")
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), nil
}

// deref follows $ref from the object v found at ptr until it reaches an
// object without one, and returns that object and its pointer. Only
// references within the document ("#/...") are followed; others are an
// error, as are cycles, chains longer than maxDepth and targets that are
// not objects.
func deref(root any, ptr string, v any) (map[string]any, string, error) {
	for i := 0; i < maxDepth; i++ {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, ptr, fmt.Errorf("expected an object")
		}
		ref, has := m["$ref"]
		if !has {
			return m, ptr, nil
		}
		s, ok := ref.(string)
		if !ok {
			return nil, ptr, fmt.Errorf("$ref must be a string")
		}
		if !strings.HasPrefix(s, "#/") {
			return nil, ptr, fmt.Errorf("$ref %q: only references within the document (#/...) are supported", s)
		}
		next, found := lookup(root, s)
		if !found {
			return nil, ptr, fmt.Errorf("$ref %q does not resolve", s)
		}
		v, ptr = next, normalizePointer(s)
	}
	return nil, ptr, fmt.Errorf("$ref chain longer than %d or circular", maxDepth)
}

// normalizePointer percent-decodes the fragment of a local reference, so
// that pointers from $ref and pointers built by child compare equal.
func normalizePointer(ref string) string {
	if !strings.Contains(ref, "%") {
		return ref
	}
	if u, err := unescapePercent(ref[1:]); err == nil {
		return "#" + u
	}
	return ref
}

// fragmentURL percent-encodes a local pointer ("#/a/b") for use as a URI
// fragment: every byte outside RFC 3986's fragment characters, "%"
// included, is escaped.
func fragmentURL(ptr string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.WriteByte('#')
	for i := 1; i < len(ptr); i++ {
		c := ptr[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			strings.IndexByte("-._~!$&'()*+,;=:@/?", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
