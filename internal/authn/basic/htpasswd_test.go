package basic

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Hashes of known passwords. bcrypt at cost 10 takes a second or more per
// check under the race detector, so tests check few of them.
const (
	aliceHash  = "$2a$10$9HU00bYM2baMnXKdoD4suOl4ubc3LcFpkNgXn8cc0pZCFj3nnHUOS"                                      // wonderland
	colonHash  = "$2a$10$TXTO6qwE9Y009qckQm0/UOa5iLy9qwUN.HaHybyMnlZiQwWfZnvzS"                                      // pa:ss wörd
	longHash   = "$2a$10$lDTZCrvAPKKJ99RbyVM3s.Zxr9y3zvFBa0GinuwNyhBlh3OfG4HOK"                                      // long72
	cost12Hash = "$2a$12$/Ph6U.qJobPAsrazqY4rguJ44OVjfCqsOq4/TIb28EFhOeio9bx2O"                                      // x
	carolHash  = "$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$jQnjxt0331ZaL1ktPs0FJOBQDfMaa4cIfBuBtP4aHMU" // carolpw
)

// long72 is a 72-byte password, the most bcrypt reads.
const long72 = "0123456789012345678901234567890123456789012345678901234567890123456789ab"

func TestParseHtpasswdAccepts(t *testing.T) {
	tests := []struct {
		desc  string
		file  string
		users []string
	}{
		{desc: "empty file", file: ""},
		{desc: "comments and blank lines", file: "# admins\n\n   \n# more\n"},
		{desc: "bcrypt", file: "alice:" + aliceHash + "\n", users: []string{"alice"}},
		{desc: "bcrypt 2y and 2b", file: "a:" + "$2y$" + aliceHash[4:] + "\nb:" + "$2b$" + aliceHash[4:], users: []string{"a", "b"}},
		{desc: "argon2id", file: "carol:" + carolHash, users: []string{"carol"}},
		{desc: "CRLF and surrounding spaces", file: "  alice:" + aliceHash + " \r\n\r\ncarol:" + carolHash + "\r\n", users: []string{"alice", "carol"}},
		{desc: "unicode user name", file: "jürgen:" + aliceHash, users: []string{"jürgen"}},
		{desc: "argon2id at the upper bounds", file: "u:$argon2id$v=19$m=65536,t=8,p=16$MDEyMzQ1Njc4OWFiY2RlZg$jQnjxt0331ZaL1ktPs0FJOBQDfMaa4cIfBuBtP4aHMU", users: []string{"u"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			f, err := parseHtpasswd([]byte(tt.file))
			if err != nil {
				t.Fatalf("parseHtpasswd: %v", err)
			}
			if len(f.users) != len(tt.users) || len(f.order) != len(tt.users) {
				t.Fatalf("got %d users, want %v", len(f.users), tt.users)
			}
			for i, u := range tt.users {
				if f.users[u] == nil || f.order[i] != u {
					t.Errorf("user %q missing or out of order (order %q)", u, f.order)
				}
			}
		})
	}
}

