package router

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateTemplate(t *testing.T) {
	tests := []struct {
		desc     string
		template string
		wantErr  string // substring of the error; "" means valid
	}{
		{desc: "root", template: "/"},
		{desc: "static", template: "/books"},
		{desc: "trailing slash", template: "/books/"},
		{desc: "param", template: "/books/{id}"},
		{desc: "params", template: "/u/{user_id}/p/{_p2}"},
		{desc: "catch-all", template: "/files/{path...}"},
		{desc: "catch-all at root", template: "/{all...}"},
		{desc: "static with punctuation", template: "/v1/a.b-c_d~e:f@g"},
		{desc: "non-ASCII static", template: "/héllo"},
		{desc: "empty", template: "", wantErr: "must start with"},
		{desc: "relative", template: "books", wantErr: "must start with"},
		{desc: "double slash", template: "/a//b", wantErr: "empty segment"},
		{desc: "double slash at end", template: "/a//", wantErr: "empty segment"},
		{desc: "unclosed brace", template: "/a/{id", wantErr: "whole segment"},
		{desc: "lone closing brace", template: "/a/id}", wantErr: "whole segment"},
		{desc: "partial segment param", template: "/a/x{id}", wantErr: "whole segment"},
		{desc: "param then text", template: "/a/{id}.json", wantErr: "whole segment"},
		{desc: "two params in a segment", template: "/{a}{b}", wantErr: "parameter name"},
		{desc: "lone braces", template: "/{", wantErr: "whole segment"},
		{desc: "empty name", template: "/{}", wantErr: "parameter name"},
		{desc: "empty catch-all name", template: "/{...}", wantErr: "parameter name"},
		{desc: "name starts with digit", template: "/{1a}", wantErr: "parameter name"},
		{desc: "name with dash", template: "/{a-b}", wantErr: "parameter name"},
		{desc: "nested braces", template: "/{{a}}", wantErr: "parameter name"},
		{desc: "catch-all not last", template: "/{p...}/x", wantErr: "last segment"},
		{desc: "catch-all before trailing slash", template: "/{p...}/", wantErr: "last segment"},
		{desc: "duplicate names", template: "/{id}/x/{id}", wantErr: "used twice"},
		{desc: "duplicate with catch-all", template: "/{id}/{id...}", wantErr: "used twice"},
		{desc: "dot segment", template: "/a/./b", wantErr: "dot segments"},
		{desc: "dot-dot segment", template: "/a/..", wantErr: "dot segments"},
		{desc: "control character", template: "/a\tb", wantErr: "control character"},
		{desc: "invalid UTF-8", template: "/a\xffb", wantErr: "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			err := ValidateTemplate(tt.template)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateTemplate(%q) = %v; want nil", tt.template, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidTemplate) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateTemplate(%q) = %v; want ErrInvalidTemplate mentioning %q", tt.template, err, tt.wantErr)
			}
		})
	}
}

func TestParseTemplateSegments(t *testing.T) {
	tests := []struct {
		desc     string
		template string
		want     []segment
	}{
		{desc: "root", template: "/", want: []segment{{segStatic, ""}}},
		{desc: "trailing slash", template: "/a/", want: []segment{{segStatic, "a"}, {segStatic, ""}}},
		{desc: "mixed", template: "/a/{b}/{c...}", want: []segment{{segStatic, "a"}, {segParam, "b"}, {segCatchAll, "c"}}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := parseTemplate(tt.template)
			if err != nil || len(got) != len(tt.want) {
				t.Fatalf("parseTemplate(%q) = %v, %v; want %v", tt.template, got, err, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("segment %d = %v; want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}
