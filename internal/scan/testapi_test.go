package scan

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
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

// testAPI is a small shop API with two users, alice (id 1, Bearer JWT) and
// bob (id 2, X-API-Key), in a vulnerable and a hardened variant.
type testAPI struct {
	hardened bool
	secret   string
	requests atomic.Int64
	writes   atomic.Int64
	mu       sync.Mutex
	orders   []map[string]any
	fetch    *http.Client
}

func newTestAPI(hardened bool) *testAPI {
	// The fetcher reaches loopback only: tests never leave the machine.
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" {
			return nil, errors.New("test fetcher: loopback only")
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	a := &testAPI{hardened: hardened, secret: "secret", fetch: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: dial, Proxy: nil}}}
	if hardened {
		a.secret = "a-long-random-secret-nobody-guesses-7f3a9c"
	}
	return a
}

func signHS256(secret string, claims map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	c, _ := json.Marshal(claims)
	in := h + "." + base64.RawURLEncoding.EncodeToString(c)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (a *testAPI) aliceToken() string {
	return signHS256(a.secret, map[string]any{"sub": "1", "exp": time.Now().Add(time.Hour).Unix()})
}

const bobKey = "bob-key-0123456789"

// user returns the caller's user ID, 0 when unauthenticated.
func (a *testAPI) user(r *http.Request) int {
	if r.Header.Get("X-API-Key") == bobKey {
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
	case strings.EqualFold(h.Alg, "none") && !a.hardened:
		// vulnerable: unsigned tokens accepted
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
	if a.hardened && c.Exp < time.Now().Unix() {
		return 0
	}
	id, _ := strconv.Atoi(c.Sub)
	return id
}

var testUsers = map[int]map[string]any{
	1: {"id": 1, "name": "alice", "email": "alice@example.com", "password_hash": "$2a$10$abcdefghijklmnopqrstuv", "card": "4111 1111 1111 1111"},
	2: {"id": 2, "name": "bob", "email": "bob@example.com", "password_hash": "$2a$10$zyxwvutsrqponmlkjihgfe", "card": "5555555555554444"},
}

func (a *testAPI) public(u map[string]any, withEmail bool) map[string]any {
	if !a.hardened {
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

func (a *testAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.requests.Add(1)
	if r.Method != "GET" && r.Method != "HEAD" && r.Method != "OPTIONS" && r.Method != "TRACE" {
		a.writes.Add(1)
	}
	if a.hardened {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("RateLimit-Policy", "100;w=60")
		if o := r.Header.Get("Origin"); o == "https://app.example.com" {
			w.Header().Set("Access-Control-Allow-Origin", o)
			w.Header().Set("Access-Control-Allow-Credentials", "true")
		}
	} else if o := r.Header.Get("Origin"); o != "" {
		w.Header().Set("Access-Control-Allow-Origin", o)
		w.Header().Set("Access-Control-Allow-Credentials", "true")
	}
	if r.Method == "TRACE" {
		if a.hardened {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "message/http")
		_ = r.Write(w)
		return
	}
	uid := a.user(r)
	p := r.URL.Path
	switch {
	case p == "/v2/me" && r.Method == "GET":
		if uid == 0 {
			writeJSON(w, 401, map[string]string{"error": "unauthorized"})
			return
		}
		writeJSON(w, 200, a.public(testUsers[uid], true))
	case strings.HasPrefix(p, "/v2/users/") && r.Method == "GET":
		id, err := strconv.Atoi(strings.TrimPrefix(p, "/v2/users/"))
		u, ok := testUsers[id]
		switch {
		case uid == 0:
			writeJSON(w, 401, map[string]string{"error": "unauthorized"})
		case err != nil || !ok:
			writeJSON(w, 404, map[string]string{"error": "not found"})
		case a.hardened && id != uid:
			writeJSON(w, 403, map[string]string{"error": "forbidden"})
		default:
			writeJSON(w, 200, a.public(u, false))
		}
	case p == "/v2/admin/users" && r.Method == "GET":
		if a.hardened && uid != 99 {
			writeJSON(w, 403, map[string]string{"error": "forbidden"})
			return
		}
		writeJSON(w, 200, []any{a.public(testUsers[1], true), a.public(testUsers[2], true)})
	case p == "/v2/products" && r.Method == "GET":
		q := r.URL.Query().Get("q")
		if !a.hardened && strings.ContainsAny(q, "'") {
			w.WriteHeader(500)
			fmt.Fprintf(w, "error: You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near '%s'", q)
			return
		}
		writeJSON(w, 200, []any{map[string]any{"name": "book"}})
	case p == "/v2/fetch" && r.Method == "GET":
		target := r.URL.Query().Get("url")
		if a.hardened && !strings.HasPrefix(target, "https://images.example.com/") {
			writeJSON(w, 400, map[string]string{"error": "url not allowed"})
			return
		}
		res, err := a.fetch.Get(target)
		if err != nil {
			writeJSON(w, 502, map[string]string{"error": "fetch failed"})
			return
		}
		res.Body.Close()
		writeJSON(w, 200, map[string]any{"status": res.StatusCode})
	case p == "/v2/orders" && r.Method == "POST":
		var body map[string]any
		if json.NewDecoder(r.Body).Decode(&body) != nil {
			writeJSON(w, 400, map[string]string{"error": "bad json"})
			return
		}
		a.mu.Lock()
		order := map[string]any{"item": body["item"], "status": "new", "id": len(a.orders) + 100}
		if !a.hardened {
			for k, v := range body {
				order[k] = v
			}
		}
		a.orders = append(a.orders, order)
		a.mu.Unlock()
		writeJSON(w, 201, order)
	case (p == "/actuator" || p == "/actuator/env") && !a.hardened:
		writeJSON(w, 200, map[string]any{"_links": map[string]any{"env": "/actuator/env"}})
	case p == "/v1/me" && !a.hardened:
		writeJSON(w, 200, a.public(testUsers[1], true))
	case p == "/go":
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	default:
		writeJSON(w, 404, map[string]string{"error": "not found"})
	}
}
