package payload

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// benchJSON returns a realistic JSON document of about size bytes: an
// array of order records with strings, numbers, booleans, nested objects
// and arrays, and escapes.
func benchJSON(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"orders":[`)
	for i := 0; b.Len() < size-200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"customer":{"name":"Customer \"%d\"","email":"c%d@example.com","vip":%t},`+
			`"items":[{"sku":"SKU-%05d","qty":%d,"price":%d.%02d},{"sku":"SKU-%05d","qty":1,"price":9.5e0}],`+
			`"note":"line one\nline two \u00e9","paid":null}`, i, i, i, i%3 == 0, i, i%7+1, i*3%1000, i%100, i+1)
	}
	b.WriteString(`],"total":12345.67}`)
	return b.Bytes()
}

// BenchmarkStageJSON measures the stage on one JSON request whose body is
// already buffered (ReadBody is the kernel's cost, paid once per request
// whichever stage asks first): the URL, header and media-type checks plus
// the scan.
func BenchmarkStageJSON(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			st, err := New(config.PayloadLimits{})
			if err != nil {
				b.Fatal(err)
			}
			body := benchJSON(size)
			r := httptest.NewRequest("POST", "/orders?expand=items", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json; charset=utf-8")
			r.Header.Set("Authorization", "Bearer x")
			r.Header.Set("Accept", "application/json")
			ex := &gateway.Exchange{Request: r, Route: &gateway.Route{MaxBody: 1 << 20}}
			ctx := context.Background()
			if err := st.ProcessRequest(ctx, ex); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := st.ProcessRequest(ctx, ex); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGatewayJSON measures whole requests through a gateway.Gateway,
// with and without the stage, so the difference is the stage's cost
// including reading the body.
func BenchmarkGatewayJSON(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		body := benchJSON(size)
		for _, withStage := range []bool{false, true} {
			b.Run(fmt.Sprintf("%dKiB/stage=%v", size>>10, withStage), func(b *testing.B) {
				var stages []gateway.RequestStage
				if withStage {
					st, err := New(config.PayloadLimits{})
					if err != nil {
						b.Fatal(err)
					}
					stages = append(stages, st)
				} else {
					stages = append(stages, readBodyStage{})
				}
				g := newGateway(b, 1<<20, stages, discardUpstream{})
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					r := httptest.NewRequest("POST", "/items/1", bytes.NewReader(body))
					r.Header.Set("Content-Type", "application/json")
					w := httptest.NewRecorder()
					g.ServeHTTP(w, r)
					if w.Code != http.StatusOK {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
			})
		}
	}
}

func BenchmarkScanJSON(b *testing.B) {
	lim := jsonLimits{maxDepth: 64, maxKeys: 1000, maxArray: 10000, maxString: 64 << 10, maxNumber: 100}
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		doc := benchJSON(size)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if f := scanJSON(doc, &lim); !f.ok() {
					b.Fatal(f)
				}
			}
		})
	}
}

// BenchmarkJSONValid is encoding/json.Valid on the same documents, for
// comparison with BenchmarkScanJSON.
func BenchmarkJSONValid(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		doc := benchJSON(size)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if !json.Valid(doc) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

func BenchmarkCheckXML(b *testing.B) {
	var doc bytes.Buffer
	doc.WriteString(`<?xml version="1.0" encoding="UTF-8"?><orders xmlns="urn:x">`)
	for i := 0; doc.Len() < 64<<10; i++ {
		fmt.Fprintf(&doc, `<order id="%d"><customer vip="true">Customer &amp; %d</customer><item sku="S%d" qty="2"/></order>`, i, i, i)
	}
	doc.WriteString(`</orders>`)
	lim := xmlLimits{maxDepth: 64, maxTokens: 100000, maxAttrs: 100}
	b.SetBytes(int64(doc.Len()))
	b.ReportAllocs()
	for b.Loop() {
		if f := checkXML(doc.Bytes(), &lim); !f.ok() {
			b.Fatal(f)
		}
	}
}