func TestParseHtpasswdRefuses(t *testing.T) {
	argon := func(params string) string {
		return "u:$argon2id$v=19$" + params + "$MDEyMzQ1Njc4OWFiY2RlZg$jQnjxt0331ZaL1ktPs0FJOBQDfMaa4cIfBuBtP4aHMU"
	}
	tests := []struct {
		desc string
		file string
		want string // in the error
	}{
		{desc: "MD5 apr1", file: "# c\nbob:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/", want: "line 2: MD5 (apr1) hashes are not accepted"},
		{desc: "SHA-1", file: "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", want: "line 1: SHA-1 hashes are not accepted"},
		{desc: "crypt", file: "bob:rqXexS6ZhobKA", want: "line 1: not a bcrypt or argon2id hash"},
		{desc: "plain text", file: "bob:hunter2", want: "not a bcrypt or argon2id hash"},
		{desc: "MD5-crypt", file: "bob:$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", want: "MD5-crypt"},
		{desc: "SHA-512-crypt", file: "bob:$6$saltsalt$qjXMvbEw8oaL.CzflDugX/", want: "SHA-crypt"},
		{desc: "argon2i", file: "bob:$argon2i$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG", want: "argon2i and argon2d"},
		{desc: "bcrypt 2x", file: "bob:$2x$10$" + aliceHash[7:], want: "unsupported bcrypt variant"},
		{desc: "empty hash", file: "bob:", want: "empty password hash"},
		{desc: "no colon", file: "bob", want: "line 1: not a user:hash entry"},
		{desc: "empty user", file: ":" + aliceHash, want: "user name is empty"},
		{desc: "control character in user", file: "b\x01b:" + aliceHash, want: "control character"},
		{desc: "user too long", file: strings.Repeat("u", maxUserLength+1) + ":" + aliceHash, want: "user name is longer"},
		{desc: "invalid UTF-8 user", file: "b\xffb:" + aliceHash, want: "not valid UTF-8"},
		{desc: "duplicate user", file: "alice:" + aliceHash + "\n\nalice:" + carolHash, want: "line 3: duplicate user (first on line 1)"},
		{desc: "bcrypt cost too low", file: "bob:$2a$09$" + aliceHash[7:], want: "bcrypt cost 9 is below the minimum 10"},
		{desc: "bcrypt cost too high", file: "bob:$2a$14$" + aliceHash[7:], want: "bcrypt cost 14 is above the maximum 13"},
		{desc: "bcrypt too short", file: "bob:" + aliceHash[:59], want: "malformed bcrypt hash"},
		{desc: "bcrypt bad character", file: "bob:" + aliceHash[:59] + "!", want: "malformed bcrypt hash"},
		{desc: "bcrypt bad cost", file: "bob:$2a$+1$" + aliceHash[7:], want: "bad cost"},
		{desc: "argon2id version 16", file: strings.Replace(argon("m=19456,t=2,p=1"), "v=19", "v=16", 1), want: "unsupported argon2id version"},
		{desc: "argon2id memory too low", file: argon("m=4096,t=10,p=1"), want: "memory m=4096 KiB is outside"},
		{desc: "argon2id memory too high", file: argon("m=1048576,t=1,p=1"), want: "memory m=1048576 KiB is outside"},
		{desc: "argon2id time too high", file: argon("m=19456,t=100,p=1"), want: "time t=100 is outside"},
		{desc: "argon2id zero time", file: argon("m=19456,t=0,p=1"), want: "time t=0 is outside"},
		{desc: "argon2id zero parallelism", file: argon("m=19456,t=2,p=0"), want: "parallelism p=0"},
		{desc: "argon2id too many threads", file: argon("m=19456,t=2,p=64"), want: "parallelism p=64"},
		{desc: "argon2id too little work", file: argon("m=8192,t=1,p=1"), want: "below the minimum"},
		{desc: "argon2id too much work", file: argon("m=131072,t=16,p=1"), want: "above the maximum"},
		{desc: "argon2id parameters out of order", file: argon("t=2,m=19456,p=1"), want: "malformed argon2id parameters"},
		{desc: "argon2id extra parameter", file: argon("m=19456,t=2,p=1,keyid=x"), want: "malformed argon2id parameters"},
		{desc: "argon2id huge number", file: argon("m=99999999999,t=2,p=1"), want: "malformed argon2id parameters"},
		{desc: "argon2id short salt", file: "u:$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$jQnjxt0331ZaL1ktPs0FJOBQDfMaa4cIfBuBtP4aHMU", want: "salt must be"},
		{desc: "argon2id padded hash", file: "u:$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$jQnjxt0331ZaL1ktPs0FJOBQDfMaa4cIfBuBtP4aHMU=", want: "hash must be"},
		{desc: "argon2id missing parts", file: "u:$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg", want: "malformed argon2id hash"},
		{desc: "line too long", file: "# " + strings.Repeat("x", maxLineLength), want: "line 1: line is longer than 1024 bytes"},
		{desc: "file too large", file: strings.Repeat("#\n", maxFileSize/2+1), want: "file is larger than"},
		{desc: "too many lines", file: strings.Repeat("\n", maxLines+1), want: "more than 100000 lines"},
		{desc: "too many users", file: manyUsers(maxUsers + 1), want: fmt.Sprintf("line %d: more than %d users", maxUsers+1, maxUsers)},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			_, err := parseHtpasswd([]byte(tt.file))
			if err == nil {
				t.Fatal("parseHtpasswd accepted the file")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			checkNoHash(t, tt.file, err)
		})
	}
}

func manyUsers(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "u%d:%s\n", i, aliceHash)
	}
	return b.String()
}

// checkNoHash fails if err quotes the hash part of any line of file.
func checkNoHash(t *testing.T, file string, err error) {
	t.Helper()
	for line := range strings.SplitSeq(file, "\n") {
		_, hash, ok := strings.Cut(line, ":")
		hash = strings.TrimSpace(hash)
		if ok && len(hash) >= 12 && !strings.ContainsAny(hash, " \t") && strings.Contains(err.Error(), hash) {
			t.Fatalf("error quotes a hash: %v", err)
		}
	}
}

