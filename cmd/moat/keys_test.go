package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moat-gateway/moat/internal/keys"
)

// moat runs the command line and returns its exit code, stdout and stderr.
func moat(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// mustMoat runs the command line and fails the test unless it exits 0.
func mustMoat(t *testing.T, args ...string) (string, string) {
	t.Helper()
	code, out, errb := moat(t, args...)
	if code != exitOK {
		t.Fatalf("moat %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errb)
	}
	return out, errb
}

// keyLifecycle creates, lists, shows, rotates and revokes keys through the
// command line against the store cfg names.
func keyLifecycle(t *testing.T, cfg string) {
	out, errb := mustMoat(t, "keys", "create", "-c", cfg, "--name", "ci", "--subject", "team-a",
		"--roles", "reader,writer", "--scopes", "books:read", "--expires", "30d", "--plan", "gold", "--meta", "ticket=OPS-1")
	key := strings.TrimSpace(out)
	id, secret, err := keys.Parse(key)
	if err != nil {
		t.Fatalf("create printed %q, not a key: %v", out, err)
	}
	if !strings.Contains(errb, "only time the key is shown") || strings.Contains(errb, secret) {
		t.Fatalf("create stderr %q: want a warning without the key", errb)
	}

	out, _ = mustMoat(t, "keys", "list", "-c", cfg)
	for _, want := range []string{"ID", "SUBJECT", id, "team-a", "active", "reader,writer", "books:read", "gold"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	hash := keys.HashKey(key)
	hexHash, _ := hash.MarshalText()
	out, _ = mustMoat(t, "keys", "list", "-c", cfg, "--json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	if _, ok := list[0]["hash"]; ok || list[0]["id"] != id || list[0]["status"] != "active" {
		t.Fatalf("list --json entry %v", list[0])
	}
	out, _ = mustMoat(t, "keys", "show", "-c", cfg, id)
	for _, want := range []string{"id:", id, "subject:", "team-a", "meta ticket:", "OPS-1", "last used:", "never"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	for _, cmd := range [][]string{{"list"}, {"list", "--json"}, {"show", id}, {"show", id, "--json"}} {
		out, _ := mustMoat(t, append([]string{"keys", "-c", cfg}, cmd...)...)
		if strings.Contains(out, secret) || strings.Contains(out, string(hexHash)) {
			t.Fatalf("keys %v reveals the secret or its hash:\n%s", cmd, out)
		}
	}

	// Rotation with grace: the old key keeps working until the grace ends.
	out, errb = mustMoat(t, "keys", "rotate", "-c", cfg, id, "--grace", "1h", "--json")
	var rotated struct {
		Key         string `json:"key"`
		ID          string `json:"id"`
		RotatedFrom string `json:"rotated_from"`
		Subject     string `json:"subject"`
	}
	if err := json.Unmarshal([]byte(out), &rotated); err != nil {
		t.Fatalf("rotate --json: %v\n%s", err, out)
	}
	if newID, _, err := keys.Parse(rotated.Key); err != nil || newID != rotated.ID || rotated.RotatedFrom != id || rotated.Subject != "team-a" {
		t.Fatalf("rotate printed %+v (%v)", rotated, err)
	}
	if !strings.Contains(errb, "keeps working until") {
		t.Errorf("rotate stderr %q does not say how long the old key works", errb)
	}
	out, _ = mustMoat(t, "keys", "show", "-c", cfg, id, "--json")
	var old map[string]any
	json.Unmarshal([]byte(out), &old)
	if old["status"] != "active" || old["replaced_by"] != rotated.ID || old["expires_at"] == nil {
		t.Fatalf("old key after rotation with grace: %v", old)
	}

	// Revocation, twice: the second is a no-op.
	for range 2 {
		out, _ = mustMoat(t, "keys", "revoke", "-c", cfg, id)
		if !strings.Contains(out, "revoked") {
			t.Fatalf("revoke printed %q", out)
		}
	}
	out, _ = mustMoat(t, "keys", "show", "-c", cfg, id)
	if !strings.Contains(out, "revoked") {
		t.Fatalf("show after revoke:\n%s", out)
	}
	if code, _, errb := moat(t, "keys", "rotate", "-c", cfg, id); code != exitRuntime || !strings.Contains(errb, "revoked") {
		t.Fatalf("rotating a revoked key: exit %d, %s", code, errb)
	}

	// Rotation without grace revokes at once and prints only the key.
	out, _ = mustMoat(t, "keys", "rotate", "-c", cfg, rotated.ID)
	if _, _, err := keys.Parse(strings.TrimSpace(out)); err != nil {
		t.Fatalf("rotate printed %q", out)
	}
	out, _ = mustMoat(t, "keys", "show", "-c", cfg, rotated.ID, "--json")
	if !strings.Contains(out, `"status": "revoked"`) {
		t.Fatalf("rotated key is not revoked:\n%s", out)
	}
}

func TestKeysEmbedded(t *testing.T) {
	cfg := writeConfig(t, "http://127.0.0.1:9", "")
	keyLifecycle(t, cfg)
	st, err := os.Stat(filepath.Join(filepath.Dir(cfg), keys.DefaultFile))
	if err != nil {
		t.Fatalf("no key store beside the configuration: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key store mode %v, want 0600", st.Mode())
	}
}

// TestKeysEmbeddedRelativeToConfig runs moat keys from another directory:
// a relative keys_file is found beside the configuration, as the gateway
// finds it.
func TestKeysEmbeddedRelativeToConfig(t *testing.T) {
	cfg := writeConfig(t, "http://127.0.0.1:9", "state:\n  keys_file: sub.db\n")
	t.Chdir(t.TempDir())
	mustMoat(t, "keys", "create", "-c", cfg, "--name", "n", "--subject", "s")
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg), "sub.db")); err != nil {
		t.Fatalf("keys_file not created beside the configuration: %v", err)
	}
}

func TestKeysRedis(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", DialTimeout: time.Second})
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		t.Skipf("no redis on 127.0.0.1:6379: %v", err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	prefix := fmt.Sprintf("moat-cli-test:{%x}:", b)
	keysRedisPrefix = prefix
	t.Cleanup(func() {
		defer c.Close()
		keysRedisPrefix = ""
		ks, err := c.Keys(ctx, prefix+"*").Result()
		if err == nil && len(ks) > 0 {
			err = c.Del(ctx, ks...).Err()
		}
		if err != nil {
			t.Errorf("removing test keys under %s: %v", prefix, err)
		}
	})
	cfg := writeConfig(t, "http://127.0.0.1:9", "state:\n  redis:\n    addresses: [\"127.0.0.1:6379\"]\n")
	keyLifecycle(t, cfg)
	if n, _ := c.Exists(ctx, prefix+"ver").Result(); n != 1 {
		t.Fatal("keys were not written to Redis under the prefix")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg), keys.DefaultFile)); err == nil {
		t.Fatal("a key file was written although state.redis is set")
	}
}

