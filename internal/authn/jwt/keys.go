package jwt

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// This file holds verification keys: the algorithms moat accepts, keys read
// from files at load, and key sets fetched from a JWKS endpoint (directly
// or found through OpenID Connect discovery), cached and refreshed.

// Limits and timings of remote key sets.
const (
	// minRSABits is the smallest RSA modulus accepted (RFC 7518 section 3.3).
	minRSABits = 2048
	// maxRemoteKeys bounds the keys read from one JWKS document.
	maxRemoteKeys = 100
	// maxDocumentSize bounds a JWKS or discovery document.
	maxDocumentSize = 1 << 20
	// kidRefreshGap is the least time between two fetches of one issuer's
	// key set made for requests: an unknown kid, or a set older than the
	// refresh interval, fetches at most once per gap.
	kidRefreshGap = 30 * time.Second
	// retryGap is the least time between two attempts to load an issuer's
	// first key set, and how soon Start's loop retries after a failure.
	retryGap = 5 * time.Second
	// maxCandidates bounds the keys tried for one token (kid-less tokens
	// against a set of several keys).
	maxCandidates = 8
)

// algorithm is one JWS algorithm moat verifies.
type algorithm struct {
	name     string
	verifier jws.Verifier2
	minHMAC  int            // HS: the least secret length, the hash size (RFC 7518 section 3.2)
	curve    elliptic.Curve // ES: the curve the key must be on
}

// algorithms are the accepted algorithms by name. "none" is not one of them
// and can never be configured.
var algorithms = func() map[string]*algorithm {
	m := map[string]*algorithm{
		"HS256": {minHMAC: 32}, "HS384": {minHMAC: 48}, "HS512": {minHMAC: 64},
		"RS256": {}, "RS384": {}, "RS512": {},
		"PS256": {}, "PS384": {}, "PS512": {},
		"ES256": {curve: elliptic.P256()}, "ES384": {curve: elliptic.P384()}, "ES512": {curve: elliptic.P521()},
		"EdDSA": {},
	}
	for name, a := range m {
		ja, ok := jwa.LookupSignatureAlgorithm(name)
		if !ok {
			panic("jwt: jwx does not know " + name)
		}
		v, err := jws.VerifierFor(ja)
		if err != nil {
			panic("jwt: no verifier for " + name + ": " + err.Error())
		}
		a.name, a.verifier = name, v
	}
	return m
}()

// algorithmNames lists the accepted algorithms for error messages.
const algorithmNames = "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, HS256, HS384, HS512"

// verifyKey is one key that may verify tokens. It is immutable.
type verifyKey struct {
	kid string // "" for keys without one (PEM files, the HMAC secret)
	alg string // the JWK's own alg, which then is the only one it verifies; "" for any that fits
	pub any    // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey, or []byte (HMAC secret)
}

// fits reports whether k may verify a token signed with a. The key's type
// decides: an HMAC secret verifies only HS algorithms and a public key never
// does, so an HS token "signed" with a public key's bytes is never checked
// against that key (algorithm confusion).
func (k *verifyKey) fits(a *algorithm) bool {
	if k.alg != "" && k.alg != a.name {
		return false
	}
	switch pub := k.pub.(type) {
	case []byte:
		return a.minHMAC > 0
	case *rsa.PublicKey:
		return a.name[0] == 'R' || a.name[0] == 'P'
	case *ecdsa.PublicKey:
		return a.curve != nil && pub.Curve == a.curve
	case ed25519.PublicKey:
		return a.name == "EdDSA"
	}
	return false
}

// keySet is an immutable set of keys. Remote sets are replaced as a whole
// when the JWKS changes, so a pointer identifies the version a token was
// verified with.
type keySet struct {
	keys []*verifyKey
}

// candidates appends to dst the keys that may verify a token with kid and
// algorithm a: with a kid, the keys of that kid and the keys that have none
// (PEM files name no kid); without one, every key that fits. The kid is only
// ever compared with the kids of configured keys.
func (s *keySet) candidates(dst []*verifyKey, kid string, a *algorithm) []*verifyKey {
	if s == nil {
		return dst
	}
	for _, k := range s.keys {
		if len(dst) == maxCandidates {
			break
		}
		if (kid == "" || k.kid == "" || k.kid == kid) && k.fits(a) {
			dst = append(dst, k)
		}
	}
	return dst
}

