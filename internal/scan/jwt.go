package scan

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strings"
	"time"
)

// weakSecrets are HMAC secrets seen in tutorials, defaults and leaks.
var weakSecrets = []string{
	"secret", "password", "changeme", "change_me", "changeit", "jwt_secret", "jwt-secret", "jwtsecret",
	"123456", "12345678", "1234567890", "your-256-bit-secret", "your-384-bit-secret", "your-512-bit-secret",
	"secretkey", "secret_key", "secret-key", "mysecret", "my_secret", "mysecretkey", "supersecret",
	"super-secret", "topsecret", "default", "key", "admin", "test", "qwerty", "letmein", "token",
	"auth", "jwt", "shhhhh", "s3cr3t", "hmac-secret", "gottacatchemall", "keyboard cat", "your_jwt_secret",
	"ThisIsASecret", "SECRET_KEY", "pass", "abc123", "development", "dev", "example",
}

// jwtToken is a parsed compact JWS.
type jwtToken struct {
	header    map[string]any
	claims    map[string]any
	rawHeader string
	rawClaims string
	sig       []byte
	prefix    string // text before the token in the header value ("Bearer ")
}

// parseJWT parses a compact JWS in a header value (optionally after a
// scheme such as Bearer). It does not verify anything.
func parseJWT(value string) (*jwtToken, error) {
	prefix := ""
	tok := strings.TrimSpace(value)
	if i := strings.LastIndexByte(tok, ' '); i >= 0 {
		prefix, tok = tok[:i+1], tok[i+1:]
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	t := &jwtToken{rawHeader: parts[0], rawClaims: parts[1], prefix: prefix}
	for i, dst := range []*map[string]any{&t.header, &t.claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil, fmt.Errorf("decoding jwt part %d: %w", i, err)
		}
		d := json.NewDecoder(strings.NewReader(string(b)))
		d.UseNumber()
		if err := d.Decode(dst); err != nil || *dst == nil {
			return nil, fmt.Errorf("jwt part %d is not a JSON object", i)
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("decoding jwt signature: %w", err)
	}
	t.sig = sig
	if _, ok := t.header["alg"].(string); !ok {
		return nil, errors.New("jwt header has no alg")
	}
	return t, nil
}

func (t *jwtToken) alg() string { s, _ := t.header["alg"].(string); return s }

func hmacHash(alg string) func() hash.Hash {
	switch alg {
	case "HS256":
		return sha256.New
	case "HS384":
		return sha512.New384
	case "HS512":
		return sha512.New
	}
	return nil
}

// crack tries the weak-secret list against an HMAC-signed token offline.
func (t *jwtToken) crack() (string, bool) {
	h := hmacHash(t.alg())
	if h == nil {
		return "", false
	}
	input := []byte(t.rawHeader + "." + t.rawClaims)
	for _, s := range weakSecrets {
		m := hmac.New(h, []byte(s))
		m.Write(input)
		if hmac.Equal(m.Sum(nil), t.sig) {
			return s, true
		}
	}
	return "", false
}

func encodeSegment(v map[string]any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// forge returns a token with the header and claims, signed with secret
// under the token's HMAC alg; with secret "" the original signature is
// kept.
func (t *jwtToken) forge(header, claims map[string]any, secret string, keepSig bool) string {
	in := encodeSegment(header) + "." + encodeSegment(claims)
	switch {
	case keepSig:
		return t.prefix + in + "." + base64.RawURLEncoding.EncodeToString(t.sig)
	case secret != "":
		m := hmac.New(hmacHash(t.alg()), []byte(secret))
		m.Write([]byte(in))
		return t.prefix + in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	default:
		return t.prefix + in + "."
	}
}

func cloneMap(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func maskSecret(s string) string {
	return s[:1] + strings.Repeat("*", len(s)-1)
}

// probeJWT tests each identity whose credential is a JWT: offline against
// the weak-secret list, then with alg none, a changed token with the
// original signature, and (when the secret was found) an expired token, on
// an operation the identity reads and an anonymous caller cannot.
func (sc *scanner) probeJWT(ctx context.Context) error {
	for _, id := range sc.identities() {
		t, err := parseJWT(id.Value)
		if err != nil {
			continue
		}
		secret, cracked := t.crack()
		if cracked {
			sc.add(Finding{Rule: RuleJWTWeakSecret, Severity: SeverityCritical, Identity: id.Name,
				Title:    "JWT signed with a weak " + t.alg() + " secret",
				Message:  fmt.Sprintf("The token of %s is signed with a secret from the built-in list of well-known secrets (%s): anyone can forge tokens for any subject.", id.Name, maskSecret(secret)),
				Evidence: "secret " + maskSecret(secret)})
		}
		if sc.o.DryRun {
			for _, what := range []string{"alg none", "changed exp, original signature", "expired (when cracked)"} {
				sc.s.plan = append(sc.s.plan, PlanEntry{Probe: "jwt", Method: "GET", Path: "(an operation " + id.Name + " reads) " + what, Identity: id.Name})
			}
			continue
		}
		op := sc.jwtTarget(id)
		if op == nil {
			sc.notes.add("jwt: no operation both accepts " + id.Name + "'s token and refuses anonymous requests; online JWT tests skipped")
			continue
		}
		path := buildPath(op, func(p Param) string { return sc.ownID(id.Name, p) }, "", "", "")
		try := func(tok string) (*response, error) {
			return sc.send(ctx, &request{probe: "jwt", op: op, identity: id, method: op.Method, path: path, replaceAuth: tok})
		}
		// alg none, in the spellings libraries have accepted.
		for _, alg := range []string{"none", "None", "NONE"} {
			h := cloneMap(t.header)
			h["alg"] = alg
			res, err := try(t.forge(h, t.claims, "", false))
			if err != nil {
				return err
			}
			if res != nil && res.ok() {
				sc.add(finding(RuleJWTNone, SeverityCritical, "JWT with alg "+alg+" accepted",
					fmt.Sprintf("%s answered %d to %s's token re-encoded with alg %q and no signature: anyone can forge tokens.", op, res.status, id.Name, alg), res))
				break
			}
		}
		past := sc.o.Now().Add(-time.Hour).Unix()
		expired := cloneMap(t.claims)
		expired["exp"] = past
		if _, ok := expired["iat"]; ok {
			expired["iat"] = past - 60
		}
		res, err := try(t.forge(t.header, expired, "", true))
		if err != nil {
			return err
		}
		if res != nil && res.ok() {
			sc.add(finding(RuleJWTSignatureIgnored, SeverityCritical, "JWT signature not verified",
				fmt.Sprintf("%s answered %d to %s's token with exp changed and the original signature kept: signatures are not checked.", op, res.status, id.Name), res))
		} else if cracked {
			res, err := try(t.forge(t.header, expired, secret, false))
			if err != nil {
				return err
			}
			if res != nil && res.ok() {
				sc.add(finding(RuleJWTExpired, SeverityHigh, "expired JWT accepted",
					fmt.Sprintf("%s answered %d to a validly signed token of %s whose exp is an hour in the past.", op, res.status, id.Name), res))
			}
		} else {
			sc.notes.add("jwt: expiry of " + id.Name + "'s token not tested: the signing secret is not in the weak list")
		}
	}
	return nil
}

// jwtTarget returns a safe operation the identity got 2xx from and an
// anonymous request did not.
func (sc *scanner) jwtTarget(id *Identity) *Operation {
	for _, op := range sc.spec.Operations {
		if op.Method != "GET" {
			continue
		}
		m := sc.status[op.String()]
		if r := m[id.Name]; r == nil || !r.ok() {
			continue
		}
		if r := m[""]; r != nil && !r.ok() {
			return op
		}
	}
	return nil
}
