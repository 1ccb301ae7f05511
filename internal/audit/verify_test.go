package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func goldenLines(t *testing.T) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "events.golden"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func verifyBytes(b []byte, o VerifyOptions) (VerifyResult, error) {
	return Verify([]Input{{Name: "audit.jsonl", R: bytes.NewReader(b)}}, o)
}

func join(lines [][]byte) []byte {
	var out []byte
	for _, l := range lines {
		out = append(out, l...)
		if !bytes.HasSuffix(l, []byte("\n")) {
			out = append(out, '\n')
		}
	}
	return out
}

func TestVerifyGolden(t *testing.T) {
	lines := goldenLines(t)
	res, err := verifyBytes(join(lines), VerifyOptions{Keys: [][]byte{testKey}})
	if err != nil || res.Problem != nil {
		t.Fatalf("intact golden chain: %v %v", err, res.Problem)
	}
	if res.Events != len(lines) || res.First != 1 || res.Last != uint64(len(lines)) || res.ChainStarts != 1 {
		t.Errorf("result %+v, want %d events from 1", res, len(lines))
	}
}

// TestVerifyDetects tampers with the golden chain in every way the issue
// names and checks that the first tampered line is reported with its kind.
func TestVerifyDetects(t *testing.T) {
	forged := bytes.Replace(goldenLines(t)[2], []byte(`"jwt_expired"`), []byte(`"jwt_invalid"`), 1)
	tests := []struct {
		desc     string
		mutate   func(l [][]byte) [][]byte
		opts     VerifyOptions
		line     int
		kind     string
		contains string
	}{
		{"edited value", func(l [][]byte) [][]byte {
			l[2] = bytes.Replace(l[2], []byte(`"status_code":401`), []byte(`"status_code":200`), 1)
			return l
		}, VerifyOptions{}, 3, ProblemEdited, "event 3"},
		{"edited hash", func(l [][]byte) [][]byte {
			i := bytes.LastIndex(l[4], []byte(`"hash":"`)) + 8
			l[4][i] ^= 1
			return l
		}, VerifyOptions{}, 5, ProblemEdited, "event 5"},
		{"edited sequence", func(l [][]byte) [][]byte {
			l[3] = bytes.Replace(l[3], []byte(`"sequence":4`), []byte(`"sequence":40`), 1)
			l[3] = bytes.Replace(l[3], []byte(`-4","sequence`), []byte(`-40","sequence`), 1)
			return l
		}, VerifyOptions{}, 4, ProblemDeleted, "sequence jumps from 3 to 40"},
		{"deleted", func(l [][]byte) [][]byte {
			return append(l[:2:2], l[3:]...)
		}, VerifyOptions{}, 3, ProblemDeleted, "1 events missing"},
		{"deleted two", func(l [][]byte) [][]byte {
			return append(l[:5:5], l[7:]...)
		}, VerifyOptions{}, 6, ProblemDeleted, "2 events missing"},
		{"forged insert", func(l [][]byte) [][]byte {
			out := append([][]byte{}, l[:2]...)
			out = append(out, forged)
			return append(out, l[2:]...)
		}, VerifyOptions{}, 3, ProblemInserted, "inserted"},
		{"copy inserted after its original", func(l [][]byte) [][]byte {
			out := append([][]byte{}, l[:4]...)
			out = append(out, l[3])
			return append(out, l[4:]...)
		}, VerifyOptions{}, 5, ProblemInserted, "repeated"},
		{"copy inserted later", func(l [][]byte) [][]byte {
			out := append([][]byte{}, l[:6]...)
			out = append(out, l[1])
			return append(out, l[6:]...)
		}, VerifyOptions{}, 7, ProblemReordered, "sequence 2 appears after sequence 6"},
		{"reordered", func(l [][]byte) [][]byte {
			l[2], l[3] = l[3], l[2]
			return l
		}, VerifyOptions{}, 3, ProblemReordered, "sequence 4 appears before sequence 3"},
		{"first lines deleted", func(l [][]byte) [][]byte {
			return l[2:]
		}, VerifyOptions{}, 1, ProblemMidChain, "--partial"},
		{"first lines deleted, partial, then edited", func(l [][]byte) [][]byte {
			l[4] = bytes.Replace(l[4], []byte(`942100`), []byte(`942101`), 1)
			return l[2:]
		}, VerifyOptions{Partial: true}, 3, ProblemEdited, "event 5"},
		{"truncated last line", func(l [][]byte) [][]byte {
			last := len(l) - 1
			l[last] = l[last][:len(l[last])/2]
			return l
		}, VerifyOptions{}, 9, ProblemMalformed, ""},
		{"not JSON", func(l [][]byte) [][]byte {
			l[1] = []byte("hello\n")
			return l
		}, VerifyOptions{}, 2, ProblemMalformed, "not a JSON object"},
		{"hash removed", func(l [][]byte) [][]byte {
			i := bytes.LastIndex(l[1], []byte(`,"hash":"`))
			l[1] = append(l[1][:i:i], []byte("}}\n")...)
			return l
		}, VerifyOptions{}, 2, ProblemNoHash, ""},
		{"wrong key", func(l [][]byte) [][]byte { return l }, VerifyOptions{Keys: [][]byte{[]byte("another key of thirty-two bytes!")}}, 1, ProblemUnknownKey, KeyID(testKey)},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			lines := goldenLines(t)
			for i := range lines {
				lines[i] = bytes.Clone(lines[i])
			}
			if tc.opts.Keys == nil {
				tc.opts.Keys = [][]byte{testKey}
			}
			res, err := verifyBytes(join(tc.mutate(lines)), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			p := res.Problem
			if p == nil {
				t.Fatalf("tampering not detected: %+v", res)
			}
			if p.Line != tc.line || p.Kind != tc.kind || !strings.Contains(p.Msg, tc.contains) {
				t.Errorf("got %v, want line %d kind %s containing %q", p, tc.line, tc.kind, tc.contains)
			}
		})
	}
}

