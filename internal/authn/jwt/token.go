package jwt

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// This file reads the untrusted parts of a compact JWS: its shape, its
// protected header and its claims. Nothing here decides whether a token is
// accepted; jwt.go does, in a fixed order.

// compactParts splits tok into the three segments of a compact JWS. It
// reports false unless tok is exactly three dot-separated segments of
// base64url characters (no padding) with a non-empty header and payload;
// the signature may be empty, so that an unsigned ("alg": "none") token is
// recognised as a JWT and refused rather than passed on as "not mine".
// Five segments (a JWE) are not ours either. compactParts does not allocate.
func compactParts(tok string) (header, payload, sig string, ok bool) {
	first, second := -1, -1
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.':
			switch {
			case first < 0:
				first = i
			case second < 0:
				second = i
			default:
				return "", "", "", false
			}
		default:
			return "", "", "", false
		}
	}
	if second < 0 || first == 0 || second == first+1 {
		return "", "", "", false
	}
	return tok[:first], tok[first+1 : second], tok[second+1:], true
}

// b64 decodes base64url without padding, strictly: the unused bits of the
// last character must be zero, so every segment has exactly one encoding and
// a changed character always changes the decoded bytes.
var b64 = base64.RawURLEncoding.Strict()

// forbiddenHeaders are protected header parameters that make a verifier
// fetch or trust key material chosen by the sender (jku, x5u, jwk, x5c),
// demand extensions moat does not implement (crit), or change the signing
// input (b64, RFC 7797). A token carrying any of them is refused outright:
// keys come only from the issuer's configuration.
var forbiddenHeaders = [...]string{"jku", "x5u", "jwk", "x5c", "crit", "b64"}

// joseHeader is what moat reads from a protected header.
type joseHeader struct {
	alg       string
	kid       string
	typ       string
	hasTyp    bool
	forbidden string // the first forbidden parameter present, or ""
}

// maxHeaderParams bounds the members of a protected header; real headers
// have three to five.
const maxHeaderParams = 32

// parseHeader decodes a protected header. Member names are matched exactly
// (encoding/json's struct decoding would fold case, so "ALG" would count as
// "alg"); a name given twice, more than maxHeaderParams names, a non-object,
// trailing data, or an alg, kid or typ that is not a string are errors.
func parseHeader(b []byte) (joseHeader, error) {
	var h joseHeader
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return h, errors.New("header is not a JSON object")
	}
	var seen [8]string // a few names without allocating; headers are small
	names := seen[:0]
	hasAlg := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return h, fmt.Errorf("reading header: %w", err)
		}
		name, _ := t.(string)
		if len(names) == maxHeaderParams {
			return h, fmt.Errorf("header has more than %d parameters", maxHeaderParams)
		}
		for _, n := range names {
			if n == name {
				return h, fmt.Errorf("header parameter %q appears twice", name)
			}
		}
		names = append(names, name)
		switch name {
		case "alg":
			err, hasAlg = dec.Decode(&h.alg), true
		case "kid":
			err = dec.Decode(&h.kid)
		case "typ":
			err, h.hasTyp = dec.Decode(&h.typ), true
		default:
			for _, f := range forbiddenHeaders {
				if name == f && h.forbidden == "" {
					h.forbidden = name
				}
			}
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return h, fmt.Errorf("header parameter %q: %w", name, err)
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return h, errors.New("header is not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return h, errors.New("data after the header object")
	}
	if !hasAlg {
		return h, errors.New(`header has no "alg"`)
	}
	return h, nil
}

// parseClaims decodes a JWT claims set, which must be a JSON object. A
// claim named twice keeps its last value, as RFC 7519 section 4 permits.
// Numbers are float64, as everywhere else claims are handled.
func parseClaims(b []byte) (map[string]any, error) {
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		return nil, errors.New("claims are not a JSON object")
	}
	if claims == nil {
		return nil, errors.New("claims are null")
	}
	return claims, nil
}

// maxNumericDate bounds NumericDate values (about the year 33658): larger
// ones are malformed rather than silently overflowing time arithmetic.
const maxNumericDate = 1e12

// numericDate returns the NumericDate claim name. present is false when the
// claim is absent; a claim that is not a finite number within
// ±maxNumericDate seconds is an error.
func numericDate(claims map[string]any, name string) (t time.Time, present bool, err error) {
	v, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	f, ok := v.(float64)
	if !ok || math.IsNaN(f) || math.Abs(f) > maxNumericDate {
		return time.Time{}, true, fmt.Errorf("%s is not a NumericDate", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// claimValue returns the claim name: the top-level member of that exact
// name if there is one, else, for a dotted name such as
// realm_access.roles, the member found by walking nested objects.
func claimValue(claims map[string]any, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, true
	}
	if !strings.Contains(name, ".") {
		return nil, false
	}
	var cur any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// stringList reads a claim that is either a space-separated string or a
// list of strings (roles, scope, scp). A null claim is an empty list; any
// other type is an error.
func stringList(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return strings.Fields(v), nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, errors.New("list holds a non-string")
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, errors.New("neither a string nor a list of strings")
}

// audienceMatches reports whether the aud claim, a string or a list of
// strings, contains one of want.
func audienceMatches(aud any, want []string) bool {
	switch aud := aud.(type) {
	case string:
		for _, w := range want {
			if aud == w {
				return true
			}
		}
	case []any:
		for _, a := range aud {
			s, _ := a.(string)
			for _, w := range want {
				if s == w {
					return true
				}
			}
		}
	}
	return false
}

// normalizeType lowercases a typ value and removes an "application/"
// prefix, as RFC 7515 section 4.1.9 allows senders to omit it: "at+jwt",
// "AT+JWT" and "application/at+jwt" all normalise to "at+jwt".
func normalizeType(t string) string {
	t = strings.ToLower(strings.TrimSpace(t))
	return strings.TrimPrefix(t, "application/")
}

// certThumbprint returns the RFC 8705 x5t#S256 value of cert: the
// base64url SHA-256 of its DER encoding.
func certThumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// confirmationThumbprint returns the cnf.x5t#S256 member of claims. ok is
// false when the token has none; a cnf that is present but malformed is an
// error.
func confirmationThumbprint(claims map[string]any) (thumb string, ok bool, err error) {
	cnf, present := claims["cnf"]
	if !present {
		return "", false, nil
	}
	m, isObj := cnf.(map[string]any)
	if !isObj {
		return "", false, errors.New("cnf is not an object")
	}
	v, present := m["x5t#S256"]
	if !present {
		return "", false, nil
	}
	s, isStr := v.(string)
	if !isStr || s == "" {
		return "", false, errors.New("cnf.x5t#S256 is not a string")
	}
	return s, true, nil
}

// quote formats an untrusted value for a Failure's Detail: quoted, with
// control characters escaped, and cut to a length that keeps logs readable.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
