package router

import (
	"errors"
	"slices"
	"testing"
)

// TestShapeAgreesWithAdd checks that two routes get the same Shape exactly
// when Builder.Add refuses the second as a conflict.
func TestShapeAgreesWithAdd(t *testing.T) {
	tests := []struct {
		desc        string
		host1, tpl1 string
		host2, tpl2 string
		same        bool
	}{
		{desc: "same template", tpl1: "/books", tpl2: "/books", same: true},
		{desc: "parameter names differ", tpl1: "/u/{id}", tpl2: "/u/{uid}", same: true},
		{desc: "catch-all names differ", tpl1: "/f/{p...}", tpl2: "/f/{rest...}", same: true},
		{desc: "parameter and catch-all", tpl1: "/f/{p}", tpl2: "/f/{p...}"},
		{desc: "trailing slash", tpl1: "/books", tpl2: "/books/"},
		{desc: "static and parameter", tpl1: "/u/me", tpl2: "/u/{id}"},
		{desc: "host case and any host", host1: "API.example.com", tpl1: "/x", host2: "api.example.com.", tpl2: "/x", same: true},
		{desc: "empty and * host", host1: "", tpl1: "/x", host2: "*", tpl2: "/x", same: true},
		{desc: "different hosts", host1: "a.example.com", tpl1: "/x", host2: "b.example.com", tpl2: "/x"},
		{desc: "wildcard and exact", host1: "*.example.com", tpl1: "/x", host2: "example.com", tpl2: "/x"},
		{desc: "IPv6 forms", host1: "[::1]", tpl1: "/x", host2: "0:0::1", tpl2: "/x", same: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			k1, _, err1 := Shape(tt.host1, tt.tpl1)
			k2, _, err2 := Shape(tt.host2, tt.tpl2)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if (k1 == k2) != tt.same {
				t.Errorf("Shape %q == %q: %v, want %v", k1, k2, k1 == k2, tt.same)
			}
			b := NewBuilder[int]()
			if err := b.Add(tt.host1, []string{"GET"}, tt.tpl1, 1); err != nil {
				t.Fatal(err)
			}
			err := b.Add(tt.host2, []string{"GET"}, tt.tpl2, 2)
			if conflict := errors.Is(err, ErrConflict); conflict != tt.same {
				t.Errorf("Add conflict = %v (%v), Shape says %v", conflict, err, tt.same)
			}
		})
	}
}

func TestShapeParamsAndErrors(t *testing.T) {
	_, params, err := Shape("", "/u/{id}/files/{path...}")
	if err != nil || !slices.Equal(params, []string{"id", "path"}) {
		t.Errorf("params = %v, %v", params, err)
	}
	if _, _, err := Shape("bad host!", "/x"); !errors.Is(err, ErrInvalidHost) {
		t.Errorf("bad host: %v", err)
	}
	if _, _, err := Shape("", "x"); !errors.Is(err, ErrInvalidTemplate) {
		t.Errorf("bad template: %v", err)
	}
}
