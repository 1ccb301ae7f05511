package schema_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/exposure/schema"
	"github.com/moat-gateway/moat/internal/gateway"
)

// petsBody returns a JSON array of pets of about size bytes, each with an
// undeclared property to strip.
func petsBody(size int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := 0; b.Len() < size-80; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"pet-%06d","purrs":true,"owner_email":"owner%d@example.com"}`, i, i)
	}
	b.WriteByte(']')
	return b.Bytes()
}

// BenchmarkFilter measures ProcessResponse on the listPets response (an
// array of anyOf [allOf, allOf]) for 1 KB and 100 KB bodies: buffering,
// the rewrite, decoding and schema validation.
func BenchmarkFilter(b *testing.B) {
	doc, resp := compile(b)
	op := doc.OperationByID("listPets")
	for _, size := range []int{1 << 10, 100 << 10} {
		body := petsBody(size)
		for _, mode := range []string{config.ResponseModeStrip, config.ResponseModeLog} {
			f, err := schema.New(config.ResponseFiltering{Mode: mode}, resp, op)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%s/%dKB", mode, size>>10), func(b *testing.B) {
				req := httptest.NewRequest(http.MethodGet, "http://gw.test/pets", nil)
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					ex := &gateway.Exchange{Request: req}
					res := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
						Body: io.NopCloser(bytes.NewReader(body)), Request: req}
					if err := f.ProcessResponse(context.Background(), ex, res); err != nil {
						b.Fatal(err)
					}
					if _, ok := ex.Findings[schema.FindingViolations]; ok {
						b.Fatal("the benchmark body should be valid")
					}
				}
			})
		}
	}
}
