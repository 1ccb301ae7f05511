package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/moat-gateway/moat/internal/audit"
	"github.com/moat-gateway/moat/internal/authn"
	"github.com/moat-gateway/moat/internal/authn/apikey"
	"github.com/moat-gateway/moat/internal/authn/basic"
	"github.com/moat-gateway/moat/internal/authn/clientcert"
	"github.com/moat-gateway/moat/internal/authn/introspect"
	"github.com/moat-gateway/moat/internal/authn/jwt"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/keys"
	"github.com/moat-gateway/moat/internal/ratelimit"
)

// authSet holds the authenticators of one configuration, built once and
// shared by the routes that list them (API key authenticators are built per
// route, since a route decides whether keys may come in the query string).
type authSet struct {
	byName   map[string]authn.Authenticator
	starters []func()
	closers  []func()
}

// buildAuthenticators builds every named authenticator; problems are added
// with the authenticator's path. Nothing starts until the starters run.
func buildAuthenticators(cfg *config.Config, log *slog.Logger, probs *config.Problems) *authSet {
	set := &authSet{byName: map[string]authn.Authenticator{}}
	names := make([]string, 0, len(cfg.Authenticators))
	for n := range cfg.Authenticators {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		a := cfg.Authenticators[name]
		path := "authenticators." + name
		l := log.With("authenticator", name)
		switch {
		case a.Basic != nil:
			b, err := basic.New(name, a.Basic, l)
			if err != nil {
				probs.Add(path+".basic", err)
				continue
			}
			set.byName[name] = b
			set.starters = append(set.starters, func() { b.Start(context.Background()) })
			set.closers = append(set.closers, func() { b.Close() })
		case a.JWT != nil:
			j, err := jwt.New(name, a.JWT, jwt.WithLogger(l))
			if err != nil {
				probs.Add(path+".jwt", err)
				continue
			}
			set.byName[name] = j
			set.starters = append(set.starters, func() { j.Start(context.Background()) })
			set.closers = append(set.closers, func() { j.Close() })
		case a.Introspection != nil:
			in, err := introspect.New(name, a.Introspection, l)
			if err != nil {
				probs.Add(path+".introspection", err)
				continue
			}
			set.byName[name] = in
			set.closers = append(set.closers, func() { in.Close() })
		case a.ClientCert != nil:
			cc, err := clientcert.New(name, a.ClientCert)
			if err != nil {
				probs.Add(path+".client_cert", err)
				continue
			}
			set.byName[name] = cc
		}
	}
	return set
}

// authStage builds the authentication stage of a route. Routes without auth
// still get one: it removes principal headers a client sent.
func authStage(cfg *config.Config, state *State, set *authSet, rc *config.Route) (*authn.Stage, error) {
	h := cfg.PrincipalHeaders
	o := authn.StageOptions{Headers: authn.Headers{Disabled: h.Disabled, Subject: h.Subject, Authenticator: h.Authenticator,
		Roles: h.Roles, Scopes: h.Scopes, Claims: h.Claims}}
	if rc.Auth == nil {
		return authn.NewStage(o), nil
	}
	o.PassCredential = rc.Auth.PassCredential
	o.Credentials = []string{"Authorization"}
	for _, name := range rc.Auth.Authenticators {
		ac := cfg.Authenticators[name]
		if ac == nil {
			continue
		}
		var a authn.Authenticator
		if ac.APIKey != nil {
			k, err := apikey.New(name, ac.APIKey, state.keyLookup(cfg), apikey.Options{AllowQuery: rc.Auth.AllowQueryKey})
			if err != nil {
				return nil, fmt.Errorf("authenticator %s: %w", name, err)
			}
			a = k
			o.Credentials = append(o.Credentials, ac.APIKey.Headers...)
			if ac.APIKey.QueryParam != "" {
				o.QueryParams = append(o.QueryParams, ac.APIKey.QueryParam)
			}
		} else if a = set.byName[name]; a == nil {
			continue // its construction failed and was reported
		}
		o.Authenticators = append(o.Authenticators, authn.Named{Name: name, Authenticator: a})
	}
	if b := cfg.BruteForce; !b.Disabled {
		store, policy := ratelimit.Store(state.Memory()), ratelimit.Local
		if cfg.State.Redis != nil {
			shared, err := state.shared(cfg.State.Redis)
			if err != nil {
				return nil, err
			}
			store = shared
		}
		o.Lockout = &authn.Lockout{Store: store, MaxFailures: b.MaxFailures, Window: b.Window.D(), Cooldown: b.Cooldown.D(),
			Policy: policy, IPv6Prefix: 64}
	}
	return authn.NewStage(o), nil
}

// keyLookup returns the API key lookup of cfg's key store. The store is
// opened on the first lookup, not here: moat validate and a failed reload
// open no file and no connection. The cache it opens lives in the State and
// survives reloads.
func (s *State) keyLookup(cfg *config.Config) keys.Lookup {
	id := keys.FilePath(cfg)
	if r := cfg.State.Redis; r != nil {
		id = fmt.Sprintf("redis:%v:%s:%d", r.Addresses, r.MasterName, r.DB)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.keys[id]; ok {
		return l
	}
	l := &lazyKeys{open: func() (*keys.Cache, error) {
		store, err := keys.Open(cfg, keys.RedisOptions{})
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return keys.NewCache(ctx, store, keys.CacheOptions{Log: s.log.With("component", "apikeys"), OnChange: s.auditKeyChange})
	}}
	s.keys[id] = l
	return l
}

// auditKeyChange records a key change the API key cache noticed in its
// store (moat keys, the admin API, another instance) as an audit event.
func (s *State) auditKeyChange(old *keys.Entry, r *keys.Record) {
	a := s.Auditor()
	if a == nil {
		return
	}
	action := audit.ActionKeyUpdate
	switch {
	case old == nil && r.RotatedFrom != "":
		action = audit.ActionKeyRotate
	case old == nil:
		action = audit.ActionKeyCreate
	case old.RevokedAt.IsZero() && !r.RevokedAt.IsZero():
		action = audit.ActionKeyRevoke
	}
	ev := audit.KeyChange(time.Now(), action, r.ID, r.Subject, "")
	a.Record(&ev)
}
