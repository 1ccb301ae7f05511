// Package basic authenticates HTTP Basic credentials against an htpasswd
// file holding bcrypt or argon2id hashes.
//
// Basic authentication is meant for low-rate use: an admin endpoint, a
// legacy client. Every check runs a deliberately slow password hash (on
// one core of a server CPU, about 50 ms for argon2id with m=19456,t=2 and
// 100 ms for bcrypt at cost 10, four times that per bcrypt cost step), so
// each request with Basic credentials costs the gateway that much, and
// at most GOMAXPROCS checks run at once. Brute-force guessing is held back
// by the authentication stage's lockout, not here; keep it on for routes
// that accept Basic. Prefer API keys or tokens for machine clients.
//
// Accepted hashes: bcrypt ($2a$, $2b$, $2y$) with cost 10 to 13, and
// argon2id (PHC string, v=19) with 7 to 128 MiB of memory, m*t between
// 35840 and 524288 and p of 1 to 16. MD5 ($apr1$), SHA-1 ({SHA}), crypt
// and plain-text entries make the whole file unusable. bcrypt reads at
// most 72 bytes of a password; longer passwords are refused rather than
// matched on their first 72 bytes.
//
// The file is read at load (New) and again when it changes (Start), or on
// Reload. A file that cannot be used is refused as a whole: New fails, and a
// reload keeps the previous users and logs why.
package basic

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-gateway/moat/internal/authn"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/filewatch"
	"github.com/moat-gateway/moat/internal/gateway"
)

// Reasons for refusing Basic credentials.
const (
	// ReasonMalformed: the Authorization header uses the Basic scheme but
	// its credentials are not base64 of user:password.
	ReasonMalformed = "basic_malformed"
	// ReasonInvalid: the user is unknown or the password is wrong; the two
	// are not told apart.
	ReasonInvalid = "basic_invalid"
)

// Kind is the Principal.Kind of Basic principals.
const Kind = "basic"

// maxEncodedCredentials bounds the base64 credentials of a header.
const maxEncodedCredentials = 4096

// Authenticator checks HTTP Basic credentials against an htpasswd file.
// Create it with New; the zero value is not usable. Its methods are safe for
// concurrent use; the exported fields must be set before Start and not
// changed afterwards.
type Authenticator struct {
	// PollInterval is how often the watcher started by Start compares the
	// file's size and modification time, as a fallback for changes file
	// system events miss, and retries a failed reload. Zero means 30s.
	PollInterval time.Duration
	// Debounce is how long the watcher waits after the last file system
	// event before reloading. Zero means 100ms.
	Debounce time.Duration

	name      string
	file      string
	challenge string
	log       *slog.Logger
	// checks bounds the password hashes computed at once, and so the CPU
	// and (for argon2id) memory a burst of Basic requests can take.
	checks chan struct{}

	// current is the user set every check uses.
	current atomic.Pointer[userSet]

	// reloadMu serialises loads and guards stamp and failed.
	reloadMu sync.Mutex
	stamp    stamp // the file's size and mtime when last read
	failed   bool  // the last load attempt failed

	watcher filewatch.Watcher // started by Start

	noEvents bool // tests: poll only, no fsnotify
}

// userSet is one loaded file; immutable once stored.
type userSet struct {
	users  map[string]passwordHash
	dummy  passwordHash // checked for unknown users
	digest [sha256.Size]byte
}

// New reads and checks cfg.HtpasswdFile and returns an Authenticator for
// it, named name (its key under authenticators). It fails with an error
// naming the field, the file and, for a bad entry, the line; errors never
// quote a hash. Loading computes no hash, however many users the file
// holds. A nil log discards logs.
//
// The file is not watched until Start is called.
func New(name string, cfg *config.BasicAuth, log *slog.Logger) (*Authenticator, error) {
	field := "authenticators." + name + ".basic"
	if cfg == nil {
		return nil, fmt.Errorf("%s: no configuration", field)
	}
	if cfg.HtpasswdFile == "" {
		return nil, fmt.Errorf("%s.htpasswd_file: required", field)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	realm := cfg.Realm
	if realm == "" {
		realm = "moat"
	}
	a := &Authenticator{
		name:      name,
		file:      cfg.HtpasswdFile,
		challenge: `Basic realm="` + quote(realm) + `", charset="UTF-8"`,
		log:       log.With("authenticator", name, "htpasswd_file", cfg.HtpasswdFile),
		checks:    make(chan struct{}, max(2, runtime.GOMAXPROCS(0))),
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.stamp = statFile(a.file)
	set, err := a.load()
	if err != nil {
		return nil, fmt.Errorf("%s.htpasswd_file: %w", field, err)
	}
	a.current.Store(set)
	a.log.Info("htpasswd file loaded", "users", len(set.users))
	return a, nil
}

// quote escapes s for a quoted-string: backslash and double quote are
// escaped and control characters dropped.
func quote(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// load reads and parses the file. It returns errors that name the file.
func (a *Authenticator) load() (*userSet, error) {
	data, err := readFile(a.file)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(data)
	if cur := a.current.Load(); cur != nil && cur.digest == digest {
		return cur, nil
	}
	f, err := parseHtpasswd(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.file, err)
	}
	dummy, err := f.dummy()
	if err != nil {
		return nil, err
	}
	return &userSet{users: f.users, dummy: dummy, digest: digest}, nil
}

// readFile reads path, refusing a file over maxFileSize.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s: file is larger than %d bytes", path, maxFileSize)
	}
	return data, nil
}