func TestKeysErrors(t *testing.T) {
	cfg := writeConfig(t, "http://127.0.0.1:9", "")
	invalid := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(invalid, []byte("listeners: []\n"), 0o600)
	aKey, _ := keys.Generate()
	tests := []struct {
		desc   string
		args   []string
		code   int
		stderr string
	}{
		{desc: "no subcommand", args: []string{"keys"}, code: exitUsage, stderr: "needs a subcommand"},
		{desc: "missing subject", args: []string{"keys", "create", "-c", cfg, "--name", "n"}, code: exitUsage, stderr: `"subject" not set`},
		{desc: "empty subject", args: []string{"keys", "create", "-c", cfg, "--name", "n", "--subject", " "}, code: exitUsage, stderr: "must not be empty"},
		{desc: "bad expiry", args: []string{"keys", "create", "-c", cfg, "--name", "n", "--subject", "s", "--expires", "soon"}, code: exitUsage, stderr: "RFC 3339"},
		{desc: "past expiry", args: []string{"keys", "create", "-c", cfg, "--name", "n", "--subject", "s", "--expires", "2001-01-01T00:00:00Z"}, code: exitUsage, stderr: "not in the future"},
		{desc: "bad metadata", args: []string{"keys", "create", "-c", cfg, "--name", "n", "--subject", "s", "--meta", "novalue"}, code: exitUsage, stderr: "key=value"},
		{desc: "role with a space", args: []string{"keys", "create", "-c", cfg, "--name", "n", "--subject", "s", "--roles", "a b"}, code: exitUsage, stderr: "not a valid name"},
		{desc: "bad grace", args: []string{"keys", "rotate", "-c", cfg, "AAAAAAAA", "--grace", "forever"}, code: exitUsage, stderr: "--grace"},
		{desc: "malformed ID", args: []string{"keys", "show", "-c", cfg, "abc"}, code: exitUsage, stderr: "not a key ID"},
		{desc: "a key instead of an ID", args: []string{"keys", "revoke", "-c", cfg, aKey}, code: exitUsage, stderr: "not the key itself"},
		{desc: "missing ID", args: []string{"keys", "show", "-c", cfg}, code: exitUsage, stderr: "accepts 1 arg"},
		{desc: "unknown ID", args: []string{"keys", "revoke", "-c", cfg, "AAAAAAAA"}, code: exitRuntime, stderr: "no such key"},
		{desc: "unknown ID shown", args: []string{"keys", "show", "-c", cfg, "AAAAAAAA"}, code: exitRuntime, stderr: "no such key"},
		{desc: "invalid configuration", args: []string{"keys", "list", "-c", invalid}, code: exitConfig, stderr: "problem(s) in the configuration"},
		{desc: "missing configuration", args: []string{"keys", "list", "-c", "/nonexistent/moat.yaml"}, code: exitConfig, stderr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			code, out, errb := moat(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errb)
			}
			if !strings.Contains(errb, tt.stderr) {
				t.Fatalf("stderr lacks %q:\n%s", tt.stderr, errb)
			}
			if strings.Contains(errb, aKey[14:57]) {
				t.Fatal("stderr repeats a key's secret")
			}
		})
	}
}

// TestKeysRevocationReachesGateway revokes with moat keys while a gateway's
// key cache reads the same file.
func TestKeysRevocationReachesGateway(t *testing.T) {
	cfg := writeConfig(t, "http://127.0.0.1:9", "")
	out, _ := mustMoat(t, "keys", "create", "-c", cfg, "--name", "n", "--subject", "s")
	id, _, _ := keys.Parse(strings.TrimSpace(out))
	s, err := keys.OpenFile(filepath.Join(filepath.Dir(cfg), keys.DefaultFile), keys.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := keys.NewCache(context.Background(), s, keys.CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	mustMoat(t, "keys", "revoke", "-c", cfg, id)
	for {
		if e, err := c.Lookup(context.Background(), id); err == nil && !e.RevokedAt.IsZero() {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("revocation not seen by the gateway's cache within 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("revocation seen after %v", time.Since(start))
}
