package mask

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
)

func TestMaskJSON(t *testing.T) {
	m := newMasker(t, config.Masking{})
	tests := []struct {
		desc     string
		in       string
		want     string // "" means unchanged (and out must be the input itself)
		findings []Finding
	}{
		{
			desc: "nothing to mask keeps bytes, order, numbers and escapes",
			in:   "{\"z\":1.50e+3, \"a\" : [1,2,{\"b\":-0.0}],\"u\":\"caf\\u00e9 \\ud83d\\ude00\",\"n\":null,\"t\":true}\n",
		},
		{
			desc:     "email in a nested array",
			in:       `{"users":[{"id":7,"email":"jane@example.com"}],"total":1}`,
			want:     `{"users":[{"id":7,"email":"j***@example.com"}],"total":1}`,
			findings: []Finding{{Detector: "email", Path: "/users/0/email", Action: ActionMask}},
		},
		{
			desc:     "unchanged escapes around a masked match are re-encoded",
			in:       `{"note":"caf\u00e9 \"card\" 4111111111111111\n"}`,
			want:     `{"note":"café \"card\" ************1111\n"}`,
			findings: []Finding{{Detector: "card", Path: "/note", Action: ActionMask}},
		},
		{
			desc:     "match hidden by escapes is found",
			in:       `{"e":"jane\u0040example.com"}`,
			want:     `{"e":"j***@example.com"}`,
			findings: []Finding{{Detector: "email", Path: "/e", Action: ActionMask}},
		},
		{
			desc:     "card as a JSON number becomes a string",
			in:       `{"pan":4111111111111111,"id":4111111111111112}`,
			want:     `{"pan":"************1111","id":4111111111111112}`,
			findings: []Finding{{Detector: "card", Path: "/pan", Action: ActionMask}},
		},
		{
			desc:     "secret in a member name",
			in:       `{"tokens":{"AKIAIOSFODNN7EXAMPLE":true}}`,
			want:     `{"tokens":{"[REDACTED:aws_access_key]":true}}`,
			findings: []Finding{{Detector: "aws_access_key", Path: "/tokens/AKIAIOSFODNN7EXAMPLE", Action: ActionMask}},
		},
		{
			desc:     "pointer escapes ~ and /",
			in:       `{"a/b":{"c~d":["x","+14155550132"]}}`,
			want:     `{"a/b":{"c~d":["x","+*********32"]}}`,
			findings: []Finding{{Detector: "phone", Path: "/a~1b/c~0d/1", Action: ActionMask}},
		},
		{
			desc:     "top-level string",
			in:       `"123-45-6789"`,
			want:     `"***-**-6789"`,
			findings: []Finding{{Detector: "ssn", Path: "", Action: ActionMask}},
		},
		{
			desc:     "pem with escaped newlines",
			in:       `{"private_key":"` + strings.ReplaceAll(testPEM, "\n", `\n`) + `","id":"x"}`,
			want:     `{"private_key":"[REDACTED:private_key]","id":"x"}`,
			findings: []Finding{{Detector: "private_key", Path: "/private_key", Action: ActionMask}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			out, fs, err := m.MaskJSON([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == "" {
				want = tc.in
			}
			if string(out) != want {
				t.Errorf("MaskJSON =\n%s\nwant\n%s", out, want)
			}
			if !json.Valid(out) {
				t.Errorf("output is not valid JSON: %s", out)
			}
			if !slices.Equal(fs, tc.findings) {
				t.Errorf("findings = %+v, want %+v", fs, tc.findings)
			}
		})
	}
}

func TestMaskJSONUnchangedIsSameSlice(t *testing.T) {
	m := newMasker(t, config.Masking{})
	in := []byte(`{"a":"nothing here","b":[1,2,3]}`)
	out, fs, err := m.MaskJSON(in)
	if err != nil || fs != nil {
		t.Fatalf("err %v findings %v", err, fs)
	}
	if &out[0] != &in[0] {
		t.Error("unchanged body was copied")
	}
}

func TestMaskJSONFieldRules(t *testing.T) {
	m := newMasker(t, config.Masking{Fields: []config.MaskingField{
		{Name: "password"},
		{Name: "card_number", Action: "mask"},
		{Name: "internal", Action: "remove"},
		{Name: "order_ref", Action: "skip"},
		{Name: "audit", Action: "log"},
	}})
	tests := []struct {
		desc     string
		in       string
		want     string
		findings []Finding
	}{
		{
			desc:     "mask any type, names compare loosely, null kept",
			in:       `{"Password":"hunter2","cardNumber":{"pan":1},"card-number":null}`,
			want:     `{"Password":"[REDACTED]","cardNumber":"[REDACTED]","card-number":null}`,
			findings: []Finding{{"field", "/Password", "mask"}, {"field", "/cardNumber", "mask"}, {"field", "/card-number", "mask"}},
		},
		{
			desc:     "remove middle member",
			in:       `{"a":1, "internal":{"x":[1]} ,"b":2}`,
			want:     `{"a":1 ,"b":2}`,
			findings: []Finding{{"field", "/internal", "remove"}},
		},
		{
			desc:     "remove first members",
			in:       `{"internal":1,"INTERNAL":2, "b":2}`,
			want:     `{"b":2}`,
			findings: []Finding{{"field", "/internal", "remove"}, {"field", "/INTERNAL", "remove"}},
		},
		{
			desc:     "remove last and only members",
			in:       `[{"a":1,"internal":2},{"internal":3}]`,
			want:     `[{"a":1},{}]`,
			findings: []Finding{{"field", "/0/internal", "remove"}, {"field", "/1/internal", "remove"}},
		},
		{
			desc:     "skip turns detectors off but keeps nested rules",
			in:       `{"order_ref":{"n":"4111111111111111","password":"x"},"c":"4111111111111111"}`,
			want:     `{"order_ref":{"n":"4111111111111111","password":"[REDACTED]"},"c":"************1111"}`,
			findings: []Finding{{"field", "/order_ref/password", "mask"}, {"card", "/c", "mask"}},
		},
		{
			desc:     "log records and still detects",
			in:       `{"audit":"a@b.io"}`,
			want:     `{"audit":"a***@b.io"}`,
			findings: []Finding{{"field", "/audit", "log"}, {"email", "/audit", "mask"}},
		},
		{
			desc:     "masked value is not scanned",
			in:       `{"password":"a@b.io"}`,
			want:     `{"password":"[REDACTED]"}`,
			findings: []Finding{{"field", "/password", "mask"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			out, fs, err := m.MaskJSON([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.want {
				t.Errorf("MaskJSON =\n%s\nwant\n%s", out, tc.want)
			}
			if !json.Valid(out) {
				t.Errorf("invalid JSON out: %s", out)
			}
			if !slices.Equal(fs, tc.findings) {
				t.Errorf("findings = %+v, want %+v", fs, tc.findings)
			}
		})
	}
}

func TestBlock(t *testing.T) {
	m := newMasker(t, config.Masking{
		Actions: map[string]string{"secrets": "block", "jwt": "log", "phone": "log"},
		Fields:  []config.MaskingField{{Name: "ssn", Action: "block"}},
	})
	tests := []struct {
		desc    string
		in      string
		blocked bool
		want    string
	}{
		{desc: "group action blocks a secret", in: `{"k":"AKIAIOSFODNN7EXAMPLE"}`, blocked: true},
		{desc: "detector action wins over its group", in: `{"t":"` + testJWT + `","p":"+14155550132"}`, want: `{"t":"` + testJWT + `","p":"+14155550132"}`},
		{desc: "field rule blocks", in: `{"x":[{"SSN":"n/a"}]}`, blocked: true},
		{desc: "pii still masked", in: `{"e":"a@b.io"}`, want: `{"e":"a***@b.io"}`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			out, fs, err := m.MaskJSON([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if Blocked(fs) != tc.blocked {
				t.Fatalf("Blocked = %v, want %v (%+v)", !tc.blocked, tc.blocked, fs)
			}
			if tc.blocked {
				if out != nil {
					t.Error("blocked body must not be returned")
				}
				r := Reject(fs)
				if r == nil || r.Status != http.StatusBadGateway || r.ReasonID != ReasonSensitiveDataBlocked {
					t.Errorf("Reject = %+v", r)
				}
				if strings.Contains(r.Detail, "AKIA") || strings.Contains(r.Detail, "n/a") {
					t.Errorf("reject detail leaks the value: %s", r.Detail)
				}
				return
			}
			if Reject(fs) != nil {
				t.Error("Reject without a block finding")
			}
			if string(out) != tc.want {
				t.Errorf("out = %s, want %s", out, tc.want)
			}
		})
	}
	out, fs := m.MaskText([]byte("key AKIAIOSFODNN7EXAMPLE"))
	if out != nil || !Blocked(fs) {
		t.Errorf("MaskText did not block: %q %+v", out, fs)
	}
}

func TestStyleFullAndDetectorSelection(t *testing.T) {
	m := newMasker(t, config.Masking{Style: "full", Detectors: []string{"card", "email"}})
	out, fs := m.MaskText([]byte("4111111111111111 a@b.io 123-45-6789 AKIAIOSFODNN7EXAMPLE"))
	if want := "[REDACTED:card] [REDACTED:email] 123-45-6789 AKIAIOSFODNN7EXAMPLE"; string(out) != want {
		t.Errorf("out = %q, want %q", out, want)
	}
	if len(fs) != 2 {
		t.Errorf("findings = %+v", fs)
	}
	none := newMasker(t, config.Masking{Detectors: []string{}})
	if out, fs := none.MaskText([]byte("4111111111111111")); string(out) != "4111111111111111" || fs != nil {
		t.Errorf("no detectors: %q %+v", out, fs)
	}
}

func TestOversize(t *testing.T) {
	body := []byte(`{"e":"a@b.io"}`)
	pass := newMasker(t, config.Masking{MaxBody: 8})
	out, fs, err := pass.MaskJSON(body)
	if err != nil || string(out) != string(body) || !slices.Equal(fs, []Finding{{Detector: DetectorOversize, Action: ActionLog}}) || Blocked(fs) {
		t.Errorf("pass: %s %+v %v", out, fs, err)
	}
	block := newMasker(t, config.Masking{MaxBody: 8, Oversize: "block"})
	out, fs, err = block.MaskJSON(body)
	if err != nil || out != nil || !Blocked(fs) {
		t.Fatalf("block: %s %+v %v", out, fs, err)
	}
	if r := Reject(fs); r.ReasonID != ReasonResponseUnscannable || r.Status != http.StatusBadGateway {
		t.Errorf("Reject = %+v", r)
	}
	if out, fs := block.MaskText(body); out != nil || !Blocked(fs) {
		t.Errorf("MaskText block: %s %+v", out, fs)
	}
	if exact := newMasker(t, config.Masking{MaxBody: config.Size(len(body))}); true {
		out, _, _ := exact.MaskJSON(body)
		if string(out) != `{"e":"a***@b.io"}` {
			t.Errorf("a body of exactly max_body is scanned: %s", out)
		}
	}
}

func TestMaskJSONInvalid(t *testing.T) {
	m := newMasker(t, config.Masking{})
	for _, in := range []string{``, `{`, `{"a"}`, `{"a":1,}`, `[1,]`, `01`, `1.`, `-`, `"\x"`, "\"a\x01\"", `tru`, `{} {}`, `"\u12"`, `{"a":1 "b":2}`, strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)} {
		t.Run(in[:min(len(in), 20)], func(t *testing.T) {
			_, _, err := m.MaskJSON([]byte(in))
			if !errors.Is(err, ErrInvalidJSON) {
				t.Errorf("MaskJSON(%q) err = %v, want ErrInvalidJSON", in, err)
			}
		})
	}
}

func TestFindingsBounded(t *testing.T) {
	m := newMasker(t, config.Masking{Actions: map[string]string{"aws_access_key": "block"}})
	body := strings.Repeat("a@b.io ", 500) + "AKIAIOSFODNN7EXAMPLE"
	_, fs := m.MaskText([]byte(body))
	if len(fs) != MaxFindings+1 || !Blocked(fs) {
		t.Errorf("got %d findings, blocked %v", len(fs), Blocked(fs))
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := New(config.Masking{
		Detectors: []string{"card", "dna"},
		Actions:   map[string]string{"email": "explode", "nope": "mask"},
		Style:     "fancy",
		Fields:    []config.MaskingField{{Name: "a_b"}, {Name: "AB"}, {Name: "", Action: "drop"}},
		MaxBody:   -1,
		Oversize:  "maybe",
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"detectors[1]", "actions.email", "actions.nope", "style", "fields[1].name", "fields[2].name", "fields[2].action", "max_body", "oversize"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}
