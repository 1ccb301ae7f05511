package basic

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Limits on an htpasswd file. A file breaking one is refused as a whole.
const (
	maxFileSize   = 1 << 20 // bytes
	maxLineLength = 1024    // bytes, without the line break
	maxLines      = 100_000 // lines of any kind, comments and blank ones included
	maxUsers      = 10_000
	maxUserLength = 255 // bytes
)

// Cost bounds of the accepted hashes. The minimums refuse hashes too cheap
// to resist an offline attack on a leaked file; the maximums keep a
// hostile or careless file from making each check cost seconds of CPU (or,
// for argon2id, hundreds of megabytes per concurrent check).
const (
	minBcryptCost = 10
	maxBcryptCost = 13

	// argon2id memory m is in KiB; work is m*t, the memory passes made.
	// The minimums follow the weakest OWASP recommendation (7 MiB, t=5);
	// the maximums allow 128 MiB, and 512 MiB of passes (such as 64 MiB
	// with t=8).
	minArgon2Memory  = 7 * 1024
	maxArgon2Memory  = 128 * 1024
	minArgon2Work    = 5 * 7 * 1024
	maxArgon2Work    = 512 * 1024
	maxArgon2Time    = 16
	maxArgon2Threads = 16
	minArgon2Salt    = 8
	maxArgon2Salt    = 64
	minArgon2Key     = 16
	maxArgon2Key     = 64
)

// bcryptMaxPassword is the longest password bcrypt reads; it ignores the
// bytes after it.
const bcryptMaxPassword = 72

// passwordHash is a parsed password hash from an htpasswd line.
type passwordHash interface {
	// verify reports whether password matches, in time independent of how
	// much of it matches.
	verify(password []byte) bool
	// class names the hash's algorithm and cost parameters: checking any
	// two hashes of one class costs the same.
	class() string
	// dummy returns a new hash of the same class that no password matches.
	dummy() (passwordHash, error)
}

// lineError is a problem at one line of an htpasswd file. Its message
// never contains the line's hash.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

func lineErrorf(line int, format string, args ...any) *lineError {
	return &lineError{line: line, msg: fmt.Sprintf(format, args...)}
}

// htpasswd is a parsed htpasswd file.
type htpasswd struct {
	users map[string]passwordHash
	order []string // users in file order
}

// parseHtpasswd parses an htpasswd file: one user:hash entry per line;
// blank lines and lines starting with # are ignored, and spaces and a
// carriage return around a line are trimmed. Only bcrypt and argon2id
// hashes within the cost bounds are accepted; any other line, a duplicate
// user or a file over the limits is an error naming the line. Parsing does
// no hashing, so it is cheap whatever the file holds.
func parseHtpasswd(data []byte) (*htpasswd, error) {
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("file is larger than %d bytes", maxFileSize)
	}
	f := &htpasswd{users: make(map[string]passwordHash)}
	users := f.users
	firstLine := make(map[string]int)
	n := 0
	for rest := data; len(rest) > 0; {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		n++
		if n > maxLines {
			return nil, fmt.Errorf("file has more than %d lines", maxLines)
		}
		if len(line) > maxLineLength {
			return nil, lineErrorf(n, "line is longer than %d bytes", maxLineLength)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		user, hash, ok := strings.Cut(string(line), ":")
		if !ok {
			return nil, lineErrorf(n, "not a user:hash entry")
		}
		if err := checkUser(user); err != "" {
			return nil, lineErrorf(n, "user name %s", err)
		}
		if first, dup := firstLine[user]; dup {
			return nil, lineErrorf(n, "duplicate user (first on line %d)", first)
		}
		if len(users) == maxUsers {
			return nil, lineErrorf(n, "more than %d users", maxUsers)
		}
		h, err := parseHash(hash)
		if err != nil {
			return nil, lineErrorf(n, "%s", err)
		}
		users[user] = h
		f.order = append(f.order, user)
		firstLine[user] = n
	}
	return f, nil
}

// checkUser returns why name cannot be a user name, or "".
func checkUser(name string) string {
	switch {
	case name == "":
		return "is empty"
	case len(name) > maxUserLength:
		return fmt.Sprintf("is longer than %d bytes", maxUserLength)
	case !utf8.ValidString(name):
		return "is not valid UTF-8"
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "contains a control character"
		}
	}
	return ""
}

