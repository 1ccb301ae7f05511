package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"unicode/utf8"
)

// unlimitedJSON sets every bound beyond anything a test input reaches.
var unlimitedJSON = jsonLimits{maxDepth: math.MaxInt, maxKeys: math.MaxInt, maxArray: math.MaxInt, maxString: math.MaxInt, maxNumber: math.MaxInt}

func TestScanJSONSyntax(t *testing.T) {
	tests := []struct {
		desc  string
		in    string
		valid bool
	}{
		{desc: "object", in: `{"a":1,"b":[true,false,null],"c":{"d":"e"}}`, valid: true},
		{desc: "empty object", in: `{}`, valid: true},
		{desc: "empty array", in: `[]`, valid: true},
		{desc: "nested empties", in: `[{},[],{"a":[]}]`, valid: true},
		{desc: "top-level string", in: `"x"`, valid: true},
		{desc: "top-level number", in: `-12.5e+3`, valid: true},
		{desc: "top-level literal", in: `null`, valid: true},
		{desc: "whitespace around", in: " \t\r\n{ \"a\" : [ 1 , 2 ] }\n ", valid: true},
		{desc: "escapes", in: `"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00"`, valid: true},
		{desc: "lone surrogate escape", in: `"\ud800"`, valid: true},
		{desc: "utf-8", in: `{"é":"日本語 😀"}`, valid: true},
		{desc: "zero", in: `0`, valid: true},
		{desc: "negative zero fraction", in: `-0.0e-0`, valid: true},
		{desc: "duplicate keys", in: `{"a":1,"a":2}`, valid: true},

		{desc: "empty", in: ``},
		{desc: "only whitespace", in: "  \n"},
		{desc: "two documents", in: `{} {}`},
		{desc: "trailing garbage", in: `{}x`},
		{desc: "trailing comma in array", in: `[1,]`},
		{desc: "trailing comma in object", in: `{"a":1,}`},
		{desc: "leading comma", in: `[,1]`},
		{desc: "missing colon", in: `{"a" 1}`},
		{desc: "missing value", in: `{"a":}`},
		{desc: "key without value", in: `{"a"}`},
		{desc: "non-string key", in: `{1:2}`},
		{desc: "single quotes", in: `{'a':1}`},
		{desc: "unclosed object", in: `{"a":1`},
		{desc: "unclosed array", in: `[1,2`},
		{desc: "unclosed string", in: `"abc`},
		{desc: "mismatched bracket", in: `[1}`},
		{desc: "mismatched brace", in: `{"a":1]`},
		{desc: "extra closer", in: `[1]]`},
		{desc: "leading zero", in: `01`},
		{desc: "plus sign", in: `+1`},
		{desc: "bare minus", in: `-`},
		{desc: "fraction without digits", in: `1.`},
		{desc: "leading point", in: `.5`},
		{desc: "exponent without digits", in: `1e`},
		{desc: "exponent sign only", in: `1e+`},
		{desc: "hex number", in: `0x10`},
		{desc: "NaN", in: `NaN`},
		{desc: "Infinity", in: `-Infinity`},
		{desc: "truncated literal", in: `tru`},
		{desc: "literal with tail", in: `nulll`},
		{desc: "capital literal", in: `True`},
		{desc: "bad escape", in: `"\x41"`},
		{desc: "short unicode escape", in: `"\u12"`},
		{desc: "non-hex unicode escape", in: `"\u12G4"`},
		{desc: "raw control character", in: "\"a\x01b\""},
		{desc: "raw newline in string", in: "\"a\nb\""},
		{desc: "invalid utf-8 in string", in: "\"a\xffb\""},
		{desc: "truncated utf-8 in string", in: "\"a\xe6\x97\""},
		{desc: "utf-8 encoded surrogate", in: "\"\xed\xa0\x80\""},
		{desc: "byte order mark", in: "\xef\xbb\xbf{}"},
		{desc: "comment", in: `{/*x*/}`},
		{desc: "NUL after document", in: "{}\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			f := scanJSON([]byte(tt.in), &unlimitedJSON)
			if f.ok() != tt.valid {
				t.Fatalf("scanJSON(%q) = %+v, want valid %v", tt.in, f, tt.valid)
			}
			if !tt.valid && f.reason != reasonInvalidJSON {
				t.Errorf("reason %q, want %q", f.reason, reasonInvalidJSON)
			}
			// The scanner is at least as strict as encoding/json.
			if f.ok() && !json.Valid([]byte(tt.in)) {
				t.Errorf("accepted %q, which encoding/json rejects", tt.in)
			}
		})
	}
}

