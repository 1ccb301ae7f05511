// Package apikey authenticates requests by moat API keys (see package keys),
// issued with moat keys create.
package apikey

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/moat-gateway/moat/internal/authn"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/keys"
)

// Reason IDs of the failures this authenticator returns.
const (
	// ReasonMalformed: the value where a key was expected is not a moat key
	// (wrong length, alphabet or checksum), or several keys were sent.
	ReasonMalformed = "api_key_malformed"
	// ReasonUnknown: no key has this ID, or its secret does not match.
	ReasonUnknown = "api_key_unknown"
	// ReasonRevoked: the key was revoked (moat keys revoke, or rotate
	// without grace).
	ReasonRevoked = "api_key_revoked"
	// ReasonExpired: the key's expiry has passed.
	ReasonExpired = "api_key_expired"
)

// DefaultHeaders are read when the configuration names none.
var DefaultHeaders = []string{"Authorization", "X-API-Key"}

// Options are decided per route, when the route's pipeline is built.
type Options struct {
	// AllowQuery reads the key from the authenticator's query_param too; set
	// it from the route's auth.allow_query_key. Without a query_param it
	// has no effect.
	AllowQuery bool
	// Now is the clock expiry is checked with. Default time.Now.
	Now func() time.Time
}

// APIKey authenticates requests by moat API keys. It is immutable and safe
// for concurrent use.
//
// It reads the key from the configured headers, in order, and then from
// the query parameter when the route allows it. Authorization is read with
// the Bearer scheme, and only a bearer token that starts with "moat_" is
// taken as a key: other bearer tokens (JWTs, opaque tokens) and other
// schemes are left to the next authenticator. Any other configured header
// (X-API-Key) and the query parameter belong to API keys, so a value there
// that is not a moat key is a failure, not "not mine".
type APIKey struct {
	name    string
	store   keys.Lookup
	headers []string // canonical
	bearer  bool     // Authorization is among headers
	query   string   // "" when keys are not read from the query
	now     func() time.Time
}

// New returns the api_key authenticator called name, looking keys up in
// store. cfg is the authenticator's configuration; opts hold the route's
// choices. It fails if a header name is not a valid token or repeats.
func New(name string, cfg *config.APIKeyAuth, store keys.Lookup, opts Options) (*APIKey, error) {
	if store == nil {
		return nil, errors.New("api_key authenticator: no key store")
	}
	a := &APIKey{name: name, store: store, now: opts.Now}
	if a.now == nil {
		a.now = time.Now
	}
	headers := DefaultHeaders
	if cfg != nil && len(cfg.Headers) > 0 {
		headers = cfg.Headers
	}
	seen := map[string]bool{}
	for _, h := range headers {
		if !validToken(h) {
			return nil, fmt.Errorf("api_key authenticator: %q is not a header name", h)
		}
		h = http.CanonicalHeaderKey(h)
		if seen[h] {
			return nil, fmt.Errorf("api_key authenticator: header %s is listed twice", h)
		}
		seen[h] = true
		a.headers = append(a.headers, h)
		a.bearer = a.bearer || h == "Authorization"
	}
	if cfg != nil && opts.AllowQuery {
		a.query = cfg.QueryParam
	}
	return a, nil
}

// Authenticate implements authn.Authenticator. It returns
// authn.ErrNoCredentials when the request carries no key, a *authn.Failure
// with one of the Reason constants for a key that is not accepted, and
// another error when the store cannot answer (the request fails closed).
// The key's hash is compared in constant time; a good key's use is recorded
// in the background.
func (a *APIKey) Authenticate(ctx context.Context, ex *gateway.Exchange) (*gateway.Principal, error) {
	key, source, err := a.extract(ex.Request)
	if err != nil {
		return nil, err
	}
	id, _, err := keys.Parse(key)
	if err != nil {
		return nil, &authn.Failure{ReasonID: ReasonMalformed, Detail: "in " + source, Err: err}
	}
	e, err := a.store.Lookup(ctx, id)
	if errors.Is(err, keys.ErrNotFound) {
		return nil, keyFailure(id, authn.Fail(ReasonUnknown, "key %s does not exist", id))
	}
	if err != nil {
		return nil, fmt.Errorf("looking up api key %s: %w", id, err)
	}
	if h := keys.HashKey(key); !e.Hash.Equal(&h) {
		return nil, keyFailure(id, authn.Fail(ReasonUnknown, "key %s: secret does not match", id))
	}
	now := a.now()
	if !e.RevokedAt.IsZero() {
		return nil, keyFailure(id, authn.Fail(ReasonRevoked, "key %s was revoked at %s", id, e.RevokedAt.UTC().Format(time.RFC3339)))
	}
	if !e.ExpiresAt.IsZero() && !now.Before(e.ExpiresAt) {
		return nil, keyFailure(id, authn.Fail(ReasonExpired, "key %s expired at %s", id, e.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	a.store.Used(e, now)
	return &gateway.Principal{
		Subject:       e.Subject,
		Authenticator: a.name,
		Kind:          "api_key",
		Roles:         e.Roles, // shared with the entry: stages must not change a Principal
		Scopes:        e.Scopes,
		KeyID:         e.ID,
		Plan:          e.Plan,
		ExpiresAt:     e.ExpiresAt,
	}, nil
}

// extract returns the key and where it was found.
func (a *APIKey) extract(r *http.Request) (key, source string, err error) {
	for _, h := range a.headers {
		vals := r.Header.Values(h)
		if h == "Authorization" {
			n := 0
			for _, v := range vals {
				if tok, ok := bearerKey(v); ok {
					key, n = tok, n+1
				}
			}
			if n > 1 {
				return "", "", authn.Fail(ReasonMalformed, "several api keys in Authorization headers")
			}
			if n == 1 {
				return key, "Authorization", nil
			}
			continue
		}
		switch len(vals) {
		case 0:
			continue
		case 1:
			return vals[0], h, nil
		default:
			return "", "", authn.Fail(ReasonMalformed, "several %s headers", h)
		}
	}
	if a.query != "" && r.URL.RawQuery != "" {
		switch vals := r.URL.Query()[a.query]; len(vals) {
		case 0:
		case 1:
			return vals[0], "query parameter " + a.query, nil
		default:
			return "", "", authn.Fail(ReasonMalformed, "several %s query parameters", a.query)
		}
	}
	return "", "", authn.ErrNoCredentials
}

// bearerKey returns the token of a "Bearer moat_..." Authorization value.
func bearerKey(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	return tok, strings.HasPrefix(tok, keys.Prefix)
}

// Challenge implements authn.Authenticator: `Bearer realm="moat"` when keys
// are read from Authorization, where they travel as bearer tokens; "" when
// they are read only from other headers or the query, for which HTTP has no
// challenge.
func (a *APIKey) Challenge() string {
	if a.bearer {
		return `Bearer realm="moat"`
	}
	return ""
}

// validToken reports whether s is an RFC 9110 token, as header names are.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

var _ authn.Authenticator = (*APIKey)(nil)

// keyFailure records the key ID as the failure's identity: IDs are public,
// and the brute-force lockout then counts guesses at one key's secret from
// many addresses.
func keyFailure(id string, f *authn.Failure) *authn.Failure {
	f.Identity = id
	return f
}
