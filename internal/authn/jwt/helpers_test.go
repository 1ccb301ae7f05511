package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/moat-gateway/moat/internal/authn"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// t0 is the time of every test that does not say otherwise.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// clock is an injected clock that only moves when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testKeys are the signing keys of the tests, generated once per run.
type testKeys struct {
	rsa, rsa2 *rsa.PrivateKey
	ec256     *ecdsa.PrivateKey
	ec384     *ecdsa.PrivateKey
	ec521     *ecdsa.PrivateKey
	ed        ed25519.PrivateKey
	secret    []byte // 64 bytes: long enough for HS512
}

var (
	keysOnce sync.Once
	keys     testKeys
)

func getKeys(t testing.TB) *testKeys {
	t.Helper()
	keysOnce.Do(func() {
		must := func(err error) {
			if err != nil {
				panic(err)
			}
		}
		var err error
		keys.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		keys.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		keys.ec256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		keys.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
		keys.ec521, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		must(err)
		_, keys.ed, err = ed25519.GenerateKey(rand.Reader)
		must(err)
		keys.secret = make([]byte, 64)
		_, err = rand.Read(keys.secret)
		must(err)
	})
	return &keys
}

// b64url encodes without padding, as JOSE does.
func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// mustJSON marshals v.
func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mint signs claims with key under alg. hdr holds extra header parameters;
// an "alg" in hdr replaces alg in the header only (for tokens that lie).
func mint(t testing.TB, alg string, key any, hdr map[string]any, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": alg, "typ": "JWT"}
	for k, v := range hdr {
		if v == nil {
			delete(h, k)
			continue
		}
		h[k] = v
	}
	return mintRaw(t, alg, key, mustJSON(t, h), mustJSON(t, claims))
}

// mintRaw signs the exact header and payload bytes given.
func mintRaw(t testing.TB, alg string, key any, header, payload []byte) string {
	t.Helper()
	input := b64url(header) + "." + b64url(payload)
	return input + "." + b64url(signRaw(t, alg, key, []byte(input)))
}

// signRaw signs input with the standard library, independently of jwx.
func signRaw(t testing.TB, alg string, key any, input []byte) []byte {
	t.Helper()
	hashes := map[string]crypto.Hash{"256": crypto.SHA256, "384": crypto.SHA384, "512": crypto.SHA512}
	var h crypto.Hash
	if len(alg) == 5 {
		h = hashes[alg[2:]]
	}
	digest := func() []byte {
		d := h.New()
		d.Write(input)
		return d.Sum(nil)
	}
	var sig []byte
	var err error
	switch {
	case alg == "none":
		return nil
	case alg[:2] == "HS":
		m := hmac.New(h.New, key.([]byte))
		m.Write(input)
		sig = m.Sum(nil)
	case alg[:2] == "RS":
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), h, digest())
	case alg[:2] == "PS":
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), h, digest(), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case alg[:2] == "ES":
		k := key.(*ecdsa.PrivateKey)
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, k, digest())
		if err == nil {
			sig = ecdsaRaw(k.Curve, r, s)
		}
	case alg == "EdDSA":
		sig = ed25519.Sign(key.(ed25519.PrivateKey), input)
	default:
		t.Fatalf("signRaw: unknown algorithm %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// ecdsaRaw is the JWS encoding of an ECDSA signature: r and s, each padded
// to the curve's size (RFC 7518 section 3.4).
func ecdsaRaw(c elliptic.Curve, r, s *big.Int) []byte {
	n := (c.Params().BitSize + 7) / 8
	out := make([]byte, 2*n)
	r.FillBytes(out[:n])
	s.FillBytes(out[n:])
	return out
}

// writePEM writes the public key of priv as a PEM PUBLIC KEY file.
func writePEM(t testing.TB, dir, name string, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// jwkSet returns a JWKS document of pubs, keyed by kid.
func jwkSet(t testing.TB, pubs map[string]any) []byte {
	t.Helper()
	set := jwk.NewSet()
	for kid, pub := range pubs {
		k, err := jwk.Import(pub)
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
		if err := k.Set(jwk.KeyUsageKey, "sig"); err != nil {
			t.Fatal(err)
		}
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	return mustJSON(t, set)
}

// writeFile writes data to dir/name.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// secret returns a config.Secret holding s.
func secret(t testing.TB, s []byte) config.Secret {
	t.Helper()
	var sec config.Secret
	if err := sec.UnmarshalText(s); err != nil {
		t.Fatal(err)
	}
	return sec
}

// claimsAt returns valid claims of issuer iss at now: audience api,
// subject alice, valid for an hour.
func claimsAt(iss string, now time.Time) map[string]any {
	return map[string]any{
		"iss": iss,
		"aud": "api",
		"sub": "alice",
		"iat": now.Add(-time.Minute).Unix(),
		"nbf": now.Add(-time.Minute).Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

// with returns a copy of m with the changes in kv (a nil value deletes).
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, k)
		} else {
			out[k] = kv[i+1]
		}
	}
	return out
}

// exchange returns an Exchange whose request has the given Authorization
// header values.
func exchange(auth ...string) *gateway.Exchange {
	r := httptest.NewRequest("GET", "/", nil)
	for _, a := range auth {
		r.Header.Add("Authorization", a)
	}
	return &gateway.Exchange{Request: r}
}

// reasonOf returns the ReasonID of err, "no_credentials" for
// authn.ErrNoCredentials, "" for nil, and "other: ..." for anything else.
func reasonOf(err error) string {
	var f *authn.Failure
	switch {
	case err == nil:
		return ""
	case errors.Is(err, authn.ErrNoCredentials):
		return "no_credentials"
	case errors.As(err, &f):
		return f.ReasonID
	}
	return "other: " + err.Error()
}

// selfSigned returns a throwaway client certificate.
func selfSigned(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     t0.Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// quietLogger discards key-loading logs.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
