package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"strings"
)

// Kinds of problems Verify reports.
const (
	ProblemEdited     = "edited"      // the event's bytes changed
	ProblemInserted   = "inserted"    // an event that is not part of the chain was added
	ProblemDeleted    = "deleted"     // events are missing
	ProblemReordered  = "reordered"   // events are out of order, or one is repeated
	ProblemChainBreak = "chain_break" // a chain start does not link to the event before it
	ProblemMidChain   = "mid_chain"   // the first event continues a chain from files not given
	ProblemMalformed  = "malformed"   // not an event line written by moat
	ProblemNoHash     = "no_hash"     // the event has no event.hash (written without a key)
	ProblemUnknownKey = "unknown_key" // the chain is signed with a key not given
)

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// Keys are the HMAC keys the chains may be signed with; each chain
	// start names its key by KeyID. Give the old and the new key to verify
	// across a key change.
	Keys [][]byte
	// Partial accepts files that start in the middle of a chain (older
	// files were deleted by retention): the first event is trusted as the
	// anchor, and everything after it is verified.
	Partial bool
}

// Input is one file of events, in chain order.
type Input struct {
	Name string
	R    io.Reader
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	Files       int
	Events      int
	First, Last uint64 // sequences of the first and last event read
	ChainStarts int    // audit_chain_start events (gateway starts)
	Problem     *Problem
}

// Problem is the first thing wrong with a chain.
type Problem struct {
	File string
	Line int // 1-based line in File
	Kind string
	Msg  string
}

// Error formats the problem as FILE:LINE: kind: message.
func (p *Problem) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Kind, p.Msg)
}

// maxLine bounds one event line; events are bounded far below it.
const maxLine = 4 << 20

// VerifyFiles verifies the files at paths, in the order given (oldest
// first: rotated files, then the current one). Names ending in .gz are read
// through gzip.
func VerifyFiles(paths []string, o VerifyOptions) (VerifyResult, error) {
	var ins []Input
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return VerifyResult{}, err
		}
		closers = append(closers, f)
		var r io.Reader = f
		if strings.HasSuffix(p, ".gz") {
			gz, err := gzip.NewReader(f)
			if err != nil {
				return VerifyResult{}, fmt.Errorf("reading %s: %w", p, err)
			}
			closers = append(closers, gz)
			r = gz
		}
		ins = append(ins, Input{Name: p, R: r})
	}
	return Verify(ins, o)
}

// Verify checks that the events in ins form an intact hash chain and
// reports the first problem: an edited, inserted, deleted or reordered
// event, a chain start that does not link to what precedes it, or a line
// that is not an event. It returns an error only when an input cannot be
// read; a broken chain is a result with a Problem.
//
// What it cannot see: events removed from the end of the last file (compare
// the last sequence with a copy kept elsewhere, such as a remote sink), and
// events removed from the start when Partial is set.
func Verify(ins []Input, o VerifyOptions) (VerifyResult, error) {
	v := verifier{keys: map[string][]byte{}, partial: o.Partial, all: o.Keys}
	for _, k := range o.Keys {
		v.keys[KeyID(k)] = k
	}
	v.src = &lineSource{ins: ins}
	res, err := v.run()
	res.Files = len(ins)
	return res, err
}

type verifier struct {
	keys    map[string][]byte
	all     [][]byte
	partial bool
	src     *lineSource

	started bool
	prev    [macSize]byte
	seq     uint64
	mac     hash.Hash // nil after a Partial anchor until a key is known
}

func (v *verifier) run() (VerifyResult, error) {
	var res VerifyResult
	for {
		l, err := v.src.next()
		if err != nil {
			return res, err
		}
		if l == nil {
			return res, nil
		}
		if p := v.check(l, &res); p != nil {
			res.Problem = p
			return res, nil
		}
		if res.Events == 0 {
			res.First = l.seq
		}
		res.Events++
		res.Last = l.seq
	}
}

