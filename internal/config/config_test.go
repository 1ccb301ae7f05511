package config

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestParseDuration(t *testing.T) {
	tests := []struct {
		desc string
		in   string
		want time.Duration
		err  bool
	}{
		{desc: "seconds", in: "30s", want: 30 * time.Second},
		{desc: "compound", in: "1h30m", want: 90 * time.Minute},
		{desc: "days", in: "365d", want: 365 * 24 * time.Hour},
		{desc: "fractional days", in: "0.5d", want: 12 * time.Hour},
		{desc: "milliseconds", in: "250ms", want: 250 * time.Millisecond},
		{desc: "no unit", in: "30", err: true},
		{desc: "negative", in: "-1s", err: true},
		{desc: "empty", in: "", err: true},
		{desc: "garbage", in: "soon", err: true},
		{desc: "absurd days", in: "999999d", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("ParseDuration(%q) error = %v, want error %v", tt.in, err, tt.err)
			}
			if err == nil && got.D() != tt.want {
				t.Errorf("ParseDuration(%q) = %v, want %v", tt.in, got.D(), tt.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		desc string
		in   string
		want Size
		err  bool
	}{
		{desc: "bytes", in: "512", want: 512},
		{desc: "KiB", in: "64KiB", want: 64 << 10},
		{desc: "MiB with space", in: "1 MiB", want: 1 << 20},
		{desc: "decimal MB", in: "2MB", want: 2e6},
		{desc: "short K", in: "8k", want: 8 << 10},
		{desc: "unknown unit", in: "3 parsecs", err: true},
		{desc: "negative", in: "-1", err: true},
		{desc: "overflow", in: "99999999999999GiB", err: true},
		{desc: "empty", in: "", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("ParseSize(%q) error = %v, want error %v", tt.in, err, tt.err)
			}
			if err == nil && got != tt.want {
				t.Errorf("ParseSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

// TestGolden decodes every file under testdata/valid and testdata/invalid and
// compares the effective configuration (defaults applied) or the reported
// problems with the golden file beside it. Run with -update to rewrite them.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	if len(files) == 0 {
		t.Fatal("no test configurations found")
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			c, err := Load(f)
			var got []byte
			if strings.Contains(f, "/valid/") {
				if err != nil {
					t.Fatalf("Load(%s): %v", f, err)
				}
				got, err = c.Effective()
				if err != nil {
					t.Fatal(err)
				}
			} else {
				var ce *Error
				if !errors.As(err, &ce) {
					t.Fatalf("Load(%s) = %v, want *Error", f, err)
				}
				got = []byte(ce.Error() + "\n")
			}
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden file (run go test -update): %v", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", f, golden, got, want)
			}
		})
	}
}

func TestProblemsHavePositions(t *testing.T) {
	_, err := Load("testdata/invalid/many.yaml")
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want *Error, got %v", err)
	}
	if len(ce.Problems) < 10 {
		t.Errorf("want every problem reported at once, got %d:\n%v", len(ce.Problems), err)
	}
	for _, p := range ce.Problems {
		if p.Line == 0 && p.Path != "" {
			t.Errorf("problem without a line: %s", p)
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("credentials from a URL leaked into the error:\n%v", err)
	}
}

func TestZeroTrustRequiresPublic(t *testing.T) {
	tests := []struct {
		desc   string
		public string
		ok     bool
	}{
		{desc: "explicit public", public: "public: true", ok: true},
		{desc: "explicit false", public: "public: false"},
		{desc: "nothing declared", public: ""},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			doc := "listeners: [{address: '127.0.0.1:0'}]\nupstreams: {a: {targets: ['http://127.0.0.1:1']}}\nroutes:\n  - path: /x\n    methods: [GET]\n    upstream: a\n    " + tt.public + "\n"
			_, err := Parse("t.yaml", []byte(doc))
			if (err == nil) != tt.ok {
				t.Fatalf("Parse: %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "zero trust") {
				t.Errorf("error does not explain the zero-trust rule: %v", err)
			}
		})
	}
}

func TestSchema(t *testing.T) {
	b, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	props, _ := s["properties"].(map[string]any)
	for _, k := range []string{"server", "listeners", "upstreams", "routes", "cors", "security_headers", "log"} {
		if _, ok := props[k]; !ok {
			t.Errorf("schema lacks top-level property %q", k)
		}
	}
	if strings.Contains(string(b), `"Line"`) || strings.Contains(string(b), `"line"`) {
		t.Error("schema exposes internal fields")
	}
	if s["additionalProperties"] != false {
		t.Error("schema must reject unknown top-level keys like the decoder does")
	}
	if pp, _ := s["patternProperties"].(map[string]any); pp["^x-"] == nil {
		t.Error("schema must allow x- extension keys like the decoder does")
	}
}

// FuzzParse feeds arbitrary bytes to the decoder: it must never panic or hang,
// and every failure must be a *Error.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("a: &x [*x]"))
	f.Add([]byte("routes: [{path: /{a}/{a}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		_, err := Parse("fuzz.yaml", data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, want *Error: %v", err, err)
			}
		}
	})
}

// TestAliasBomb pins that aliases cannot make a small file expand without
// bound ("billion laughs"): decoding stops at the value budget with a
// problem that says so, listed first.
func TestAliasBomb(t *testing.T) {
	defer func(n int) { maxValues = n }(maxValues)
	maxValues = 10_000
	doc := "x-method: &m GET\nx-route: &r {path: /x, upstream: a, public: true, methods: [" +
		strings.TrimSuffix(strings.Repeat("*m, ", 200), ", ") + "]}\nroutes: [" +
		strings.TrimSuffix(strings.Repeat("*r, ", 100), ", ") + "]\n"
	_, err := Parse("bomb.yaml", []byte(doc))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse = %v, want *Error", err)
	}
	if msg := ce.Problems[0].Msg; !strings.Contains(msg, "expands to more than 10000 values") {
		t.Errorf("first problem %q does not report the budget", msg)
	}
	if len(ce.Problems) > maxProblems+1 {
		t.Errorf("%d problems listed, want at most %d", len(ce.Problems), maxProblems+1)
	}
}

// TestMergeKeyWithUnknownAlias is the regression test for a crash found by
// FuzzParse: a merge key whose list names an alias that does not exist.
func TestMergeKeyWithUnknownAlias(t *testing.T) {
	for _, doc := range []string{"0000<<: [*0]", "routes: [{<<: [*nope, *nope]}]", "server: {<<: *missing}"} {
		_, err := Parse("t.yaml", []byte(doc))
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%q: %v, want a *Error", doc, err)
		}
	}
}
