package basic

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/authn"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// bound limits every wait in these tests; nothing is expected to take
// anywhere near as long.
const bound = 10 * time.Second

// testFile has more argon2id than bcrypt users, so unknown users are
// checked against a (fast) argon2id dummy.
const testFile = `# test users
alice:` + aliceHash + `
colon:` + colonHash + `
long:` + longHash + `
carol:` + carolHash + `
dave:` + carolHash + `
erin:` + carolHash + `
frank:` + carolHash + `
`

// syncBuffer is a log sink safe for the watcher goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// writeFile replaces path atomically, as editors and deployment tools do.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newBasic(t *testing.T, content string) (*Authenticator, string, *syncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "htpasswd")
	writeFile(t, path, content)
	log, logs := testLogger()
	a, err := New("admins", &config.BasicAuth{HtpasswdFile: path, Realm: "moat"}, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a, path, logs
}

func exchange(authorization ...string) *gateway.Exchange {
	r := httptest.NewRequest("GET", "/admin", nil)
	for _, v := range authorization {
		r.Header.Add("Authorization", v)
	}
	return &gateway.Exchange{Request: r}
}

func basicHeader(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func TestAuthenticate(t *testing.T) {
	a, _, _ := newBasic(t, testFile)
	tests := []struct {
		desc     string
		header   []string
		password string // must not appear in the failure
		subject  string // on success
		reason   string // on failure; "" with no subject: ErrNoCredentials
		identity string
	}{
		{desc: "no Authorization header"},
		{desc: "another scheme", header: []string{"Bearer abc.def"}},
		{desc: "scheme prefix only", header: []string{"Basically " + base64.StdEncoding.EncodeToString([]byte("alice:x"))}},
		{desc: "bcrypt user", header: []string{basicHeader("alice", "wonderland")}, subject: "alice"},
		{desc: "argon2id user, scheme in lower case", header: []string{"basic " + base64.StdEncoding.EncodeToString([]byte("carol:carolpw"))}, subject: "carol"},
		{desc: "password with a colon and non-ASCII", header: []string{basicHeader("colon", "pa:ss wörd")}, subject: "colon"},
		{desc: "72-byte password", header: []string{basicHeader("long", long72)}, subject: "long"},
		{desc: "password over 72 bytes matching on its prefix", header: []string{basicHeader("long", long72+"c")}, password: long72 + "c", reason: ReasonInvalid, identity: "long"},
		{desc: "wrong bcrypt password", header: []string{basicHeader("alice", "looking-glass")}, password: "looking-glass", reason: ReasonInvalid, identity: "alice"},
		{desc: "wrong argon2id password", header: []string{basicHeader("carol", "carolpx")}, password: "carolpx", reason: ReasonInvalid, identity: "carol"},
		{desc: "unknown user", header: []string{basicHeader("mallory", "wonderland")}, password: "wonderland", reason: ReasonInvalid, identity: "mallory"},
		{desc: "empty user", header: []string{basicHeader("", "carolpw")}, password: "carolpw", reason: ReasonInvalid},
		{desc: "user names are case-sensitive", header: []string{basicHeader("Carol", "carolpw")}, password: "carolpw", reason: ReasonInvalid, identity: "Carol"},
		{desc: "several Authorization headers", header: []string{basicHeader("carol", "carolpw"), "Bearer abc"}, password: "carolpw", reason: ReasonMalformed},
		{desc: "several Authorization headers, none Basic", header: []string{"Bearer abc", "Bearer def"}},
		{desc: "no credentials after the scheme", header: []string{"Basic "}, reason: ReasonMalformed},
		{desc: "bare scheme", header: []string{"Basic"}, reason: ReasonMalformed},
		{desc: "not base64", header: []string{"Basic alice:wonderland"}, password: "wonderland", reason: ReasonMalformed},
		{desc: "no colon", header: []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("alicewonderland"))}, password: "alicewonderland", reason: ReasonMalformed},
		{desc: "oversized", header: []string{"Basic " + strings.Repeat("QUFB", 1025)}, reason: ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel() // bcrypt checks are slow under the race detector
			p, err := a.Authenticate(context.Background(), exchange(tt.header...))
			switch {
			case tt.subject != "":
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				want := gateway.Principal{Subject: tt.subject, Authenticator: "admins", Kind: "basic"}
				if p == nil || p.Subject != want.Subject || p.Authenticator != want.Authenticator || p.Kind != want.Kind {
					t.Fatalf("principal %+v, want %+v", p, want)
				}
			case tt.reason == "":
				if !errors.Is(err, authn.ErrNoCredentials) || p != nil {
					t.Fatalf("Authenticate = %v, %v; want ErrNoCredentials", p, err)
				}
			default:
				var f *authn.Failure
				if !errors.As(err, &f) || p != nil {
					t.Fatalf("Authenticate = %v, %v; want a Failure", p, err)
				}
				if f.ReasonID != tt.reason || f.Identity != tt.identity {
					t.Errorf("reason %q identity %q, want %q %q", f.ReasonID, f.Identity, tt.reason, tt.identity)
				}
				if tt.password != "" && strings.Contains(f.Error(), tt.password) {
					t.Errorf("failure %q contains the password", f)
				}
			}
		})
	}
}

