package keys

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// stores returns a fresh, empty store of each kind; Redis is skipped when no
// server listens on 127.0.0.1:6379.
func stores(t *testing.T) map[string]func(t *testing.T, logSize int) Store {
	return map[string]func(t *testing.T, logSize int) Store{
		"file": func(t *testing.T, logSize int) Store {
			s, err := OpenFile(filepath.Join(t.TempDir(), "keys.db"), FileOptions{LogSize: logSize})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"redis": func(t *testing.T, logSize int) Store {
			return NewRedis(testRedis(t), RedisOptions{Prefix: testPrefix(t), LogSize: logSize, Batch: 7})
		},
	}
}

// testRedis returns a client of the local Redis, closed at the end of t.
func testRedis(t testing.TB) redis.UniversalClient {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", DialTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		t.Skipf("no redis on 127.0.0.1:6379: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testPrefix returns a Redis key prefix unique to this test and deletes
// every key under it when the test ends.
func testPrefix(t testing.TB) string {
	b := make([]byte, 6)
	rand.Read(b)
	p := fmt.Sprintf("moat-test:{%x}:", b)
	t.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
		defer c.Close()
		ctx := context.Background()
		iter := c.Scan(ctx, 0, p+"*", 1000).Iterator()
		var ks []string
		for iter.Next(ctx) {
			ks = append(ks, iter.Val())
			if len(ks) == 1000 {
				c.Unlink(ctx, ks...)
				ks = ks[:0]
			}
		}
		if len(ks) > 0 {
			c.Unlink(ctx, ks...)
		}
	})
	return p
}

func issue(t testing.TB, s Store, subject string, at time.Time) (Record, string) {
	t.Helper()
	r, key, err := Issue(context.Background(), s, Record{Subject: subject, Name: "test", Roles: []string{"reader"}, Scopes: []string{"books:read"}}, at)
	if err != nil {
		t.Fatal(err)
	}
	return r, key
}

