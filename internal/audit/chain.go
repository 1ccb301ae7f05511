package audit

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"strconv"
)

// The hash chain.
//
// Every event ends with event.id, event.sequence and (with a key)
// event.hash, in that order, as the last members of the "event" object, which
// is the last member of the line:
//
//	{...,"event":{...,"id":"<chain>-<seq>","sequence":<seq>,"hash":"<64 hex>"}}
//
// The canonical bytes of an event are its line without the newline and
// without `,"hash":"<64 hex>"`. event.hash is
//
//	HMAC-SHA256(key, previous MAC || canonical bytes)
//
// where the previous MAC is the 32 bytes of the previous event's hash, or 32
// zero bytes for the first event of a new chain. The verifier works on the
// bytes as written, so there is no re-serialisation to disagree about; an
// event re-encoded by a log pipeline no longer verifies.
//
// A chain continues across restarts: the state file (the last sequence and
// MAC) is rewritten after every batch of events, and every start records an
// audit_chain_start event that links to it (moat.chain.previous_hash) and
// is itself chained to it. When the state is missing or damaged, the start
// event opens a new chain (reason new or state_lost) from 32 zero bytes.

// macSize is the size of an HMAC-SHA256.
const macSize = sha256.Size

// hashSuffixLen is the length of `,"hash":"` + 64 hex + `"`.
const hashSuffixLen = len(`,"hash":"`) + 2*macSize + 1

// KeyID returns the identifier of an HMAC key, written as moat.chain.key_id
// so the verifier can tell keys apart: hex of the first 8 bytes of
// HMAC-SHA256(key, "moat audit key id"). It reveals nothing of the key.
func KeyID(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("moat audit key id"))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// chain numbers and seals events. It is used by one goroutine at a time.
type chain struct {
	id    string // chain ID, 16 hex digits: the prefix of event.id
	seq   uint64 // sequence of the last sealed event
	prev  [macSize]byte
	mac   hash.Hash // nil without a key
	keyID string
	sum   [macSize]byte
}

// seal completes an event appended by appendEvent: it numbers it, chains it
// and returns the line, newline included, in a new slice.
func (c *chain) seal(prefix []byte) []byte {
	c.seq++
	n := len(prefix) + 64 + len(c.id)
	if c.mac != nil {
		n += hashSuffixLen
	}
	line := make([]byte, 0, n)
	line = append(line, prefix...)
	line = append(line, `,"id":"`...)
	line = append(line, c.id...)
	line = append(line, '-')
	line = strconv.AppendUint(line, c.seq, 10)
	line = append(line, `","sequence":`...)
	line = strconv.AppendUint(line, c.seq, 10)
	if c.mac != nil {
		body := len(line)
		line = append(line, '}', '}')
		c.mac.Reset()
		c.mac.Write(c.prev[:])
		c.mac.Write(line)
		c.mac.Sum(c.sum[:0])
		c.prev = c.sum
		line = line[:body]
		line = append(line, `,"hash":"`...)
		line = hex.AppendEncode(line, c.sum[:])
		line = append(line, '"')
	}
	return append(line, '}', '}', '\n')
}

// chainState is what the state file keeps: enough to continue the chain.
type chainState struct {
	id    string
	seq   uint64
	mac   [macSize]byte
	keyID string // "" when the chain had no key
}

// stateFile is the chain's state on disk: one fixed-size record rewritten in
// place after every batch. A rewrite is a single pwrite of 80 bytes, so a
// process crash leaves the old or the new record; a CRC detects the torn
// record an operating-system crash may leave.
type stateFile struct {
	f    *os.File
	sync bool
	buf  [stateSize]byte
}

const (
	stateMagic = "MOATCHN1"
	// magic, seq, chain ID (8), MAC, key ID (8, zero without key), flags (4), CRC
	stateSize = 8 + 8 + 8 + macSize + 8 + 4 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// openState opens or creates the state file and returns its state and how
// the chain goes on: "restart" continues it, "new" (no state yet) and
// "state_lost" (a damaged record) start a new one.
func openState(path string, sync bool) (*stateFile, chainState, string, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, chainState{}, "", fmt.Errorf("opening audit chain state: %w", err)
	}
	sf := &stateFile{f: f, sync: sync}
	var b [stateSize]byte
	n, err := f.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, chainState{}, "", fmt.Errorf("reading audit chain state: %w", err)
	}
	if n == 0 {
		return sf, chainState{}, "new", nil
	}
	st, ok := decodeState(b[:n])
	if !ok {
		return sf, chainState{}, "state_lost", nil
	}
	return sf, st, "restart", nil
}

func decodeState(b []byte) (chainState, bool) {
	if len(b) != stateSize || string(b[:8]) != stateMagic {
		return chainState{}, false
	}
	if crc32.Checksum(b[:stateSize-4], castagnoli) != binary.BigEndian.Uint32(b[stateSize-4:]) {
		return chainState{}, false
	}
	var st chainState
	st.seq = binary.BigEndian.Uint64(b[8:16])
	st.id = hex.EncodeToString(b[16:24])
	copy(st.mac[:], b[24:24+macSize])
	flags := binary.BigEndian.Uint32(b[24+macSize+8 : 24+macSize+12])
	if flags&1 != 0 {
		st.keyID = hex.EncodeToString(b[24+macSize : 24+macSize+8])
	}
	return st, true
}

// write records the chain's state. It does not fsync unless the file was
// opened with sync; see the type's comment.
func (s *stateFile) write(c *chain) error {
	b := s.buf[:]
	copy(b, stateMagic)
	binary.BigEndian.PutUint64(b[8:16], c.seq)
	id, _ := hex.DecodeString(c.id)
	copy(b[16:24], id)
	copy(b[24:24+macSize], c.prev[:])
	var flags uint32
	clear(b[24+macSize : 24+macSize+8])
	if c.keyID != "" {
		kid, _ := hex.DecodeString(c.keyID)
		copy(b[24+macSize:24+macSize+8], kid)
		flags |= 1
	}
	binary.BigEndian.PutUint32(b[24+macSize+8:24+macSize+12], flags)
	binary.BigEndian.PutUint32(b[stateSize-4:], crc32.Checksum(b[:stateSize-4], castagnoli))
	if _, err := s.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("writing audit chain state: %w", err)
	}
	if s.sync {
		return s.f.Sync()
	}
	return nil
}

func (s *stateFile) close(c *chain) error {
	err := s.write(c)
	if serr := s.f.Sync(); err == nil {
		err = serr
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// newChainID returns 16 random hex digits.
func newChainID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// startChain sets c up from the saved state and returns the
// audit_chain_start event's chain information. A restart continues the
// chain: the same chain ID, the next sequence, the saved MAC as previous.
// Otherwise a new chain starts from sequence 1 with a new ID.
func startChain(c *chain, st chainState, reason string, key []byte) *ChainInfo {
	info := &ChainInfo{Reason: reason}
	if key != nil {
		c.mac = hmac.New(sha256.New, key)
		c.keyID = KeyID(key)
		info.KeyID = c.keyID
	}
	if reason == "restart" {
		c.id, c.seq, c.prev = st.id, st.seq, st.mac
		info.PreviousSequence = st.seq
		if st.keyID != "" || st.mac != ([macSize]byte{}) {
			info.PreviousHash = hex.EncodeToString(st.mac[:])
		}
		return info
	}
	c.id, c.seq, c.prev = newChainID(), 0, [macSize]byte{}
	return info
}
