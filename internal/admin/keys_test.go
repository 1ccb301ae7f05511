package admin

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/keys"
)

func openStore(t *testing.T) *keys.File {
	t.Helper()
	f, err := keys.OpenFile(filepath.Join(t.TempDir(), "keys.db"), keys.FileOptions{LockTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

type issued struct {
	Key      string
	Record   KeyView
	Replaced string
}

func TestKeyLifecycle(t *testing.T) {
	store := openStore(t)
	var al auditLog
	_, ts := start(t, testAdmin(), Deps{Keys: store, Audit: al.fn})

	// Create: the key is returned once, and only its hash is stored.
	code, h, b := do(t, ts, req{method: "POST", path: "/api/v1/keys", token: writeToken, ctype: "application/json",
		body: `{"subject":"alice","name":"ci","roles":["reader"],"scopes":["books:read"],"ttl":"720h","metadata":{"team":"data"}}`})
	if code != 201 {
		t.Fatalf("create: status %d: %s", code, b)
	}
	created := decode[issued](t, b)
	id, _, err := keys.Parse(created.Key)
	if err != nil || id != created.Record.ID {
		t.Fatalf("created key %q does not parse to ID %s: %v", created.Key, created.Record.ID, err)
	}
	if h.Get("Location") != "/api/v1/keys/"+id {
		t.Errorf("Location %q", h.Get("Location"))
	}
	if r := created.Record; r.Subject != "alice" || r.Status != "active" || !r.ExpiresAt.Equal(testNow.Add(720*time.Hour)) || r.Metadata["team"] != "data" {
		t.Errorf("record %+v", r)
	}
	rec, err := store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if want := keys.HashKey(created.Key); !rec.Hash.Equal(&want) {
		t.Error("stored hash does not match the key returned")
	}
	hashHex := hex.EncodeToString(rec.Hash[:])

	// List and get never show the key nor its hash.
	for _, path := range []string{"/api/v1/keys", "/api/v1/keys/" + id} {
		code, _, b = do(t, ts, req{path: path, token: readToken})
		if code != 200 {
			t.Fatalf("GET %s: status %d: %s", path, code, b)
		}
		body := string(b)
		_, secret, _ := strings.Cut(created.Key, "_")
		for _, leak := range []string{created.Key, secret, hashHex, `"hash"`} {
			if strings.Contains(body, leak) {
				t.Errorf("GET %s reveals %q: %s", path, leak, body)
			}
		}
		if !strings.Contains(body, id) {
			t.Errorf("GET %s does not list %s", path, id)
		}
	}

	// Rotate with a grace period: a new key, the old one expiring.
	code, _, b = do(t, ts, req{method: "POST", path: "/api/v1/keys/" + id + "/rotate", token: writeToken, ctype: "application/json", body: `{"grace":"1h"}`})
	if code != 201 {
		t.Fatalf("rotate: status %d: %s", code, b)
	}
	rotated := decode[issued](t, b)
	if rotated.Replaced != id || rotated.Record.RotatedFrom != id || rotated.Key == created.Key || rotated.Record.Subject != "alice" {
		t.Errorf("rotation %+v", rotated)
	}
	old, _ := store.Get(context.Background(), id)
	if !old.ExpiresAt.Equal(testNow.Add(time.Hour)) || old.ReplacedBy != rotated.Record.ID {
		t.Errorf("old key after rotation: expires %v replaced_by %q", old.ExpiresAt, old.ReplacedBy)
	}

	// Revoke the new key; revoking again is idempotent; rotating it is refused.
	newID := rotated.Record.ID
	for range 2 {
		code, _, b = do(t, ts, req{method: "POST", path: "/api/v1/keys/" + newID + "/revoke", token: writeToken})
		if code != 200 || decode[KeyView](t, b).Status != "revoked" {
			t.Fatalf("revoke: status %d: %s", code, b)
		}
	}
	code, h, b = do(t, ts, req{method: "POST", path: "/api/v1/keys/" + newID + "/rotate", token: writeToken})
	if code != 409 || reasonOf(t, h, b) != ReasonKeyConflict {
		t.Errorf("rotating a revoked key: status %d %s, want 409 %s", code, b, ReasonKeyConflict)
	}

	var actions []string
	for _, r := range al.all() {
		if r.actor != "ops" {
			t.Errorf("audit %+v: actor %q, want ops", r, r.actor)
		}
		if strings.Contains(r.msg, created.Key) || strings.Contains(r.msg, rotated.Key) {
			t.Errorf("audit message reveals a key: %q", r.msg)
		}
		actions = append(actions, r.action)
	}
	if got := strings.Join(actions, ","); got != "key_create,key_rotate,key_revoke,key_revoke,key_rotate" {
		t.Errorf("audited %s", got)
	}
}

func TestKeyRequestsRefused(t *testing.T) {
	_, ts := start(t, testAdmin(), Deps{Keys: openStore(t)})
	tests := []struct {
		desc, method, path, ctype, body string
		want                            int
		reason                          string
	}{
		{"no subject", "POST", "/api/v1/keys", "application/json", `{"name":"x"}`, 400, ReasonBadRequest},
		{"unknown field", "POST", "/api/v1/keys", "application/json", `{"subject":"a","hash":"00"}`, 400, ReasonBadRequest},
		{"trailing data", "POST", "/api/v1/keys", "application/json", `{"subject":"a"} {}`, 400, ReasonBadRequest},
		{"form body", "POST", "/api/v1/keys", "application/x-www-form-urlencoded", `subject=a`, 415, ReasonUnsupportedMediaType},
		{"ttl and expires_at", "POST", "/api/v1/keys", "application/json", `{"subject":"a","ttl":"1h","expires_at":"2030-01-01T00:00:00Z"}`, 400, ReasonBadRequest},
		{"expiry in the past", "POST", "/api/v1/keys", "application/json", `{"subject":"a","expires_at":"2020-01-01T00:00:00Z"}`, 400, ReasonBadRequest},
		{"negative ttl", "POST", "/api/v1/keys", "application/json", `{"subject":"a","ttl":"-1h"}`, 400, ReasonBadRequest},
		{"oversized body", "POST", "/api/v1/keys", "application/json", `{"subject":"` + strings.Repeat("a", 70<<10) + `"}`, 413, ReasonBodyTooLarge},
		{"revoke unknown key", "POST", "/api/v1/keys/AAAAAAAA/revoke", "", "", 404, ReasonNotFound},
		{"revoke malformed ID", "POST", "/api/v1/keys/..%2f..%2fetc/revoke", "", "", 404, ReasonNotFound},
		{"rotate unknown key", "POST", "/api/v1/keys/AAAAAAAA/rotate", "", "", 404, ReasonNotFound},
		{"rotate with a bad grace", "POST", "/api/v1/keys/AAAAAAAA/rotate", "application/json", `{"grace":"forever"}`, 400, ReasonBadRequest},
		{"get unknown key", "GET", "/api/v1/keys/AAAAAAAA", "", "", 404, ReasonNotFound},
		{"id with a slash", "POST", "/api/v1/keys/AAAA/AAAA/revoke", "", "", 404, ReasonNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			code, h, b := do(t, ts, req{method: tt.method, path: tt.path, token: writeToken, ctype: tt.ctype, body: tt.body})
			if code != tt.want || reasonOf(t, h, b) != tt.reason {
				t.Errorf("status %d %s, want %d %s", code, b, tt.want, tt.reason)
			}
		})
	}
}