func TestStores(t *testing.T) {
	ctx := context.Background()
	for kind, open := range stores(t) {
		t.Run(kind, func(t *testing.T) {
			t.Run("create and get", func(t *testing.T) {
				s := open(t, 0)
				in := Record{Name: "ci", Subject: "alice", Roles: []string{"admin", "reader"}, Scopes: []string{"a", "b"},
					Plan: "gold", Metadata: map[string]string{"team": "x"}, ExpiresAt: t0.Add(time.Hour)}
				r, key, err := Issue(ctx, s, in, t0)
				if err != nil {
					t.Fatal(err)
				}
				id, _, err := Parse(key)
				if err != nil || id != r.ID {
					t.Fatalf("issued key %q does not parse to ID %s: %v", key, r.ID, err)
				}
				if h := HashKey(key); !r.Hash.Equal(&h) {
					t.Fatal("record hash is not the key's hash")
				}
				got, err := s.Get(ctx, r.ID)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, r) {
					t.Fatalf("Get = %+v\nwant %+v", got, r)
				}
				if err := s.Create(ctx, r); !errors.Is(err, ErrExists) {
					t.Fatalf("second Create: %v, want ErrExists", err)
				}
				if err := s.Create(ctx, Record{ID: "bad", Subject: "x", CreatedAt: t0, Hash: r.Hash}); !errors.Is(err, ErrMalformed) {
					t.Fatalf("Create with a bad ID: %v", err)
				}
				if err := s.Create(ctx, Record{ID: "AAAAAAAA", CreatedAt: t0, Hash: r.Hash}); err == nil {
					t.Fatal("Create without subject succeeded")
				}
				if _, err := s.Get(ctx, "AAAAAAAA"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Get unknown: %v, want ErrNotFound", err)
				}
			})
			t.Run("list is oldest first", func(t *testing.T) {
				s := open(t, 0)
				if rs, err := s.List(ctx); err != nil || len(rs) != 0 {
					t.Fatalf("List of an empty store = %v, %v", rs, err)
				}
				var want []string
				for i := range 10 {
					r, _ := issue(t, s, "bob", t0.Add(time.Duration(i)*time.Minute))
					want = append(want, r.ID)
				}
				rs, err := s.List(ctx)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, r := range rs {
					got = append(got, r.ID)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("List IDs %v, want %v", got, want)
				}
			})
			t.Run("revoke", func(t *testing.T) {
				s := open(t, 0)
				r, _ := issue(t, s, "carol", t0)
				if err := s.Revoke(ctx, r.ID, t0.Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
				if err := s.Revoke(ctx, r.ID, t0.Add(time.Hour)); err != nil {
					t.Fatalf("second Revoke: %v", err)
				}
				got, _ := s.Get(ctx, r.ID)
				if !got.RevokedAt.Equal(t0.Add(time.Minute)) || got.Status(t0.Add(time.Hour)) != "revoked" {
					t.Fatalf("RevokedAt %v, status %s; want the first revocation", got.RevokedAt, got.Status(t0.Add(time.Hour)))
				}
				if err := s.Revoke(ctx, "AAAAAAAA", t0); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Revoke unknown: %v", err)
				}
			})
			t.Run("rotate", func(t *testing.T) {
				tests := []struct {
					desc        string
					expires     time.Time
					grace       time.Duration
					wantRevoked bool
					wantExpires time.Time
				}{
					{desc: "no grace revokes", grace: 0, wantRevoked: true},
					{desc: "grace shortens a later expiry", expires: t0.Add(48 * time.Hour), grace: time.Hour, wantExpires: t0.Add(2 * time.Hour)},
					{desc: "grace sets an expiry", grace: time.Hour, wantExpires: t0.Add(2 * time.Hour)},
					{desc: "grace never extends", expires: t0.Add(90 * time.Minute), grace: time.Hour, wantExpires: t0.Add(90 * time.Minute)},
				}
				for _, tt := range tests {
					t.Run(tt.desc, func(t *testing.T) {
						s := open(t, 0)
						old, _, err := Issue(ctx, s, Record{Subject: "dan", Plan: "p", Roles: []string{"r"}, Metadata: map[string]string{"k": "v"}, ExpiresAt: tt.expires}, t0)
						if err != nil {
							t.Fatal(err)
						}
						at := t0.Add(time.Hour)
						next, key, err := s.Rotate(ctx, old.ID, at, tt.grace)
						if err != nil {
							t.Fatal(err)
						}
						if next.ID == old.ID || next.Subject != "dan" || next.Plan != "p" || next.Metadata["k"] != "v" || !next.ExpiresAt.Equal(old.ExpiresAt) || next.RotatedFrom != old.ID {
							t.Fatalf("new record %+v does not inherit from %+v", next, old)
						}
						if id, _, _ := Parse(key); id != next.ID {
							t.Fatal("new key does not carry the new ID")
						}
						stored, _ := s.Get(ctx, next.ID)
						if h := HashKey(key); !stored.Hash.Equal(&h) {
							t.Fatal("stored hash is not the new key's")
						}
						retired, _ := s.Get(ctx, old.ID)
						if retired.ReplacedBy != next.ID || retired.RevokedAt.IsZero() == tt.wantRevoked || !retired.ExpiresAt.Equal(tt.wantExpires) {
							t.Fatalf("old record after rotation: revoked %v, expires %v, replaced by %q", retired.RevokedAt, retired.ExpiresAt, retired.ReplacedBy)
						}
					})
				}
				s := open(t, 0)
				revoked, _ := issue(t, s, "erin", t0)
				s.Revoke(ctx, revoked.ID, t0)
				if _, _, err := s.Rotate(ctx, revoked.ID, t0, 0); !errors.Is(err, ErrRevoked) {
					t.Errorf("rotating a revoked key: %v", err)
				}
				expired, _, _ := Issue(ctx, s, Record{Subject: "erin", ExpiresAt: t0.Add(time.Minute)}, t0)
				if _, _, err := s.Rotate(ctx, expired.ID, t0.Add(time.Hour), 0); !errors.Is(err, ErrExpired) {
					t.Errorf("rotating an expired key: %v", err)
				}
				if _, _, err := s.Rotate(ctx, "AAAAAAAA", t0, 0); !errors.Is(err, ErrNotFound) {
					t.Errorf("rotating an unknown key: %v", err)
				}
			})
			t.Run("last use", func(t *testing.T) {
				s := open(t, 0)
				r, _ := issue(t, s, "fay", t0)
				v0, _, _ := s.Snapshot(ctx)
				used := t0.Add(time.Minute).Truncate(time.Millisecond)
				if err := s.TouchLastUsed(ctx, map[string]time.Time{r.ID: used, "AAAAAAAA": used}); err != nil {
					t.Fatal(err)
				}
				s.TouchLastUsed(ctx, map[string]time.Time{r.ID: t0}) // earlier: ignored
				got, _ := s.Get(ctx, r.ID)
				if !got.LastUsedAt.Equal(used) {
					t.Fatalf("LastUsedAt %v, want %v", got.LastUsedAt, used)
				}
				if _, err := s.Get(ctx, "AAAAAAAA"); !errors.Is(err, ErrNotFound) {
					t.Fatal("touching an unknown ID created it")
				}
				// A revocation after a touch keeps both.
				s.Revoke(ctx, r.ID, t0.Add(2*time.Minute))
				got, _ = s.Get(ctx, r.ID)
				if !got.LastUsedAt.Equal(used) || got.RevokedAt.IsZero() {
					t.Fatalf("after revoke: last used %v, revoked %v", got.LastUsedAt, got.RevokedAt)
				}
				if v, _, _ := s.Changes(ctx, v0); v != v0+1 {
					t.Fatalf("version %d after a touch and a revoke from %d: touches must not count", v, v0)
				}
			})
			t.Run("concurrent rotations retire a key once", func(t *testing.T) {
				s := open(t, 0)
				old, _ := issue(t, s, "hal", t0)
				var wins atomic.Int32
				var wg sync.WaitGroup
				for range 8 {
					wg.Go(func() {
						_, _, err := s.Rotate(ctx, old.ID, t0, 0)
						switch {
						case err == nil:
							wins.Add(1)
						case !errors.Is(err, ErrRevoked):
							t.Errorf("Rotate: %v", err)
						}
					})
				}
				wg.Wait()
				if wins.Load() != 1 {
					t.Fatalf("%d rotations succeeded, want 1", wins.Load())
				}
				if rs, _ := s.List(ctx); len(rs) != 2 {
					t.Fatalf("%d keys after the rotations, want 2", len(rs))
				}
			})
			t.Run("changes", func(t *testing.T) {
				s := open(t, 3)
				v, rs, err := s.Snapshot(ctx)
				if err != nil || v != 0 || len(rs) != 0 {
					t.Fatalf("Snapshot of an empty store = %d, %v, %v", v, rs, err)
				}
				if v, rs, err := s.Changes(ctx, 0); err != nil || v != 0 || len(rs) != 0 {
					t.Fatalf("Changes of an empty store = %d, %v, %v", v, rs, err)
				}
				a, _ := issue(t, s, "gus", t0)
				b, _ := issue(t, s, "gus", t0)
				v1, rs, err := s.Changes(ctx, 0)
				if err != nil || v1 != 2 || len(rs) != 2 {
					t.Fatalf("Changes(0) = %d, %d records, %v; want 2, 2", v1, len(rs), err)
				}
				s.Revoke(ctx, a.ID, t0)
				v2, rs, err := s.Changes(ctx, v1)
				if err != nil || v2 != 3 || len(rs) != 1 || rs[0].ID != a.ID || rs[0].RevokedAt.IsZero() {
					t.Fatalf("Changes(%d) = %d, %+v, %v; want the revocation of %s", v1, v2, rs, err, a.ID)
				}
				if v, rs, err := s.Changes(ctx, v2); err != nil || v != v2 || len(rs) != 0 {
					t.Fatalf("Changes(current) = %d, %v, %v; want nothing", v, rs, err)
				}
				if _, _, err := s.Changes(ctx, v2+10); !errors.Is(err, ErrResync) {
					t.Fatalf("Changes from the future: %v, want ErrResync", err)
				}
				for range 4 {
					issue(t, s, "gus", t0)
				}
				s.Revoke(ctx, b.ID, t0)
				if _, _, err := s.Changes(ctx, v1); !errors.Is(err, ErrResync) {
					t.Fatalf("Changes beyond a log of 3: %v, want ErrResync", err)
				}
				v, rs, _ = s.Snapshot(ctx)
				if len(rs) != 6 || v < v2+5 {
					t.Fatalf("Snapshot = version %d, %d records; want 6 records", v, len(rs))
				}
			})
		})
	}
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := OpenFile(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issue(t, s, "x", t0)
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, %v; want 0600", st.Mode(), err)
	}
}

func TestFileReplacedIsReloaded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.db")
	s, _ := OpenFile(path, FileOptions{})
	issue(t, s, "x", t0)
	v, _, _ := s.Snapshot(ctx)

	// Another file with the same version moves into place.
	other, _ := OpenFile(filepath.Join(dir, "other.db"), FileOptions{})
	issue(t, other, "y", t0)
	if err := os.Rename(filepath.Join(dir, "other.db"), path); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Changes(ctx, v); !errors.Is(err, ErrResync) {
		t.Fatalf("Changes after the file was replaced: %v, want ErrResync", err)
	}
}

func TestOpenFileRefusesOtherFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	os.WriteFile(path, []byte(strings.Repeat("not a database ", 500)), 0o600)
	if _, err := OpenFile(path, FileOptions{LockTimeout: time.Second}); err == nil {
		t.Fatal("OpenFile accepted a text file")
	}
}