// checkPublicKey returns an error for key types and sizes moat does not
// accept: RSA under 2048 bits, curves other than P-256, P-384 and P-521,
// anything but Ed25519 among Edwards keys, and private keys.
func checkPublicKey(pub any) error {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits: at least %d are required", pub.N.BitLen(), minRSABits)
		}
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() && pub.Curve != elliptic.P384() && pub.Curve != elliptic.P521() {
			return fmt.Errorf("EC key on curve %s: want P-256, P-384 or P-521", pub.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return errors.New("Ed25519 key of the wrong size")
		}
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return errors.New("a private key: give the public key only")
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	return nil
}

// fromJWK converts a parsed JWK. Keys meant for encryption (use other than
// sig, key_ops without verify) are skipped with errSkip; symmetric and
// private keys are errors: HMAC secrets are configured as secret, and a
// gateway must not hold an issuer's signing key.
func fromJWK(k jwk.Key) (*verifyKey, error) {
	if use, ok := k.KeyUsage(); ok && use != "sig" {
		return nil, fmt.Errorf("%w: use is %q", errSkip, use)
	}
	if ops, ok := k.KeyOps(); ok {
		verify := false
		for _, op := range ops {
			verify = verify || op == jwk.KeyOpVerify
		}
		if !verify {
			return nil, fmt.Errorf("%w: key_ops lacks verify", errSkip)
		}
	}
	if k.KeyType() == jwa.OctetSeq() {
		return nil, errors.New("a symmetric (oct) key: configure HMAC secrets with secret")
	}
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	if err := checkPublicKey(raw); err != nil {
		return nil, err
	}
	vk := &verifyKey{pub: raw}
	vk.kid, _ = k.KeyID()
	if a, ok := k.Algorithm(); ok && a.String() != "" {
		alg, known := algorithms[a.String()]
		if !known || !(&verifyKey{pub: raw}).fits(alg) {
			return nil, fmt.Errorf("%w: alg %q is not accepted for this key", errSkip, a.String())
		}
		vk.alg = alg.name
	}
	return vk, nil
}

// errSkip marks a key in a set that is well-formed but not for verifying
// signatures with moat's algorithms.
var errSkip = errors.New("not a signature verification key")

// loadKeyFile reads the public keys in a PEM file (PUBLIC KEY, RSA PUBLIC
// KEY or CERTIFICATE blocks) or a JWK or JWK set file. Any key moat cannot
// use, and any private key, is an error.
func loadKeyFile(path string) ([]*verifyKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	data = bytes.TrimSpace(data)
	if bytes.HasPrefix(data, []byte("-----BEGIN")) {
		return parsePEMKeys(data)
	}
	set, err := jwk.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("neither PEM nor a JWK set: %w", err)
	}
	var keys []*verifyKey
	for i := range set.Len() {
		k, _ := set.Key(i)
		vk, err := fromJWK(k)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		keys = append(keys, vk)
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	return keys, nil
}

// parsePEMKeys reads every PEM block of data.
func parsePEMKeys(data []byte) ([]*verifyKey, error) {
	var keys []*verifyKey
	for n := 1; len(data) > 0; n++ {
		block, rest := pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("block %d: not PEM", n)
		}
		data = bytes.TrimSpace(rest)
		var pub any
		var err error
		switch {
		case block.Type == "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case block.Type == "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case block.Type == "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		case strings.Contains(block.Type, "PRIVATE KEY"):
			err = errors.New("a private key: give the public key only")
		default:
			err = fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		if err == nil {
			err = checkPublicKey(pub)
		}
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", n, err)
		}
		keys = append(keys, &verifyKey{pub: pub})
	}
	return keys, nil
}

// checkFetchURL returns an error unless raw is an absolute https URL, or an
// http URL of a loopback host (a local identity provider, tests), without
// user information or fragment.
func checkFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch {
	case u.Host == "":
		return fmt.Errorf("%q is not an absolute URL", raw)
	case u.User != nil:
		return fmt.Errorf("%q carries user information", raw)
	case u.Fragment != "":
		return fmt.Errorf("%q has a fragment", raw)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("%q: keys are fetched over https (http only from a loopback host)", raw)
	}
	return fmt.Errorf("%q: scheme must be https", raw)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// discoveryURL is where an issuer publishes its OpenID Provider metadata
