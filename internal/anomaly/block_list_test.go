package anomaly

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// blockerUnderTest is a Blocker and its clock.
type blockerUnderTest struct {
	name string
	b    Blocker
	clk  *clock
}

// blockersUnderTest returns constructors of a Memory and of a Redis
// blocker with a fresh prefix and a cache (skipped without Redis), to run
// the same specification against both.
func blockersUnderTest() []func(t *testing.T) blockerUnderTest {
	return []func(t *testing.T) blockerUnderTest{
		func(t *testing.T) blockerUnderTest {
			mc := &clock{t: time.Now().Truncate(time.Millisecond)}
			return blockerUnderTest{"memory", NewMemory(0, mc.Now), mc}
		},
		func(t *testing.T) blockerUnderTest {
			client, prefix := testRedis(t)
			rc := &clock{t: time.Now().Truncate(time.Millisecond)}
			// The cache must not hide an Unblock from the instance that did it.
			return blockerUnderTest{"redis", NewRedis(client, RedisOptions{Prefix: prefix, CacheTTL: time.Minute, Now: rc.Now}), rc}
		},
	}
}

func TestBlockerListAndUnblock(t *testing.T) {
	long := "jwt:" + strings.Repeat("y", 200)
	for i, mk := range blockersUnderTest() {
		t.Run([]string{"memory", "redis"}[i], func(t *testing.T) {
			bt := mk(t)
			ctx := context.Background()
			now := bt.clk.Now()
			if bs, err := bt.b.List(ctx); err != nil || len(bs) != 0 {
				t.Fatalf("empty store lists %v, %v", bs, err)
			}
			for _, b := range []Block{
				{Kind: KindIP, Subject: "192.0.2.1", Until: now.Add(time.Minute)},
				{Kind: KindIP, Subject: "2001:db8::/64", Until: now.Add(time.Hour)},
				{Kind: KindPrincipal, Subject: "jwt:alice", Until: now.Add(time.Minute)},
				{Kind: KindPrincipal, Subject: long, Until: now.Add(2 * time.Hour)},
				{Kind: KindIP, Subject: "192.0.2.2", Until: now.Add(2 * time.Second)},
			} {
				if err := bt.b.Block(ctx, b.Kind, b.Subject, b.Until); err != nil {
					t.Fatal(err)
				}
			}
			bt.clk.Advance(3 * time.Second) // 192.0.2.2 is over
			bs, err := bt.b.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, b := range bs {
				got = append(got, b.Kind+" "+b.Subject+" "+b.Until.Sub(now).String())
			}
			wantLong := long
			if bt.name == "redis" {
				wantLong = "sha256:" // hashed: checked below
			}
			want := []string{"principal " + wantLong, "ip 2001:db8::/64 1h0m0s", "ip 192.0.2.1 1m0s", "principal jwt:alice 1m0s"}
			if len(got) != len(want) {
				t.Fatalf("listed %q, want %q", got, want)
			}
			for i := range want {
				if !strings.HasPrefix(got[i], want[i]) {
					t.Errorf("listed[%d] = %q, want %q", i, got[i], want[i])
				}
			}
			if bt.name == "redis" && (!bs[0].Hashed || bs[1].Hashed) {
				t.Errorf("Hashed flags %v %v", bs[0].Hashed, bs[1].Hashed)
			}

			// Unblock lifts the block at once, even where cached.
			if ok, _, _ := bt.b.Blocked(ctx, KindIP, "192.0.2.1"); !ok {
				t.Fatal("not blocked before Unblock")
			}
			if err := bt.b.Unblock(ctx, KindIP, "192.0.2.1"); err != nil {
				t.Fatal(err)
			}
			if ok, _, err := bt.b.Blocked(ctx, KindIP, "192.0.2.1"); ok || err != nil {
				t.Errorf("still blocked after Unblock (%v)", err)
			}
			if err := bt.b.Unblock(ctx, KindIP, "192.0.2.1"); !errors.Is(err, ErrNotBlocked) {
				t.Errorf("second Unblock: %v, want ErrNotBlocked", err)
			}
			if err := bt.b.Unblock(ctx, KindIP, "192.0.2.2"); !errors.Is(err, ErrNotBlocked) {
				t.Errorf("Unblock of an expired block: %v, want ErrNotBlocked", err)
			}
			if err := bt.b.Unblock(ctx, KindPrincipal, "192.0.2.1"); !errors.Is(err, ErrNotBlocked) {
				t.Errorf("Unblock of another kind: %v, want ErrNotBlocked", err)
			}
			// A listed subject, hashed or not, unblocks by its listed name.
			if err := bt.b.Unblock(ctx, bs[0].Kind, bs[0].Subject); err != nil {
				t.Errorf("Unblock of the listed %q: %v", bs[0].Subject, err)
			}
			if ok, _, _ := bt.b.Blocked(ctx, KindPrincipal, long); ok {
				t.Error("the long subject is still blocked")
			}
			bs, _ = bt.b.List(ctx)
			if len(bs) != 2 {
				t.Errorf("after two unblocks: %+v", bs)
			}
		})
	}
}

func TestRedisListIgnoresForeignKeys(t *testing.T) {
	client, prefix := testRedis(t)
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	r := NewRedis(client, RedisOptions{Prefix: prefix, Now: clk.Now})
	if err := r.Block(ctx, KindIP, "192.0.2.3", clk.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	client.Set(ctx, prefix+"ip:198.51.100.1", "not a time", time.Minute)
	client.Set(ctx, prefix+"other:x", "1", time.Minute)
	client.Set(ctx, prefix+"[x]ip:192.0.2.4", "1", time.Minute)
	// A prefix with glob characters matches itself only.
	other := NewRedis(client, RedisOptions{Prefix: prefix + "[x]", Now: clk.Now})
	bs, err := r.List(ctx)
	if err != nil || len(bs) != 1 || bs[0].Subject != "192.0.2.3" {
		t.Errorf("listed %+v, %v; want the one block", bs, err)
	}
	if bs, err := other.List(ctx); err != nil || len(bs) != 0 {
		t.Errorf("the [x] prefix lists %+v, %v (the value 1 is long over)", bs, err)
	}
}