func TestDummyHasTheMostCommonClass(t *testing.T) {
	tests := []struct {
		desc string
		file string
		want string
	}{
		{desc: "no users", file: "", want: "bcrypt/10"},
		{desc: "bcrypt majority", file: "a:" + aliceHash + "\nb:" + cost12Hash + "\nc:" + colonHash, want: "bcrypt/10"},
		{desc: "argon2id majority", file: "a:" + aliceHash + "\nb:" + carolHash + "\nc:" + carolHash, want: "argon2id/m=19456,t=2,p=1,len=32"},
		{desc: "tie goes to the class counted first", file: "b:" + cost12Hash + "\na:" + aliceHash, want: "bcrypt/12"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			f, err := parseHtpasswd([]byte(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			d, err := f.dummy()
			if err != nil {
				t.Fatal(err)
			}
			if got := d.class(); got != tt.want {
				t.Errorf("dummy class %q, want %q", got, tt.want)
			}
		})
	}
}

// TestBcryptDummyIsCheckedInFull pins that the dummy hash is well formed:
// a malformed one would fail fast and reveal that the user is unknown.
func TestBcryptDummyIsCheckedInFull(t *testing.T) {
	d, err := (&bcryptHash{cost: 10}).dummy()
	if err != nil {
		t.Fatal(err)
	}
	enc := d.(*bcryptHash).encoded
	if _, err := parseBcrypt(string(enc)); err != nil {
		t.Fatalf("dummy %q does not parse: %v", enc, err)
	}
	if err := bcrypt.CompareHashAndPassword(enc, []byte("password")); !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		t.Fatalf("checking the dummy: %v, want a full check ending in a mismatch", err)
	}
	a, _ := d.dummy()
	if string(a.(*bcryptHash).encoded) == string(enc) {
		t.Error("dummies are not random")
	}
}

func TestArgon2idVerify(t *testing.T) {
	h, err := parseHash(carolHash)
	if err != nil {
		t.Fatal(err)
	}
	if !h.verify([]byte("carolpw")) {
		t.Error("right password refused")
	}
	if h.verify([]byte("carolpx")) {
		t.Error("wrong password accepted")
	}
	d, _ := h.dummy()
	if d.class() != h.class() || d.verify([]byte("carolpw")) {
		t.Error("dummy differs in class or matches")
	}
}

func FuzzParseHtpasswd(f *testing.F) {
	for _, seed := range []string{
		"",
		"# comment\n\nalice:" + aliceHash + "\n",
		"carol:" + carolHash + "\r\n",
		"alice:" + aliceHash + "\nalice:" + aliceHash,
		"bob:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/",
		"bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
		"bob:plain",
		"bob",
		":",
		"u:$argon2id$v=19$m=19456,t=2,p=1$$",
		"u:$argon2id$v=19$m=4294967295,t=4294967295,p=255$MDEyMzQ1Njc4OWFiY2RlZg$jQnjxt0331ZaL1ktPs0FJOBQDfMaa4cIfBuBtP4aHMU",
		"u:$2a$99$" + aliceHash[7:],
		"u:$2y$10$" + strings.Repeat(".", 53),
		"\xff:\x00",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		hf, err := parseHtpasswd(data)
		if err != nil {
			checkNoHash(t, string(data), err)
			return
		}
		if len(hf.users) != len(hf.order) || len(hf.users) > maxUsers {
			t.Fatalf("%d users, %d in order", len(hf.users), len(hf.order))
		}
		for _, u := range hf.order {
			if msg := checkUser(u); msg != "" {
				t.Fatalf("accepted user name that %s", msg)
			}
			switch h := hf.users[u].(type) {
			case *bcryptHash:
				if h.cost < minBcryptCost || h.cost > maxBcryptCost {
					t.Fatalf("accepted bcrypt cost %d", h.cost)
				}
			case *argon2idHash:
				work := uint64(h.memory) * uint64(h.time)
				if h.memory < minArgon2Memory || h.memory > maxArgon2Memory || work < minArgon2Work || work > maxArgon2Work ||
					h.threads < 1 || h.threads > maxArgon2Threads || h.time < 1 || h.time > maxArgon2Time {
					t.Fatalf("accepted argon2id parameters %s", h.class())
				}
			default:
				t.Fatalf("unexpected hash type %T", h)
			}
		}
	})
}