// (OpenID Connect Discovery 1.0 section 4): any trailing slash of the issuer
// is removed before the well-known path is appended.
func discoveryURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

// fetcher is what the remote key sets of one authenticator share: the HTTP
// client, the clock, and the lifetime of background fetches, which Close
// ends.
type fetcher struct {
	client  *http.Client
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// goroutine runs fn on a new goroutine that Close waits for; after Close it
// runs nothing and reports false.
func (f *fetcher) goroutine(fn func()) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		fn()
	}()
	return true
}

// close cancels fetches in flight and waits for every goroutine to return.
func (f *fetcher) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.cancel()
	f.wg.Wait()
}

// get fetches a document of at most maxDocumentSize bytes; anything but
// 200 OK, a redirect included, is an error.
func (f *fetcher) get(ctx context.Context, target string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", target, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", target, err)
	}
	if len(body) > maxDocumentSize {
		return nil, fmt.Errorf("GET %s: document larger than %d bytes", target, maxDocumentSize)
	}
	return body, nil
}

// noRedirects is the CheckRedirect of the default client: key material is
// read from the configured URL only.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// remoteKeys is one issuer's key set from a JWKS endpoint, fetched lazily
// (or by Start), refreshed every interval and on unknown kids, and kept
// while the endpoint fails. It is safe for concurrent use.
type remoteKeys struct {
	f         *fetcher
	issuer    string
	jwksURL   string // configured; "" with discovery
	discovery bool
	interval  time.Duration

	set       atomic.Pointer[keySet]
	loaded    atomic.Int64 // f.now() of the last successful fetch, Unix nanoseconds
	attempted atomic.Int64 // lastAttempt in Unix nanoseconds, read without the lock

	mu          sync.Mutex
	flight      chan struct{} // closed when the fetch in flight ends; nil when none is
	lastAttempt time.Time
	lastErr     error

	// Owned by the fetch in flight (there is at most one).
	sum     [sha256.Size]byte // of the JWKS document behind set
	jwksURI string            // found by discovery
}

// current returns the issuer's key set. With none loaded yet it fetches one,
// waiting until the fetch ends or ctx does (attempts are at least retryGap
// apart); a set older than the refresh interval is returned as it is while
// a background fetch replaces it.
func (r *remoteKeys) current(ctx context.Context, now time.Time) *keySet {
	if s := r.set.Load(); s != nil {
		stale := now.Sub(time.Unix(0, r.loaded.Load())) >= r.interval
		if stale && now.Sub(time.Unix(0, r.attempted.Load())) >= kidRefreshGap {
			r.refresh(ctx, now, kidRefreshGap, false)
		}
		return s
	}
	r.refresh(ctx, now, retryGap, true)
	return r.set.Load()
}

