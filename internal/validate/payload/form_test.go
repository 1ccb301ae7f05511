package payload

import (
	"net/url"
	"strings"
	"testing"
)

var unlimitedForm = formLimits{maxFields: maxURLParams, maxField: 1 << 30}

func TestCheckForm(t *testing.T) {
	lim := formLimits{maxFields: 3, maxField: 8}
	tests := []struct {
		desc   string
		in     string
		reason string
	}{
		{desc: "empty", in: ``},
		{desc: "fields", in: `a=1&b=2&c=3`},
		{desc: "escapes", in: `a=%2F%3b&b=x+y`},
		{desc: "name only", in: `a&b=`},
		{desc: "field at the length limit", in: `abc=defg`},
		{desc: "field over the length limit", in: `abc=defgh`, reason: ReasonFormFieldTooLong},
		{desc: "fields over the limit", in: `a=1&b=2&c=3&d=4`, reason: ReasonFormTooManyFields},
		{desc: "empty segments count", in: `a=1&&&`, reason: ReasonFormTooManyFields},
		{desc: "semicolon", in: `a=1;b`, reason: ReasonInvalidForm},
		{desc: "escaped semicolon is fine", in: `a=1%3Bb`},
		{desc: "truncated escape", in: `a=%4`, reason: ReasonInvalidForm},
		{desc: "escape at the end", in: `a=%`, reason: ReasonInvalidForm},
		{desc: "non-hex escape", in: `a=%g0`, reason: ReasonInvalidForm},
		{desc: "escape cut by a separator", in: `a=%4&1`, reason: ReasonInvalidForm},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if f := checkForm([]byte(tt.in), &lim); f.reason != tt.reason {
				t.Errorf("checkForm(%q) = %+v, want %q", tt.in, f, tt.reason)
			}
		})
	}
	// net/url's own bound on parameters is the largest max_fields.
	many := strings.Repeat("a&", maxURLParams)
	if f := checkForm([]byte(many), &unlimitedForm); f.reason != ReasonFormTooManyFields {
		t.Errorf("%d segments: %+v", maxURLParams+1, f)
	}
}

// FuzzCheckForm compares checkForm with net/url.ParseQuery: without limits
// it accepts exactly what ParseQuery parses without error, and with limits
// what it accepts has no more segments and no longer segment than allowed.
func FuzzCheckForm(f *testing.F) {
	for _, s := range []string{"", "a=1&b=2", "a=%zz", "a;b", "a=%2", "&&&", "a=b=c", "%41=%42", "x=" + strings.Repeat("y", 40)} {
		f.Add([]byte(s), uint8(3), uint8(8))
	}
	f.Fuzz(func(t *testing.T, data []byte, fields, field uint8) {
		_, err := url.ParseQuery(string(data))
		got := checkForm(data, &unlimitedForm)
		if got.ok() != (err == nil) {
			t.Fatalf("checkForm(%q) = %+v; url.ParseQuery error %v", data, got, err)
		}
		lim := formLimits{maxFields: int(fields%8) + 1, maxField: int(field%16) + 1}
		if checkForm(data, &lim).ok() {
			segs := strings.Split(string(data), "&")
			if err != nil || len(segs) > lim.maxFields {
				t.Fatalf("checkForm(%q) accepted %d segments (limit %d), ParseQuery error %v", data, len(segs), lim.maxFields, err)
			}
			for _, s := range segs {
				if len(s) > lim.maxField {
					t.Fatalf("checkForm(%q) accepted a %d-byte segment (limit %d)", data, len(s), lim.maxField)
				}
			}
		}
	})
}
