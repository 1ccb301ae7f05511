// Package jwt authenticates requests that carry a JWT bearer token
// (RFC 6750, RFC 7519), signed (JWS compact serialization) by one of the
// configured issuers.
//
// Everything is decided when the configuration loads: each issuer's
// algorithms, its HMAC secret, its public keys from files, and where its
// JSON Web Key Set is fetched from (a jwks_url, or OpenID Connect discovery
// at the issuer URL). New does no network I/O, so `moat validate` never
// waits for an identity provider; key sets are fetched on first use or by
// Start, within a timeout.
//
// A request's token is checked in this order, and the first check that
// fails decides the reason_id:
//
//  1. shape: "Authorization: Bearer" followed by three dot-separated
//     base64url segments; anything else is not ours (authn.ErrNoCredentials),
//     so that an opaque-token authenticator later in the chain can try it;
//  2. size, before anything is decoded (jwt_too_large);
//  3. the protected header: well-formed JSON (jwt_malformed), no jku, x5u,
//     jwk, x5c, crit or b64 parameter (jwt_header_forbidden), alg not
//     "none" in any letter case (jwt_algorithm_not_allowed);
//  4. the issuer named by iss (jwt_issuer_unknown), then its algorithms
//     (jwt_algorithm_not_allowed) and typ (jwt_type_mismatch);
//  5. the key, chosen by kid among the issuer's keys of the algorithm's
//     type, and the signature (jwt_key_unknown, jwt_signature_invalid);
//  6. the claims: exp (required), nbf and iat with the leeway
//     (jwt_expired, jwt_not_yet_valid), aud (jwt_audience_mismatch), the
//     subject and required claims (jwt_claims_missing), and the RFC 8705
//     certificate binding of any token with cnf.x5t#S256, which cert_bound
//     makes mandatory (jwt_cert_binding_mismatch).
//
// Verified tokens are cached by their SHA-256 until exp plus the leeway,
// five minutes at most; a hit checks exp, nbf and iat again at the current
// time, the binding against the current client certificate, and that the
// issuer's key set has not changed since.
//
// Steps 1 to 4 need no key and no network: unsigned tokens, forbidden
// algorithms and header-borne keys are refused at once. An unknown kid
// refreshes the issuer's key set (at most once per 30 seconds per issuer,
// and only for a token whose claims are otherwise acceptable).
package jwt

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moat-gateway/moat/internal/authn"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// Reasons for refusing a token, as the ReasonID of an *authn.Failure.
const (
	ReasonJWTMalformed   = "jwt_malformed"             // not decodable: bad base64url, header or claims JSON, a claim of the wrong type
	ReasonJWTTooLarge    = "jwt_too_large"             // longer than max_token_size
	ReasonJWTHeader      = "jwt_header_forbidden"      // jku, x5u, jwk, x5c, crit or b64 in the protected header
	ReasonJWTAlgorithm   = "jwt_algorithm_not_allowed" // alg none, or an algorithm the issuer does not allow
	ReasonJWTIssuer      = "jwt_issuer_unknown"        // iss missing or not a configured issuer
	ReasonJWTType        = "jwt_type_mismatch"         // typ differs from the issuer's type
	ReasonJWTKeyUnknown  = "jwt_key_unknown"           // no key of the issuer matches the kid, even after a refresh
	ReasonJWTSignature   = "jwt_signature_invalid"     // the signature does not verify
	ReasonJWTExpired     = "jwt_expired"               // exp (plus leeway) has passed
	ReasonJWTNotYetValid = "jwt_not_yet_valid"         // nbf or iat is in the future (beyond the leeway)
	ReasonJWTAudience    = "jwt_audience_mismatch"     // aud names none of the issuer's audiences
	ReasonJWTClaims      = "jwt_claims_missing"        // exp, the subject or a required claim is missing
	ReasonJWTCertBinding = "jwt_cert_binding_mismatch" // cnf.x5t#S256 does not match the client certificate, or is required and absent
)

// ErrKeysUnavailable is wrapped by the error Authenticate returns when an
// issuer's keys have never been loaded because its JWKS or discovery
// endpoint failed: an internal fault, not a bad credential.
var ErrKeysUnavailable = errors.New("issuer keys unavailable")

