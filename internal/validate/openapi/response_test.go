package openapi

import "testing"

func TestResponseShapes(t *testing.T) {
	const doc = `openapi: 3.1.0
info: {title: t, version: "1"}
paths:
  /x:
    get:
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: object
                properties:
                  m:
                    type: object
                    additionalProperties:
                      type: object
                      properties: {v: {type: string}}
                  closed: {type: object, additionalProperties: false}
                  free: {type: object}
                  secret: {type: string, writeOnly: true}
                  mixed:
                    oneOf:
                      - {type: object, properties: {a: {type: string}}}
                      - {type: object}
                  pat:
                    type: object
                    properties: {a: {type: string}}
                    patternProperties: {"^x-": {}}
`
	d, err := LoadBytes("d.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.CompileResponses()
	if err != nil {
		t.Fatal(err)
	}
	rs, declared, ok := r.Lookup(d.Operations()[0], 200, "application/json; charset=utf-8")
	if !ok || !declared {
		t.Fatal("no schema for 200 application/json")
	}
	if _, _, ok := r.Lookup(d.Operations()[0], 500, "application/json"); ok {
		t.Error("a schema for an undeclared status")
	}
	root := rs.Shape
	member := func(s *Shape, path ...string) (declared, writeOnly bool) {
		for i, n := range path {
			var sub *Shape
			sub, declared, writeOnly = s.Member(n)
			if i < len(path)-1 {
				s = sub
			}
		}
		return declared, writeOnly
	}
	tests := []struct {
		desc      string
		path      []string
		declared  bool
		writeOnly bool
	}{
		{"undeclared top-level property", []string{"password_hash"}, false, false},
		{"writeOnly property", []string{"secret"}, true, true},
		{"map member is admitted", []string{"m", "anykey"}, true, false},
		{"map member's content is shaped", []string{"m", "anykey", "w"}, false, false},
		{"map member's declared content", []string{"m", "anykey", "v"}, true, false},
		{"additionalProperties false admits nothing", []string{"closed", "a"}, false, false},
		{"free-form object admits anything", []string{"free", "a"}, true, false},
		{"oneOf with a free-form branch admits anything", []string{"mixed", "zzz"}, true, false},
		{"patternProperties admits undeclared members", []string{"pat", "x-y"}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			d, w := member(root, tc.path...)
			if d != tc.declared || w != tc.writeOnly {
				t.Errorf("declared, writeOnly = %v, %v; want %v, %v", d, w, tc.declared, tc.writeOnly)
			}
		})
	}
	if !root.Closed() {
		t.Error("the root object should refuse undeclared members")
	}
}