// hashError is why a hash is refused; it never quotes the hash.
type hashError string

func (e hashError) Error() string { return string(e) }

const useInstead = "; use bcrypt (htpasswd -B -C 12) or argon2id"

// parseHash recognises one hash.
func parseHash(h string) (passwordHash, error) {
	switch {
	case h == "":
		return nil, hashError("empty password hash")
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		return parseBcrypt(h)
	case strings.HasPrefix(h, "$argon2id$"):
		return parseArgon2id(h)
	case strings.HasPrefix(h, "$apr1$"):
		return nil, hashError("MD5 (apr1) hashes are not accepted" + useInstead)
	case strings.HasPrefix(h, "{SHA}"):
		return nil, hashError("SHA-1 hashes are not accepted" + useInstead)
	case strings.HasPrefix(h, "$1$"):
		return nil, hashError("MD5-crypt hashes are not accepted" + useInstead)
	case strings.HasPrefix(h, "$5$"), strings.HasPrefix(h, "$6$"):
		return nil, hashError("SHA-crypt hashes are not accepted" + useInstead)
	case strings.HasPrefix(h, "$argon2i$"), strings.HasPrefix(h, "$argon2d$"):
		return nil, hashError("argon2i and argon2d hashes are not accepted; use argon2id")
	case strings.HasPrefix(h, "$2"):
		return nil, hashError("unsupported bcrypt variant (accepted: 2a, 2b, 2y)")
	}
	return nil, hashError("not a bcrypt or argon2id hash (crypt and plain-text passwords are not accepted)" + useInstead)
}

// bcryptHash is a bcrypt hash in its modular crypt form, $2y$12$...
type bcryptHash struct {
	encoded []byte
	cost    int
}

const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// parseBcrypt checks a $2a$, $2b$ or $2y$ hash: 60 characters, a two-digit
// cost within bounds, then 53 characters of salt and hash.
func parseBcrypt(h string) (passwordHash, error) {
	if len(h) != 60 || h[6] != '$' {
		return nil, hashError("malformed bcrypt hash")
	}
	if h[4] < '0' || h[4] > '9' || h[5] < '0' || h[5] > '9' {
		return nil, hashError("malformed bcrypt hash: bad cost")
	}
	cost := int(h[4]-'0')*10 + int(h[5]-'0')
	for i := 7; i < len(h); i++ {
		if strings.IndexByte(bcryptAlphabet, h[i]) < 0 {
			return nil, hashError("malformed bcrypt hash")
		}
	}
	if cost < minBcryptCost {
		return nil, hashError(fmt.Sprintf("bcrypt cost %d is below the minimum %d", cost, minBcryptCost))
	}
	if cost > maxBcryptCost {
		return nil, hashError(fmt.Sprintf("bcrypt cost %d is above the maximum %d", cost, maxBcryptCost))
	}
	if c, err := bcrypt.Cost([]byte(h)); err != nil || c != cost {
		return nil, hashError("malformed bcrypt hash")
	}
	return &bcryptHash{encoded: []byte(h), cost: cost}, nil
}

func (b *bcryptHash) verify(password []byte) bool {
	// bcrypt ignores bytes past 72; a longer password would match on its
	// prefix alone. Refuse it, after spending the same time.
	ok := bcrypt.CompareHashAndPassword(b.encoded, password) == nil
	return ok && len(password) <= bcryptMaxPassword
}

func (b *bcryptHash) class() string { return "bcrypt/" + strconv.Itoa(b.cost) }

func (b *bcryptHash) dummy() (passwordHash, error) {
	// A random salt and hash of the same cost: checking it costs what
	// checking a real hash does, and building it costs nothing.
	enc := fmt.Appendf(nil, "$2a$%02d$", b.cost)
	var r [53]byte
	rand.Read(r[:])
	for _, c := range r {
		enc = append(enc, bcryptAlphabet[c&63]) // the alphabet has 64 characters
	}
	return &bcryptHash{encoded: enc, cost: b.cost}, nil
}

// argon2idHash is an argon2id hash in the PHC string format:
// $argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>, salt and hash in base64
// without padding.
type argon2idHash struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

var phcBase64 = base64.RawStdEncoding.Strict()

