package jwt

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/moat-gateway/moat/internal/authn"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// Issuers of the table test.
const (
	issMain   = "https://issuer.example"   // every algorithm; PEM keys and a secret
	issRSOnly = "https://rs-only.example"  // RS256 only
	issMixed  = "https://mixed.example"    // RS256 and HS256: an RSA key and a secret
	issKids   = "https://kids.example"     // a JWK set file whose keys have kids
	issTyped  = "https://typed.example"    // type at+jwt
	issBound  = "https://bound.example"    // cert_bound
	issCustom = "https://custom.example"   // custom claim names and required claims
	issHS512  = "https://hs512.example"    // HS512 only
	issAny    = "https://unknown.example/" // not configured
)

// tableConfig is the configuration of the table test.
func tableConfig(t testing.TB, k *testKeys) *config.JWTAuth {
	dir := t.TempDir()
	rsaPEM := writePEM(t, dir, "rsa.pem", &k.rsa.PublicKey)
	all := []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
	return &config.JWTAuth{Issuers: []config.JWTIssuer{
		{
			Issuer: issMain, Audiences: []string{"api", "other"}, Algorithms: all, Secret: secret(t, k.secret),
			KeyFiles: []string{
				rsaPEM,
				writePEM(t, dir, "ec256.pem", &k.ec256.PublicKey),
				writePEM(t, dir, "ec384.pem", &k.ec384.PublicKey),
				writePEM(t, dir, "ec521.pem", &k.ec521.PublicKey),
				writePEM(t, dir, "ed.pem", k.ed.Public()),
			},
		},
		{Issuer: issRSOnly, Audiences: []string{"api"}, Algorithms: []string{"RS256"}, KeyFiles: []string{rsaPEM}},
		{Issuer: issMixed, Audiences: []string{"api"}, Algorithms: []string{"RS256", "HS256"}, KeyFiles: []string{rsaPEM}, Secret: secret(t, k.secret)},
		{
			Issuer: issKids, Audiences: []string{"api"}, Algorithms: []string{"RS256", "ES256"},
			KeyFiles: []string{writeFile(t, dir, "kids.json", jwkSet(t, map[string]any{"k1": &k.rsa.PublicKey, "e1": &k.ec256.PublicKey}))},
		},
		{Issuer: issTyped, Audiences: []string{"api"}, Algorithms: []string{"RS256"}, KeyFiles: []string{rsaPEM}, Type: "at+jwt"},
		{Issuer: issBound, Audiences: []string{"api"}, Algorithms: []string{"RS256"}, KeyFiles: []string{rsaPEM}, CertBound: true},
		{
			Issuer: issCustom, Audiences: []string{"api"}, Algorithms: []string{"RS256"}, KeyFiles: []string{rsaPEM},
			RequiredClaims: []string{"tenant", "org.id"}, SubjectClaim: "client_id", RolesClaim: "realm_access.roles", ScopesClaim: "permissions",
		},
		{Issuer: issHS512, Audiences: []string{"api"}, Algorithms: []string{"HS512"}, Secret: secret(t, k.secret)},
	}}
}

type authCase struct {
	desc  string
	tok   string
	auth  []string // Authorization values; default "Bearer " + tok
	cert  *x509.Certificate
	want  string // reason_id, "no_credentials", or "" for accepted
	check func(t *testing.T, p *gateway.Principal)
}

// replaceSegment returns tok with segment i (0 header, 1 payload, 2
// signature) replaced.
func replaceSegment(tok string, i int, seg string) string {
	parts := strings.Split(tok, ".")
	parts[i] = seg
	return strings.Join(parts, ".")
}

