package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/validate/openapi"
)

// checkSpec declares, as components, schemas that use every keyword the
// fast checker implements, and some it does not.
const checkSpec = `openapi: 3.1.0
info: {title: check, version: "1"}
paths: {}
components:
  schemas:
    Obj:
      type: object
      required: [id, name]
      additionalProperties: false
      properties:
        id: {type: integer, format: int64, minimum: 1}
        name: {type: string, minLength: 1, maxLength: 10, pattern: "^[a-zé]+$"}
        tags: {type: array, items: {type: string}, maxItems: 3, minItems: 1}
        role: {enum: [admin, user]}
        score: {type: number, exclusiveMaximum: 100, exclusiveMinimum: -1, multipleOf: 0.5}
        nick: {type: [string, "null"]}
        small: {type: integer, format: int32, maximum: 2147483647}
        secret: {type: string, writeOnly: true}
      dependentRequired: {}
    Map:
      type: object
      minProperties: 1
      maxProperties: 3
      propertyNames: {maxLength: 8}
      patternProperties: {"^x-": {type: string}}
      additionalProperties: {type: integer}
    OneOf:
      oneOf: [{type: integer}, {type: number, multipleOf: 0.5}]
    Not:
      not: {type: string}
    AnyOf:
      anyOf:
        - {$ref: "#/components/schemas/Obj"}
        - {type: array, prefixItems: [{type: string}, {type: boolean}], items: false}
    Enums:
      type: object
      properties:
        c: {const: 7}
        e: {enum: [1, "1", null, true]}
        obj: {const: {a: 1}}
        u: {type: array, uniqueItems: true}
    Tree:
      type: object
      required: [value]
      properties:
        value: {type: integer, format: int32}
        children: {type: array, items: {$ref: "#/components/schemas/Tree"}}
    Formats:
      type: object
      properties:
        at: {type: string, format: date-time}
        mail: {type: string, format: email}
        id: {type: string, format: uuid}
    Cat:
      allOf:
        - {$ref: "#/components/schemas/Pet"}
        - {type: object, properties: {purrs: {type: boolean}}}
    Pet:
      type: object
      required: [name]
      properties: {name: {type: string}}
    Anything: {}
    Nothing:
      not: {}
    IfThen:
      if: {type: string}
      then: {minLength: 2}
    Uneval:
      type: object
      properties: {a: {type: string}}
      unevaluatedProperties: false
    Contains:
      type: array
      contains: {type: string}
`

