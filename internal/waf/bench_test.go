package waf

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// jsonBody returns a realistic JSON document of exactly size bytes: an
// order with line items, an address and free-text notes, the shape API
// bodies have, topped up with a comment. 64 KiB holds about 170 items, some
// 860 arguments: under max_arguments.
func jsonBody(size int) []byte {
	type item struct {
		SKU      string `json:"sku"`
		Title    string `json:"title"`
		Quantity int    `json:"quantity"`
		Price    string `json:"unit_price"`
		Note     string `json:"note"`
	}
	type order struct {
		Customer string            `json:"customer_id"`
		Email    string            `json:"email"`
		Address  map[string]string `json:"shipping_address"`
		Items    []item            `json:"items"`
		Comment  string            `json:"comment"`
	}
	doc := order{
		Customer: "cus_9f8e7d6c", Email: "mary.o'hara@example.ie",
		Address: map[string]string{"name": "Mary O'Hara", "line1": "12 St. Stephen's Green", "city": "Dublin", "postal_code": "D02 XY45", "country": "IE"},
	}
	const prose = "Thanks for the quick delivery last time. The books arrived in perfect condition and the handwritten note was a lovely touch. "
	for i := 0; ; i++ {
		next := doc
		next.Items = append(append([]item(nil), doc.Items...), item{SKU: fmt.Sprintf("BK-%05d-PB", i), Title: "The Left Hand of Darkness", Quantity: 1 + i%3, Price: "15.99",
			Note: "Gift wrap please, with a card that says: happy birthday, I hope you enjoy this one as much as I did when I read it last winter. " +
				"If the hardcover is out of stock, the paperback is fine too; please don't split the order, we'd rather wait a few days for everything to ship together."})
		if b, _ := json.Marshal(next); len(b) > size {
			break
		}
		doc = next
	}
	b, _ := json.Marshal(doc)
	for len(doc.Comment) < size-len(b) {
		doc.Comment += prose
	}
	doc.Comment = doc.Comment[:size-len(b)]
	b, _ = json.Marshal(doc)
	return b
}

// BenchmarkStage measures the WAF's CPU per request: CRS 4 at paranoia
// level 1, request phases only, on requests that pass (the common case).
// The request is rebuilt each iteration; reading the body into the shared
// buffer is included, as it is part of what the WAF costs when no other
// stage reads the body.
func BenchmarkStage(b *testing.B) {
	s := newStage(b, config.WAF{})
	u, _ := url.Parse("/v1/orders?include=items&currency=EUR")
	header := http.Header{
		"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"},
		"Accept":          {"application/json"},
		"Accept-Language": {"en-US,en;q=0.9"},
		"Authorization":   {"Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c3JfOGYyYTljIn0.c2lnbmF0dXJl"},
		"Cookie":          {"session=s%3A7f2c9e1b4a.Xv9bq0L2YkMZ6x4n8QeW1Rj5Hc3Tg7Ad; theme=dark"},
	}
	client := netip.MustParseAddr("198.51.100.23")
	for _, bc := range []struct {
		name   string
		method string
		body   []byte
	}{
		{name: "GET", method: http.MethodGet},
		{name: "POST_JSON_1KB", method: http.MethodPost, body: jsonBody(1 << 10)},
		{name: "POST_JSON_64KB", method: http.MethodPost, body: jsonBody(64 << 10)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := header.Clone()
			if bc.body != nil {
				h.Set("Content-Type", "application/json")
				h.Set("Content-Length", fmt.Sprint(len(bc.body)))
			}
			// Check once that the request passes: a benchmark of blocks
			// would measure something else.
			run := func() error {
				r := &http.Request{Method: bc.method, URL: u, RequestURI: u.RequestURI(), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
					Header: h, Host: "api.example.com", Body: http.NoBody, ContentLength: int64(len(bc.body))}
				if bc.body != nil {
					r.Body = io.NopCloser(bytes.NewReader(bc.body))
				}
				ex := &gateway.Exchange{ID: "bench", Request: r, ClientIP: client}
				return s.ProcessRequest(context.Background(), ex)
			}
			if err := run(); err != nil {
				b.Fatalf("benchmark request refused: %v", err)
			}
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				if err := run(); err != nil {
					b.Fatal(err)
				}
			}
			// CPU time of the process per request: on a shared machine
			// wall-clock ns/op also counts time spent waiting for a core.
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
