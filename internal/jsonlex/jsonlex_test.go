package jsonlex

import (
	"encoding/json"
	"testing"
)

func TestString(t *testing.T) {
	tests := []struct {
		desc, in string
		raw      string
		escaped  bool
		err      string
	}{
		{desc: "plain", in: `"abc" rest`, raw: "abc"},
		{desc: "escapes", in: `"a\"b\u00e9\n"`, raw: `a\"b\u00e9\n`, escaped: true},
		{desc: "unterminated", in: `"abc`, err: "unterminated string"},
		{desc: "bad escape", in: `"a\x"`, err: "invalid escape"},
		{desc: "bad unicode escape", in: `"\u12g4"`, err: "invalid \\u escape"},
		{desc: "control character", in: "\"a\x01\"", err: "control character in a string"},
		{desc: "escape at the end", in: `"\`, err: "unterminated escape"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			raw, esc, next, err := String([]byte(tt.in), 0)
			if tt.err != "" {
				if err == nil || err.Msg != tt.err {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || string(raw) != tt.raw || esc != tt.escaped || next != len(tt.raw)+2 {
				t.Fatalf("got %q %v %d %v", raw, esc, next, err)
			}
		})
	}
}

func TestNumber(t *testing.T) {
	tests := []struct {
		in      string
		next    int
		integer bool
		bad     bool
	}{
		{in: "0", next: 1, integer: true},
		{in: "123,", next: 3, integer: true},
		{in: "-1", next: 2},
		{in: "1.5e+3]", next: 6},
		{in: "01", next: 1, integer: true}, // the 1 is the next token, which the caller refuses
		{in: "1.", bad: true},
		{in: "1e", bad: true},
		{in: "-", bad: true},
	}
	for _, tt := range tests {
		next, integer, err := Number([]byte(tt.in), 0)
		if (err != nil) != tt.bad || (!tt.bad && (next != tt.next || integer != tt.integer)) {
			t.Errorf("Number(%q) = %d %v %v", tt.in, next, integer, err)
		}
	}
}

// FuzzLex checks String and Number against encoding/json: what they accept
// is a valid JSON string or number, and a valid JSON string or number
// followed by a delimiter is accepted whole.
func FuzzLex(f *testing.F) {
	for _, s := range []string{`"abc"`, `"a\"b"`, `"\u00e9"`, `-1.5e10`, `0`, `"\ud800"`, "\"\x7f\"", `1e+`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		switch {
		case in[0] == '"':
			_, _, next, err := String(in, 0)
			var s string
			if err == nil && json.Unmarshal(in[:next], &s) != nil {
				t.Fatalf("String accepted %q, which encoding/json refuses", in[:next])
			}
			if err != nil && json.Unmarshal(in, &s) == nil {
				t.Fatalf("String refused %q, a valid JSON string", in)
			}
		case in[0] == '-' || IsDigit(in[0]):
			next, _, err := Number(in, 0)
			if err == nil && !json.Valid(in[:next]) {
				t.Fatalf("Number accepted %q, which encoding/json refuses", in[:next])
			}
			var n json.Number
			if err != nil && json.Unmarshal(in, &n) == nil {
				t.Fatalf("Number refused %q, a valid JSON number", in)
			}
		}
	})
}
