package openapi

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
)

// The benchmarks measure the CPU validation adds per request, for a GET
// with path, query and header parameters and a POST with a 1 KB JSON body
// (testdata/bench.yaml). Each iteration builds its request, as a real
// request arrives: "request-only" is that cost alone, to subtract. The
// libopenapi-validator cases validate the same requests with that library
// (v0.13.8, schema cache warmed at construction), for comparison.
//
//	go test -run '^$' -bench . -benchmem ./internal/validate/openapi

// book1K is a valid 1 KB createBook body.
const book1K = `{"title":"The Go Programming Language, second edition, revised and expanded with many new examples","isbn":"9780134190440",` +
	`"year":2015,"price":34.99,"published":"2015-10-26T00:00:00Z","language":"en","summary":"The Go Programming Language is the ` +
	`authoritative resource for any programmer who wants to learn Go. It shows how to write clear and idiomatic Go to solve real-world ` +
	`problems. The book does not assume prior knowledge of Go nor experience with any specific language, so you will find it ` +
	`accessible whether you are most comfortable with JavaScript, Ruby, Python, Java, or C++. The first chapter is a tutorial on the ` +
	`basic concepts of Go, and later chapters cover methods, interfaces and goroutines in depth.","tags":["go","programming",` +
	`"concurrency","systems","networking","testing","reflection","golang"],"authors":[{"name":"Alan A. A. Donovan","email":` +
	`"alan@example.com"},{"name":"Brian W. Kernighan","email":"bwk@example.com"},{"name":"Third Author","email":"third@example.org"}]}`

const benchGET = "/shelves/12/books?limit=10&sort=title&tag=go&tag=web"

func benchGetRequest() *http.Request {
	r := httptest.NewRequest(http.MethodGet, benchGET, nil)
	r.Header.Set("X-Tenant", tenant)
	return r
}

func benchPostRequest() *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/books", bytes.NewReader([]byte(book1K)))
	r.Header.Set("Content-Type", "application/json")
	return r
}

func BenchmarkGET(b *testing.B) {
	d := testDoc(b, "testdata/bench.yaml")
	op := d.OperationByID("listShelfBooks")
	b.Run("request-only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = &gateway.Exchange{Request: benchGetRequest()}
		}
	})
	for _, strict := range []bool{false, true} {
		name := "moat"
		if strict {
			name += "-strict"
		}
		v, err := d.Validator(op, Options{Strict: strict})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ex := &gateway.Exchange{Request: benchGetRequest()}
				_, ex.Params, _ = d.Match(http.MethodGet, "/shelves/12/books", ex.Params)
				if err := v.ProcessRequest(context.Background(), ex); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("libopenapi-validator", func(b *testing.B) {
		lv, item := libValidator(b, "/shelves/{shelf}/books")
		b.ReportAllocs()
		for b.Loop() {
			if ok, errs := lv.ValidateHttpRequestSyncWithPathItem(benchGetRequest(), item, "/shelves/{shelf}/books"); !ok {
				b.Fatal(errs[0].Message)
			}
		}
	})
}

func BenchmarkPOST1K(b *testing.B) {
	d := testDoc(b, "testdata/bench.yaml")
	op := d.OperationByID("createBook")
	b.Run("request-only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = &gateway.Exchange{Request: benchPostRequest()}
		}
	})
	b.Run("read-and-parse-only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ex := &gateway.Exchange{Request: benchPostRequest()}
			if _, err := ex.JSONBody(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, strict := range []bool{false, true} {
		name := "moat"
		if strict {
			name += "-strict"
		}
		v, err := d.Validator(op, Options{Strict: strict})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ex := &gateway.Exchange{Request: benchPostRequest()}
				if err := v.ProcessRequest(context.Background(), ex); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("moat-schema-only", func(b *testing.B) {
		s, err := d.CompileSchema(op.RequestBody.Content[0].Schema, ForRequest)
		if err != nil {
			b.Fatal(err)
		}
		doc, err := decodeJSON(book1K)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if v := s.Validate(doc); v != nil {
				b.Fatal(v)
			}
		}
	})
	b.Run("libopenapi-validator", func(b *testing.B) {
		lv, item := libValidator(b, "/books")
		b.ReportAllocs()
		for b.Loop() {
			if ok, errs := lv.ValidateHttpRequestSyncWithPathItem(benchPostRequest(), item, "/books"); !ok {
				b.Fatal(errs[0].Message)
			}
		}
	})
}

// BenchmarkLoad measures loading and compiling the benchmark document.
func BenchmarkLoad(b *testing.B) {
	src, err := os.ReadFile(api31)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadBytes(api31, src); err != nil {
			b.Fatal(err)
		}
	}
}

// libValidator builds libopenapi-validator's validator for the benchmark
// document and returns it with the path item of path.
func libValidator(b *testing.B, path string) (validator.Validator, *v3.PathItem) {
	src, err := os.ReadFile("testdata/bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	doc, err := libopenapi.NewDocument(src)
	if err != nil {
		b.Fatal(err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		b.Fatal(err)
	}
	v, errs := validator.NewValidator(doc)
	if errs != nil {
		b.Fatal(errs)
	}
	return v, m.Model.Paths.PathItems.GetOrZero(path)
}