func parseArgon2id(h string) (passwordHash, error) {
	parts := strings.Split(strings.TrimPrefix(h, "$argon2id$"), "$")
	if len(parts) != 4 {
		return nil, hashError("malformed argon2id hash: want version, parameters, salt and hash")
	}
	if parts[0] != "v=19" {
		return nil, hashError("unsupported argon2id version (want v=19)")
	}
	var m, t, p uint64
	params := strings.Split(parts[1], ",")
	if len(params) != 3 {
		return nil, hashError("malformed argon2id parameters: want m=M,t=T,p=P")
	}
	for i, want := range []struct {
		name string
		dst  *uint64
	}{{"m=", &m}, {"t=", &t}, {"p=", &p}} {
		v, ok := strings.CutPrefix(params[i], want.name)
		if !ok {
			return nil, hashError("malformed argon2id parameters: want m=M,t=T,p=P")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, hashError("malformed argon2id parameters: want m=M,t=T,p=P")
		}
		*want.dst = n
	}
	switch {
	case p < 1 || p > maxArgon2Threads:
		return nil, hashError(fmt.Sprintf("argon2id parallelism p=%d is outside 1..%d", p, maxArgon2Threads))
	case t < 1 || t > maxArgon2Time:
		return nil, hashError(fmt.Sprintf("argon2id time t=%d is outside 1..%d", t, maxArgon2Time))
	case m < minArgon2Memory || m > maxArgon2Memory:
		return nil, hashError(fmt.Sprintf("argon2id memory m=%d KiB is outside %d..%d", m, minArgon2Memory, maxArgon2Memory))
	case m < 8*p:
		return nil, hashError(fmt.Sprintf("argon2id memory m=%d KiB is below 8*p", m))
	case m*t < minArgon2Work:
		return nil, hashError(fmt.Sprintf("argon2id cost m*t=%d is below the minimum %d (such as m=19456,t=2)", m*t, minArgon2Work))
	case m*t > maxArgon2Work:
		return nil, hashError(fmt.Sprintf("argon2id cost m*t=%d is above the maximum %d", m*t, maxArgon2Work))
	}
	salt, err := phcBase64.DecodeString(parts[2])
	if err != nil || len(salt) < minArgon2Salt || len(salt) > maxArgon2Salt {
		return nil, hashError(fmt.Sprintf("argon2id salt must be %d to %d bytes of unpadded base64", minArgon2Salt, maxArgon2Salt))
	}
	key, err := phcBase64.DecodeString(parts[3])
	if err != nil || len(key) < minArgon2Key || len(key) > maxArgon2Key {
		return nil, hashError(fmt.Sprintf("argon2id hash must be %d to %d bytes of unpadded base64", minArgon2Key, maxArgon2Key))
	}
	return &argon2idHash{memory: uint32(m), time: uint32(t), threads: uint8(p), salt: salt, key: key}, nil
}

func (a *argon2idHash) verify(password []byte) bool {
	got := argon2.IDKey(password, a.salt, a.time, a.memory, a.threads, uint32(len(a.key)))
	return subtle.ConstantTimeCompare(got, a.key) == 1
}

func (a *argon2idHash) class() string {
	return fmt.Sprintf("argon2id/m=%d,t=%d,p=%d,len=%d", a.memory, a.time, a.threads, len(a.key))
}

func (a *argon2idHash) dummy() (passwordHash, error) {
	d := &argon2idHash{memory: a.memory, time: a.time, threads: a.threads,
		salt: make([]byte, len(a.salt)), key: make([]byte, len(a.key))}
	rand.Read(d.salt)
	rand.Read(d.key)
	return d, nil
}

// dummy returns the hash checked for unknown users: one of the class most
// users' hashes have (the class first reaching that count, in file order,
// on a tie), so a wrong user name costs what a wrong password does. With
// no users it is a bcrypt hash of the minimum cost.
func (f *htpasswd) dummy() (passwordHash, error) {
	counts := map[string]int{}
	var best passwordHash
	bestN := 0
	for _, u := range f.order {
		h := f.users[u]
		c := h.class()
		counts[c]++
		if counts[c] > bestN {
			best, bestN = h, counts[c]
		}
	}
	if best == nil {
		best = &bcryptHash{cost: minBcryptCost}
	}
	return best.dummy()
}
