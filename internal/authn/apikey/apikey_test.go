package apikey

import (
	"context"
	"errors"
	"hash/crc32"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/authn"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/keys"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	cache                               *keys.Cache
	store                               *keys.File
	good, revoked, expired, wrongSecret string
	goodID                              string
}

// newFixture issues keys in an embedded store and returns a cache over it.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	s, err := keys.OpenFile(filepath.Join(t.TempDir(), "keys.db"), keys.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: s}
	issue := func(r keys.Record) (keys.Record, string) {
		rec, key, err := keys.Issue(ctx, s, r, t0)
		if err != nil {
			t.Fatal(err)
		}
		return rec, key
	}
	rec, key := issue(keys.Record{Subject: "alice", Roles: []string{"admin"}, Scopes: []string{"books:read"}, Plan: "gold", ExpiresAt: t0.Add(48 * time.Hour)})
	f.good, f.goodID = key, rec.ID
	rec, f.revoked = issue(keys.Record{Subject: "bob"})
	s.Revoke(ctx, rec.ID, t0)
	_, f.expired = issue(keys.Record{Subject: "carol", ExpiresAt: t0.Add(time.Hour)})
	// Same ID as the good key, another secret, valid checksum.
	other, _ := keys.Generate()
	f.wrongSecret = withID(t, other, f.goodID)

	f.cache, err = keys.NewCache(ctx, s, keys.CacheOptions{RefreshInterval: time.Hour, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.cache.Close() })
	return f
}

// withID returns key with its ID replaced and its checksum recomputed (CRC-32
// IEEE in base62, as package keys documents): a well-formed key whose secret
// does not belong to the ID.
func withID(t *testing.T, key, id string) string {
	t.Helper()
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	body := key[:5] + id + key[13:58]
	sum := crc32.ChecksumIEEE([]byte(body[:57]))
	b := make([]byte, 6)
	for i := 5; i >= 0; i-- {
		b[i] = alphabet[sum%62]
		sum /= 62
	}
	out := body + string(b)
	if gotID, _, err := keys.Parse(out); err != nil || gotID != id {
		t.Fatalf("building a key with ID %s: %v", id, err)
	}
	return out
}