func TestScanJSONLimits(t *testing.T) {
	lim := jsonLimits{maxDepth: 3, maxKeys: 2, maxArray: 3, maxString: 5, maxNumber: 4}
	tests := []struct {
		desc   string
		in     string
		reason string // "" when accepted
		at     int64  // offset of the violation
	}{
		{desc: "depth at the limit", in: `[[{"a":1}]]`},
		{desc: "depth over the limit", in: `[[{"a":[1]}]]`, reason: ReasonJSONTooDeep, at: 7},
		{desc: "empty container counts as a level", in: `[[[{}]]]`, reason: ReasonJSONTooDeep, at: 3},
		{desc: "keys at the limit", in: `{"a":1,"b":2}`},
		{desc: "keys over the limit", in: `{"a":1,"b":2,"c":3}`, reason: ReasonJSONTooManyKeys, at: 13},
		{desc: "keys counted per object", in: `[{"a":1,"b":2},{"a":1,"b":2}]`},
		{desc: "nested object keys do not count for the parent", in: `{"a":{"x":1,"y":2},"b":2}`},
		{desc: "array at the limit", in: `[1,2,3]`},
		{desc: "array over the limit", in: `[1,2,3,4]`, reason: ReasonJSONArrayTooLong, at: 7},
		{desc: "arrays counted per array", in: `[[1,2,3],[1,2,3],[1,2,3]]`},
		{desc: "string at the limit", in: `"abcde"`},
		{desc: "string over the limit", in: `["abcdef"]`, reason: ReasonJSONStringTooLong, at: 1},
		{desc: "escapes count as sent", in: `"\n\n\n"`, reason: ReasonJSONStringTooLong},
		{desc: "multi-byte characters count in bytes", in: `"ééé"`, reason: ReasonJSONStringTooLong},
		{desc: "key over the limit", in: `{"abcdef":1}`, reason: ReasonJSONStringTooLong, at: 1},
		{desc: "number at the limit", in: `-1.5`},
		{desc: "number over the limit", in: `[12345]`, reason: ReasonJSONNumberTooLong, at: 1},
		{desc: "exponent counts", in: `1e10`},
		{desc: "long exponent", in: `1e100`, reason: ReasonJSONNumberTooLong},
		{desc: "first violation wins", in: `[1,2,3,"abcdefgh"]`, reason: ReasonJSONArrayTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			f := scanJSON([]byte(tt.in), &lim)
			if f.reason != tt.reason {
				t.Fatalf("scanJSON(%s) = %+v, want reason %q", tt.in, f, tt.reason)
			}
			if tt.at != 0 && f.at != tt.at {
				t.Errorf("violation at %d, want %d", f.at, tt.at)
			}
			if tt.reason != "" && (f.got <= f.limit || f.limit == 0) {
				t.Errorf("got %d limit %d: the finding must say what crossed which limit", f.got, f.limit)
			}
		})
	}
}

// TestScanJSONDeepNesting checks that 100,000 levels stop at the limit
// right away, without a stack frame per level.
func TestScanJSONDeepNesting(t *testing.T) {
	const levels = 100_000
	for _, open := range []string{"[", `{"a":`} {
		doc := []byte(strings.Repeat(open, levels) + "1" + strings.Repeat(map[string]string{"[": "]", `{"a":`: "}"}[open], levels))
		lim := unlimitedJSON
		lim.maxDepth = 64
		f := scanJSON(doc, &lim)
		if f.reason != ReasonJSONTooDeep || f.got != 65 || f.at != int64(64*len(open)) {
			t.Errorf("%s x %d: %+v, want json_too_deep at level 65", open, levels, f)
		}
		// Within the limit the scanner goes all the way down and back,
		// with the frames on the heap.
		lim.maxDepth = levels
		if f := scanJSON(doc, &lim); !f.ok() {
			t.Errorf("%s x %d within the depth limit: %+v", open, levels, f)
		}
	}
}

func TestScanJSONAllocatesNothing(t *testing.T) {
	doc := benchJSON(4 << 10)
	lim := jsonLimits{maxDepth: 64, maxKeys: 1000, maxArray: 10000, maxString: 64 << 10, maxNumber: 100}
	if f := scanJSON(doc, &lim); !f.ok() {
		t.Fatalf("benchmark document refused: %+v", f)
	}
	if n := testing.AllocsPerRun(100, func() { scanJSON(doc, &lim) }); n != 0 {
		t.Errorf("scanJSON allocates %v times per document", n)
	}
}

// jsonStats are a document's measurements, taken by referenceJSONStats with
// encoding/json's tokenizer, independently of scanJSON.
type jsonStats struct {
	depth, keys, array, str, num int
}