// flipChar changes character i of tok to another base64url character.
func flipChar(tok string, i int) string {
	b := []byte(tok)
	if b[i] == 'A' {
		b[i] = 'Q'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func authCases(t *testing.T, k *testKeys) []authCase {
	now := t0
	c := claimsAt(issMain, now)
	rs := mint(t, "RS256", k.rsa, nil, c)
	es := mint(t, "ES256", k.ec256, nil, c)
	hs := mint(t, "HS256", k.secret, nil, c)
	ed := mint(t, "EdDSA", k.ed, nil, c)

	der, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwkPub, _ := jwk.Import(&k.rsa.PublicKey)
	jwkJSON := mustJSON(t, jwkPub)
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	attackerJWK, _ := jwk.Import(&attacker.PublicKey)

	// ECDSA signatures with crafted r and s.
	n := elliptic.P256().Params().N
	esSig := func(r, s *big.Int) string {
		return replaceSegment(es, 2, b64url(ecdsaRaw(elliptic.P256(), r, s)))
	}
	esInput := []byte(es[:strings.LastIndexByte(es, '.')])
	digest := sha256.Sum256(esInput)
	r, s, _ := ecdsa.Sign(rand.Reader, k.ec256, digest[:])
	derSig, _ := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	ff := make([]byte, 64)
	for i := range ff {
		ff[i] = 0xff
	}

	rsSigStart := strings.LastIndexByte(rs, '.') + 1
	cert := selfSigned(t, "client")
	other := selfSigned(t, "other")
	thumb := certThumbprint(cert)
	big9k := mint(t, "HS256", k.secret, nil, with(c, "pad", strings.Repeat("x", 9000)))

	principal := func(sub string, roles, scopes []string, kid string) func(*testing.T, *gateway.Principal) {
		return func(t *testing.T, p *gateway.Principal) {
			t.Helper()
			if p.Subject != sub || p.Kind != "jwt" || p.Authenticator != "bearer" || p.KeyID != kid {
				t.Errorf("principal = %+v", p)
			}
			if !slices.Equal(p.Roles, roles) || !slices.Equal(p.Scopes, scopes) {
				t.Errorf("roles %q scopes %q, want %q %q", p.Roles, p.Scopes, roles, scopes)
			}
			if !p.ExpiresAt.Equal(now.Add(time.Hour)) {
				t.Errorf("ExpiresAt = %v", p.ExpiresAt)
			}
			if p.Claims["iss"] == nil {
				t.Errorf("claims = %v", p.Claims)
			}
		}
	}

	cases := []authCase{
		// Accepted, one per algorithm.
		{desc: "HS256", tok: hs},
		{desc: "HS384", tok: mint(t, "HS384", k.secret, nil, c)},
		{desc: "HS512", tok: mint(t, "HS512", k.secret, nil, c)},
		{desc: "RS256", tok: rs, check: principal("alice", nil, nil, "")},
		{desc: "RS384", tok: mint(t, "RS384", k.rsa, nil, c)},
		{desc: "RS512", tok: mint(t, "RS512", k.rsa, nil, c)},
		{desc: "PS256", tok: mint(t, "PS256", k.rsa, nil, c)},
		{desc: "PS384", tok: mint(t, "PS384", k.rsa, nil, c)},
		{desc: "PS512", tok: mint(t, "PS512", k.rsa, nil, c)},
		{desc: "ES256", tok: es},
		{desc: "ES384", tok: mint(t, "ES384", k.ec384, nil, c)},
		{desc: "ES512", tok: mint(t, "ES512", k.ec521, nil, c)},
		{desc: "EdDSA", tok: ed},
		{desc: "HS512-only issuer", tok: mint(t, "HS512", k.secret, nil, claimsAt(issHS512, now))},
		{desc: "lower-case scheme and extra spaces", tok: rs, auth: []string{"bearer   " + rs}},
		{desc: "principal: kid, roles list, scope string and scp list", want: "",
			tok:   mint(t, "RS256", k.rsa, map[string]any{"kid": "any"}, with(c, "roles", []string{"admin", "ops"}, "scope", "read write", "scp", []string{"write", "delete"})),
			check: principal("alice", []string{"admin", "ops"}, []string{"read", "write", "delete"}, "any")},
		{desc: "principal: roles as a space-separated string",
			tok:   mint(t, "RS256", k.rsa, nil, with(c, "roles", "admin ops")),
			check: principal("alice", []string{"admin", "ops"}, nil, "")},
		{desc: "custom claim names, nested roles, required claims present",
			tok: mint(t, "RS256", k.rsa, nil, with(claimsAt(issCustom, now), "sub", nil, "client_id", "svc-1", "tenant", "t1",
				"org", map[string]any{"id": "o1"}, "realm_access", map[string]any{"roles": []string{"reader"}}, "permissions", []string{"a:read"}, "scp", "b:write")),
			check: principal("svc-1", []string{"reader"}, []string{"a:read", "b:write"}, "")},

		// Not ours.
		{desc: "no Authorization header", auth: []string{}, want: "no_credentials"},
		{desc: "Basic scheme", auth: []string{"Basic YWxhZGRpbjpvcGVuc2VzYW1l"}, want: "no_credentials"},
		{desc: "JWT under another scheme", auth: []string{"Token " + rs}, want: "no_credentials"},
		{desc: "opaque bearer token", auth: []string{"Bearer 2YotnFZFEjr1zCsicMWpAA"}, want: "no_credentials"},
		{desc: "opaque bearer token with dots and padding", auth: []string{"Bearer ab.cd.ef=="}, want: "no_credentials"},
		{desc: "two segments", auth: []string{"Bearer " + rs[:rsSigStart-1]}, want: "no_credentials"},
		{desc: "five segments (JWE)", auth: []string{"Bearer " + rs + ".a.b"}, want: "no_credentials"},
		{desc: "empty header segment", auth: []string{"Bearer .a.b"}, want: "no_credentials"},
		{desc: "scheme alone", auth: []string{"Bearer"}, want: "no_credentials"},
		{desc: "scheme and spaces", auth: []string{"Bearer   "}, want: "no_credentials"},

		// Malformed.
		{desc: "two Authorization headers", tok: rs, auth: []string{"Bearer " + rs, "Basic YWxhZGRpbjpvcGVuc2VzYW1l"}, want: ReasonJWTMalformed},
		{desc: "header not base64url", auth: []string{"Bearer a.b.c"}, want: ReasonJWTMalformed},
		{desc: "header not JSON", tok: mintRaw(t, "RS256", k.rsa, []byte("nope"), mustJSON(t, c)), want: ReasonJWTMalformed},
		{desc: "header is an array", tok: mintRaw(t, "RS256", k.rsa, []byte(`["RS256"]`), mustJSON(t, c)), want: ReasonJWTMalformed},
		{desc: "header with a duplicate alg", tok: mintRaw(t, "RS256", k.rsa, []byte(`{"alg":"none","alg":"RS256"}`), mustJSON(t, c)), want: ReasonJWTMalformed},
		{desc: "header with trailing data", tok: mintRaw(t, "RS256", k.rsa, []byte(`{"alg":"RS256"}{}`), mustJSON(t, c)), want: ReasonJWTMalformed},
		{desc: "header alg not a string", tok: mintRaw(t, "RS256", k.rsa, []byte(`{"alg":256}`), mustJSON(t, c)), want: ReasonJWTMalformed},
		{desc: "header without alg", tok: mintRaw(t, "RS256", k.rsa, []byte(`{"typ":"JWT"}`), mustJSON(t, c)), want: ReasonJWTMalformed},
		{desc: "header ALG is not alg", tok: mintRaw(t, "RS256", k.rsa, []byte(`{"ALG":"RS256"}`), mustJSON(t, c)), want: ReasonJWTMalformed},
		{desc: "header kid not a string", tok: mint(t, "RS256", k.rsa, map[string]any{"kid": 7}, c), want: ReasonJWTMalformed},
		{desc: "too many header parameters", tok: mintRaw(t, "RS256", k.rsa, manyParams(40), mustJSON(t, c)), want: ReasonJWTMalformed},
		{desc: "claims are an array", tok: mintRaw(t, "RS256", k.rsa, []byte(`{"alg":"RS256"}`), []byte(`["x"]`)), want: ReasonJWTMalformed},
		{desc: "claims are null", tok: mintRaw(t, "RS256", k.rsa, []byte(`{"alg":"RS256"}`), []byte(`null`)), want: ReasonJWTMalformed},
		{desc: "payload last character changed", tok: flipChar(rs, rsSigStart-2), want: ReasonJWTMalformed},
		{desc: "exp is a string", tok: mint(t, "RS256", k.rsa, nil, with(c, "exp", "tomorrow")), want: ReasonJWTMalformed},
		{desc: "exp is huge", tok: mint(t, "RS256", k.rsa, nil, with(c, "exp", 1e300)), want: ReasonJWTMalformed},
		{desc: "roles is a number", tok: mint(t, "RS256", k.rsa, nil, with(c, "roles", 5)), want: ReasonJWTMalformed},
		{desc: "scope list holds a number", tok: mint(t, "RS256", k.rsa, nil, with(c, "scope", []any{"a", 1})), want: ReasonJWTMalformed},

		// Too large: checked before decoding.
		{desc: "token over 8KiB", tok: big9k, want: ReasonJWTTooLarge},
		{desc: "garbage over 8KiB", auth: []string{"Bearer " + strings.Repeat("a", 9000) + ".b.c"}, want: ReasonJWTTooLarge},

		// Header parameters that bring their own keys, or extensions.
		{desc: "jku header", tok: mint(t, "RS256", k.rsa, map[string]any{"jku": "https://evil.example/jwks"}, c), want: ReasonJWTHeader},
		{desc: "x5u header", tok: mint(t, "RS256", k.rsa, map[string]any{"x5u": "https://evil.example/cert"}, c), want: ReasonJWTHeader},
		{desc: "x5c header", tok: mint(t, "RS256", k.rsa, map[string]any{"x5c": []string{"MIIB"}}, c), want: ReasonJWTHeader},
		{desc: "embedded jwk signed with the attacker's key", tok: mint(t, "ES256", attacker, map[string]any{"jwk": attackerJWK}, c), want: ReasonJWTHeader},
		{desc: "crit naming an extension", tok: mint(t, "RS256", k.rsa, map[string]any{"crit": []string{"exp"}, "exp": 1}, c), want: ReasonJWTHeader},
		{desc: "empty crit", tok: mint(t, "RS256", k.rsa, map[string]any{"crit": []string{}}, c), want: ReasonJWTHeader},
		{desc: "b64 false", tok: mint(t, "RS256", k.rsa, map[string]any{"b64": false, "crit": []string{"b64"}}, c), want: ReasonJWTHeader},

		// Algorithms.
		{desc: "alg none", tok: mint(t, "none", nil, nil, c), want: ReasonJWTAlgorithm},
		{desc: "alg None", tok: mint(t, "none", nil, map[string]any{"alg": "None"}, c), want: ReasonJWTAlgorithm},
		{desc: "alg NONE", tok: mint(t, "none", nil, map[string]any{"alg": "NONE"}, c), want: ReasonJWTAlgorithm},
		{desc: "alg nOnE", tok: mint(t, "none", nil, map[string]any{"alg": "nOnE"}, c), want: ReasonJWTAlgorithm},
		{desc: "alg none with a signature", tok: mint(t, "HS256", k.secret, map[string]any{"alg": "none"}, c), want: ReasonJWTAlgorithm},
		{desc: "alg none to an HS-only issuer", tok: mint(t, "none", nil, nil, claimsAt(issHS512, now)), want: ReasonJWTAlgorithm},
		{desc: "unknown algorithm", tok: mint(t, "RS256", k.rsa, map[string]any{"alg": "RS1"}, c), want: ReasonJWTAlgorithm},
		{desc: "algorithm in lower case", tok: mint(t, "RS256", k.rsa, map[string]any{"alg": "rs256"}, c), want: ReasonJWTAlgorithm},
		{desc: "ES256 to an RS256-only issuer", tok: mint(t, "ES256", k.ec256, nil, claimsAt(issRSOnly, now)), want: ReasonJWTAlgorithm},
		{desc: "HS256 keyed with the RSA public key PEM, RS256-only issuer", tok: mint(t, "HS256", pemBytes, nil, claimsAt(issRSOnly, now)), want: ReasonJWTAlgorithm},
		{desc: "HS384 to an HS512-only issuer", tok: mint(t, "HS384", k.secret, nil, claimsAt(issHS512, now)), want: ReasonJWTAlgorithm},

		// Algorithm confusion where HS is allowed: only the secret verifies HS.
		{desc: "HS256 keyed with the RSA public key PEM", tok: mint(t, "HS256", pemBytes, nil, claimsAt(issMixed, now)), want: ReasonJWTSignature},
		{desc: "HS256 keyed with the RSA public key DER", tok: mint(t, "HS256", der, nil, claimsAt(issMixed, now)), want: ReasonJWTSignature},
		{desc: "HS256 keyed with the RSA public JWK", tok: mint(t, "HS256", jwkJSON, nil, claimsAt(issMixed, now)), want: ReasonJWTSignature},
		{desc: "RS256 to the mixed issuer", tok: mint(t, "RS256", k.rsa, nil, claimsAt(issMixed, now))},
		{desc: "HS256 to the mixed issuer", tok: mint(t, "HS256", k.secret, nil, claimsAt(issMixed, now))},

		// Tampering.
		{desc: "header changed", tok: replaceSegment(rs, 0, b64url([]byte(`{"alg":"RS256","typ":"JWT","kid":"x"}`))), want: ReasonJWTSignature},
		{desc: "alg changed to RS384", tok: replaceSegment(rs, 0, b64url([]byte(`{"alg":"RS384","typ":"JWT"}`))), want: ReasonJWTSignature},
		{desc: "alg changed to PS256", tok: replaceSegment(rs, 0, b64url([]byte(`{"alg":"PS256","typ":"JWT"}`))), want: ReasonJWTSignature},
		{desc: "payload changed", tok: replaceSegment(rs, 1, b64url(mustJSON(t, with(c, "sub", "mallory")))), want: ReasonJWTSignature},
		{desc: "payload of another token", tok: replaceSegment(rs, 1, strings.Split(mint(t, "RS256", k.rsa, nil, with(c, "sub", "mallory")), ".")[1]), want: ReasonJWTSignature},
		{desc: "signature byte changed", tok: flipChar(rs, rsSigStart+5), want: ReasonJWTSignature},
		{desc: "signature with non-canonical last character", tok: nonCanonical(rs), want: ReasonJWTSignature},
		{desc: "signature truncated", tok: rs[:len(rs)-4], want: ReasonJWTSignature},
		{desc: "signature removed", tok: rs[:rsSigStart], want: ReasonJWTSignature},
		{desc: "signed by another RSA key", tok: mint(t, "RS256", k.rsa2, nil, c), want: ReasonJWTSignature},
		{desc: "HS256 with another secret", tok: mint(t, "HS256", []byte(strings.Repeat("k", 64)), nil, c), want: ReasonJWTSignature},
		{desc: "EdDSA signature changed", tok: flipChar(ed, len(ed)-10), want: ReasonJWTSignature},
		{desc: "ES256 signed with the P-384 key", tok: mint(t, "ES256", k.ec384, nil, c), want: ReasonJWTSignature},

		// ECDSA signatures with r or s zero or out of range.
		{desc: "ES256 r=0 s=0 (psychic signature)", tok: esSig(big.NewInt(0), big.NewInt(0)), want: ReasonJWTSignature},
		{desc: "ES256 r=0", tok: esSig(big.NewInt(0), s), want: ReasonJWTSignature},
		{desc: "ES256 s=0", tok: esSig(r, big.NewInt(0)), want: ReasonJWTSignature},
		{desc: "ES256 r=n", tok: esSig(n, s), want: ReasonJWTSignature},
		{desc: "ES256 s=n", tok: esSig(r, n), want: ReasonJWTSignature},
		{desc: "ES256 r=n+r", tok: esSigRaw(es, new(big.Int).Add(n, r), s), want: ReasonJWTSignature},
		{desc: "ES256 all bits set", tok: replaceSegment(es, 2, b64url(ff)), want: ReasonJWTSignature},
		{desc: "ES256 valid signature in DER", tok: replaceSegment(es, 2, b64url(derSig)), want: ReasonJWTSignature},
		{desc: "ES256 signature one byte short", tok: replaceSegment(es, 2, b64url(ecdsaRaw(elliptic.P256(), r, s)[:63])), want: ReasonJWTSignature},
		{desc: "ES256 valid r and s", tok: esSig(r, s)},

		// kid is a lookup key, nothing more.
		{desc: "kid selects the key", tok: mint(t, "RS256", k.rsa, map[string]any{"kid": "k1"}, claimsAt(issKids, now))},
		{desc: "no kid: every key of the algorithm is tried", tok: mint(t, "ES256", k.ec256, nil, claimsAt(issKids, now))},
		{desc: "kid path traversal", tok: mint(t, "RS256", k.rsa, map[string]any{"kid": "../../../../etc/passwd"}, claimsAt(issKids, now)), want: ReasonJWTKeyUnknown},
		{desc: "kid SQL injection", tok: mint(t, "RS256", k.rsa, map[string]any{"kid": "k1' OR '1'='1"}, claimsAt(issKids, now)), want: ReasonJWTKeyUnknown},
		{desc: "kid URL", tok: mint(t, "RS256", k.rsa, map[string]any{"kid": "https://evil.example/k1"}, claimsAt(issKids, now)), want: ReasonJWTKeyUnknown},
		{desc: "kid with NUL", tok: mint(t, "RS256", k.rsa, map[string]any{"kid": "k1\x00"}, claimsAt(issKids, now)), want: ReasonJWTKeyUnknown},
		{desc: "kid in another case", tok: mint(t, "RS256", k.rsa, map[string]any{"kid": "K1"}, claimsAt(issKids, now)), want: ReasonJWTKeyUnknown},
		{desc: "kid of an EC key on an RS256 token", tok: mint(t, "RS256", k.rsa, map[string]any{"kid": "e1"}, claimsAt(issKids, now)), want: ReasonJWTKeyUnknown},
		{desc: "long kid", tok: mint(t, "RS256", k.rsa, map[string]any{"kid": strings.Repeat("k", 2000)}, claimsAt(issKids, now)), want: ReasonJWTKeyUnknown},
		{desc: "kid with a kid-less key set", tok: mint(t, "RS256", k.rsa, map[string]any{"kid": "../../etc/passwd"}, c)},

		// Issuer.
		{desc: "unknown issuer", tok: mint(t, "RS256", k.rsa, nil, with(c, "iss", issAny)), want: ReasonJWTIssuer},
		{desc: "issuer with a trailing slash", tok: mint(t, "RS256", k.rsa, nil, with(c, "iss", issMain+"/")), want: ReasonJWTIssuer},
		{desc: "issuer in another case", tok: mint(t, "RS256", k.rsa, nil, with(c, "iss", strings.ToUpper(issMain))), want: ReasonJWTIssuer},
		{desc: "no issuer", tok: mint(t, "RS256", k.rsa, nil, with(c, "iss", nil)), want: ReasonJWTIssuer},
		{desc: "issuer not a string", tok: mint(t, "RS256", k.rsa, nil, with(c, "iss", []string{issMain})), want: ReasonJWTIssuer},

		// typ.
		{desc: "typ at+jwt", tok: mint(t, "RS256", k.rsa, map[string]any{"typ": "at+jwt"}, claimsAt(issTyped, now))},
		{desc: "typ AT+JWT", tok: mint(t, "RS256", k.rsa, map[string]any{"typ": "AT+JWT"}, claimsAt(issTyped, now))},
		{desc: "typ application/at+jwt", tok: mint(t, "RS256", k.rsa, map[string]any{"typ": "application/at+jwt"}, claimsAt(issTyped, now))},
		{desc: "typ Application/AT+JWT", tok: mint(t, "RS256", k.rsa, map[string]any{"typ": "Application/AT+JWT"}, claimsAt(issTyped, now))},
		{desc: "typ JWT where at+jwt is required", tok: mint(t, "RS256", k.rsa, nil, claimsAt(issTyped, now)), want: ReasonJWTType},
		{desc: "no typ where at+jwt is required", tok: mint(t, "RS256", k.rsa, map[string]any{"typ": nil}, claimsAt(issTyped, now)), want: ReasonJWTType},
		{desc: "typ at+jwt with a suffix", tok: mint(t, "RS256", k.rsa, map[string]any{"typ": "at+jwt2"}, claimsAt(issTyped, now)), want: ReasonJWTType},

		// Time, with the default 30s leeway.
		{desc: "expired beyond the leeway", tok: mint(t, "RS256", k.rsa, nil, with(c, "exp", now.Add(-30*time.Second).Unix())), want: ReasonJWTExpired},
		{desc: "expired within the leeway", tok: mint(t, "RS256", k.rsa, nil, with(c, "exp", now.Add(-29*time.Second).Unix()))},
		{desc: "expired long ago", tok: mint(t, "RS256", k.rsa, nil, with(c, "exp", 1)), want: ReasonJWTExpired},
		{desc: "fractional exp", tok: mint(t, "RS256", k.rsa, nil, with(c, "exp", float64(now.Unix())-29.5))},
		{desc: "no exp", tok: mint(t, "RS256", k.rsa, nil, with(c, "exp", nil)), want: ReasonJWTClaims},
		{desc: "nbf beyond the leeway", tok: mint(t, "RS256", k.rsa, nil, with(c, "nbf", now.Add(31*time.Second).Unix())), want: ReasonJWTNotYetValid},
		{desc: "nbf within the leeway", tok: mint(t, "RS256", k.rsa, nil, with(c, "nbf", now.Add(30*time.Second).Unix()))},
		{desc: "iat in the future", tok: mint(t, "RS256", k.rsa, nil, with(c, "iat", now.Add(31*time.Second).Unix())), want: ReasonJWTNotYetValid},
		{desc: "no nbf and no iat", tok: mint(t, "RS256", k.rsa, nil, with(c, "nbf", nil, "iat", nil))},
		{desc: "nbf a string", tok: mint(t, "RS256", k.rsa, nil, with(c, "nbf", "now")), want: ReasonJWTMalformed},

		// Audience.
		{desc: "aud of another service", tok: mint(t, "RS256", k.rsa, nil, with(c, "aud", "billing")), want: ReasonJWTAudience},
		{desc: "aud list with one of ours", tok: mint(t, "RS256", k.rsa, nil, with(c, "aud", []string{"billing", "other"}))},
		{desc: "aud list without ours", tok: mint(t, "RS256", k.rsa, nil, with(c, "aud", []string{"billing"})), want: ReasonJWTAudience},
		{desc: "no aud", tok: mint(t, "RS256", k.rsa, nil, with(c, "aud", nil)), want: ReasonJWTAudience},
		{desc: "aud a number", tok: mint(t, "RS256", k.rsa, nil, with(c, "aud", 1)), want: ReasonJWTAudience},

		// Subject and required claims.
		{desc: "no sub", tok: mint(t, "RS256", k.rsa, nil, with(c, "sub", nil)), want: ReasonJWTClaims},
		{desc: "empty sub", tok: mint(t, "RS256", k.rsa, nil, with(c, "sub", "")), want: ReasonJWTClaims},
		{desc: "sub a number", tok: mint(t, "RS256", k.rsa, nil, with(c, "sub", 42)), want: ReasonJWTClaims},
		{desc: "required claim missing", tok: mint(t, "RS256", k.rsa, nil, with(claimsAt(issCustom, now), "client_id", "svc", "org", map[string]any{"id": "o1"})), want: ReasonJWTClaims},
		{desc: "required nested claim missing", tok: mint(t, "RS256", k.rsa, nil, with(claimsAt(issCustom, now), "client_id", "svc", "tenant", "t1", "org", map[string]any{})), want: ReasonJWTClaims},
		{desc: "required claim null", tok: mint(t, "RS256", k.rsa, nil, with(claimsAt(issCustom, now), "client_id", "svc", "tenant", nil, "org", map[string]any{"id": "o1"})), want: ReasonJWTClaims},
		{desc: "custom subject claim missing", tok: mint(t, "RS256", k.rsa, nil, with(claimsAt(issCustom, now), "tenant", "t1", "org", map[string]any{"id": "o1"})), want: ReasonJWTClaims},

		// RFC 8705 certificate binding.
		{desc: "bound token, its certificate", cert: cert, tok: mint(t, "RS256", k.rsa, nil, with(claimsAt(issBound, now), "cnf", map[string]any{"x5t#S256": thumb}))},
		{desc: "bound token, another certificate", cert: other, tok: mint(t, "RS256", k.rsa, nil, with(claimsAt(issBound, now), "cnf", map[string]any{"x5t#S256": thumb})), want: ReasonJWTCertBinding},
		{desc: "bound token, no certificate", tok: mint(t, "RS256", k.rsa, nil, with(claimsAt(issBound, now), "cnf", map[string]any{"x5t#S256": thumb})), want: ReasonJWTCertBinding},
		{desc: "cert_bound issuer, unbound token", cert: cert, tok: mint(t, "RS256", k.rsa, nil, claimsAt(issBound, now)), want: ReasonJWTCertBinding},
		{desc: "cert_bound issuer, cnf not an object", cert: cert, tok: mint(t, "RS256", k.rsa, nil, with(claimsAt(issBound, now), "cnf", thumb)), want: ReasonJWTCertBinding},
		{desc: "cert_bound issuer, cnf without x5t#S256", cert: cert, tok: mint(t, "RS256", k.rsa, nil, with(claimsAt(issBound, now), "cnf", map[string]any{"jkt": "x"})), want: ReasonJWTCertBinding},
		{desc: "bound token to an issuer that does not require it, no certificate", tok: mint(t, "RS256", k.rsa, nil, with(c, "cnf", map[string]any{"x5t#S256": thumb})), want: ReasonJWTCertBinding},
		{desc: "bound token to an issuer that does not require it, its certificate", cert: cert, tok: mint(t, "RS256", k.rsa, nil, with(c, "cnf", map[string]any{"x5t#S256": thumb}))},
	}
	return cases
}

// esSigRaw puts r and s into es's signature without reducing them: r may
// be wider than the curve, and the signature is then too long.
func esSigRaw(es string, r, s *big.Int) string {
	rb, sb := r.Bytes(), make([]byte, 32)
	s.FillBytes(sb)
	return replaceSegment(es, 2, b64url(append(rb, sb...)))
}

// nonCanonical changes the unused low bits of the last character of tok's
// signature: a lenient decoder yields the same bytes, a strict one fails.
func nonCanonical(tok string) string {
	b := []byte(tok)
	last := b[len(b)-1]
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, last)
	b[len(b)-1] = alphabet[i|1]
	if b[len(b)-1] == last {
		b[len(b)-1] = alphabet[i|2]
	}
	return string(b)
}

// manyParams returns a header with n parameters besides alg.
func manyParams(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"alg":"RS256"`)
	for i := range n {
		b.WriteString(`,"p`)
		b.WriteString(strings.Repeat("x", i))
		b.WriteString(`":1`)
	}
	b.WriteString("}")
	return []byte(b.String())
}

