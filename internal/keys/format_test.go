package keys

import (
	"errors"
	"hash/crc32"
	"regexp"
	"strings"
	"testing"
)

func TestGenerateParse(t *testing.T) {
	pattern := regexp.MustCompile(`^` + Pattern + `$`)
	seen := map[string]bool{}
	for range 1000 {
		key, id := Generate()
		if len(key) != KeyLen || KeyLen != 64 {
			t.Fatalf("key length %d, KeyLen %d, want 64", len(key), KeyLen)
		}
		if !pattern.MatchString(key) {
			t.Fatalf("key %q does not match Pattern", key)
		}
		gotID, secret, err := Parse(key)
		if err != nil {
			t.Fatalf("Parse(Generate()): %v", err)
		}
		if gotID != id || len(secret) != SecretLen || !strings.Contains(key, secret) {
			t.Fatalf("Parse = %q, %q; want ID %q", gotID, secret, id)
		}
		if err := ValidID(id); err != nil {
			t.Fatalf("ValidID(%q): %v", id, err)
		}
		if seen[secret] {
			t.Fatal("secret repeated")
		}
		seen[secret] = true
	}
}

// TestSecretIsUniform checks that the rejection sampling uses the whole
// alphabet evenly: 1000 secrets hold 43000 characters, about 694 of each.
func TestSecretIsUniform(t *testing.T) {
	counts := map[byte]int{}
	for range 1000 {
		key, _ := Generate()
		_, secret, _ := Parse(key)
		for i := 0; i < len(secret); i++ {
			counts[secret[i]]++
		}
	}
	if len(counts) != 62 {
		t.Fatalf("%d distinct characters, want 62", len(counts))
	}
	for c, n := range counts {
		if n < 500 || n > 900 {
			t.Errorf("character %q drawn %d times, want about 694", c, n)
		}
	}
}

func TestChecksumIsCRC32(t *testing.T) {
	key, _ := Generate()
	if got, want := crcString(key[:sumStart-1]), crc32.ChecksumIEEE([]byte(key[:sumStart-1])); got != want {
		t.Fatalf("crcString = %08x, crc32.ChecksumIEEE = %08x", got, want)
	}
}

func TestParseRejects(t *testing.T) {
	key, _ := Generate()
	flip := func(i int) string {
		b := []byte(key)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	tests := []struct {
		desc, in, want string
	}{
		{desc: "empty", in: "", want: "0 characters"},
		{desc: "truncated", in: key[:63], want: "63 characters"},
		{desc: "extended", in: key + "x", want: "65 characters"},
		{desc: "other prefix", in: "mOat_" + key[5:], want: "prefix"},
		{desc: "separator moved", in: key[:13] + "x" + key[14:], want: "separators"},
		{desc: "bad alphabet in ID", in: key[:6] + "-" + key[7:], want: "invalid character at offset 6"},
		{desc: "bad alphabet in secret", in: key[:20] + "é"[:1] + key[21:], want: "invalid character"},
		{desc: "typo in ID", in: flip(7), want: "checksum"},
		{desc: "typo in secret", in: flip(30), want: "checksum"},
		{desc: "typo in checksum", in: flip(60), want: "checksum"},
		{desc: "a JWT", in: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJlc2ln", want: "characters"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			_, _, err := Parse(tt.in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			if len(tt.in) > 20 && strings.Contains(err.Error(), tt.in[14:40]) {
				t.Errorf("error %q repeats the secret", err)
			}
		})
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	key, _ := Generate()
	if n := testing.AllocsPerRun(100, func() { Parse(key); HashKey(key) }); n != 0 {
		t.Fatalf("Parse and HashKey allocate %v times, want 0", n)
	}
}

func TestHash(t *testing.T) {
	a, _ := Generate()
	b, _ := Generate()
	ha, hb := HashKey(a), HashKey(b)
	if ha.Equal(&hb) || !ha.Equal(&ha) {
		t.Fatal("Equal is wrong")
	}
	text, _ := ha.MarshalText()
	var back Hash
	if err := back.UnmarshalText(text); err != nil || back != ha {
		t.Fatalf("hash round trip: %v", err)
	}
	if err := back.UnmarshalText(text[:10]); err == nil {
		t.Fatal("short hash accepted")
	}
}

func FuzzParse(f *testing.F) {
	key, _ := Generate()
	for _, s := range []string{key, "", "moat_", key[:63], key + "0", strings.ToUpper(key), "moat_00000000_" + strings.Repeat("0", 43) + "_000000", "Bearer " + key} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(s) != KeyLen || s[:5] != Prefix || s[5:13] != id || s[14:57] != secret {
			t.Fatalf("Parse(%q) = %q, %q", s, id, secret)
		}
		if ValidID(id) != nil {
			t.Fatalf("Parse accepted ID %q that ValidID refuses", id)
		}
		if crc32.ChecksumIEEE([]byte(s[:57])) != crcString(s[:57]) {
			t.Fatal("checksum mismatch")
		}
	})
}
