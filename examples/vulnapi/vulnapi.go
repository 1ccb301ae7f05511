// Package vulnapi is a deliberately vulnerable sample API: a small shop with
// two users, alice (id 1) and bob (id 2), that carries one planted flaw for
// each probe of moat scan (docs/scan.md), and a hardened variant that fixes
// every one of them in its own code. It exists to demonstrate moat scan and
// what the gateway closes when it stands in front of the API
// (examples/vulnapi.moat.yaml); never expose it to a network you do not own.
//
// Planted flaws (Options.Hardened false):
//
//   - unauthenticated-access, function-level-authz: GET /v2/admin/users
//     answers anyone, with every user.
//   - bola: GET /v2/users/{id} returns any user to any authenticated caller.
//   - undeclared-property, sensitive-data: users carry password_hash and a
//     card number; /v2/users/{id} also returns the e-mail address its
//     schema does not declare.
//   - jwt-alg-none, jwt-weak-secret, jwt-expired-accepted: the API's own
//     HS256 tokens use the secret "secret", alg none is accepted and exp is
//     not checked.
//   - cors: any Origin is reflected with credentials.
//   - security-headers: no X-Content-Type-Options, and over HTTPS no
//     Strict-Transport-Security.
//   - trace-enabled: TRACE echoes the request.
//   - undocumented-endpoint: /actuator, /actuator/env and an older /v1/me.
//   - missing-rate-limit: none.
//   - injection: a quote in /v2/products?q= produces a MySQL syntax error
//     in the response.
//   - verbose-errors: a fetch that fails (/v2/fetch?url= with any URL
//     Fetch refuses, such as the example value of the document) is
//     answered 500 with the server's panic trace.
//   - ssrf: /v2/fetch?url= fetches any URL (loopback only, see Fetch).
//   - mass-assignment: POST /v2/orders copies every body member into the
//     order, readOnly id and status and an undeclared is_admin included.
//   - weak-tls: over HTTPS (TLSConfig; cmd/vulnapi -tls), TLS 1.0 and 1.1
//     are accepted, and TLS_RSA_WITH_3DES_EDE_CBC_SHA (WeakCipherSuite).
//
// The API's OpenAPI 3.0 document is OpenAPI (openapi.yaml).
package vulnapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// OpenAPI is examples/vulnapi/openapi.yaml, the document of the API.
//
//go:embed openapi.yaml
var OpenAPI []byte

// BobKey is bob's API key (header X-API-Key).
const BobKey = "bob-key-0123456789"

// WeakSecret is the HS256 secret of the vulnerable variant's tokens: one of
// the well-known weak secrets moat scan tries.
const WeakSecret = "secret"

// HardenedSecret is the HS256 secret of the hardened variant.
const HardenedSecret = "a-long-random-secret-nobody-guesses-7f3a9c"

// Options configure the API. The zero value is the vulnerable variant.
type Options struct {
	// Hardened fixes every planted flaw in the API's own code.
	Hardened bool
	// SubjectHeader, when set, makes the API trust this request header
	// (such as X-Moat-Subject, set by moat after it authenticated the
	// caller) for the caller's user ID instead of checking credentials
	// itself: the deployment behind a gateway. The header must only be
	// trusted when every request comes through the gateway, which removes
	// client-sent copies.
	SubjectHeader string
	// Fetch is the client of /v2/fetch. Nil means a client that connects
	// to loopback addresses only, so the planted SSRF cannot reach
	// anything beyond the machine.
	Fetch *http.Client
	// Now is the clock for token expiry; nil means time.Now.
	Now func() time.Time
}

// API is the sample API. It is safe for concurrent use.
type API struct {
	o        Options
	secret   string
	requests atomic.Int64
	writes   atomic.Int64
	mu       sync.Mutex
	orders   []map[string]any
}

