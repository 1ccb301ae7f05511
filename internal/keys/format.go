// Package keys issues, stores and looks up moat API keys.
//
// A key is 64 characters, all but the separators in base62:
//
//	moat_<id: 8>_<secret: 43>_<checksum: 6>
//	moat_4fT9xQ2a_Zk3...43 characters..._0Ab9Xz
//
// The ID is public: it names the key in lists, logs and audit events. The
// secret is 43 characters drawn uniformly from crypto/rand (256 bits). The
// checksum is CRC-32 (IEEE) of everything before it, in base62, so that a
// mistyped or truncated key is refused by Parse without a store lookup, and
// so that secret scanners can tell a real key from a look-alike. Pattern is
// the regular expression to register with such scanners.
//
// Stores keep only the SHA-256 of the whole key (see HashKey), never the key.
package keys

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
)

// Key layout. Every part has a fixed length, so a key is always KeyLen bytes.
const (
	Prefix      = "moat_"
	IDLen       = 8  // characters of the public key ID (about 47.6 bits)
	SecretLen   = 43 // characters of the secret: 43 × log2(62) ≈ 256.03 bits
	ChecksumLen = 6  // characters of the CRC-32, base62, zero-padded
	KeyLen      = len(Prefix) + IDLen + 1 + SecretLen + 1 + ChecksumLen

	// Pattern matches a moat key anywhere in text, for secret scanners.
	// A match is a key only if its checksum verifies (Parse).
	Pattern = `moat_[0-9A-Za-z]{8}_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}`
)

const (
	alphabet    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	idStart     = len(Prefix)
	secretStart = idStart + IDLen + 1
	sumStart    = secretStart + SecretLen + 1
)

// ErrMalformed is wrapped by every error of Parse and ValidID: the text is not
// a moat key (wrong length, prefix, separators or alphabet) or its checksum
// does not match.
var ErrMalformed = errors.New("malformed api key")

// Generate returns a new key and its ID. The ID and secret are drawn from
// crypto/rand, which does not fail. Callers must check that the ID is not
// already in use (stores refuse duplicates with ErrExists).
func Generate() (key, id string) {
	var b [KeyLen]byte
	copy(b[:], Prefix)
	randomBase62(b[idStart : idStart+IDLen])
	b[idStart+IDLen] = '_'
	randomBase62(b[secretStart : secretStart+SecretLen])
	b[sumStart-1] = '_'
	sum := crc(b[:sumStart-1])
	for i := ChecksumLen - 1; i >= 0; i-- {
		b[sumStart+i] = alphabet[sum%62]
		sum /= 62
	}
	key = string(b[:])
	return key, key[idStart : idStart+IDLen]
}

// randomBase62 fills dst with characters drawn uniformly from the alphabet,
// rejecting random bytes >= 248 (the largest multiple of 62) to avoid bias.
func randomBase62(dst []byte) {
	var buf [64]byte
	n := 0
	for n < len(dst) {
		rand.Read(buf[:])
		for _, c := range buf {
			if c < 248 && n < len(dst) {
				dst[n] = alphabet[c%62]
				n++
			}
		}
	}
}

// Parse splits a key into its ID and secret after checking its length,
// prefix, separators, alphabet and checksum. It does not consult a store:
// a key that parses may still be unknown. Errors wrap ErrMalformed and never
// contain the key. Parse does not allocate for a valid key.
func Parse(s string) (id, secret string, err error) {
	if len(s) != KeyLen {
		return "", "", fmt.Errorf("%w: %d characters, want %d", ErrMalformed, len(s), KeyLen)
	}
	if s[:idStart] != Prefix {
		return "", "", fmt.Errorf("%w: no %s prefix", ErrMalformed, Prefix)
	}
	if s[secretStart-1] != '_' || s[sumStart-1] != '_' {
		return "", "", fmt.Errorf("%w: separators misplaced", ErrMalformed)
	}
	for i := idStart; i < KeyLen; i++ {
		if i == secretStart-1 || i == sumStart-1 {
			continue
		}
		if digit(s[i]) < 0 {
			return "", "", fmt.Errorf("%w: invalid character at offset %d", ErrMalformed, i)
		}
	}
	if !canonicalSum(s[sumStart:], crcString(s[:sumStart-1])) {
		return "", "", fmt.Errorf("%w: checksum mismatch", ErrMalformed)
	}
	return s[idStart : idStart+IDLen], s[secretStart : secretStart+SecretLen], nil
}

// canonicalSum reports whether enc is the 6-character base62 encoding of sum.
// Comparing encodings rather than decoded values gives each key exactly one
// spelling.
func canonicalSum(enc string, sum uint32) bool {
	for i := ChecksumLen - 1; i >= 0; i-- {
		if enc[i] != alphabet[sum%62] {
			return false
		}
		sum /= 62
	}
	return sum == 0
}

// ValidID reports, as an error wrapping ErrMalformed, whether id is not a
// well-formed key ID.
func ValidID(id string) error {
	if len(id) != IDLen {
		return fmt.Errorf("%w: key ID must be %d characters", ErrMalformed, IDLen)
	}
	for i := 0; i < len(id); i++ {
		if digit(id[i]) < 0 {
			return fmt.Errorf("%w: key ID must be base62 (0-9, A-Z, a-z)", ErrMalformed)
		}
	}
	return nil
}

func digit(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 36
	}
	return -1
}

var crcTable = crc32.MakeTable(crc32.IEEE)

func crc(b []byte) uint32 { return crc32.Checksum(b, crcTable) }

// crcString is crc32.ChecksumIEEE of s without converting s to a slice,
// which would allocate.
func crcString(s string) uint32 {
	c := ^uint32(0)
	for i := 0; i < len(s); i++ {
		c = crcTable[byte(c)^s[i]] ^ (c >> 8)
	}
	return ^c
}

// Hash is the SHA-256 of a whole key, the only form in which stores keep it.
//
// A fast hash is enough: a key carries 256 random bits, so a stolen hash
// cannot be reversed by guessing, and a slow KDF (bcrypt, argon2id), which
// exists to protect low-entropy passwords, would only make every request
// slower. For the same reason no server-side pepper is needed. Stores look a
// key up by its public ID and compare hashes with Equal, in constant time.
type Hash [sha256.Size]byte

// HashKey returns the hash of key. It does not allocate for a KeyLen key.
func HashKey(key string) Hash {
	if len(key) == KeyLen {
		var b [KeyLen]byte
		copy(b[:], key)
		return sha256.Sum256(b[:])
	}
	return sha256.Sum256([]byte(key))
}

// Equal reports whether h and o are the same, in time independent of their
// contents.
func (h *Hash) Equal(o *Hash) bool { return subtle.ConstantTimeCompare(h[:], o[:]) == 1 }

// IsZero reports whether h is unset.
func (h *Hash) IsZero() bool { return *h == Hash{} }

// MarshalText encodes h in hex.
func (h Hash) MarshalText() ([]byte, error) {
	b := make([]byte, hex.EncodedLen(len(h)))
	hex.Encode(b, h[:])
	return b, nil
}

// UnmarshalText decodes a hex hash.
func (h *Hash) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != len(h) {
		return fmt.Errorf("key hash: %d hex digits, want %d", len(b), 2*len(h))
	}
	_, err := hex.Decode(h[:], b)
	return err
}