func TestAuthenticate(t *testing.T) {
	k := getKeys(t)
	cases := authCases(t, k)
	for _, cacheSize := range []int{-1, 0} {
		name := map[int]string{-1: "uncached", 0: "cached"}[cacheSize]
		t.Run(name, func(t *testing.T) {
			cfg := tableConfig(t, k)
			cfg.CacheSize = cacheSize
			clk := newClock()
			j, err := New("bearer", cfg, WithClock(clk.Now), WithLogger(quietLogger()))
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			for _, tc := range cases {
				t.Run(tc.desc, func(t *testing.T) {
					auth := tc.auth
					if auth == nil {
						auth = []string{"Bearer " + tc.tok}
					}
					// Twice: the second answer may come from the cache and must agree.
					for round := range 2 {
						ex := exchange(auth...)
						ex.ClientCert = tc.cert
						p, err := j.Authenticate(context.Background(), ex)
						if got := reasonOf(err); got != tc.want {
							t.Fatalf("round %d: reason %q, want %q (err %v)", round, got, tc.want, err)
						}
						if err != nil {
							if p != nil {
								t.Fatalf("principal %+v with error %v", p, err)
							}
							checkDetail(t, err, tc.tok)
							continue
						}
						if p == nil {
							t.Fatal("no principal and no error")
						}
						if tc.check != nil {
							tc.check(t, p)
						}
					}
				})
			}
		})
	}
}