// Defaults of the jwt authenticator's configuration.
const (
	defaultLeeway          = 30 * time.Second
	maxLeeway              = 5 * time.Minute
	defaultMaxTokenSize    = 8 << 10
	defaultCacheSize       = 10000
	defaultRefreshInterval = 15 * time.Minute
	defaultFetchTimeout    = 5 * time.Second
	defaultSubjectClaim    = "sub"
	defaultRolesClaim      = "roles"
	defaultScopesClaim     = "scope"
)

// challenge is the WWW-Authenticate challenge for requests without a
// credential. RFC 6750 section 3.1: it carries no error code then.
const challenge = `Bearer realm="moat"`

// JWT authenticates JWT bearer tokens. Create one with New; call Start to
// keep remote key sets fresh in the background, and Close when the
// configuration is retired. A JWT is safe for concurrent use.
type JWT struct {
	name    string
	issuers map[string]*issuer
	remotes []*remoteKeys
	leeway  time.Duration
	maxSize int
	cache   *tokenCache // nil when disabled
	now     func() time.Time
	f       *fetcher
	started atomic.Bool
}

// issuer is one configured issuer, compiled.
type issuer struct {
	iss          string
	audiences    []string
	algs         map[string]*algorithm
	static       *keySet     // key files and the HMAC secret; nil when none
	remote       *remoteKeys // nil without jwks_url or discovery
	required     []string
	typ          string // normalised; "" when any is accepted
	subjectClaim string
	rolesClaim   string
	scopesClaim  string
	certBound    bool
}

// Option changes how New builds a JWT.
type Option func(*options)

type options struct {
	now          func() time.Time
	client       *http.Client
	log          *slog.Logger
	fetchTimeout time.Duration
}

// WithClock makes the authenticator read the time from now instead of
// time.Now: for token expiry, the verified-token cache, and the spacing of
// key set refreshes.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithHTTPClient sets the client that fetches discovery documents and key
// sets. The default follows no redirects and uses the default transport.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithLogger sets the logger for key set loading; the default is
// slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithFetchTimeout bounds each fetch of a key set, discovery included; the
// default is 5 seconds.
func WithFetchTimeout(d time.Duration) Option { return func(o *options) { o.fetchTimeout = d } }