func (v *verifier) problem(l *line, kind, format string, args ...any) *Problem {
	return &Problem{File: l.file, Line: l.no, Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// check verifies one event against the chain so far and advances it.
func (v *verifier) check(l *line, res *VerifyResult) *Problem {
	if l.err != "" {
		return v.problem(l, ProblemMalformed, "%s", l.err)
	}
	if l.hash == nil {
		return v.problem(l, ProblemNoHash, "event %d has no event.hash: it was written without audit.key", l.seq)
	}
	if l.start != nil {
		return v.checkStart(l, res)
	}
	if !v.started {
		if !v.partial {
			return v.problem(l, ProblemMidChain, "the first event (sequence %d) continues a chain from earlier files: give those first, or use --partial", l.seq)
		}
		v.anchor(l, nil)
		return nil
	}
	if v.mac == nil {
		// After a Partial anchor on an ordinary event: find the key.
		for _, k := range v.all {
			m := hmac.New(sha256.New, k)
			if macOK(m, v.prev[:], l) {
				v.mac = m
				break
			}
		}
		if v.mac == nil {
			return v.classify(l)
		}
	} else if !macOK(v.mac, v.prev[:], l) {
		return v.classify(l)
	}
	copy(v.prev[:], l.hash)
	v.seq = l.seq
	return nil
}

func (v *verifier) anchor(l *line, m hash.Hash) {
	v.started = true
	copy(v.prev[:], l.hash)
	v.seq = l.seq
	v.mac = m
}

// checkStart verifies an audit_chain_start event: its MAC (over the previous
// hash it names, or zeros for a new chain) and its link to the event before.
func (v *verifier) checkStart(l *line, res *VerifyResult) *Problem {
	s := l.start
	key, ok := v.keys[s.KeyID]
	if !ok {
		return v.problem(l, ProblemUnknownKey, "the chain restarts with key id %q, which is not among the keys given", s.KeyID)
	}
	m := hmac.New(sha256.New, key)
	var base [macSize]byte
	switch {
	case s.PreviousHash == "":
		if v.started {
			return v.problem(l, ProblemChainBreak, "a new chain (reason %q) starts after sequence %d without linking to it: the chain state was lost, so events before this line cannot be proven complete", s.Reason, v.seq)
		}
	default:
		h, err := hex.DecodeString(s.PreviousHash)
		if err != nil || len(h) != macSize {
			return v.problem(l, ProblemMalformed, "moat.chain.previous_hash is not a hex HMAC-SHA256")
		}
		copy(base[:], h)
		if !v.started && !v.partial {
			return v.problem(l, ProblemMidChain, "the chain continues from sequence %d in earlier files: give those first, or use --partial", s.PreviousSequence)
		}
		if v.started && base != v.prev {
			if s.PreviousSequence > v.seq {
				return v.problem(l, ProblemDeleted, "the gateway restarted after sequence %d, but the events before this line end at sequence %d: %d events missing", s.PreviousSequence, v.seq, s.PreviousSequence-v.seq)
			}
			return v.problem(l, ProblemChainBreak, "the chain restarts from sequence %d whose hash is not that of the event before this line (sequence %d)", s.PreviousSequence, v.seq)
		}
	}
	if !macOK(m, base[:], l) {
		if v.started {
			return v.classify(l)
		}
		return v.problem(l, ProblemEdited, "event %d does not match its event.hash: edited", l.seq)
	}
	res.ChainStarts++
	v.anchor(l, m)
	return nil
}

// classify explains an event whose MAC does not verify, from the sequence
// numbers around it.
func (v *verifier) classify(l *line) *Problem {
	want := v.seq + 1
	next := v.src.peek()
	switch {
	case l.seq == want:
		if next != nil && next.err == "" && next.seq == want {
			return v.problem(l, ProblemInserted, "sequence %d appears twice and this line does not continue the chain: inserted event", l.seq)
		}
		return v.problem(l, ProblemEdited, "event %d does not match its event.hash: edited", l.seq)
	case l.seq > want:
		if next != nil && next.err == "" && next.seq == want {
			return v.problem(l, ProblemReordered, "sequence %d appears before sequence %d: events reordered", l.seq, want)
		}
		return v.problem(l, ProblemDeleted, "sequence jumps from %d to %d: %d events missing before this line", v.seq, l.seq, l.seq-want)
	case l.seq == v.seq:
		return v.problem(l, ProblemInserted, "sequence %d is repeated: inserted copy of an event", l.seq)
	}
	return v.problem(l, ProblemReordered, "sequence %d appears after sequence %d: events reordered", l.seq, v.seq)
}

// macOK reports whether l's hash is HMAC(key, prev || canonical bytes).
func macOK(m hash.Hash, prev []byte, l *line) bool {
	m.Reset()
	m.Write(prev)
	m.Write(l.canonical)
	m.Write([]byte("}}"))
	var sum [macSize]byte
	return hmac.Equal(m.Sum(sum[:0]), l.hash)
}

// line is one event line, split for verification.
type line struct {
	file      string
	no        int
	err       string // why it is not an event line
	seq       uint64
	hash      []byte // nil when the event has none
	canonical []byte // without the closing }} (see seal)
	start     *chainStartFields
}

type chainStartFields struct {
	Reason           string `json:"reason"`
	PreviousHash     string `json:"previous_hash"`
	PreviousSequence uint64 `json:"previous_sequence"`
	KeyID            string `json:"key_id"`
}

// parseLine splits an event line: the MAC and the sequence are read from
// their fixed place at the end of the bytes, the chain-start fields through
// encoding/json. A line whose bytes were changed fails its MAC whatever the
// parser makes of it.
func parseLine(b []byte) line {
	var l line
	var doc struct {
		Event struct {
			Action   string  `json:"action"`
			Sequence *uint64 `json:"sequence"`
		} `json:"event"`
		Moat struct {
			Chain *chainStartFields `json:"chain"`
		} `json:"moat"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		l.err = "not a JSON object: " + jsonErr(err)
		return l
	}
	if doc.Event.Sequence == nil {
		l.err = "no event.sequence"
		return l
	}
	if !bytes.HasSuffix(b, []byte("}}")) {
		l.err = "does not end with the event object"
		return l
	}
	body := b[:len(b)-2]
	if len(body) > hashSuffixLen {
		suf := body[len(body)-hashSuffixLen:]
		if bytes.HasPrefix(suf, []byte(`,"hash":"`)) && suf[len(suf)-1] == '"' {
			h, err := hex.DecodeString(string(suf[len(`,"hash":"`) : len(suf)-1]))
			if err == nil {
				l.hash = h
				body = body[:len(body)-hashSuffixLen]
			}
		}
	}
	i := bytes.LastIndex(body, []byte(`,"sequence":`))
	if i < 0 {
		l.err = "event.sequence is not where moat writes it"
		return l
	}
	seq, err := strconv.ParseUint(string(body[i+len(`,"sequence":`):]), 10, 64)
	if err != nil || seq != *doc.Event.Sequence {
		l.err = "event.sequence is not where moat writes it"
		return l
	}
	l.seq, l.canonical = seq, body
	if doc.Event.Action == ActionChainStart {
		if doc.Moat.Chain == nil {
			l.err = "chain start without moat.chain"
			return l
		}
		l.start = doc.Moat.Chain
	}
	return l
}

func jsonErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%v at byte %d", se, se.Offset)
	}
	return err.Error()
}