// New returns the API configured by o.
func New(o Options) *API {
	if o.Fetch == nil {
		o.Fetch = loopbackClient()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &API{o: o, secret: WeakSecret}
	if o.Hardened {
		a.secret = HardenedSecret
	}
	return a
}

// Handler returns New(o) as an http.Handler.
func Handler(o Options) http.Handler { return New(o) }

// loopbackClient fetches from loopback addresses only.
func loopbackClient() *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		ip := net.ParseIP(host)
		if err != nil || ip == nil || !ip.IsLoopback() {
			return nil, errors.New("vulnapi fetcher: loopback addresses only")
		}
		return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
	}
	return &http.Client{
		Timeout:       2 * time.Second,
		Transport:     &http.Transport{DialContext: dial, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Requests returns how many requests the API has served.
func (a *API) Requests() int64 { return a.requests.Load() }

// Writes returns how many requests with a method other than GET, HEAD,
// OPTIONS and TRACE the API has served.
func (a *API) Writes() int64 { return a.writes.Load() }

// SignHS256 returns a JWT with the claims, signed with HS256 and secret.
func SignHS256(secret string, claims map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	c, _ := json.Marshal(claims)
	in := h + "." + base64.RawURLEncoding.EncodeToString(c)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// AliceToken returns a token for alice that the API accepts, valid for an
// hour.
func (a *API) AliceToken() string {
	return SignHS256(a.secret, map[string]any{"sub": "1", "exp": a.o.Now().Add(time.Hour).Unix()})
}

// user returns the caller's user ID, 0 when unauthenticated.
func (a *API) user(r *http.Request) int {
	if a.o.SubjectHeader != "" {
		id, _ := strconv.Atoi(r.Header.Get(a.o.SubjectHeader))
		return id
	}
	if r.Header.Get("X-API-Key") == BobKey {
		return 2
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return 0
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return 0
	}
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var h struct{ Alg string }
	if json.Unmarshal(hb, &h) != nil {
		return 0
	}
	switch {
	case strings.EqualFold(h.Alg, "none") && !a.o.Hardened:
		// planted: unsigned tokens accepted
	case h.Alg == "HS256":
		m := hmac.New(sha256.New, []byte(a.secret))
		m.Write([]byte(parts[0] + "." + parts[1]))
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		if !hmac.Equal(sig, m.Sum(nil)) {
			return 0
		}
	default:
		return 0
	}
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		Sub string
		Exp int64
	}
	if json.Unmarshal(cb, &c) != nil {
		return 0
	}
	if a.o.Hardened && c.Exp < a.o.Now().Unix() {
		return 0
	}
	id, _ := strconv.Atoi(c.Sub)
	return id
}

// users are the API's records; the values are fake.
var users = map[int]map[string]any{
	1: {"id": 1, "name": "alice", "email": "alice@example.com", "password_hash": "$2a$10$abcdefghijklmnopqrstuv", "card": "4111 1111 1111 1111"},
	2: {"id": 2, "name": "bob", "email": "bob@example.com", "password_hash": "$2a$10$zyxwvutsrqponmlkjihgfe", "card": "5555555555554444"},
}

// view returns what the API shows of a user: everything in the vulnerable
// variant (planted exposure), the declared properties in the hardened one.
func (a *API) view(u map[string]any, withEmail bool) map[string]any {
	if !a.o.Hardened {
		return u
	}
	out := map[string]any{"id": u["id"], "name": u["name"]}
	if withEmail {
		out["email"] = u["email"]
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ServeHTTP serves the API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.requests.Add(1)
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions && r.Method != http.MethodTrace {
		a.writes.Add(1)
	}
	if a.o.Hardened {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		}
		w.Header().Set("RateLimit-Policy", "100;w=60")
		if o := r.Header.Get("Origin"); o == "https://app.example.com" {
			w.Header().Set("Access-Control-Allow-Origin", o)
			w.Header().Set("Access-Control-Allow-Credentials", "true")
		}
	} else if o := r.Header.Get("Origin"); o != "" {
		// planted: any origin reflected with credentials
		w.Header().Set("Access-Control-Allow-Origin", o)
		w.Header().Set("Access-Control-Allow-Credentials", "true")
	}
	if r.Method == http.MethodTrace {
		if a.o.Hardened {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		// planted: cross-site tracing
		w.Header().Set("Content-Type", "message/http")
		_ = r.Write(w)
		return
	}
	uid := a.user(r)
	p := r.URL.Path
	switch {
	case p == "/v2/me" && r.Method == http.MethodGet:
		if uid == 0 || users[uid] == nil {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return
		}
		writeJSON(w, http.StatusOK, a.view(users[uid], true))
	case strings.HasPrefix(p, "/v2/users/") && r.Method == http.MethodGet:
		id, err := strconv.Atoi(strings.TrimPrefix(p, "/v2/users/"))
		u, ok := users[id]
		switch {
		case uid == 0:
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
		case err != nil || !ok:
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
		case a.o.Hardened && id != uid:
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden"})
		default:
			writeJSON(w, http.StatusOK, a.view(u, false))
		}
	case p == "/v2/admin/users" && r.Method == http.MethodGet:
		if a.o.Hardened && uid != 99 {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden"})
			return
		}
		writeJSON(w, http.StatusOK, []any{a.view(users[1], true), a.view(users[2], true)})
	case p == "/v2/products" && r.Method == http.MethodGet:
		q := r.URL.Query().Get("q")
		if !a.o.Hardened && strings.Contains(q, "'") {
			// planted: the query is built by concatenation and the
			// database error is returned to the client
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "error: You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near '%s'", q)
			return
		}
		writeJSON(w, http.StatusOK, []any{map[string]any{"name": "book"}})
	case p == "/v2/fetch" && r.Method == http.MethodGet:
		target := r.URL.Query().Get("url")
		if a.o.Hardened && !strings.HasPrefix(target, "https://images.example.com/") {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "url not allowed"})
			return
		}
		res, err := a.o.Fetch.Get(target)
		if err != nil && !a.o.Hardened {
			// planted: the failure is answered with the server's panic
			// trace, internals (paths, functions, the error) included
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "panic: fetching %q: %v\n\ngoroutine 57 [running]:\nshop/internal/fetch.(*Client).Get(0xc000182000, {0xc0001a4000, 0x1d})\n\t/srv/shop/internal/fetch/fetch.go:41 +0x1d2\nshop/internal/api.(*API).fetch(...)\n\t/srv/shop/internal/api/fetch.go:88\n", target, err)
			return
		}
		if err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": "fetch failed"})
			return
		}
		res.Body.Close()
		writeJSON(w, http.StatusOK, map[string]any{"status": res.StatusCode})
	case p == "/v2/orders" && r.Method == http.MethodPost:
		var body map[string]any
		if json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body) != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad json"})
			return
		}
		a.mu.Lock()
		order := map[string]any{"item": body["item"], "status": "new", "id": len(a.orders) + 100}
		if !a.o.Hardened {
			for k, v := range body { // planted: mass assignment
				order[k] = v
			}
		}
		if len(a.orders) < 10000 {
			a.orders = append(a.orders, order)
		}
		a.mu.Unlock()
		writeJSON(w, http.StatusCreated, order)
	case (p == "/actuator" || p == "/actuator/env") && !a.o.Hardened:
		writeJSON(w, http.StatusOK, map[string]any{"_links": map[string]any{"env": "/actuator/env"}})
	case p == "/v1/me" && !a.o.Hardened:
		writeJSON(w, http.StatusOK, a.view(users[1], true))
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
	}
}

var _ http.Handler = (*API)(nil)