func TestChecksWaitForASlot(t *testing.T) {
	a, _, _ := newBasic(t, testFile)
	for range cap(a.checks) {
		a.checks <- struct{}{} // every slot busy
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := a.Authenticate(ctx, exchange(basicHeader("carol", "carolpw")))
	var f *authn.Failure
	if !errors.Is(err, context.Canceled) || errors.As(err, &f) {
		t.Fatalf("Authenticate = %v, want the context's error", err)
	}
	<-a.checks // one slot free
	if _, err := a.Authenticate(context.Background(), exchange(basicHeader("carol", "carolpw"))); err != nil {
		t.Fatalf("with a free slot: %v", err)
	}
}

func TestChallenge(t *testing.T) {
	tests := []struct{ realm, want string }{
		{"", `Basic realm="moat", charset="UTF-8"`},
		{"ops console", `Basic realm="ops console", charset="UTF-8"`},
		{`a "quoted" \ realm` + "\r\n", `Basic realm="a \"quoted\" \\ realm", charset="UTF-8"`},
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	writeFile(t, path, "")
	for _, tt := range tests {
		a, err := New("b", &config.BasicAuth{HtpasswdFile: path, Realm: tt.realm}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.Challenge(); got != tt.want {
			t.Errorf("realm %q: Challenge = %s, want %s", tt.realm, got, tt.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, "alice:"+aliceHash+"\n# legacy\nbob:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n")
	tests := []struct {
		desc string
		cfg  *config.BasicAuth
		want []string
	}{
		{desc: "no configuration", want: []string{"authenticators.admins.basic: no configuration"}},
		{desc: "no file", cfg: &config.BasicAuth{}, want: []string{"authenticators.admins.basic.htpasswd_file: required"}},
		{desc: "missing file", cfg: &config.BasicAuth{HtpasswdFile: filepath.Join(dir, "nope")},
			want: []string{"authenticators.admins.basic.htpasswd_file", filepath.Join(dir, "nope")}},
		{desc: "MD5 entry", cfg: &config.BasicAuth{HtpasswdFile: bad},
			want: []string{"authenticators.admins.basic.htpasswd_file: " + bad + ": line 3: MD5 (apr1) hashes are not accepted"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			_, err := New("admins", tt.cfg, nil)
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "HqJZ") || strings.Contains(err.Error(), aliceHash[7:20]) {
				t.Errorf("error quotes a hash: %v", err)
			}
		})
	}
}

func TestReloadKeepsUsersOnBadFile(t *testing.T) {
	a, path, logs := newBasic(t, "carol:"+carolHash+"\n")
	writeFile(t, path, "carol:"+carolHash+"\nerin:"+carolHash+"\n")
	if err := a.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if a.Users() != 2 {
		t.Fatalf("%d users after reload, want 2", a.Users())
	}

	writeFile(t, path, "carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), "line 1: SHA-1") {
		t.Fatalf("Reload of a SHA-1 file = %v, want a line error", err)
	}
	if a.Users() != 2 {
		t.Fatalf("%d users after failed reload, want the previous 2", a.Users())
	}
	if _, err := a.Authenticate(context.Background(), exchange(basicHeader("erin", "carolpw"))); err != nil {
		t.Fatalf("previous users no longer served: %v", err)
	}
	if !strings.Contains(logs.String(), "htpasswd reload failed") || strings.Contains(logs.String(), "W6ph5") {
		t.Errorf("failed reload not logged, or logged with its hash:\n%s", logs)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err == nil {
		t.Fatal("Reload of a removed file succeeded")
	}
	if a.Users() != 2 {
		t.Fatalf("%d users after the file was removed, want the previous 2", a.Users())
	}
}

func TestReloadUnchangedKeepsUserSet(t *testing.T) {
	a, _, _ := newBasic(t, "carol:"+carolHash+"\n")
	before := a.current.Load()
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if a.current.Load() != before {
		t.Error("an unchanged file was swapped in again")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatcherReloads(t *testing.T) {
	for _, pollOnly := range []bool{false, true} {
		name := "file events"
		if pollOnly {
			name = "poll only"
		}
		t.Run(name, func(t *testing.T) {
			a, path, logs := newBasic(t, "carol:"+carolHash+"\n")
			a.noEvents = pollOnly
			a.PollInterval = time.Hour
			if pollOnly {
				a.PollInterval = 20 * time.Millisecond
			}
			a.Debounce = 20 * time.Millisecond
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			a.Start(ctx)

			writeFile(t, path, "carol:"+carolHash+"\nerin:"+carolHash+"\n")
			if pollOnly {
				// The same size may be written within the file system's
				// timestamp granularity: move the time on explicitly.
				later := time.Now().Add(time.Minute)
				if err := os.Chtimes(path, later, later); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "the new user", func() bool { return a.Users() == 2 })

			writeFile(t, path, "garbage\n")
			waitFor(t, "the bad file to be refused", func() bool {
				return strings.Contains(logs.String(), "htpasswd reload failed")
			})
			if a.Users() != 2 {
				t.Fatalf("%d users after a bad file, want the previous 2", a.Users())
			}
			if err := a.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := a.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

func TestStartAfterCloseDoesNothing(t *testing.T) {
	a, _, _ := newBasic(t, "")
	a.Close()
	a.Start(context.Background())
	if a.watcher.Done() != nil {
		t.Error("Start after Close started a watcher")
	}
}

// BenchmarkAuthenticate measures one successful check per algorithm; a
// failed or unknown-user check costs the same.
func BenchmarkAuthenticate(b *testing.B) {
	for _, bb := range []struct {
		name, hash, password string
	}{
		{"bcrypt-10", aliceHash, "wonderland"},
		{"bcrypt-12", cost12Hash, "x"},
		{"argon2id-m19456-t2-p1", carolHash, "carolpw"},
	} {
		b.Run(bb.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "htpasswd")
			if err := os.WriteFile(path, []byte("u:"+bb.hash+"\n"), 0o600); err != nil {
				b.Fatal(err)
			}
			a, err := New("b", &config.BasicAuth{HtpasswdFile: path}, nil)
			if err != nil {
				b.Fatal(err)
			}
			ex := exchange(basicHeader("u", bb.password))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Authenticate(context.Background(), ex); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