// refresh starts a fetch unless one is in flight or one was attempted less
// than gap before now; with wait it then waits for the fetch (a new one or
// the one in flight) until ctx ends. The fetch itself is bounded by the
// fetch timeout and not by ctx, so a client that goes away does not waste
// it for the others.
func (r *remoteKeys) refresh(ctx context.Context, now time.Time, gap time.Duration, wait bool) {
	r.mu.Lock()
	done := r.flight
	if done == nil {
		if !r.lastAttempt.IsZero() && now.Sub(r.lastAttempt) < gap {
			r.mu.Unlock()
			return
		}
		r.lastAttempt = now
		r.attempted.Store(now.UnixNano())
		ch := make(chan struct{})
		if !r.f.goroutine(func() { r.fetchAndStore(ch) }) {
			r.mu.Unlock()
			return
		}
		r.flight, done = ch, ch
	}
	r.mu.Unlock()
	if wait {
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
}

// fetchAndStore runs one fetch and closes done.
func (r *remoteKeys) fetchAndStore(done chan struct{}) {
	ctx, cancel := context.WithTimeout(r.f.ctx, r.f.timeout)
	err := r.fetch(ctx)
	cancel()
	if err != nil {
		if r.set.Load() != nil {
			r.f.log.Warn("jwt: refreshing keys failed; keeping the keys loaded before", "issuer", r.issuer, "error", err)
		} else {
			r.f.log.Error("jwt: loading keys failed", "issuer", r.issuer, "error", err)
		}
	}
	r.mu.Lock()
	r.flight, r.lastErr = nil, err
	r.mu.Unlock()
	close(done)
}

// fetch loads the JWKS (after discovery, when configured) and stores it
// when it changed.
func (r *remoteKeys) fetch(ctx context.Context) error {
	target := r.jwksURL
	if r.discovery {
		uri, err := r.discover(ctx)
		switch {
		case err == nil:
			r.jwksURI = uri
		case r.jwksURI == "":
			return fmt.Errorf("discovery: %w", err)
		default:
			r.f.log.Warn("jwt: discovery failed; using the jwks_uri found before", "issuer", r.issuer, "error", err)
		}
		target = r.jwksURI
	}
	body, err := r.f.get(ctx, target)
	if err != nil {
		return fmt.Errorf("loading jwks: %w", err)
	}
	now := r.f.now()
	sum := sha256.Sum256(body)
	if sum == r.sum && r.set.Load() != nil {
		r.loaded.Store(now.UnixNano())
		return nil
	}
	set, skipped, err := parseRemoteSet(body)
	if err != nil {
		return fmt.Errorf("loading jwks from %s: %w", target, err)
	}
	for _, s := range skipped {
		r.f.log.Debug("jwt: key skipped", "issuer", r.issuer, "reason", s)
	}
	if len(set.keys) == 0 {
		r.f.log.Warn("jwt: the key set has no usable keys; every token of this issuer is refused", "issuer", r.issuer, "url", target)
	}
	r.sum = sum
	r.set.Store(set)
	r.loaded.Store(now.UnixNano())
	r.f.log.Info("jwt: keys loaded", "issuer", r.issuer, "keys", len(set.keys))
	return nil
}

// discover reads the issuer's OpenID Provider metadata and returns its
// jwks_uri. The document's issuer must equal the configured issuer exactly
// (OpenID Connect Discovery 1.0 section 4.3), or its keys would be trusted
// for tokens of another issuer.
func (r *remoteKeys) discover(ctx context.Context) (string, error) {
	body, err := r.f.get(ctx, discoveryURL(r.issuer))
	if err != nil {
		return "", err
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil || doc == nil {
		return "", errors.New("the discovery document is not a JSON object")
	}
	iss, _ := doc["issuer"].(string)
	if iss != r.issuer {
		return "", fmt.Errorf("the discovery document names issuer %q, not %q", iss, r.issuer)
	}
	uri, _ := doc["jwks_uri"].(string)
	if uri == "" {
		return "", errors.New("the discovery document has no jwks_uri")
	}
	if err := checkFetchURL(uri); err != nil {
		return "", fmt.Errorf("jwks_uri: %w", err)
	}
	return uri, nil
}

// parseRemoteSet reads a JWKS document. Keys that cannot be parsed or used
// are skipped (and listed), so that one exotic key does not hide the rest;
// a document that is not JSON, or has more than maxRemoteKeys keys, is an
// error.
func parseRemoteSet(body []byte) (*keySet, []string, error) {
	set, err := jwk.Parse(body, jwk.WithIgnoreParseError(true), jwk.WithMaxKeys(maxRemoteKeys))
	if err != nil {
		return nil, nil, err
	}
	ks := &keySet{}
	var skipped []string
	for i := range set.Len() {
		k, _ := set.Key(i)
		vk, err := fromJWK(k)
		if err != nil {
			kid, _ := k.KeyID()
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): %v", i, kid, err))
			continue
		}
		ks.keys = append(ks.keys, vk)
	}
	return ks, skipped, nil
}

// run keeps the key set fresh until ctx ends or Close: it fetches at once,
// then every interval, or retryGap after a failure.
func (r *remoteKeys) run(ctx context.Context) {
	for {
		r.refresh(ctx, r.f.now(), 0, true)
		r.mu.Lock()
		wait, failed := r.interval, r.lastErr != nil
		r.mu.Unlock()
		if failed && retryGap < wait {
			wait = retryGap
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.f.ctx.Done():
			t.Stop()
			return
		}
	}
}
