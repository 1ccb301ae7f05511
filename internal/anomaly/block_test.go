package anomaly

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// clock is an injectable clock safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestMemoryBlocker(t *testing.T) {
	clk := &clock{t: t0}
	m := NewMemory(2, clk.Now)
	ctx := context.Background()
	if err := m.Block(ctx, KindIP, "192.0.2.1", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := m.Block(ctx, KindIP, "192.0.2.1", t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if ok, until, _ := m.Blocked(ctx, KindIP, "192.0.2.1"); !ok || !until.Equal(t0.Add(time.Minute)) {
		t.Errorf("blocked %v until %v: a shorter block must not shorten it", ok, until)
	}
	if ok, _, _ := m.Blocked(ctx, KindPrincipal, "192.0.2.1"); ok {
		t.Error("kinds are not separate")
	}
	if err := m.Block(ctx, KindPrincipal, "a:b", t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := m.Block(ctx, KindPrincipal, "a:c", t0.Add(time.Hour)); !errors.Is(err, errBlockTableFull) {
		t.Errorf("third block with max 2: %v", err)
	}
	clk.Advance(2 * time.Second)
	if err := m.Block(ctx, KindPrincipal, "a:c", t0.Add(time.Hour)); err != nil {
		t.Errorf("block after one expired: %v", err)
	}
	clk.Advance(time.Minute)
	if ok, _, _ := m.Blocked(ctx, KindIP, "192.0.2.1"); ok {
		t.Error("block outlived its end")
	}
}

// testRedis returns a client of the shared Redis and a fresh key prefix
// whose keys are deleted when the test ends; it skips without Redis.
func testRedis(t *testing.T) (redis.UniversalClient, string) {
	t.Helper()
	if err := exec.Command("redis-cli", "-h", "127.0.0.1", "ping").Run(); err != nil {
		t.Skip("no Redis at 127.0.0.1:6379")
	}
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "moat:test:anomaly:" + hex.EncodeToString(b) + ":"
	ctx := context.Background()
	t.Cleanup(func() {
		defer client.Close()
		iter := client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
	})
	return client, prefix
}

// TestBlockHonouredBySecondInstance runs two gateway instances' worth of
// detection and blocking against one Redis: instance A sees credential
// stuffing and blocks the address; instance B, which saw none of it,
// refuses the address once its cache of "not blocked" has run out.
func TestBlockHonouredBySecondInstance(t *testing.T) {
	client, prefix := testRedis(t)
	clk := &clock{t: time.Now()}
	c := testConfig(t, func(c *config.Anomaly) {
		c.Block.Enabled = true
		c.Block.Duration = config.Duration(15 * time.Minute)
	})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	newInstance := func() (*Detector, *Redis, *BlockStage) {
		bl := NewRedis(client, RedisOptions{Prefix: prefix, CacheTTL: time.Second, Now: clk.Now})
		d := New(c, Options{Blocker: bl, Log: quiet})
		st := NewBlockStage(BlockStageOptions{Blocker: bl, IP: true, Principal: true, Now: clk.Now, Log: quiet})
		return d, bl, st
	}
	dA, _, stA := newInstance()
	dB, blB, stB := newInstance()
	dA.Start()
	dB.Start()
	defer dA.Close()
	defer dB.Close()

	attacker := &gateway.Exchange{ClientIP: ip("203.0.113.77")}
	ctx := context.Background()
	if err := stB.ProcessRequest(ctx, attacker); err != nil {
		t.Fatalf("B refused before any attack: %v", err) // B now caches "not blocked" for 1s
	}
	for i := range 25 {
		dA.Observe(Observation{At: clk.Now().Add(time.Duration(i) * time.Millisecond), ClientIP: ip("203.0.113.77"), Status: 401, ReasonID: "basic_invalid"})
	}
	waitFor(t, "the block", func() bool { return dA.Stats().Blocks == 1 })
	if err := stA.ProcessRequest(ctx, attacker); err == nil {
		t.Error("A admitted the address it blocked")
	}
	if err := stB.ProcessRequest(ctx, attacker); err != nil {
		t.Errorf("B refused within its cache TTL (%v): the cache is not used", err)
	}
	clk.Advance(1100 * time.Millisecond)
	err := stB.ProcessRequest(ctx, attacker)
	var rej *gateway.Reject
	if !errors.As(err, &rej) || rej.Status != http.StatusForbidden || rej.ReasonID != ReasonTemporarilyBlocked {
		t.Fatalf("B after the cache TTL: %v, want 403 temporarily_blocked", err)
	}
	if ra := rej.Header.Get("Retry-After"); ra != "900" && ra != "899" {
		t.Errorf("Retry-After %q, want about 900", ra)
	}
	if err := stB.ProcessRequest(ctx, &gateway.Exchange{ClientIP: ip("203.0.113.78")}); err != nil {
		t.Errorf("B refused a bystander: %v", err)
	}
	if ttl := client.PTTL(ctx, prefix+"ip:203.0.113.77").Val(); ttl < 14*time.Minute || ttl > 15*time.Minute+time.Second {
		t.Errorf("key TTL %v, want about 15m", ttl)
	}
	// B's own detector saw nothing and fired nothing.
	if st := dB.Stats(); st.Blocks != 0 || st.Observed != 0 {
		t.Errorf("B stats %+v", st)
	}
	_ = blB
}

func TestRedisBlockerKeys(t *testing.T) {
	client, prefix := testRedis(t)
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	r := NewRedis(client, RedisOptions{Prefix: prefix, Now: clk.Now}) // no cache
	long := "jwt:" + strings.Repeat("x", 300)
	if err := r.Block(ctx, KindPrincipal, long, clk.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	keys, _ := client.Keys(ctx, prefix+"*").Result()
	if len(keys) != 1 || !strings.HasPrefix(keys[0], prefix+"principal:sha256:") {
		t.Errorf("keys %q: long subjects must be hashed", keys)
	}
	if err := r.Block(ctx, KindPrincipal, long, clk.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if ok, until, err := r.Blocked(ctx, KindPrincipal, long); err != nil || !ok || until.Sub(clk.Now()) < 50*time.Second {
		t.Errorf("blocked %v until %v (%v): a shorter block must not shorten it", ok, until, err)
	}
	if err := r.Block(ctx, KindIP, "192.0.2.9", clk.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := r.Blocked(ctx, KindIP, "192.0.2.9"); ok {
		t.Error("a block already over was written")
	}
	clk.Advance(2 * time.Minute)
	if ok, _, _ := r.Blocked(ctx, KindPrincipal, long); ok {
		t.Error("block outlived its end")
	}
}

func TestBlockStage(t *testing.T) {
	clk := &clock{t: t0}
	mem := NewMemory(0, clk.Now)
	ctx := context.Background()
	_ = mem.Block(ctx, KindIP, "192.0.2.1", t0.Add(90*time.Second))
	_ = mem.Block(ctx, KindIP, "2001:db8:1:2::/64", t0.Add(time.Minute))
	_ = mem.Block(ctx, KindPrincipal, "jwt:mallory", t0.Add(500*time.Millisecond))
	down := NewRedis(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond}), RedisOptions{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		desc       string
		o          BlockStageOptions
		ex         *gateway.Exchange
		wantStatus int
		wantReason string
		wantRetry  string
	}{
		{"address not blocked", BlockStageOptions{Blocker: mem, IP: true}, &gateway.Exchange{ClientIP: ip("192.0.2.2")}, 0, "", ""},
		{"address blocked", BlockStageOptions{Blocker: mem, IP: true}, &gateway.Exchange{ClientIP: ip("192.0.2.1")}, 403, ReasonTemporarilyBlocked, "90"},
		{"IPv4-mapped address blocked", BlockStageOptions{Blocker: mem, IP: true}, &gateway.Exchange{ClientIP: ip("::ffff:192.0.2.1")}, 403, ReasonTemporarilyBlocked, "90"},
		{"IPv6 prefix blocked", BlockStageOptions{Blocker: mem, IP: true}, &gateway.Exchange{ClientIP: ip("2001:db8:1:2::99")}, 403, ReasonTemporarilyBlocked, "60"},
		{"429 when configured", BlockStageOptions{Blocker: mem, IP: true, Status: 429}, &gateway.Exchange{ClientIP: ip("192.0.2.1")}, 429, ReasonTemporarilyBlocked, "90"},
		{"IP checks off", BlockStageOptions{Blocker: mem, Principal: true}, &gateway.Exchange{ClientIP: ip("192.0.2.1")}, 0, "", ""},
		{"principal blocked, Retry-After at least 1", BlockStageOptions{Blocker: mem, Principal: true},
			&gateway.Exchange{ClientIP: ip("192.0.2.2"), Principal: &gateway.Principal{Authenticator: "jwt", Subject: "mallory"}}, 403, ReasonTemporarilyBlocked, "1"},
		{"same subject from another authenticator", BlockStageOptions{Blocker: mem, Principal: true},
			&gateway.Exchange{ClientIP: ip("192.0.2.2"), Principal: &gateway.Principal{Authenticator: "apikey", Subject: "mallory"}}, 0, "", ""},
		{"store down fails closed", BlockStageOptions{Blocker: down, IP: true}, &gateway.Exchange{ClientIP: ip("192.0.2.2")}, 503, ReasonBlockStoreUnavailable, ""},
		{"store down fails open when asked", BlockStageOptions{Blocker: down, IP: true, FailOpen: true}, &gateway.Exchange{ClientIP: ip("192.0.2.2")}, 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			tt.o.Now, tt.o.Log = clk.Now, quiet
			s := NewBlockStage(tt.o)
			err := s.ProcessRequest(ctx, tt.ex)
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var rej *gateway.Reject
			if !errors.As(err, &rej) {
				t.Fatalf("error %v, want a Reject", err)
			}
			if rej.Status != tt.wantStatus || rej.ReasonID != tt.wantReason || rej.Header.Get("Retry-After") != tt.wantRetry {
				t.Errorf("got %d %s Retry-After %q, want %d %s %q", rej.Status, rej.ReasonID, rej.Header.Get("Retry-After"), tt.wantStatus, tt.wantReason, tt.wantRetry)
			}
		})
	}
}