// checkDetail fails when err's text contains the token or a long part of it.
func checkDetail(t *testing.T, err error, tok string) {
	t.Helper()
	msg := err.Error()
	if tok != "" && strings.Contains(msg, tok) {
		t.Fatalf("error contains the token: %v", err)
	}
	for _, seg := range strings.Split(tok, ".") {
		if len(seg) >= 16 && strings.Contains(msg, seg) {
			t.Fatalf("error contains a token segment: %v", err)
		}
	}
}

func TestChallenge(t *testing.T) {
	j := newMain(t, newClock(), 0)
	if got := j.Challenge(); got != `Bearer realm="moat"` {
		t.Errorf("Challenge() = %q", got)
	}
	if strings.Contains(j.Challenge(), "error") {
		t.Error("the challenge for missing credentials carries an error code")
	}
}

// newMain returns an authenticator of issMain with PEM keys and a secret.
func newMain(t testing.TB, clk *clock, cacheSize int, opts ...Option) *JWT {
	t.Helper()
	k := getKeys(t)
	dir := t.TempDir()
	cfg := &config.JWTAuth{CacheSize: cacheSize, Issuers: []config.JWTIssuer{{
		Issuer: issMain, Audiences: []string{"api"}, Algorithms: []string{"HS256", "RS256", "ES256"},
		Secret:   secret(t, k.secret),
		KeyFiles: []string{writePEM(t, dir, "rsa.pem", &k.rsa.PublicKey), writePEM(t, dir, "ec.pem", &k.ec256.PublicKey)},
	}}}
	j, err := New("bearer", cfg, append([]Option{WithClock(clk.Now), WithLogger(quietLogger())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func TestMaxTokenSize(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	cfg := &config.JWTAuth{MaxTokenSize: 1024, Issuers: []config.JWTIssuer{{
		Issuer: issMain, Audiences: []string{"api"}, Algorithms: []string{"HS256"}, Secret: secret(t, k.secret),
	}}}
	j, err := New("bearer", cfg, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	// Grow a padding claim until the token is exactly 1024 bytes long.
	var exact string
	for pad := 0; pad < 1024; pad++ {
		tok := mint(t, "HS256", k.secret, nil, with(claimsAt(issMain, t0), "pad", strings.Repeat("x", pad)))
		if len(tok) == 1024 {
			exact = tok
			break
		}
	}
	if exact == "" {
		t.Fatal("no padding gives a 1024-byte token")
	}
	if _, err := j.Authenticate(context.Background(), exchange("Bearer "+exact)); err != nil {
		t.Errorf("token of exactly max_token_size: %v", err)
	}
	over := mint(t, "HS256", k.secret, nil, with(claimsAt(issMain, t0), "pad", strings.Repeat("x", 800)))
	if _, err := j.Authenticate(context.Background(), exchange("Bearer "+over)); reasonOf(err) != ReasonJWTTooLarge {
		t.Errorf("token of %d bytes: %v", len(over), err)
	}
}

func TestLeeway(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	cfg := &config.JWTAuth{Leeway: config.Duration(2 * time.Minute), CacheSize: -1, Issuers: []config.JWTIssuer{{
		Issuer: issMain, Audiences: []string{"api"}, Algorithms: []string{"HS256"}, Secret: secret(t, k.secret),
	}}}
	j, err := New("bearer", cfg, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	tok := mint(t, "HS256", k.secret, nil, with(claimsAt(issMain, t0), "exp", t0.Unix()))
	for _, tc := range []struct {
		desc  string
		after time.Duration
		want  string
	}{
		{"at exp", 0, ""},
		{"a second before exp plus leeway", 2*time.Minute - time.Second, ""},
		{"at exp plus leeway", time.Second, ReasonJWTExpired},
	} {
		clk.Add(tc.after)
		_, err := j.Authenticate(context.Background(), exchange("Bearer "+tok))
		if got := reasonOf(err); got != tc.want {
			t.Errorf("%s: reason %q, want %q", tc.desc, got, tc.want)
		}
	}
}

func TestNew(t *testing.T) {
	k := getKeys(t)
	dir := t.TempDir()
	rsaPEM := writePEM(t, dir, "rsa.pem", &k.rsa.PublicKey)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallPEM := writePEM(t, dir, "small.pem", &small.PublicKey)
	privDER, _ := x509.MarshalPKCS8PrivateKey(k.ec256)
	privPEM := writeFile(t, dir, "priv.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	octJWK := writeFile(t, dir, "oct.json", []byte(`{"kty":"oct","k":"`+b64url(k.secret)+`"}`))
	privJWK, _ := jwk.Import(k.ec256)
	privJWKFile := writeFile(t, dir, "privjwk.json", mustJSON(t, privJWK))
	ecPEM := writePEM(t, dir, "ec.pem", &k.ec256.PublicKey)
	garbage := writeFile(t, dir, "garbage.txt", []byte("hello"))

	valid := func() config.JWTIssuer {
		return config.JWTIssuer{Issuer: issMain, Audiences: []string{"api"}, Algorithms: []string{"RS256"}, KeyFiles: []string{rsaPEM}}
	}
	mod := func(f func(*config.JWTIssuer)) *config.JWTAuth {
		is := valid()
		f(&is)
		return &config.JWTAuth{Issuers: []config.JWTIssuer{is}}
	}
	for _, tc := range []struct {
		desc string
		cfg  *config.JWTAuth
		want []string // substrings of the error; none for success
	}{
		{"valid", mod(func(*config.JWTIssuer) {}), nil},
		{"valid HS512 with a 64-byte secret", mod(func(i *config.JWTIssuer) {
			i.Algorithms, i.KeyFiles, i.Secret = []string{"HS512"}, nil, secret(t, k.secret)
		}), nil},
		{"valid jwks_url on loopback http", mod(func(i *config.JWTIssuer) { i.KeyFiles, i.JWKSURL = nil, "http://127.0.0.1:1/jwks" }), nil},
		{"valid discovery", mod(func(i *config.JWTIssuer) { i.KeyFiles, i.Discovery = nil, true }), nil},
		{"valid JWK set file and PEM", mod(func(i *config.JWTIssuer) {
			i.Algorithms = []string{"RS256", "ES256"}
			i.KeyFiles = []string{rsaPEM, writeFile(t, dir, "set.json", jwkSet(t, map[string]any{"e": &k.ec256.PublicKey}))}
		}), nil},
		{"as the config defaults leave it", &config.JWTAuth{
			Leeway: config.Duration(30 * time.Second), MaxTokenSize: 8 << 10, CacheSize: 10000,
			Issuers: []config.JWTIssuer{func() config.JWTIssuer {
				i := valid()
				i.SubjectClaim, i.RolesClaim, i.ScopesClaim, i.RefreshInterval = "sub", "roles", "scope", config.Duration(15*time.Minute)
				return i
			}()},
		}, nil},
		{"nil config", nil, []string{"no configuration"}},
		{"no issuers", &config.JWTAuth{}, []string{"issuers: at least one"}},
		{"empty issuer", mod(func(i *config.JWTIssuer) { i.Issuer = "" }), []string{"issuers[0].issuer: required"}},
		{"duplicate issuer", &config.JWTAuth{Issuers: []config.JWTIssuer{valid(), valid()}}, []string{"issuers[1].issuer", "twice"}},
		{"no audiences", mod(func(i *config.JWTIssuer) { i.Audiences = nil }), []string{"issuers[0].audiences"}},
		{"empty audience", mod(func(i *config.JWTIssuer) { i.Audiences = []string{""} }), []string{"issuers[0].audiences[0]"}},
		{"no algorithms", mod(func(i *config.JWTIssuer) { i.Algorithms = nil }), []string{"issuers[0].algorithms: at least one"}},
		{"alg none", mod(func(i *config.JWTIssuer) { i.Algorithms = []string{"RS256", "none"} }), []string{"algorithms[1]", "never accepted"}},
		{"alg NONE", mod(func(i *config.JWTIssuer) { i.Algorithms = []string{"NONE"} }), []string{"algorithms[0]", "never accepted"}},
		{"unknown algorithm", mod(func(i *config.JWTIssuer) { i.Algorithms = []string{"RS256", "rs256"} }), []string{"algorithms[1]: unknown algorithm"}},
		{"HS without a secret", mod(func(i *config.JWTIssuer) { i.Algorithms = []string{"HS256"}; i.KeyFiles = nil }), []string{"secret: required"}},
		{"HS256 with a 31-byte secret", mod(func(i *config.JWTIssuer) {
			i.Algorithms, i.KeyFiles, i.Secret = []string{"HS256"}, nil, secret(t, k.secret[:31])
		}), []string{"secret: 31 bytes is too short for HS256"}},
		{"HS512 with a 32-byte secret", mod(func(i *config.JWTIssuer) {
			i.Algorithms, i.KeyFiles, i.Secret = []string{"HS256", "HS512"}, nil, secret(t, k.secret[:32])
		}), []string{"too short for HS512"}},
		{"secret without HS", mod(func(i *config.JWTIssuer) { i.Secret = secret(t, k.secret) }), []string{"secret: set, but no HS"}},
		{"public-key algorithm without keys", mod(func(i *config.JWTIssuer) { i.KeyFiles = nil }), []string{"need jwks_url, discovery or key_files"}},
		{"keys without a public-key algorithm", mod(func(i *config.JWTIssuer) {
			i.Algorithms, i.Secret = []string{"HS256"}, secret(t, k.secret)
		}), []string{"no public-key algorithm"}},
		{"jwks_url and discovery", mod(func(i *config.JWTIssuer) { i.JWKSURL, i.Discovery = "https://idp.example/jwks", true }), []string{"choose one"}},
		{"jwks_url over http", mod(func(i *config.JWTIssuer) { i.JWKSURL = "http://idp.example/jwks" }), []string{"jwks_url", "https"}},
		{"jwks_url relative", mod(func(i *config.JWTIssuer) { i.JWKSURL = "/jwks" }), []string{"jwks_url", "absolute"}},
		{"jwks_url with credentials", mod(func(i *config.JWTIssuer) { i.JWKSURL = "https://u:p@idp.example/jwks" }), []string{"jwks_url", "user information"}},
		{"discovery over http", mod(func(i *config.JWTIssuer) { i.Issuer, i.Discovery = "http://idp.example", true }), []string{"discovery needs an https issuer"}},
		{"discovery of a non-URL issuer", mod(func(i *config.JWTIssuer) { i.Issuer, i.Discovery = "my-issuer", true }), []string{"discovery needs an https issuer"}},
		{"missing key file", mod(func(i *config.JWTIssuer) { i.KeyFiles = []string{dir + "/nope.pem"} }), []string{"key_files[0]"}},
		{"RSA key of 1024 bits", mod(func(i *config.JWTIssuer) { i.KeyFiles = []string{smallPEM} }), []string{"key_files[0]", "1024 bits"}},
		{"private key PEM", mod(func(i *config.JWTIssuer) { i.KeyFiles = []string{privPEM} }), []string{"key_files[0]", "private key"}},
		{"private JWK", mod(func(i *config.JWTIssuer) { i.KeyFiles = []string{privJWKFile} }), []string{"key_files[0]", "private key"}},
		{"symmetric JWK", mod(func(i *config.JWTIssuer) { i.KeyFiles = []string{octJWK} }), []string{"key_files[0]", "symmetric"}},
		{"not a key file", mod(func(i *config.JWTIssuer) { i.KeyFiles = []string{garbage} }), []string{"key_files[0]", "neither PEM nor"}},
		{"EC key with RS256 only", mod(func(i *config.JWTIssuer) { i.KeyFiles = []string{ecPEM} }), []string{"fits none of the allowed algorithms"}},
		{"P-256 key with ES384 only", mod(func(i *config.JWTIssuer) { i.Algorithms, i.KeyFiles = []string{"ES384"}, []string{ecPEM} }), []string{"fits none"}},
		{"empty required claim", mod(func(i *config.JWTIssuer) { i.RequiredClaims = []string{"a", ""} }), []string{"required_claims[1]"}},
		{"negative refresh interval", mod(func(i *config.JWTIssuer) {
			i.KeyFiles, i.JWKSURL, i.RefreshInterval = nil, "https://idp.example/jwks", config.Duration(-time.Second)
		}), []string{"refresh_interval: must not be negative"}},
		{"refresh interval with key files only (config defaults set it everywhere)", mod(func(i *config.JWTIssuer) { i.RefreshInterval = config.Duration(15 * time.Minute) }), nil},
		{"negative leeway", &config.JWTAuth{Leeway: config.Duration(-time.Second), Issuers: []config.JWTIssuer{valid()}}, []string{"leeway: must not be negative"}},
		{"leeway over 5m", &config.JWTAuth{Leeway: config.Duration(time.Hour), Issuers: []config.JWTIssuer{valid()}}, []string{"leeway: 1h0m0s"}},
		{"negative max_token_size", &config.JWTAuth{MaxTokenSize: -1, Issuers: []config.JWTIssuer{valid()}}, []string{"max_token_size"}},
		{"cache_size -2", &config.JWTAuth{CacheSize: -2, Issuers: []config.JWTIssuer{valid()}}, []string{"cache_size"}},
		{"every problem at once", &config.JWTAuth{CacheSize: -2, Issuers: []config.JWTIssuer{
			{Issuer: "a", Algorithms: []string{"none"}},
			{Issuer: "b", Audiences: []string{"x"}, Algorithms: []string{"HS256"}, Secret: secret(t, []byte("short"))},
		}}, []string{"cache_size", "issuers[0].audiences", "issuers[0].algorithms[0]", "issuers[1].secret: 5 bytes"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			j, err := New("bearer", tc.cfg)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				j.Close()
				return
			}
			if err == nil {
				j.Close()
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), string(k.secret[:31])) {
				t.Error("the error reveals the secret")
			}
		})
	}
}

func TestNoCredentialsIsNotAFailure(t *testing.T) {
	j := newMain(t, newClock(), 0)
	_, err := j.Authenticate(context.Background(), &gateway.Exchange{})
	if !errors.Is(err, authn.ErrNoCredentials) {
		t.Errorf("exchange without a request: %v", err)
	}
	var f *authn.Failure
	if errors.As(err, &f) {
		t.Error("ErrNoCredentials is a Failure")
	}
}
