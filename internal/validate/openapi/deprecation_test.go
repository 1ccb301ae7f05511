package openapi

import (
	"strings"
	"testing"
	"time"
)

func TestDeprecationExtension(t *testing.T) {
	op := func(ext string) string {
		return doc31("  /a:\n    get:\n      operationId: a\n" + ext + okResponse)
	}
	at := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	sunset := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		desc       string
		doc        string
		deprecated bool
		want       *Deprecation
		wantErr    []string
	}{
		{desc: "not deprecated", doc: op("")},
		{desc: "deprecated without extension", doc: op("      deprecated: true\n"), deprecated: true},
		{desc: "everything", doc: op("      deprecated: true\n      x-moat-deprecation: {deprecated_at: 2026-06-01T00:00:00Z, sunset: '2027-01-01T01:00:00+01:00', link: 'https://docs.example.com/a'}\n"),
			deprecated: true, want: &Deprecation{At: at, Sunset: sunset, Link: "https://docs.example.com/a"}},
		{desc: "sunset alone", doc: op("      deprecated: true\n      x-moat-deprecation: {sunset: 2027-01-01T00:00:00Z}\n"),
			deprecated: true, want: &Deprecation{Sunset: sunset}},
		{desc: "empty object", doc: op("      deprecated: true\n      x-moat-deprecation: {}\n"), deprecated: true, want: &Deprecation{}},
		{desc: "without deprecated", doc: op("      x-moat-deprecation: {sunset: 2027-01-01T00:00:00Z}\n"),
			wantErr: []string{"doc.yaml:7:7:", "x-moat-deprecation requires deprecated: true"}},
		{desc: "deprecated: false", doc: op("      deprecated: false\n      x-moat-deprecation: {deprecated_at: 2026-06-01T00:00:00Z}\n"),
			wantErr: []string{"requires deprecated: true"}},
		{desc: "not an object", doc: op("      deprecated: true\n      x-moat-deprecation: 2027-01-01\n"), wantErr: []string{"must be an object"}},
		{desc: "date without time", doc: op("      deprecated: true\n      x-moat-deprecation: {sunset: 2027-01-01}\n"),
			wantErr: []string{"sunset wants an RFC 3339 time"}},
		{desc: "number", doc: op("      deprecated: true\n      x-moat-deprecation: {deprecated_at: 1780272000}\n"),
			wantErr: []string{"deprecated_at wants an RFC 3339 time"}},
		{desc: "sunset before deprecation", doc: op("      deprecated: true\n      x-moat-deprecation: {deprecated_at: 2027-06-01T00:00:00Z, sunset: 2027-01-01T00:00:00Z}\n"),
			wantErr: []string{"sunset is before deprecated_at"}},
		{desc: "relative link", doc: op("      deprecated: true\n      x-moat-deprecation: {link: /docs}\n"), wantErr: []string{"link wants an absolute http or https URL"}},
		{desc: "link breaking out of <>", doc: op("      deprecated: true\n      x-moat-deprecation: {link: 'https://a.test/>; rel=x'}\n"),
			wantErr: []string{"link wants an absolute"}},
		{desc: "link with a line break", doc: op("      deprecated: true\n      x-moat-deprecation: {link: \"https://a.test/\\r\\nX-Evil: 1\"}\n"),
			wantErr: []string{"link wants an absolute"}},
		{desc: "unknown field", doc: op("      deprecated: true\n      x-moat-deprecation: {sunset_at: 2027-01-01T00:00:00Z}\n"),
			wantErr: []string{`unknown field "sunset_at"`}},
		{desc: "on the document", doc: "openapi: 3.1.0\ninfo: {title: t, version: \"1\"}\nx-moat-deprecation: {}\npaths: {}\n",
			wantErr: []string{"unknown extension x-moat-deprecation"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			d, err := LoadBytes("doc.yaml", []byte(tt.doc))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("loaded")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			o := d.OperationByID("a")
			if o.Deprecated != tt.deprecated {
				t.Errorf("Deprecated = %v", o.Deprecated)
			}
			switch {
			case tt.want == nil && o.Deprecation != nil:
				t.Errorf("Deprecation = %+v, want none", o.Deprecation)
			case tt.want != nil && (o.Deprecation == nil || !o.Deprecation.At.Equal(tt.want.At) || !o.Deprecation.Sunset.Equal(tt.want.Sunset) ||
				o.Deprecation.Link != tt.want.Link):
				t.Errorf("Deprecation = %+v, want %+v", o.Deprecation, tt.want)
			}
		})
	}
}
