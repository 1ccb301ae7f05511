package router

import (
	"errors"
	"strings"
	"testing"
)

func TestAddErrors(t *testing.T) {
	tests := []struct {
		desc     string
		existing []spec
		host     string
		methods  []string
		template string
		wantErr  []error  // errors.Is targets; nil means success
		wantText []string // substrings of the message
	}{
		{desc: "valid", methods: []string{"GET"}, template: "/a"},
		{desc: "methods are upper-cased", methods: []string{"get", "Post"}, template: "/a"},
		{desc: "invalid template", methods: []string{"GET"}, template: "a",
			wantErr: []error{ErrInvalidTemplate}},
		{desc: "invalid host", host: "api.example.com:80", methods: []string{"GET"}, template: "/a",
			wantErr: []error{ErrInvalidHost}},
		{desc: "no methods", template: "/a", wantErr: []error{ErrInvalidMethod}},
		{desc: "empty method", methods: []string{""}, template: "/a", wantErr: []error{ErrInvalidMethod}},
		{desc: "method not a token", methods: []string{"GE T"}, template: "/a", wantErr: []error{ErrInvalidMethod}},
		{desc: "TRACE refused", methods: []string{"GET", "TRACE"}, template: "/a", wantErr: []error{ErrInvalidMethod}},
		{desc: "CONNECT refused in any case", methods: []string{"connect"}, template: "/a", wantErr: []error{ErrInvalidMethod}},
		{desc: "duplicate method", methods: []string{"GET", "get"}, template: "/a", wantErr: []error{ErrInvalidMethod},
			wantText: []string{"listed twice"}},
		{desc: "every problem reported", host: "*x.com", methods: []string{"TRACE"}, template: "/{",
			wantErr: []error{ErrInvalidHost, ErrInvalidTemplate, ErrInvalidMethod}},
		{desc: "same template and method conflict", existing: []spec{get("/u/{id}", "x")},
			methods: []string{"GET"}, template: "/u/{id}", wantErr: []error{ErrConflict}},
		{desc: "conflict names both templates", existing: []spec{get("/u/{id}", "x")},
			methods: []string{"POST", "get"}, template: "/u/{uid}", wantErr: []error{ErrConflict},
			wantText: []string{"GET /u/{uid}", "/u/{id}"}},
		{desc: "catch-all names do not distinguish", existing: []spec{get("/f/{a...}", "x")},
			methods: []string{"GET"}, template: "/f/{b...}", wantErr: []error{ErrConflict}},
		{desc: "conflict through normalised host", existing: []spec{{id: "x", host: "API.example.com.", methods: []string{"GET"}, template: "/a"}},
			host: "api.example.com", methods: []string{"GET"}, template: "/a", wantErr: []error{ErrConflict},
			wantText: []string{"api.example.com/a"}},
		{desc: "empty host and * are the same", existing: []spec{{id: "x", host: "*", methods: []string{"GET"}, template: "/a"}},
			methods: []string{"GET"}, template: "/a", wantErr: []error{ErrConflict}},
		{desc: "same template other method", existing: []spec{get("/u/{id}", "x")},
			methods: []string{"DELETE"}, template: "/u/{uid}"},
		{desc: "same shape prefix with other names", existing: []spec{get("/u/{id}", "x")},
			methods: []string{"GET"}, template: "/u/{uid}/x"},
		{desc: "same template other host", existing: []spec{get("/a", "x")},
			host: "*.example.com", methods: []string{"GET"}, template: "/a"},
		{desc: "explicit HEAD beside GET", existing: []spec{get("/a", "x")},
			methods: []string{"HEAD"}, template: "/a"},
		{desc: "trailing slash is another template", existing: []spec{get("/a", "x")},
			methods: []string{"GET"}, template: "/a/"},
		{desc: "param and catch-all are different shapes", existing: []spec{get("/a/{x}", "x")},
			methods: []string{"GET"}, template: "/a/{x...}"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			b := NewBuilder[string]()
			for _, s := range tt.existing {
				if err := b.Add(s.host, s.methods, s.template, s.id); err != nil {
					t.Fatal(err)
				}
			}
			err := b.Add(tt.host, tt.methods, tt.template, "new")
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Add: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Add succeeded; want an error")
			}
			for _, target := range tt.wantErr {
				if !errors.Is(err, target) {
					t.Errorf("Add error %q is not %v", err, target)
				}
			}
			for _, s := range tt.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Add error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestFailedAddRegistersNothing(t *testing.T) {
	b := NewBuilder[string]()
	if err := b.Add("", []string{"GET"}, "/a", "first"); err != nil {
		t.Fatal(err)
	}
	// POST is new but GET conflicts: neither may be registered.
	if err := b.Add("", []string{"POST", "GET"}, "/a", "second"); !errors.Is(err, ErrConflict) {
		t.Fatalf("Add = %v; want a conflict", err)
	}
	r := b.Build()
	if _, _, allow, ok := r.Match("", "POST", "/a", nil); ok || strings.Join(allow, ",") != "GET,HEAD" {
		t.Errorf("POST /a: ok=%v allow=%v; want 405 with GET,HEAD", ok, allow)
	}
	if v, _, _, _ := r.Match("", "GET", "/a", nil); v != "first" {
		t.Errorf("GET /a = %q; want the first route", v)
	}
}

func TestZeroBuilder(t *testing.T) {
	var b Builder[int]
	if err := b.Add("", []string{"GET"}, "/", 1); err != nil {
		t.Fatal(err)
	}
	if v, _, _, ok := b.Build().Match("", "GET", "/", nil); !ok || v != 1 {
		t.Errorf("Match = %v, %v", v, ok)
	}
}
