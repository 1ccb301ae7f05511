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
	"github.com/moat-gateway/moat/internal/exposure"
	"github.com/moat-gateway/moat/internal/exposure/schema"
	"github.com/moat-gateway/moat/internal/gateway"
)

// petsBody returns a JSON array of pets of about size bytes. With leak,
// each pet has an undeclared property (owner_email) for strip to remove;
// without, the body is exactly what the schema declares (what block mode
// lets through).
func petsBody(size int, leak bool) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := 0; b.Len() < size-80; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		switch {
		case leak:
			fmt.Fprintf(&b, `{"name":"pet-%06d","purrs":true,"owner_email":"owner%d@example.com"}`, i, i)
		case i%2 == 0:
			fmt.Fprintf(&b, `{"name":"pet-%06d","purrs":true}`, i)
		default:
			fmt.Fprintf(&b, `{"name":"dog-%06d","barks":false}`, i)
		}
	}
	b.WriteByte(']')
	return b.Bytes()
}

// BenchmarkFilter measures ProcessResponse of response filtering, and of
// masking, on the listPets response (an array of anyOf [allOf, allOf]) for
// 1 KB and 100 KB bodies: buffering, the rewrite, and the schema check.
// The response announces its Content-Length, as most upstreams do.
//
//   - strip, log: a body where every pet has an undeclared property (strip
//     removes it, log records it);
//   - block: a body that matches the schema (an undeclared property would
//     be refused at the first response, which measures nothing);
//   - masking: the stage with every detector on the leaking body (which
//     has an e-mail address in every pet).
func BenchmarkFilter(b *testing.B) {
	doc, resp := compile(b)
	op := doc.OperationByID("listPets")
	for _, size := range []int{1 << 10, 100 << 10} {
		leaky, clean := petsBody(size, true), petsBody(size, false)
		for _, bc := range []struct {
			mode string
			body []byte
		}{
			{config.ResponseModeLog, leaky},
			{config.ResponseModeStrip, leaky},
			{config.ResponseModeBlock, clean},
			{"masking", leaky},
		} {
			var stage gateway.ResponseStage
			if bc.mode == "masking" {
				m, err := exposure.NewMasking(&config.Masking{})
				if err != nil {
					b.Fatal(err)
				}
				stage = m
			} else {
				f, err := schema.New(config.ResponseFiltering{Mode: bc.mode}, resp, op)
				if err != nil {
					b.Fatal(err)
				}
				stage = f
			}
			b.Run(fmt.Sprintf("%s/%dKB", bc.mode, size>>10), func(b *testing.B) {
				req := httptest.NewRequest(http.MethodGet, "http://gw.test/pets", nil)
				b.SetBytes(int64(len(bc.body)))
				b.ReportAllocs()
				for b.Loop() {
					ex := &gateway.Exchange{Request: req}
					res := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
						Body: io.NopCloser(bytes.NewReader(bc.body)), ContentLength: int64(len(bc.body)), Request: req}
					if err := stage.ProcessResponse(context.Background(), ex, res); err != nil {
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

// TestBenchBodies pins what the benchmark measures: strip removes one
// property per pet of the leaking body, block lets the clean body through
// unchanged, and neither body has a schema violation.
func TestBenchBodies(t *testing.T) {
	doc, resp := compile(t)
	op := doc.OperationByID("listPets")
	for _, size := range []int{1 << 10, 100 << 10} {
		for _, tc := range []struct {
			mode    string
			body    []byte
			changed bool
		}{
			{config.ResponseModeStrip, petsBody(size, true), true},
			{config.ResponseModeBlock, petsBody(size, false), false},
		} {
			f, err := schema.New(config.ResponseFiltering{Mode: tc.mode}, resp, op)
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodGet, "http://gw.test/pets", nil)
			ex := &gateway.Exchange{Request: req}
			res := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(bytes.NewReader(tc.body)), ContentLength: int64(len(tc.body)), Request: req}
			if err := f.ProcessResponse(context.Background(), ex, res); err != nil {
				t.Fatalf("%s %d: %v", tc.mode, size, err)
			}
			out, _ := io.ReadAll(res.Body)
			if changed := !bytes.Equal(out, tc.body); changed != tc.changed {
				t.Errorf("%s %d: body changed = %v, want %v", tc.mode, size, changed, tc.changed)
			}
			if v, ok := ex.Findings[schema.FindingViolations]; ok {
				t.Errorf("%s %d: violations %v", tc.mode, size, v)
			}
		}
	}
}