// lineSource reads lines from the inputs in order, with one line of
// lookahead.
type lineSource struct {
	ins    []Input
	i      int
	r      *bufio.Reader
	no     int
	peeked *line
	done   bool
	err    error
}

func (s *lineSource) next() (*line, error) {
	if s.peeked != nil {
		l := s.peeked
		s.peeked = nil
		return l, nil
	}
	if s.err != nil {
		return nil, s.err
	}
	return s.read()
}

// peek returns the next line without consuming it, or nil at the end or on
// a read error (which next then returns).
func (s *lineSource) peek() *line {
	if s.peeked == nil && s.err == nil {
		l, err := s.read()
		if err != nil {
			s.err = err
			return nil
		}
		s.peeked = l
	}
	return s.peeked
}

func (s *lineSource) read() (*line, error) {
	for {
		if s.done {
			return nil, nil
		}
		if s.r == nil {
			if s.i >= len(s.ins) {
				s.done = true
				return nil, nil
			}
			s.r = bufio.NewReaderSize(s.ins[s.i].R, 64<<10)
			s.no = 0
		}
		b, err := readLine(s.r)
		if err == io.EOF && b == nil {
			s.r = nil
			s.i++
			continue
		}
		name := s.ins[s.i].Name
		s.no++
		if err != nil && err != io.EOF {
			if errors.Is(err, errLineTooLong) {
				return &line{file: name, no: s.no, err: "line longer than 4 MiB"}, nil
			}
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		l := parseLine(b)
		if err == io.EOF && l.err == "" {
			l.err = "the last line has no newline: truncated"
		}
		l.file, l.no = name, s.no
		return &l, nil
	}
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its newline; io.EOF with a non-nil
// line means the last line had no newline.
func readLine(r *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		b, err := r.ReadSlice('\n')
		if len(out)+len(b) > maxLine {
			for err == bufio.ErrBufferFull {
				_, err = r.ReadSlice('\n')
			}
			return nil, errLineTooLong
		}
		out = append(out, b...)
		switch err {
		case nil:
			return out[:len(out)-1], nil
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			if len(out) == 0 {
				return nil, io.EOF
			}
			return out, io.EOF
		default:
			return nil, err
		}
	}
}