// Reload reads the file again and, if its content changed and is valid,
// swaps in the new users; checks in flight finish with the old ones. A
// file that cannot be used changes nothing: Reload logs and returns the
// error, which names the file and line but never a hash.
func (a *Authenticator) Reload() error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.stamp = statFile(a.file)
	return a.reloadLocked("reload")
}

// reloadLocked loads the file and swaps it in; a.reloadMu is held.
func (a *Authenticator) reloadLocked(reason string) error {
	old := a.current.Load()
	set, err := a.load()
	if err != nil {
		a.failed = true
		a.log.Warn("htpasswd reload failed; keeping the previous users", "reason", reason, "error", err)
		return err
	}
	a.failed = false
	if set == old {
		return nil
	}
	a.current.Store(set)
	a.log.Info("htpasswd file reloaded", "reason", reason, "users", len(set.users))
	return nil
}

// Users returns the number of users currently loaded.
func (a *Authenticator) Users() int { return len(a.current.Load().users) }

// Challenge returns `Basic realm="<realm>", charset="UTF-8"`.
func (a *Authenticator) Challenge() string { return a.challenge }

// Authenticate checks the request's Basic credentials. It returns
// authn.ErrNoCredentials when there is no Authorization header or it names
// another scheme; a *authn.Failure with ReasonMalformed when the
// credentials cannot be decoded, or ReasonInvalid when the user is unknown
// or the password wrong (an unknown user is checked against a hash of the
// usual cost, so the answer takes as long); else a Principal whose Subject
// is the user name.
//
// A check computes one password hash: tens of milliseconds of CPU. At most
// GOMAXPROCS checks (and at least 2) run at once; the others wait, and
// give up with ctx's error if it ends first.
func (a *Authenticator) Authenticate(ctx context.Context, ex *gateway.Exchange) (*gateway.Principal, error) {
	user, password, err := credentials(ex.Request.Header)
	if err != nil {
		return nil, err
	}
	select {
	case a.checks <- struct{}{}:
		defer func() { <-a.checks }()
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting to check a password: %w", ctx.Err())
	}
	set := a.current.Load()
	h, known := set.users[user]
	if !known {
		h = set.dummy
	}
	ok := h.verify(password)
	clear(password)
	switch {
	case !known:
		return nil, &authn.Failure{ReasonID: ReasonInvalid, Detail: "unknown user", Identity: identity(user)}
	case !ok:
		return nil, &authn.Failure{ReasonID: ReasonInvalid, Detail: "wrong password", Identity: identity(user)}
	}
	return &gateway.Principal{Subject: user, Authenticator: a.name, Kind: Kind}, nil
}

// credentials returns the user and password of a Basic Authorization
// header, authn.ErrNoCredentials, or a ReasonMalformed Failure. Several
// Authorization headers of which one is Basic are refused: which one the
// upstream would honour is ambiguous.
func credentials(h http.Header) (user string, password []byte, err error) {
	vals := h["Authorization"]
	rest, found := "", false
	for _, v := range vals {
		if scheme, r, _ := strings.Cut(v, " "); strings.EqualFold(scheme, "Basic") {
			rest, found = r, true
		}
	}
	if !found {
		return "", nil, authn.ErrNoCredentials
	}
	if len(vals) > 1 {
		return "", nil, authn.Fail(ReasonMalformed, "%d Authorization headers", len(vals))
	}
	rest = strings.Trim(rest, " \t")
	switch {
	case rest == "":
		return "", nil, authn.Fail(ReasonMalformed, "no credentials after the Basic scheme")
	case len(rest) > maxEncodedCredentials:
		return "", nil, authn.Fail(ReasonMalformed, "credentials longer than %d bytes", maxEncodedCredentials)
	}
	dec, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return "", nil, authn.Fail(ReasonMalformed, "credentials are not base64")
	}
	u, p, ok := bytes.Cut(dec, []byte{':'})
	if !ok {
		clear(dec)
		return "", nil, authn.Fail(ReasonMalformed, "credentials have no colon between user and password")
	}
	return string(u), p, nil
}

// identity returns user as a Failure identity, or "" for a name no file
// can hold (it may be a mistyped password, or garbage).
func identity(user string) string {
	if checkUser(user) != "" {
		return ""
	}
	return user
}

var _ authn.Authenticator = (*Authenticator)(nil)