// referenceJSONStats measures a document that json.Valid accepts: nesting
// depth, most keys in one object, most elements in one array, longest
// string as sent (between its quotes), longest number literal.
func referenceJSONStats(t *testing.T, data []byte) jsonStats {
	type open struct {
		obj       bool
		n         int
		expectKey bool
	}
	var st jsonStats
	var stack []*open
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	prev := int64(0)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return st
		}
		if err != nil {
			t.Fatalf("encoding/json tokenizer failed on a valid document %q: %v", data, err)
		}
		end := dec.InputOffset()
		if d, ok := tok.(json.Delim); !ok || d == '{' || d == '[' {
			// A value or a key starts in the enclosing container.
			if len(stack) > 0 {
				top := stack[len(stack)-1]
				switch {
				case top.obj && top.expectKey:
					top.n++
					st.keys = max(st.keys, top.n)
					top.expectKey = false
				case top.obj:
					top.expectKey = true
				default:
					top.n++
					st.array = max(st.array, top.n)
				}
			}
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				stack = append(stack, &open{obj: v == '{', expectKey: v == '{'})
				st.depth = max(st.depth, len(stack))
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			start := prev
			for data[start] != '"' {
				start++ // whitespace, ',' or ':' before the opening quote
			}
			st.str = max(st.str, int(end-start-2))
		case json.Number:
			st.num = max(st.num, len(v))
		}
		prev = end
	}
}

// FuzzScanJSON compares scanJSON with encoding/json: without limits it
// accepts exactly what json.Valid accepts, less invalid UTF-8; with limits
// it accepts exactly the valid documents whose measurements (taken with
// encoding/json's tokenizer) are within them, and a refusal names a limit
// that the document really crosses.
func FuzzScanJSON(f *testing.F) {
	seeds := []string{
		`{"a":1,"b":[true,false,null],"c":{"d":"e"}}`, `[]`, `{}`, `"x"`, `0`, `-1.5e+10`, `[[[[[[1]]]]]]`,
		`{"a":{"b":{"c":{"d":{}}}}}`, `[1,2,3,4,5,6,7,8,9,10]`, `{"k1":1,"k2":2,"k3":3,"k4":4}`,
		`"\u00e9\n\"\\"`, `"\ud83d\ude00"`, `"日本"`, "\"\xff\"", `[1,]`, `{"a":}`, `01`, `1.`, `tru`,
		` [ 1 , { "a" : "b" } ] `, `{"a":"b"} x`, `[` + strings.Repeat("1,", 20) + `1]`,
		`123456789012345678901234567890`, `"` + strings.Repeat("a", 40) + `"`,
	}
	for _, s := range seeds {
		f.Add([]byte(s), uint8(3), uint8(3), uint8(5), uint8(8), uint8(6))
	}
	f.Fuzz(func(t *testing.T, data []byte, depth, keys, array, str, num uint8) {
		want := json.Valid(data) && utf8.Valid(data)
		got := scanJSON(data, &unlimitedJSON)
		if got.ok() != want {
			t.Fatalf("scanJSON(%q) = %+v; json.Valid %v, utf8.Valid %v", data, got, json.Valid(data), utf8.Valid(data))
		}
		if !got.ok() && got.reason != reasonInvalidJSON {
			t.Fatalf("scanJSON(%q) without limits = %+v, want invalid_json", data, got)
		}

		lim := jsonLimits{maxDepth: int(depth%8) + 1, maxKeys: int(keys%8) + 1, maxArray: int(array%8) + 1, maxString: int(str%32) + 1, maxNumber: int(num%16) + 1}
		limited := scanJSON(data, &lim)
		if !want {
			if limited.ok() {
				t.Fatalf("scanJSON(%q) with limits accepted an invalid document", data)
			}
			return
		}
		st := referenceJSONStats(t, data)
		crossed := map[string]bool{
			ReasonJSONTooDeep:       st.depth > lim.maxDepth,
			ReasonJSONTooManyKeys:   st.keys > lim.maxKeys,
			ReasonJSONArrayTooLong:  st.array > lim.maxArray,
			ReasonJSONStringTooLong: st.str > lim.maxString,
			ReasonJSONNumberTooLong: st.num > lim.maxNumber,
		}
		anyCrossed := false
		for _, c := range crossed {
			anyCrossed = anyCrossed || c
		}
		switch {
		case limited.ok() && anyCrossed:
			t.Fatalf("scanJSON(%q) accepted; stats %+v cross limits %+v", data, st, lim)
		case !limited.ok() && !crossed[limited.reason]:
			t.Fatalf("scanJSON(%q) = %+v; stats %+v do not cross that limit of %+v", data, limited, st, lim)
		}
	})
}