func newExchange(target string, headers map[string][]string) *gateway.Exchange {
	r := httptest.NewRequest("GET", target, nil)
	for k, vs := range headers {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	return &gateway.Exchange{Request: r}
}

func TestAuthenticate(t *testing.T) {
	f := newFixture(t)
	now := func() time.Time { return t0.Add(2 * time.Hour) }
	a, err := New("keys", &config.APIKeyAuth{QueryParam: "api_key"}, f.cache, Options{AllowQuery: true, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	noQuery, _ := New("keys", &config.APIKeyAuth{QueryParam: "api_key"}, f.cache, Options{Now: now})
	tests := []struct {
		desc    string
		auth    *APIKey // default a
		target  string
		headers map[string][]string
		reason  string // "" for success
		noCreds bool
	}{
		{desc: "bearer", headers: map[string][]string{"Authorization": {"Bearer " + f.good}}},
		{desc: "bearer scheme is case-insensitive", headers: map[string][]string{"Authorization": {"bearer  " + f.good}}},
		{desc: "X-API-Key", headers: map[string][]string{"X-Api-Key": {f.good}}},
		{desc: "query allowed", target: "/?api_key=" + f.good},
		{desc: "nothing", noCreds: true},
		{desc: "basic credentials are not mine", headers: map[string][]string{"Authorization": {"Basic YTpi"}}, noCreds: true},
		{desc: "a JWT is not mine", headers: map[string][]string{"Authorization": {"Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"}}, noCreds: true},
		{desc: "query not allowed on the route", auth: noQuery, target: "/?api_key=" + f.good, noCreds: true},
		{desc: "malformed bearer key", headers: map[string][]string{"Authorization": {"Bearer moat_short"}}, reason: ReasonMalformed},
		{desc: "malformed X-API-Key", headers: map[string][]string{"X-API-Key": {"secret123"}}, reason: ReasonMalformed},
		{desc: "empty X-API-Key", headers: map[string][]string{"X-API-Key": {""}}, reason: ReasonMalformed},
		{desc: "typo fails the checksum", headers: map[string][]string{"X-API-Key": {typo(f.good)}}, reason: ReasonMalformed},
		{desc: "two X-API-Key headers", headers: map[string][]string{"X-API-Key": {f.good, f.good}}, reason: ReasonMalformed},
		{desc: "two bearer keys", headers: map[string][]string{"Authorization": {"Bearer " + f.good, "Bearer " + f.revoked}}, reason: ReasonMalformed},
		{desc: "two query keys", target: "/?api_key=" + f.good + "&api_key=" + f.good, reason: ReasonMalformed},
		{desc: "unknown ID", headers: map[string][]string{"X-API-Key": {mustGenerate()}}, reason: ReasonUnknown},
		{desc: "known ID, wrong secret", headers: map[string][]string{"X-API-Key": {f.wrongSecret}}, reason: ReasonUnknown},
		{desc: "revoked", headers: map[string][]string{"X-API-Key": {f.revoked}}, reason: ReasonRevoked},
		{desc: "expired", headers: map[string][]string{"X-API-Key": {f.expired}}, reason: ReasonExpired},
		{desc: "Authorization is read before X-API-Key", headers: map[string][]string{"Authorization": {"Bearer " + f.revoked}, "X-API-Key": {f.good}}, reason: ReasonRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			auth := a
			if tt.auth != nil {
				auth = tt.auth
			}
			target := tt.target
			if target == "" {
				target = "/"
			}
			p, err := auth.Authenticate(context.Background(), newExchange(target, tt.headers))
			switch {
			case tt.noCreds:
				if !errors.Is(err, authn.ErrNoCredentials) {
					t.Fatalf("got %v, %v; want ErrNoCredentials", p, err)
				}
			case tt.reason != "":
				var fail *authn.Failure
				if !errors.As(err, &fail) || fail.ReasonID != tt.reason {
					t.Fatalf("got %v, %v; want failure %s", p, err, tt.reason)
				}
				for _, k := range []string{f.good, f.revoked, f.expired, f.wrongSecret} {
					if strings.Contains(err.Error(), k[14:57]) {
						t.Fatalf("failure %q reveals a secret", err)
					}
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				want := &gateway.Principal{Subject: "alice", Authenticator: "keys", Kind: "api_key", Roles: []string{"admin"},
					Scopes: []string{"books:read"}, KeyID: f.goodID, Plan: "gold", ExpiresAt: t0.Add(48 * time.Hour)}
				if !reflect.DeepEqual(p, want) {
					t.Fatalf("principal %+v\nwant %+v", p, want)
				}
			}
		})
	}
}

func TestStoreFaultFailsClosed(t *testing.T) {
	a, _ := New("keys", nil, brokenStore{}, Options{})
	_, err := a.Authenticate(context.Background(), newExchange("/", map[string][]string{"X-API-Key": {mustGenerate()}}))
	var fail *authn.Failure
	if err == nil || errors.Is(err, authn.ErrNoCredentials) || errors.As(err, &fail) {
		t.Fatalf("got %v, want an internal error", err)
	}
}

type brokenStore struct{}

func (brokenStore) Lookup(context.Context, string) (*keys.Entry, error) { return nil, keys.ErrStale }
func (brokenStore) Used(*keys.Entry, time.Time)                         {}

func TestUseIsRecorded(t *testing.T) {
	f := newFixture(t)
	a, _ := New("keys", nil, f.cache, Options{Now: func() time.Time { return t0.Add(time.Minute) }})
	if _, err := a.Authenticate(context.Background(), newExchange("/", map[string][]string{"X-API-Key": {f.good}})); err != nil {
		t.Fatal(err)
	}
	f.cache.Close() // flushes last-use times
	r, _ := f.store.Get(context.Background(), f.goodID)
	if !r.LastUsedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("LastUsedAt %v, want %v", r.LastUsedAt, t0.Add(time.Minute))
	}
}

func TestNew(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		desc      string
		cfg       *config.APIKeyAuth
		store     keys.Lookup
		err       string
		challenge string
	}{
		{desc: "defaults", cfg: nil, store: f.cache, challenge: `Bearer realm="moat"`},
		{desc: "custom header only: no challenge", cfg: &config.APIKeyAuth{Headers: []string{"x-moat-key"}}, store: f.cache, challenge: ""},
		{desc: "no store", cfg: nil, err: "no key store"},
		{desc: "bad header name", cfg: &config.APIKeyAuth{Headers: []string{"X API Key"}}, store: f.cache, err: "not a header name"},
		{desc: "repeated header", cfg: &config.APIKeyAuth{Headers: []string{"X-API-Key", "x-api-key"}}, store: f.cache, err: "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			a, err := New("k", tt.cfg, tt.store, Options{})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Challenge(); got != tt.challenge {
				t.Fatalf("Challenge() = %q, want %q", got, tt.challenge)
			}
		})
	}
}

func TestCustomHeaderIsRead(t *testing.T) {
	f := newFixture(t)
	a, _ := New("k", &config.APIKeyAuth{Headers: []string{"x-moat-key"}}, f.cache, Options{Now: func() time.Time { return t0 }})
	if _, err := a.Authenticate(context.Background(), newExchange("/", map[string][]string{"X-Moat-Key": {f.good}})); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(context.Background(), newExchange("/", map[string][]string{"Authorization": {"Bearer " + f.good}})); !errors.Is(err, authn.ErrNoCredentials) {
		t.Fatalf("Authorization read although not configured: %v", err)
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	ctx := context.Background()
	s, _ := keys.OpenFile(filepath.Join(b.TempDir(), "keys.db"), keys.FileOptions{})
	_, key, _ := keys.Issue(ctx, s, keys.Record{Subject: "alice", Roles: []string{"admin"}}, t0)
	c, _ := keys.NewCache(ctx, s, keys.CacheOptions{RefreshInterval: time.Hour, FlushInterval: time.Hour})
	defer c.Close()
	a, _ := New("keys", nil, c, Options{})
	ex := newExchange("/", map[string][]string{"Authorization": {"Bearer " + key}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(ctx, ex); err != nil {
			b.Fatal(err)
		}
	}
}

func mustGenerate() string { k, _ := keys.Generate(); return k }

// typo changes one character of the secret.
func typo(key string) string {
	b := []byte(key)
	if b[30] == 'x' {
		b[30] = 'y'
	} else {
		b[30] = 'x'
	}
	return string(b)
}
