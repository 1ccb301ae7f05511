package mask

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
)

var fuzzSeeds = []string{
	`{"a":"4111 1111 1111 1111","b":[1,2.5e3,"x@y.io"],"c":{"password":"p","internal":1}}`,
	`["+1 (415) 555-0132","DE89 3704 0044 0532 0130 00","123-45-6789"]`,
	`{"t":"` + testJWT + `","k":"` + testMoatKey + `"}`,
	`"caf\u00e9 \ud83d\ude00 \ud800 \\u0040 a\u0040b.io"`,
	`{"pem":"-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----"}`,
	`4111111111111111`, `{}`, `[]`, `null`, ` {"a" : [ ] } `,
}

func fuzzMasker(t testing.TB) *Masker {
	return newMasker(t, config.Masking{Fields: []config.MaskingField{
		{Name: "password"}, {Name: "internal", Action: "remove"}, {Name: "skip", Action: "skip"},
	}})
}

// FuzzMaskJSON checks that MaskJSON accepts exactly the documents
// encoding/json accepts, always returns valid JSON for them, never panics,
// returns the input when it found nothing, and that its output holds
// nothing left to mask.
func FuzzMaskJSON(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	m := fuzzMasker(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		out, fs, err := m.MaskJSON(in)
		if valid := json.Valid(in); valid != (err == nil) {
			t.Fatalf("json.Valid = %v but MaskJSON err = %v", valid, err)
		}
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid output %q for input %q", out, in)
		}
		if len(fs) == 0 && !bytes.Equal(out, in) {
			t.Fatalf("no findings but output changed: %q -> %q", in, out)
		}
		_, again, err := m.MaskJSON(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range again {
			if f.Detector != DetectorField {
				t.Fatalf("output %q of %q still has %+v", out, in, f)
			}
		}
	})
}

// FuzzMaskText checks that MaskText never panics, returns the input when it
// found nothing, and leaves nothing to mask.
func FuzzMaskText(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte("call 415-555-0132 or mail a@b.io, card 4111-1111-1111-1111"))
	m := fuzzMasker(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		out, fs := m.MaskText(in)
		if len(fs) == 0 && !bytes.Equal(out, in) {
			t.Fatalf("no findings but output changed")
		}
		if _, again := m.MaskText(out); len(again) != 0 {
			t.Fatalf("output %q of %q still has %+v", out, in, again)
		}
	})
}
