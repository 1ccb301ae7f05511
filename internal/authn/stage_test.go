package authn

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/ratelimit"
)

// fake authenticates "Authorization: Fake <verdict>".
type fake struct{ challenge string }

func (f fake) Challenge() string { return f.challenge }

func (f fake) Authenticate(_ context.Context, ex *gateway.Exchange) (*gateway.Principal, error) {
	switch ex.Request.Header.Get("Authorization") {
	case "Fake good":
		return &gateway.Principal{Subject: "alice", Kind: "fake", Roles: []string{"admin", "ops"}, Scopes: []string{"read", "write"},
			Claims: map[string]any{"email": "a@example.com", "tenant": "t\r\nX-Evil: 1"}}, nil
	case "Fake bad":
		return nil, &Failure{ReasonID: "fake_invalid", Detail: "wrong", Identity: "alice"}
	case "Fake broken":
		return nil, errors.New("key store unreachable")
	}
	return nil, ErrNoCredentials
}

func request(auth string, extra ...string) *gateway.Exchange {
	r := httptest.NewRequest("GET", "/x?api_key=secret&q=1", nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		r.Header.Set(extra[i], extra[i+1])
	}
	return &gateway.Exchange{Request: r, ClientIP: netip.MustParseAddr("192.0.2.7")}
}

var headers = Headers{Subject: "X-Moat-Subject", Authenticator: "X-Moat-Authenticator", Roles: "X-Moat-Roles", Scopes: "X-Moat-Scopes",
	Claims: map[string]string{"email": "X-Moat-Email", "tenant": "X-Moat-Tenant"}}

func TestStage(t *testing.T) {
	st := NewStage(StageOptions{
		Authenticators: []Named{{Name: "first", Authenticator: fake{challenge: `Fake realm="a"`}}, {Name: "second", Authenticator: fake{challenge: `Other realm="b"`}}},
		Headers:        headers,
		Credentials:    []string{"Authorization"},
		QueryParams:    []string{"api_key"},
	})
	tests := []struct {
		desc    string
		auth    string
		status  int
		reason  string
		subject string
		chall   int
	}{
		{desc: "good credential", auth: "Fake good", subject: "alice"},
		{desc: "bad credential: 401 at once", auth: "Fake bad", status: 401, reason: "fake_invalid", chall: 1},
		{desc: "no credential: every challenge", auth: "", status: 401, reason: ReasonCredentialsMissing, chall: 2},
		{desc: "store fault fails closed", auth: "Fake broken", status: 503, reason: ReasonAuthnUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			ex := request(tt.auth, "X-Moat-Subject", "root", "X-Moat-Roles", "admin")
			err := st.ProcessRequest(context.Background(), ex)
			if tt.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				h := ex.Request.Header
				if ex.Principal == nil || ex.Principal.Subject != tt.subject || ex.Principal.Authenticator != "first" {
					t.Fatalf("principal %+v", ex.Principal)
				}
				if h.Get("X-Moat-Subject") != "alice" || h.Get("X-Moat-Roles") != "admin,ops" || h.Get("X-Moat-Scopes") != "read write" || h.Get("X-Moat-Email") != "a@example.com" {
					t.Errorf("principal headers %v", h)
				}
				if h.Get("X-Moat-Tenant") != "" {
					t.Error("a claim with a line break was forwarded")
				}
				if h.Get("Authorization") != "" || ex.Request.URL.Query().Get("api_key") != "" || ex.Request.URL.Query().Get("q") != "1" {
					t.Errorf("credential not stripped (or query damaged): %v %q", h.Get("Authorization"), ex.Request.URL.RawQuery)
				}
				return
			}
			var rej *gateway.Reject
			if !errors.As(err, &rej) || rej.Status != tt.status || rej.ReasonID != tt.reason {
				t.Fatalf("got %v, want %d %s", err, tt.status, tt.reason)
			}
			if tt.status == 401 && tt.reason != ReasonCredentialsMissing && rej.PublicReason != gateway.ReasonInvalidCredentials {
				t.Errorf("a bad credential's specific reason would reach the client: public %q", rej.PublicReason)
			}
			if n := len(rej.Header.Values("Www-Authenticate")); n != tt.chall {
				t.Errorf("%d challenges, want %d", n, tt.chall)
			}
			if ex.Request.Header.Get("X-Moat-Subject") != "" {
				t.Error("a client-sent principal header survived")
			}
		})
	}
}

// TestStagePublicStripsSpoofedHeaders: a route without authenticators still
// removes principal headers a client sent.
func TestStagePublicStripsSpoofedHeaders(t *testing.T) {
	st := NewStage(StageOptions{Headers: headers})
	ex := request("", "X-Moat-Subject", "root", "X-Moat-Email", "ceo@example.com")
	if err := st.ProcessRequest(context.Background(), ex); err != nil {
		t.Fatal(err)
	}
	if ex.Request.Header.Get("X-Moat-Subject") != "" || ex.Request.Header.Get("X-Moat-Email") != "" {
		t.Errorf("spoofed principal headers forwarded: %v", ex.Request.Header)
	}
}

func TestLockout(t *testing.T) {
	mem := ratelimit.NewMemory(ratelimit.MemoryOptions{SweepInterval: -1})
	defer mem.Close()
	st := NewStage(StageOptions{
		Authenticators: []Named{{Name: "f", Authenticator: fake{}}},
		Lockout:        &Lockout{Store: mem, MaxFailures: 3, Window: time.Hour, Cooldown: time.Hour, Policy: ratelimit.Local, IPv6Prefix: 64},
	})
	status := func(auth string) int {
		err := st.ProcessRequest(context.Background(), request(auth))
		var rej *gateway.Reject
		if errors.As(err, &rej) {
			return rej.Status
		}
		if err != nil {
			t.Fatal(err)
		}
		return http.StatusOK
	}
	if got := status("Fake good"); got != 200 {
		t.Fatalf("before any failure: %d", got)
	}
	for i := 1; i <= 4; i++ {
		if got := status("Fake bad"); got != 401 {
			t.Fatalf("failure %d: %d, want 401", i, got)
		}
	}
	if got := status("Fake good"); got != http.StatusTooManyRequests {
		t.Errorf("after the threshold even a good credential must wait: %d, want 429", got)
	}
}