func loadCheckSpec(t testing.TB) *openapi.Document {
	t.Helper()
	doc, err := openapi.LoadBytes("check.yaml", []byte(checkSpec))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func compileBoth(t testing.TB, doc *openapi.Document, name string) (*openapi.Schema, *checker, error) {
	t.Helper()
	s, err := doc.CompileSchema("#/components/schemas/"+name, openapi.ForResponse)
	if err != nil {
		t.Fatal(err)
	}
	c, err := compileChecker(s.Compiled())
	return s, c, err
}

// fullValid is the full validator's answer, the reference.
func fullValid(t testing.TB, s *openapi.Schema, body string) bool {
	t.Helper()
	v, err := decode([]byte(body))
	if err != nil {
		t.Fatalf("test body %s is not JSON: %v", body, err)
	}
	return len(s.Validate(v)) == 0
}

// TestCheckerDecides pins that the checker reaches the full validator's
// answer on its own for the keywords it implements, and leaves to it what
// it does not compare.
func TestCheckerDecides(t *testing.T) {
	doc := loadCheckSpec(t)
	tests := []struct {
		schema, body string
		want         verdict
	}{
		{"Obj", `{"id":1,"name":"ann"}`, valid},
		{"Obj", ` {"id": 9007199254740993, "name":"zoé", "tags":["a","b"], "role":"user", "score":99.5, "nick":null, "small":2147483647} `, valid},
		{"Obj", `{"id":1,"name":"ann","secret":"s"}`, valid}, // writeOnly is not required, and allowed
		{"Obj", `{"id":1.0,"name":"ann"}`, valid},            // 1.0 is an integer
		{"Obj", `{"id":1e2,"name":"ann"}`, valid},
		{"Obj", `{"id":1,"name":"\u0061nn"}`, valid},
		{"Obj", `{"id":1}`, invalid},
		{"Obj", `{"id":0,"name":"ann"}`, invalid},
		{"Obj", `{"id":1.5,"name":"ann"}`, invalid},
		{"Obj", `{"id":"1","name":"ann"}`, invalid},
		{"Obj", `{"id":1,"name":""}`, invalid},
		{"Obj", `{"id":1,"name":"abcdefghijk"}`, invalid},
		{"Obj", `{"id":1,"name":"Ann"}`, invalid},
		{"Obj", `{"id":1,"name":"ann","extra":1}`, invalid},
		{"Obj", `{"id":1,"name":"ann","tags":[]}`, invalid},
		{"Obj", `{"id":1,"name":"ann","tags":["a","b","c","d"]}`, invalid},
		{"Obj", `{"id":1,"name":"ann","tags":[1]}`, invalid},
		{"Obj", `{"id":1,"name":"ann","role":"root"}`, invalid},
		{"Obj", `{"id":1,"name":"ann","score":100}`, invalid},
		{"Obj", `{"id":1,"name":"ann","score":-1}`, invalid},
		{"Obj", `{"id":1,"name":"ann","score":0.25}`, invalid},
		{"Obj", `{"id":1,"name":"ann","nick":1}`, invalid},
		{"Obj", `{"id":1,"name":"ann","small":2147483648}`, invalid},
		{"Obj", `[]`, invalid},
		{"Obj", `{"id":1,"name":"ann","name":"bob"}`, undecided}, // a repeated name: the decoder keeps the last
		{"Map", `{"a":1,"x-b":"s"}`, valid},
		{"Map", `{}`, invalid},
		{"Map", `{"a":1,"b":2,"c":3,"d":4}`, invalid},
		{"Map", `{"a":"s"}`, invalid},
		{"Map", `{"x-a":1}`, invalid},
		{"Map", `{"abcdefghi":1}`, invalid},
		{"OneOf", `1.5`, valid},
		{"OneOf", `1`, invalid}, // both branches
		{"OneOf", `"a"`, invalid},
		{"Not", `1`, valid},
		{"Not", `"a"`, invalid},
		{"AnyOf", `["a",true]`, valid},
		{"AnyOf", `{"id":1,"name":"ann"}`, valid},
		{"AnyOf", `["a",true,1]`, invalid},
		{"AnyOf", `["a","b"]`, invalid},
		{"Enums", `{"c":7,"e":"1"}`, valid},
		{"Enums", `{"c":7.0,"e":1.0}`, valid},
		{"Enums", `{"e":null}`, valid},
		{"Enums", `{"e":true}`, valid},
		{"Enums", `{"c":8}`, invalid},
		{"Enums", `{"e":false}`, invalid},
		{"Enums", `{"e":"2"}`, invalid},
		{"Enums", `{"obj":1}`, invalid},
		{"Enums", `{"obj":{"a":1}}`, undecided}, // objects are not compared
		{"Enums", `{"u":[1]}`, valid},
		{"Enums", `{"u":[1,2]}`, undecided}, // uniqueness is not checked
		{"Tree", `{"value":1,"children":[{"value":2,"children":[{"value":3}]}]}`, valid},
		{"Tree", `{"value":1,"children":[{"value":2,"children":[{}]}]}`, invalid},
		{"Tree", `{"value":1,"children":[{"value":2147483648}]}`, invalid},
		{"Formats", `{"at":"2024-03-01T10:20:30Z","mail":"a@example.com","id":"550e8400-e29b-41d4-a716-446655440000"}`, valid},
		{"Formats", `{"at":"yesterday"}`, invalid},
		{"Formats", `{"mail":"nobody"}`, invalid},
		{"Formats", `{"id":"550e8400"}`, invalid},
		{"Cat", `{"name":"tom","purrs":true,"owner":"x"}`, valid},
		{"Cat", `{"purrs":true}`, invalid},
		{"Cat", `{"name":"tom","purrs":1}`, invalid},
		{"Anything", `{"a":[1,{"b":null}]}`, valid},
		{"Nothing", `1`, invalid},
	}
	compiled := map[string]*checker{}
	for _, tc := range tests {
		s, c, err := compileBoth(t, doc, tc.schema)
		if err != nil {
			t.Fatalf("%s: %v", tc.schema, err)
		}
		compiled[tc.schema] = c
		full := fullValid(t, s, tc.body)
		if tc.want != undecided && full != (tc.want == valid) {
			t.Fatalf("%s %s: the full validator says valid=%v; the test expects %v", tc.schema, tc.body, full, tc.want)
		}
		if got := c.check([]byte(tc.body)); got != tc.want {
			t.Errorf("%s %s: verdict %d, want %d", tc.schema, tc.body, got, tc.want)
		}
	}
}

// TestCheckerUnsupported pins that a schema using a keyword the checker
// does not implement is not compiled (the full validator then checks every
// body), and that the filter still validates such bodies.
func TestCheckerUnsupported(t *testing.T) {
	doc := loadCheckSpec(t)
	for _, name := range []string{"IfThen", "Uneval", "Contains"} {
		if _, _, err := compileBoth(t, doc, name); !errors.Is(err, errUnsupported) {
			t.Errorf("%s: err = %v, want errUnsupported", name, err)
		}
	}
	var nilChecker *checker
	if nilChecker.valid([]byte(`1`)) {
		t.Error("a nil checker proved a body valid")
	}
}

// TestCheckerBudget pins that a body needing more work than the budget is
// left undecided rather than walked further.
func TestCheckerBudget(t *testing.T) {
	doc := loadCheckSpec(t)
	_, c, err := compileBoth(t, doc, "Tree")
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"value":1,"children":[{"value":2}]}`)
	r := &checkRun{in: body, budget: 2}
	if _, v := r.value(c.root, 0); v != undecided {
		t.Errorf("verdict %d with an exhausted budget, want undecided", v)
	}
}

// FuzzChecker compares the checker with the full validator on arbitrary
// bodies: whatever it decides, valid or invalid, the full validator
// decides the same. (Deciding invalid wrongly would be as bad as valid:
// under not and oneOf one becomes the other.)
func FuzzChecker(f *testing.F) {
	names := []string{"Obj", "Map", "OneOf", "Not", "AnyOf", "Enums", "Tree", "Formats", "Cat"}
	for i, s := range []string{`{"id":1,"name":"ann"}`, `{"a":1,"x-b":"s"}`, `1.5`, `"a"`, `["a",true]`,
		`{"c":7,"e":"1"}`, `{"value":1,"children":[{"value":2}]}`, `{"at":"2024-03-01T10:20:30Z"}`, `{"name":"tom","purrs":true}`,
		`{"id":1e400,"name":"a","name":"b"}`, `{"e":1E-2,"c":7e0}`, `{"id":-0,"name":"\u00e9"}`} {
		f.Add(uint8(i), []byte(s))
	}
	doc := loadCheckSpec(f)
	type pair struct {
		s *openapi.Schema
		c *checker
	}
	var schemas []pair
	for _, n := range names {
		s, c, err := compileBoth(f, doc, n)
		if err != nil {
			f.Fatal(err)
		}
		schemas = append(schemas, pair{s, c})
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		if !json.Valid(body) || len(body) > 4096 {
			return
		}
		var w rewriter
		out, err := w.rewrite(body, nil)
		if err != nil || !bytes.Equal(out, body) {
			return // nested too deep: the filter never checks it
		}
		if hasCostlyNumber(body) {
			return // the filter never hands those to the full validator
		}
		p := schemas[int(which)%len(schemas)]
		got := p.c.check(body)
		if got == undecided {
			return
		}
		v, err := decode(body)
		if err != nil {
			t.Fatal(err)
		}
		if full := len(p.s.Validate(v)) == 0; full != (got == valid) {
			t.Fatalf("%s %s: checker verdict %d, full validator valid=%v", names[int(which)%len(names)], body, got, full)
		}
	})
}

// TestCheckerRandomBodies is FuzzChecker's property on many generated
// bodies, built from the member names, numbers and strings the test
// schemas care about (so that most bodies come close to valid), with
// repeated names and escapes: every verdict the checker reaches is the
// full validator's. It also pins that the checker decides most of them.
func TestCheckerRandomBodies(t *testing.T) {
	doc := loadCheckSpec(t)
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"id", "name", "tags", "role", "score", "nick", "small", "secret", "a", "x-b", "abcdefghi",
		"c", "e", "obj", "u", "value", "children", "at", "mail", "purrs", `n\u0061me`}
	numbers := []string{"0", "1", "-1", "1.0", "1e2", "7", "7.0", "99.5", "100", "0.25", "2147483647", "2147483648",
		"-2147483649", "9007199254740993", "1.5", "-0", "1E-2", "12345678901234567890", "1e400"}
	strs := []string{`"ann"`, `"Ann"`, `""`, `"zoé"`, `"admin"`, `"user"`, `"1"`, `"2024-03-01T10:20:30Z"`,
		`"a@example.com"`, `"nobody"`, `"550e8400-e29b-41d4-a716-446655440000"`, `"\u0061nn"`, `"abcdefghijk"`, `"s"`}
	var value func(depth int) string
	value = func(depth int) string {
		switch k := rng.IntN(10); {
		case k < 3 && depth < 4:
			var b strings.Builder
			b.WriteByte('{')
			sep := false
			if rng.IntN(3) == 0 { // what Obj, Cat and Tree require
				b.WriteString(`"id":` + numbers[rng.IntN(len(numbers))] + `,"name":` + strs[rng.IntN(len(strs))])
				if rng.IntN(2) == 0 {
					b.WriteString(`,"value":` + numbers[rng.IntN(len(numbers))])
				}
				sep = true
			}
			for range rng.IntN(5) {
				if sep {
					b.WriteByte(',')
				}
				sep = true
				b.WriteString(`"` + names[rng.IntN(len(names))] + `":` + value(depth+1))
			}
			b.WriteByte('}')
			return b.String()
		case k < 5 && depth < 4:
			var b strings.Builder
			b.WriteByte('[')
			for i := range rng.IntN(4) {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(value(depth + 1))
			}
			b.WriteByte(']')
			return b.String()
		case k < 7:
			return numbers[rng.IntN(len(numbers))]
		case k < 9:
			return strs[rng.IntN(len(strs))]
		}
		return []string{"null", "true", "false"}[rng.IntN(3)]
	}
	for _, name := range []string{"Obj", "Map", "OneOf", "Not", "AnyOf", "Enums", "Tree", "Formats", "Cat"} {
		s, c, err := compileBoth(t, doc, name)
		if err != nil {
			t.Fatal(err)
		}
		decided, validSeen := 0, 0
		const n = 3000
		for range n {
			body := value(0)
			got := c.check([]byte(body))
			if got == undecided {
				continue
			}
			decided++
			full := fullValid(t, s, body)
			if full {
				validSeen++
			}
			if full != (got == valid) {
				t.Errorf("%s %s: checker verdict %d, full validator valid=%v", name, body, got, full)
			}
		}
		if decided < n*3/4 {
			t.Errorf("%s: the checker decided %d of %d bodies", name, decided, n)
		}
		t.Logf("%s: %d decided, %d valid", name, decided, validSeen)
	}
}

// TestCheckerOpenAPI30 pins that schemas of an OpenAPI 3.0 document, which
// moat translates to JSON Schema 2020-12 (nullable, boolean
// exclusiveMinimum), compile for the checker and keep their meaning.
func TestCheckerOpenAPI30(t *testing.T) {
	doc, err := openapi.LoadBytes("v30.yaml", []byte(`openapi: 3.0.3
info: {title: v30, version: "1"}
paths: {}
components:
  schemas:
    Item:
      type: object
      required: [n]
      properties:
        n: {type: integer, minimum: 0, exclusiveMinimum: true}
        note: {type: string, nullable: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	s, c, err := compileBoth(t, doc, "Item")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		body string
		want verdict
	}{
		{`{"n":1,"note":null}`, valid},
		{`{"n":1,"note":"x"}`, valid},
		{`{"n":0}`, invalid},
		{`{"n":1,"note":1}`, invalid},
	} {
		if got := c.check([]byte(tc.body)); got != tc.want {
			t.Errorf("%s: verdict %d, want %d", tc.body, got, tc.want)
		}
		if full := fullValid(t, s, tc.body); full != (tc.want == valid) {
			t.Errorf("%s: the full validator says valid=%v", tc.body, full)
		}
	}
}