// TestVerifyRestarts covers chains that continue across gateway restarts,
// a key change at a restart, and a restart after the state was lost.
func TestVerifyRestarts(t *testing.T) {
	keyB := []byte("the second key, also 32 bytes!!!")
	evs := goldenEvents()
	// First run.
	c := newTestChain(testKey)
	run1 := sealAll(c, evs[:4], "gw-1")
	st := chainState{id: c.id, seq: c.seq, mac: c.prev, keyID: c.keyID}
	// Second run: continues the chain, with keyB.
	c2 := &chain{}
	info := startChain(c2, st, "restart", keyB)
	start := Event{Time: t0, Action: ActionChainStart, Category: "process", Types: [2]string{"start"}, Outcome: OutcomeSuccess, Chain: info}
	run2 := sealAll(c2, append([]Event{start}, evs[4:6]...), "gw-1")
	// Third run: state lost, a new chain.
	c3 := &chain{}
	info3 := startChain(c3, chainState{}, "state_lost", keyB)
	start3 := Event{Time: t0, Action: ActionChainStart, Category: "process", Types: [2]string{"start"}, Outcome: OutcomeSuccess, Chain: info3}
	run3 := sealAll(c3, []Event{start3, evs[6]}, "gw-1")

	if info.PreviousHash == "" || info.PreviousSequence != 4 || c2.seq != 7 {
		t.Fatalf("restart did not continue the chain: %+v seq %d", info, c2.seq)
	}
	both := VerifyOptions{Keys: [][]byte{testKey, keyB}}
	tests := []struct {
		desc  string
		files [][]byte
		opts  VerifyOptions
		kind  string // "" for intact
		line  int
	}{
		{"restart with a new key, both keys", [][]byte{run1, run2}, both, "", 0},
		{"restart, only the old key", [][]byte{run1, run2}, VerifyOptions{Keys: [][]byte{testKey}}, ProblemUnknownKey, 1},
		{"the second run alone", [][]byte{run2}, both, ProblemMidChain, 1},
		{"the second run alone, partial", [][]byte{run2}, VerifyOptions{Keys: [][]byte{keyB}, Partial: true}, "", 0},
		{"events lost before the restart", [][]byte{run1[:bytes.LastIndexByte(run1[:len(run1)-1], '\n')+1], run2}, both, ProblemDeleted, 1},
		{"state lost", [][]byte{run1, run2, run3}, both, ProblemChainBreak, 1},
		{"a new chain alone", [][]byte{run3}, VerifyOptions{Keys: [][]byte{keyB}}, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var ins []Input
			for i, f := range tc.files {
				ins = append(ins, Input{Name: "f" + string(rune('1'+i)), R: bytes.NewReader(f)})
			}
			res, err := Verify(ins, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.kind == "" && res.Problem != nil:
				t.Fatalf("intact chain reported: %v", res.Problem)
			case tc.kind != "" && res.Problem == nil:
				t.Fatalf("want %s, got intact %+v", tc.kind, res)
			case tc.kind != "" && (res.Problem.Kind != tc.kind || res.Problem.Line != tc.line):
				t.Fatalf("got %v, want %s at line %d", res.Problem, tc.kind, tc.line)
			}
		})
	}
}

func TestTraceID(t *testing.T) {
	tests := []struct{ desc, in, want string }{
		{"valid", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"future version with more fields", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"version 00 with more", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", ""},
		{"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ""},
		{"uppercase", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", ""},
		{"zero trace", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
		{"zero parent", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ""},
		{"short", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", ""},
		{"bad separator", "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ""},
		{"quote injection", "00-4bf92f3577b34da6a3ce929d0e0e47\"6-00f067aa0ba902b7-01", ""},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := TraceID(tc.in); got != tc.want {
				t.Errorf("TraceID(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzTraceID: whatever the header, the result is "" or 32 lowercase hex
// digits taken from the input.
func FuzzTraceID(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		got := TraceID(s)
		if got == "" {
			return
		}
		if len(got) != 32 || !lowerHex(got) || !strings.Contains(s, got) {
			t.Fatalf("TraceID(%q) = %q", s, got)
		}
	})
}

// FuzzVerify feeds arbitrary bytes to the verifier: it must not panic and
// must never call garbage intact.
func FuzzVerify(f *testing.F) {
	b, _ := os.ReadFile(filepath.Join("testdata", "events.golden"))
	f.Add(b)
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"event":{"action":"audit_chain_start","sequence":1},"moat":{"chain":{"reason":"new"}}}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := verifyBytes(data, VerifyOptions{Keys: [][]byte{testKey}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Problem == nil && res.Events > 0 && !bytes.Contains(data, []byte(`"hash":"`)) {
			t.Fatalf("events without hashes verified: %q", data)
		}
	})
}