// New compiles the jwt authenticator name (its configuration key, reported
// as the principal's Authenticator). It reads key files but does no network
// I/O: remote key sets are fetched by Start or when first needed.
//
// Defaults: leeway 30s, max_token_size 8KiB, cache_size 10000 (-1 disables
// the cache), refresh_interval 15m, subject_claim sub, roles_claim roles,
// scopes_claim scope (scp is read too).
//
// New returns an error naming every problem, with its field path, for:
// no issuers; an issuer that is empty, repeated, or (with discovery) not an
// https URL; no audiences; no algorithms, an unknown one, or "none"; HS
// algorithms without a secret, or a secret shorter than the hash (32 bytes
// for HS256, 48 for HS384, 64 for HS512); a secret without HS algorithms;
// public-key algorithms without jwks_url, discovery or key_files, or key
// sources without such algorithms; jwks_url together with discovery; a
// jwks_url that is not https (http is allowed for loopback hosts); a key file
// that cannot be read, holds a private or symmetric key, an RSA key under
// 2048 bits or a key that fits none of the algorithms; an empty required
// claim name; and negative or out-of-range leeway (at most 5m),
// max_token_size, cache_size or refresh_interval.
func New(name string, cfg *config.JWTAuth, opts ...Option) (*JWT, error) {
	if cfg == nil {
		return nil, errors.New("jwt: no configuration")
	}
	o := options{now: time.Now, log: slog.Default(), fetchTimeout: defaultFetchTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if o.client == nil {
		o.client = &http.Client{CheckRedirect: noRedirects}
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &fetcher{client: o.client, timeout: o.fetchTimeout, log: o.log, now: o.now, ctx: ctx, cancel: cancel}
	j := &JWT{name: name, issuers: make(map[string]*issuer), now: o.now, f: f}

	var errs []error
	problem := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch l := cfg.Leeway.D(); {
	case l < 0:
		problem("leeway: must not be negative")
	case l > maxLeeway:
		problem("leeway: %v is more than the %v allowed", l, maxLeeway)
	case l == 0:
		j.leeway = defaultLeeway
	default:
		j.leeway = l
	}
	switch s := cfg.MaxTokenSize; {
	case s < 0:
		problem("max_token_size: must not be negative")
	case s == 0:
		j.maxSize = defaultMaxTokenSize
	case s > 1<<20:
		problem("max_token_size: %d bytes is more than the 1MiB allowed", s)
	default:
		j.maxSize = int(s)
	}
	switch n := cfg.CacheSize; {
	case n < -1:
		problem("cache_size: must be -1 (no cache), 0 (default) or positive")
	case n == -1:
	case n == 0:
		j.cache = newTokenCache(defaultCacheSize)
	default:
		j.cache = newTokenCache(n)
	}
	if o.fetchTimeout <= 0 {
		problem("fetch timeout: must be positive")
	}
	if len(cfg.Issuers) == 0 {
		problem("issuers: at least one issuer is required")
	}
	for i := range cfg.Issuers {
		ic := &cfg.Issuers[i]
		is, issuerErrs := newIssuer(ic, f, fmt.Sprintf("issuers[%d]", i))
		errs = append(errs, issuerErrs...)
		if is == nil {
			continue
		}
		if _, dup := j.issuers[is.iss]; dup {
			problem("issuers[%d].issuer: %q is configured twice", i, is.iss)
			continue
		}
		j.issuers[is.iss] = is
		if is.remote != nil {
			j.remotes = append(j.remotes, is.remote)
		}
	}
	if err := errors.Join(errs...); err != nil {
		cancel()
		return nil, fmt.Errorf("jwt: %w", err)
	}
	return j, nil
}

// newIssuer compiles one issuer; path prefixes its problems. It returns a
// nil issuer when the issuer name itself is unusable.
func newIssuer(ic *config.JWTIssuer, f *fetcher, path string) (*issuer, []error) {
	var errs []error
	problem := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(path+"."+format, args...))
	}
	is := &issuer{
		iss:          ic.Issuer,
		algs:         make(map[string]*algorithm),
		typ:          normalizeType(ic.Type),
		subjectClaim: orDefault(ic.SubjectClaim, defaultSubjectClaim),
		rolesClaim:   orDefault(ic.RolesClaim, defaultRolesClaim),
		scopesClaim:  orDefault(ic.ScopesClaim, defaultScopesClaim),
		certBound:    ic.CertBound,
	}
	if ic.Issuer == "" {
		problem("issuer: required")
	}

	for i, a := range ic.Audiences {
		if a == "" {
			problem("audiences[%d]: must not be empty", i)
		}
	}
	if len(ic.Audiences) == 0 {
		problem("audiences: at least one audience is required")
	}
	is.audiences = append([]string(nil), ic.Audiences...)

	var hmacAlgs, keyAlgs []*algorithm
	for i, name := range ic.Algorithms {
		a, ok := algorithms[name]
		switch {
		case strings.EqualFold(name, "none"):
			problem("algorithms[%d]: unsigned tokens (none) are never accepted", i)
		case !ok:
			problem("algorithms[%d]: unknown algorithm %q (accepted: %s)", i, name, algorithmNames)
		case a.minHMAC > 0:
			hmacAlgs = append(hmacAlgs, a)
		default:
			keyAlgs = append(keyAlgs, a)
		}
		if ok {
			is.algs[name] = a
		}
	}
	if len(ic.Algorithms) == 0 {
		problem("algorithms: at least one algorithm is required")
	}

	static := &keySet{}
	switch secret := ic.Secret.Value(); {
	case len(hmacAlgs) > 0 && !ic.Secret.IsSet():
		problem("secret: required by the HS algorithms")
	case len(hmacAlgs) > 0:
		for _, a := range hmacAlgs {
			if len(secret) < a.minHMAC {
				problem("secret: %d bytes is too short for %s, which needs at least %d", len(secret), a.name, a.minHMAC)
			}
		}
		static.keys = append(static.keys, &verifyKey{pub: []byte(secret)})
	case ic.Secret.IsSet():
		problem("secret: set, but no HS algorithm is allowed")
	}

	keySources := len(ic.KeyFiles) > 0 || ic.JWKSURL != "" || ic.Discovery
	switch {
	case len(keyAlgs) > 0 && !keySources:
		problem("algorithms: public-key algorithms need jwks_url, discovery or key_files")
	case len(keyAlgs) == 0 && keySources && len(ic.Algorithms) > 0:
		problem("algorithms: jwks_url, discovery or key_files are set, but no public-key algorithm is allowed")
	}
	for i, file := range ic.KeyFiles {
		keys, err := loadKeyFile(file)
		if err != nil {
			problem("key_files[%d]: %s: %v", i, file, err)
			continue
		}
		for n, k := range keys {
			fits := false
			for _, a := range keyAlgs {
				fits = fits || k.fits(a)
			}
			if !fits && len(keyAlgs) > 0 {
				problem("key_files[%d]: %s: key %d fits none of the allowed algorithms", i, file, n+1)
			}
		}
		static.keys = append(static.keys, keys...)
	}
	if len(static.keys) > 0 {
		is.static = static
	}

	interval := ic.RefreshInterval.D()
	switch {
	case interval < 0:
		problem("refresh_interval: must not be negative")
	case interval == 0:
		interval = defaultRefreshInterval
	}
	switch {
	case ic.JWKSURL != "" && ic.Discovery:
		problem("jwks_url: set together with discovery; choose one")
	case ic.JWKSURL != "":
		if err := checkFetchURL(ic.JWKSURL); err != nil {
			problem("jwks_url: %v", err)
		}
		is.remote = &remoteKeys{f: f, issuer: ic.Issuer, jwksURL: ic.JWKSURL, interval: interval}
	case ic.Discovery:
		if err := checkFetchURL(discoveryURL(ic.Issuer)); err != nil {
			problem("issuer: discovery needs an https issuer URL: %v", err)
		}
		is.remote = &remoteKeys{f: f, issuer: ic.Issuer, discovery: true, interval: interval}
	}

	for i, c := range ic.RequiredClaims {
		if c == "" {
			problem("required_claims[%d]: must not be empty", i)
		}
	}
	is.required = append([]string(nil), ic.RequiredClaims...)

	if ic.Issuer == "" {
		return nil, errs
	}
	return is, errs
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Start keeps the remote key sets fresh until ctx ends or Close is called:
// for each issuer with a jwks_url or discovery, a goroutine fetches the key
// set at once, then every refresh_interval (5 seconds after a failure).
// Start returns at once; it does not wait for the first fetch. Without
// Start, a key set is fetched when a token first needs it, and refreshed
// when a token finds it older than refresh_interval. Calls after the first,
// or after Close, do nothing.
func (j *JWT) Start(ctx context.Context) {
	if !j.started.CompareAndSwap(false, true) {
		return
	}
	for _, r := range j.remotes {
		j.f.goroutine(func() { r.run(ctx) })
	}
}

// Close stops Start's goroutines and any fetch in flight and waits for
// them. Authenticate keeps working with the keys already loaded, but fetches
// no more. Close may be called more than once.
func (j *JWT) Close() error {
	j.f.close()
	return nil
}

// Challenge returns the WWW-Authenticate challenge, `Bearer realm="moat"`.
func (j *JWT) Challenge() string { return challenge }

// Authenticate verifies the bearer token of ex. It returns
// authn.ErrNoCredentials when ex has no Authorization header with the
// Bearer scheme and a JWT-shaped token; an *authn.Failure (whose Detail
// never contains the token) when the token is refused; an error wrapping
// ErrKeysUnavailable when the issuer's keys could not be loaded; and
// otherwise a new Principal. Authenticate may wait for a key set fetch,
// bounded by the fetch timeout and by ctx.
func (j *JWT) Authenticate(ctx context.Context, ex *gateway.Exchange) (*gateway.Principal, error) {
	tok, err := bearerToken(ex)
	if err != nil {
		return nil, err
	}
	if len(tok) > j.maxSize {
		return nil, authn.Fail(ReasonJWTTooLarge, "token of %d bytes; at most %d are accepted", len(tok), j.maxSize)
	}
	now := j.now()
	var sum [sha256.Size]byte
	if j.cache != nil {
		var buf [4096]byte // most tokens fit: hashing them does not allocate
		sum = sha256.Sum256(append(buf[:0], tok...))
		if e := j.cache.get(&sum, now); e != nil {
			if p, err, ok := j.fromCache(ctx, e, ex, now); ok {
				return p, err
			}
			j.cache.drop(&sum)
		}
	}
	p, e, err := j.verify(ctx, ex, tok, now)
	if err != nil {
		return nil, err
	}
	if j.cache != nil {
		e.sum = sum
		j.cache.put(e)
	}
	return p, nil
}

// fromCache answers from a cached verification. exp, nbf and iat are checked
// again at now and the certificate binding against ex's certificate; ok is
// false when the entry must be verified afresh because the issuer's key set
// changed since.
func (j *JWT) fromCache(ctx context.Context, e *cacheEntry, ex *gateway.Exchange, now time.Time) (_ *gateway.Principal, _ error, ok bool) {
	if r := e.iss.remote; r != nil && e.keys != e.iss.static {
		if e.keys != r.current(ctx, now) {
			return nil, nil, false
		}
	}
	if !now.Before(e.notAfter) {
		return nil, authn.Fail(ReasonJWTExpired, "expired at %s", e.principal.ExpiresAt.UTC().Format(time.RFC3339)), true
	}
	if now.Before(e.notBefore) {
		return nil, authn.Fail(ReasonJWTNotYetValid, "not valid before %s", e.notBefore.Add(j.leeway).UTC().Format(time.RFC3339)), true
	}
	if err := checkBinding(e.cnf, ex); err != nil {
		return nil, err, true
	}
	p := e.principal
	return &p, nil, true
}

// bearerToken returns the JWT-shaped bearer token of ex. Several
// Authorization headers of which one carries such a token are refused
// (which one the upstream would honour is ambiguous).
func bearerToken(ex *gateway.Exchange) (string, error) {
	if ex == nil || ex.Request == nil {
		return "", authn.ErrNoCredentials
	}
	vals := ex.Request.Header["Authorization"]
	tok, found := "", 0
	for _, v := range vals {
		scheme, rest, ok := strings.Cut(v, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			continue
		}
		t := strings.TrimLeft(rest, " ")
		if _, _, _, ok := compactParts(t); ok {
			tok, found = t, found+1
		}
	}
	switch {
	case found == 0:
		return "", authn.ErrNoCredentials
	case len(vals) > 1:
		return "", authn.Fail(ReasonJWTMalformed, "%d Authorization headers", len(vals))
	}
	return tok, nil
}

// claimFacts are what the claims checks establish.
type claimFacts struct {
	subject   string
	exp       time.Time
	notBefore time.Time // the later of nbf and iat, less the leeway; zero when neither is present
	cnf       string
}

// verify checks tok from scratch (see the package documentation for the
// order) and returns the principal and the cache entry for it.
func (j *JWT) verify(ctx context.Context, ex *gateway.Exchange, tok string, now time.Time) (*gateway.Principal, *cacheEntry, error) {
	hs, ps, ss, _ := compactParts(tok)
	hb, err := b64.DecodeString(hs)
	if err != nil {
		return nil, nil, authn.Fail(ReasonJWTMalformed, "header is not base64url")
	}
	h, err := parseHeader(hb)
	if err != nil {
		return nil, nil, &authn.Failure{ReasonID: ReasonJWTMalformed, Detail: "bad header", Err: err}
	}
	if h.forbidden != "" {
		return nil, nil, authn.Fail(ReasonJWTHeader, "header parameter %q is not accepted", h.forbidden)
	}
	if strings.EqualFold(h.alg, "none") {
		return nil, nil, authn.Fail(ReasonJWTAlgorithm, "unsigned token (alg %s)", quote(h.alg))
	}
	pb, err := b64.DecodeString(ps)
	if err != nil {
		return nil, nil, authn.Fail(ReasonJWTMalformed, "payload is not base64url")
	}
	claims, err := parseClaims(pb)
	if err != nil {
		return nil, nil, &authn.Failure{ReasonID: ReasonJWTMalformed, Detail: "bad claims", Err: err}
	}
	issName, ok := claims["iss"].(string)
	if !ok {
		return nil, nil, authn.Fail(ReasonJWTIssuer, "no iss claim")
	}
	is := j.issuers[issName]
	if is == nil {
		return nil, nil, authn.Fail(ReasonJWTIssuer, "issuer %s is not configured", quote(issName))
	}
	alg := is.algs[h.alg]
	if alg == nil {
		return nil, nil, authn.Fail(ReasonJWTAlgorithm, "alg %s is not allowed for issuer %s", quote(h.alg), quote(is.iss))
	}
	if is.typ != "" && (!h.hasTyp || normalizeType(h.typ) != is.typ) {
		return nil, nil, authn.Fail(ReasonJWTType, "typ %s, want %q", quote(h.typ), is.typ)
	}
	sig, err := b64.DecodeString(ss)
	if err != nil || len(sig) == 0 {
		return nil, nil, authn.Fail(ReasonJWTSignature, "signature is empty or not base64url")
	}

	// The claims are checked now but reported only after the signature,
	// so that a forged token is reported as forged; an invalid token does
	// not make the key set refresh for its unknown kid.
	facts, claimsErr := is.checkClaims(claims, now, j.leeway)
	signed := []byte(tok[:len(hs)+1+len(ps)])
	set, err := j.verifySignature(ctx, is, alg, h.kid, signed, sig, now, claimsErr)
	if err != nil {
		return nil, nil, err
	}
	if claimsErr != nil {
		return nil, nil, claimsErr
	}
	if err := checkBinding(facts.cnf, ex); err != nil {
		return nil, nil, err
	}

	p := &gateway.Principal{
		Subject:       facts.subject,
		Authenticator: j.name,
		Kind:          "jwt",
		Claims:        claims,
		KeyID:         h.kid,
		ExpiresAt:     facts.exp,
	}
	if v, ok := claimValue(claims, is.rolesClaim); ok {
		if p.Roles, err = stringList(v); err != nil {
			return nil, nil, authn.Fail(ReasonJWTMalformed, "roles claim %q: %v", is.rolesClaim, err)
		}
	}
	if p.Scopes, err = is.scopes(claims); err != nil {
		return nil, nil, err
	}
	e := &cacheEntry{
		principal: *p,
		notBefore: facts.notBefore,
		notAfter:  facts.exp.Add(j.leeway),
		cnf:       facts.cnf,
		iss:       is,
		keys:      set,
	}
	e.evictAt = now.Add(cacheMaxAge)
	if e.notAfter.Before(e.evictAt) {
		e.evictAt = e.notAfter
	}
	return p, e, nil
}

// verifySignature finds the key for kid and alg and verifies sig over
// signed, returning the key set the key belongs to. When no key of the
// remote set has the kid, the set is refreshed (spaced by kidRefreshGap)
// unless claimsErr says the token is unacceptable anyway, in which case
// claimsErr is returned.
func (j *JWT) verifySignature(ctx context.Context, is *issuer, alg *algorithm, kid string, signed, sig []byte, now time.Time, claimsErr error) (*keySet, error) {
	var buf [maxCandidates]*verifyKey
	static := is.static.candidates(buf[:0], kid, alg)
	var remote *keySet
	var cands []*verifyKey
	if is.remote != nil {
		remote = is.remote.current(ctx, now)
		cands = remote.candidates(static, kid, alg)
		if !hasKID(cands, kid) {
			if claimsErr != nil {
				return nil, claimsErr
			}
			if remote != nil {
				is.remote.refresh(ctx, now, kidRefreshGap, true)
			}
			remote = is.remote.set.Load()
			cands = remote.candidates(static, kid, alg)
		}
		if remote == nil && len(cands) == 0 {
			return nil, fmt.Errorf("jwt: issuer %q: %w", is.iss, ErrKeysUnavailable)
		}
	} else {
		cands = static
	}
	for i, k := range cands {
		if alg.verifier.Verify(k.pub, signed, sig) == nil {
			if i < len(static) {
				return is.static, nil
			}
			return remote, nil
		}
	}
	if len(cands) == 0 {
		return nil, authn.Fail(ReasonJWTKeyUnknown, "issuer %s has no %s key with kid %s", quote(is.iss), alg.name, quote(kid))
	}
	return nil, authn.Fail(ReasonJWTSignature, "%s signature does not verify with the %d candidate keys", alg.name, len(cands))
}

// hasKID reports whether a token's kid selects a key among cands by name:
// true for kid-less tokens with candidates, false when only kid-less keys
// (PEM files, the HMAC secret) are left to try.
func hasKID(cands []*verifyKey, kid string) bool {
	if kid == "" {
		return len(cands) > 0
	}
	for _, k := range cands {
		if k.kid == kid {
			return true
		}
	}
	return false
}

// checkClaims checks exp, nbf, iat, aud, the required claims, the subject
// and the shape of cnf.
func (is *issuer) checkClaims(claims map[string]any, now time.Time, leeway time.Duration) (claimFacts, error) {
	var f claimFacts
	exp, ok, err := numericDate(claims, "exp")
	switch {
	case err != nil:
		return f, authn.Fail(ReasonJWTMalformed, "%v", err)
	case !ok:
		return f, authn.Fail(ReasonJWTClaims, "no exp claim")
	case !now.Before(exp.Add(leeway)):
		return f, authn.Fail(ReasonJWTExpired, "expired at %s", exp.UTC().Format(time.RFC3339))
	}
	f.exp = exp
	for _, name := range [...]string{"nbf", "iat"} {
		t, ok, err := numericDate(claims, name)
		switch {
		case err != nil:
			return f, authn.Fail(ReasonJWTMalformed, "%v", err)
		case !ok:
			continue
		case now.Add(leeway).Before(t):
			return f, authn.Fail(ReasonJWTNotYetValid, "%s is %s, in the future", name, t.UTC().Format(time.RFC3339))
		}
		if nb := t.Add(-leeway); nb.After(f.notBefore) {
			f.notBefore = nb
		}
	}
	if !audienceMatches(claims["aud"], is.audiences) {
		return f, authn.Fail(ReasonJWTAudience, "aud names none of the audiences of issuer %s", quote(is.iss))
	}
	for _, name := range is.required {
		if v, ok := claimValue(claims, name); !ok || v == nil {
			return f, authn.Fail(ReasonJWTClaims, "required claim %q is missing", name)
		}
	}
	v, _ := claimValue(claims, is.subjectClaim)
	if f.subject, _ = v.(string); f.subject == "" {
		return f, authn.Fail(ReasonJWTClaims, "no subject: claim %q is missing or not a string", is.subjectClaim)
	}
	cnf, bound, err := confirmationThumbprint(claims)
	switch {
	case err != nil:
		return f, authn.Fail(ReasonJWTCertBinding, "%v", err)
	case !bound && is.certBound:
		return f, authn.Fail(ReasonJWTCertBinding, "the token is not certificate-bound (no cnf.x5t#S256)")
	}
	f.cnf = cnf
	return f, nil
}

// scopes returns the scopes of claims: the scopes claim (space-separated
// or a list) followed by those of scp, without repeats.
func (is *issuer) scopes(claims map[string]any) ([]string, error) {
	var out []string
	for _, name := range [...]string{is.scopesClaim, "scp"} {
		v, ok := claimValue(claims, name)
		if !ok {
			continue
		}
		list, err := stringList(v)
		if err != nil {
			return nil, authn.Fail(ReasonJWTMalformed, "scopes claim %q: %v", name, err)
		}
		for _, s := range list {
			dup := false
			for _, have := range out {
				dup = dup || have == s
			}
			if !dup {
				out = append(out, s)
			}
		}
		if is.scopesClaim == "scp" {
			break
		}
	}
	return out, nil
}

// checkBinding checks an RFC 8705 binding: a token with cnf.x5t#S256 is
// accepted only over mutual TLS with the certificate of that thumbprint,
// whether or not the issuer is cert_bound (section 3: a resource server
// must not accept a bound token from another client).
func checkBinding(cnf string, ex *gateway.Exchange) error {
	switch {
	case cnf == "":
		return nil
	case ex.ClientCert == nil:
		return authn.Fail(ReasonJWTCertBinding, "certificate-bound token without a client certificate")
	case certThumbprint(ex.ClientCert) != cnf:
		return authn.Fail(ReasonJWTCertBinding, "the client certificate is not the one the token is bound to")
	}
	return nil
}

var _ authn.Authenticator = (*JWT)(nil)
