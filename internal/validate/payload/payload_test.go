package payload

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/router"
)

// randomHex returns n deterministic pseudo-random hex digits.
func randomHex(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = "0123456789abcdef"[rng.IntN(16)]
	}
	return b
}

func intp(v int) *int                  { return &v }
func sizep(v config.Size) *config.Size { return &v }
func boolp(v bool) *bool               { return &v }

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func zlibbed(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w := zlib.NewWriter(&out)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestApplyDefaults(t *testing.T) {
	var p config.PayloadLimits
	p.ApplyDefaults()
	checks := []struct {
		desc string
		got  any
		want any
	}{
		{"max_url_length", *p.MaxURLLength, config.Size(8 << 10)},
		{"max_query_length", *p.MaxQueryLength, config.Size(4 << 10)},
		{"max_headers", *p.MaxHeaders, 100},
		{"json.max_depth", *p.JSON.MaxDepth, 64},
		{"json.max_object_keys", *p.JSON.MaxObjectKeys, 1000},
		{"json.max_array_length", *p.JSON.MaxArrayLength, 10000},
		{"json.max_string_length", *p.JSON.MaxStringLength, config.Size(64 << 10)},
		{"json.max_number_length", *p.JSON.MaxNumberLength, 100},
		{"xml.max_depth", *p.XML.MaxDepth, 64},
		{"xml.max_tokens", *p.XML.MaxTokens, 100000},
		{"xml.max_attributes", *p.XML.MaxAttributes, 100},
		{"multipart.max_parts", *p.Multipart.MaxParts, 100},
		{"multipart.max_part_headers", *p.Multipart.MaxPartHeaders, 16},
		{"multipart.max_part_size unset (route max_body)", p.Multipart.MaxPartSize == nil, true},
		{"form.max_fields", *p.Form.MaxFields, 1000},
		{"form.max_field_length", *p.Form.MaxFieldLength, config.Size(64 << 10)},
		{"decompression.disabled", *p.Decompression.Disabled, false},
		{"decompression.max_ratio", *p.Decompression.MaxRatio, 100},
		{"decompression.max_size unset (route max_body)", p.Decompression.MaxSize == nil, true},
	}
	for _, c := range checks {
		t.Run(c.desc, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("%v, want %v", c.got, c.want)
			}
		})
	}
	if err := p.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}

	// Explicit values are kept.
	q := config.PayloadLimits{MaxHeaders: intp(7)}
	q.ApplyDefaults()
	if *q.MaxHeaders != 7 {
		t.Errorf("ApplyDefaults replaced max_headers 7 with %d", *q.MaxHeaders)
	}
}

func TestMerge(t *testing.T) {
	global := config.PayloadLimits{MaxHeaders: intp(50), JSON: config.PayloadJSON{MaxDepth: intp(10)}}
	global.ApplyDefaults()
	override := &config.PayloadLimits{
		JSON:          config.PayloadJSON{MaxArrayLength: intp(5)},
		Decompression: config.PayloadDecompression{Disabled: boolp(true), MaxSize: sizep(1 << 10)},
	}
	got := global.Merge(override)
	if *got.JSON.MaxArrayLength != 5 || !*got.Decompression.Disabled || *got.Decompression.MaxSize != 1<<10 {
		t.Errorf("override not applied: %+v", got)
	}
	if *got.MaxHeaders != 50 || *got.JSON.MaxDepth != 10 || *got.JSON.MaxObjectKeys != config.DefaultPayloadJSONMaxObjectKeys {
		t.Errorf("unset override fields replaced global values: %+v", got)
	}
	if *global.JSON.MaxArrayLength != config.DefaultPayloadJSONMaxArray || *global.Decompression.Disabled {
		t.Error("Merge modified the global block")
	}
	if same := global.Merge(nil); *same.MaxHeaders != 50 {
		t.Error("Merge(nil) changed the limits")
	}
}

func TestNewRefusesInvalidLimits(t *testing.T) {
	tests := []struct {
		desc  string
		cfg   config.PayloadLimits
		field string
	}{
		{desc: "zero headers", cfg: config.PayloadLimits{MaxHeaders: intp(0)}, field: "payload_limits.max_headers"},
		{desc: "zero url length", cfg: config.PayloadLimits{MaxURLLength: sizep(0)}, field: "payload_limits.max_url_length"},
		{desc: "json depth over encoding/json's", cfg: config.PayloadLimits{JSON: config.PayloadJSON{MaxDepth: intp(10001)}}, field: "json.max_depth"},
		{desc: "negative keys", cfg: config.PayloadLimits{JSON: config.PayloadJSON{MaxObjectKeys: intp(-1)}}, field: "json.max_object_keys"},
		{desc: "xml depth zero", cfg: config.PayloadLimits{XML: config.PayloadXML{MaxDepth: intp(0)}}, field: "xml.max_depth"},
		{desc: "form fields over net/url's", cfg: config.PayloadLimits{Form: config.PayloadForm{MaxFields: intp(10001)}}, field: "form.max_fields"},
		{desc: "zero part size", cfg: config.PayloadLimits{Multipart: config.PayloadMultipart{MaxPartSize: sizep(0)}}, field: "multipart.max_part_size"},
		{desc: "ratio zero", cfg: config.PayloadLimits{Decompression: config.PayloadDecompression{MaxRatio: intp(0)}}, field: "decompression.max_ratio"},
		{desc: "ratio too large", cfg: config.PayloadLimits{Decompression: config.PayloadDecompression{MaxRatio: intp(100001)}}, field: "decompression.max_ratio"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			st, err := New(tt.cfg)
			if err == nil || st != nil {
				t.Fatalf("New accepted %s", tt.desc)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %s", err, tt.field)
			}
		})
	}
	// Every problem is named at once.
	_, err := New(config.PayloadLimits{MaxHeaders: intp(0), XML: config.PayloadXML{MaxTokens: intp(0)}})
	if err == nil || !strings.Contains(err.Error(), "max_headers") || !strings.Contains(err.Error(), "xml.max_tokens") {
		t.Errorf("error %v does not list both problems", err)
	}
}

func TestMediaType(t *testing.T) {
	tests := []struct {
		in   string
		kind mediaKind
		ok   bool
	}{
		{"", kindOther, true},
		{"application/json", kindJSON, true},
		{"Application/JSON; charset=utf-8", kindJSON, true},
		{" application/json ;charset=utf-8", kindJSON, true},
		{"text/json", kindJSON, true},
		{"application/problem+json", kindJSON, true},
		{"application/vnd.api+JSON", kindJSON, true},
		{"application/xml", kindXML, true},
		{"text/xml; charset=utf-8", kindXML, true},
		{"application/soap+xml", kindXML, true},
		{"image/svg+xml", kindXML, true},
		{"multipart/form-data; boundary=x", kindMultipart, true},
		{"multipart/mixed; boundary=x", kindMultipart, true},
		{"application/x-www-form-urlencoded", kindForm, true},
		{"text/plain", kindOther, true},
		{"application/octet-stream", kindOther, true},
		{"application/jsonx", kindOther, true},
		{"text/x-www-form-urlencoded", kindOther, true},
		{"application/json, text/xml", kindOther, false},
		{"json", kindOther, false},
		{"application/", kindOther, false},
		{"/json", kindOther, false},
		{";charset=utf-8", kindOther, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			kind, ok := mediaType(tt.in)
			if kind != tt.kind || ok != tt.ok {
				t.Errorf("mediaType(%q) = %v, %v; want %v, %v", tt.in, kind, ok, tt.kind, tt.ok)
			}
		})
	}
}

// request describes one request for the stage tests.
type request struct {
	method   string
	target   string
	header   http.Header
	body     []byte
	ctype    string
	encoding string
}

func (rq request) build() *http.Request {
	method := rq.method
	if method == "" {
		method = "POST"
		if rq.body == nil {
			method = "GET"
		}
	}
	target := rq.target
	if target == "" {
		target = "/items/1"
	}
	var body io.Reader
	if rq.body != nil {
		body = bytes.NewReader(rq.body)
	}
	r := httptest.NewRequest(method, target, body)
	for k, vs := range rq.header {
		r.Header[k] = vs
	}
	if rq.ctype != "" {
		r.Header.Set("Content-Type", rq.ctype)
	}
	if rq.encoding != "" {
		r.Header.Set("Content-Encoding", rq.encoding)
	}
	return r
}

// run passes rq through a stage built from cfg on a route with maxBody and
// returns the exchange and the stage's verdict.
func run(t *testing.T, cfg config.PayloadLimits, maxBody int64, rq request) (*gateway.Exchange, error) {
	t.Helper()
	st, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ex := &gateway.Exchange{Request: rq.build(), Route: &gateway.Route{Name: "items", MaxBody: maxBody}}
	return ex, st.ProcessRequest(context.Background(), ex)
}

func multipartBody(boundary string, parts ...string) []byte {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("--" + boundary + "\r\n" + p + "\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return []byte(b.String())
}

func TestStage(t *testing.T) {
	small := config.PayloadLimits{
		MaxURLLength:   sizep(64),
		MaxQueryLength: sizep(16),
		MaxHeaders:     intp(5),
		JSON:           config.PayloadJSON{MaxDepth: intp(3), MaxObjectKeys: intp(3), MaxArrayLength: intp(3), MaxStringLength: sizep(8), MaxNumberLength: intp(5)},
		XML:            config.PayloadXML{MaxDepth: intp(3), MaxTokens: intp(20), MaxAttributes: intp(2)},
		Multipart:      config.PayloadMultipart{MaxParts: intp(2), MaxPartSize: sizep(16), MaxPartHeaders: intp(2)},
		Form:           config.PayloadForm{MaxFields: intp(3), MaxFieldLength: sizep(8)},
		Decompression:  config.PayloadDecompression{MaxRatio: intp(10), MaxSize: sizep(4 << 10)},
	}
	const js, xmlt, form = "application/json", "application/xml", "application/x-www-form-urlencoded"
	mp := "multipart/form-data; boundary=XyZ"
	fd := func(name, content string) string {
		return `Content-Disposition: form-data; name="` + name + "\"\r\n\r\n" + content
	}
	highlyCompressible := bytes.Repeat([]byte(" "), 3000) // gzip: ~30 bytes, ratio ~100
	incompressible := randomHex(5000)                     // gzip: ~2600 bytes, ratio ~2
	tests := []struct {
		desc   string
		rq     request
		status int    // 0: accepted
		reason string // reason_id when refused
	}{
		// Request target and headers.
		{desc: "plain GET", rq: request{target: "/items/1?a=1"}},
		{desc: "URL at the limit", rq: request{target: "/" + strings.Repeat("a", 63)}},
		{desc: "URL over the limit", rq: request{target: "/" + strings.Repeat("a", 64)}, status: 414, reason: ReasonURLTooLong},
		{desc: "query at the limit", rq: request{target: "/i?" + strings.Repeat("q", 16)}},
		{desc: "query over the limit", rq: request{target: "/i?" + strings.Repeat("q", 17)}, status: 414, reason: ReasonQueryTooLong},
		{desc: "headers at the limit", rq: request{header: http.Header{"A": {"1"}, "B": {"1"}, "C": {"1", "2"}, "D": {"1"}}}},
		{desc: "repeated header lines count", rq: request{header: http.Header{"A": {"1", "2", "3"}, "B": {"1", "2", "3"}}}, status: 431, reason: ReasonTooManyHeaders},

		// Content type and coding.
		{desc: "two Content-Type fields", rq: request{body: []byte(`{}`), header: http.Header{"Content-Type": {js, xmlt}}}, status: 400, reason: ReasonInvalidContentType},
		{desc: "malformed Content-Type", rq: request{body: []byte(`{}`), ctype: "application/json, text/xml"}, status: 400, reason: ReasonInvalidContentType},
		{desc: "unknown type passes unchecked", rq: request{body: []byte(`[[[[[[[[`), ctype: "application/octet-stream"}},
		{desc: "no type passes unchecked", rq: request{body: []byte(`[[[[[[[[`)}},
		{desc: "brotli refused", rq: request{body: []byte("x"), ctype: js, encoding: "br"}, status: 415, reason: ReasonUnsupportedContentEncoding},
		{desc: "zstd refused", rq: request{body: []byte("x"), ctype: js, encoding: "zstd"}, status: 415, reason: ReasonUnsupportedContentEncoding},
		{desc: "codings in series refused", rq: request{body: gzipped(t, gzipped(t, []byte(`{}`))), ctype: js, encoding: "gzip, gzip"}, status: 415, reason: ReasonUnsupportedContentEncoding},
		{desc: "identity is no coding", rq: request{body: []byte(`{}`), ctype: js, encoding: "identity"}},
		{desc: "gzip decoded and checked", rq: request{body: gzipped(t, []byte(`{"a":[1,2]}`)), ctype: js, encoding: "gzip"}},
		{desc: "x-gzip decoded", rq: request{body: gzipped(t, []byte(`{"a":[1,2]}`)), ctype: js, encoding: "X-GZIP"}},
		{desc: "deflate (zlib) decoded", rq: request{body: zlibbed(t, []byte(`{"a":[1,2]}`)), ctype: js, encoding: "deflate"}},
		{desc: "decoded body over a limit", rq: request{body: gzipped(t, []byte(`{"a":[1,2,3,4]}`)), ctype: js, encoding: "gzip"}, status: 400, reason: ReasonJSONArrayTooLong},
		{desc: "corrupt gzip", rq: request{body: []byte("\x1f\x8b\x08\x00garbage"), ctype: js, encoding: "gzip"}, status: 400, reason: ReasonDecompressionFailed},
		{desc: "gzip labelled deflate", rq: request{body: gzipped(t, []byte(`{}`)), ctype: js, encoding: "deflate"}, status: 400, reason: ReasonDecompressionFailed},
		{desc: "truncated gzip", rq: request{body: gzipped(t, []byte(`{"a":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}`))[:20], ctype: js, encoding: "gzip"}, status: 400, reason: ReasonDecompressionFailed},
		{desc: "data after the zlib stream", rq: request{body: append(zlibbed(t, []byte(`{}`)), "junk"...), ctype: js, encoding: "deflate"}, status: 400, reason: ReasonDecompressionFailed},
		{desc: "data after the gzip stream", rq: request{body: append(gzipped(t, []byte(`{}`)), "junk"...), ctype: js, encoding: "gzip"}, status: 400, reason: ReasonDecompressionFailed},
		{desc: "ratio exceeded", rq: request{body: gzipped(t, highlyCompressible), ctype: "text/plain", encoding: "gzip"}, status: 413, reason: ReasonDecompressionRatioExceeded},
		{desc: "decoded size exceeded", rq: request{body: gzipped(t, incompressible), ctype: "text/plain", encoding: "gzip"}, status: 413, reason: ReasonDecompressedTooLarge},

		// JSON.
		{desc: "JSON within every limit", rq: request{body: []byte(`{"a":[1,{"b":"xy"}],"c":-1.5}`), ctype: js}},
		{desc: "+json type is JSON", rq: request{body: []byte(`[[[[1]]]]`), ctype: "application/merge-patch+json"}, status: 400, reason: ReasonJSONTooDeep},
		{desc: "invalid JSON", rq: request{body: []byte(`{"a":1,}`), ctype: js}, status: 400, reason: reasonInvalidJSON},
		{desc: "JSON too deep", rq: request{body: []byte(`[[[[1]]]]`), ctype: js}, status: 400, reason: ReasonJSONTooDeep},
		{desc: "JSON too many keys", rq: request{body: []byte(`{"a":1,"b":2,"c":3,"d":4}`), ctype: js}, status: 400, reason: ReasonJSONTooManyKeys},
		{desc: "JSON array too long", rq: request{body: []byte(`[1,2,3,4]`), ctype: js}, status: 400, reason: ReasonJSONArrayTooLong},
		{desc: "JSON string too long", rq: request{body: []byte(`{"a":"123456789"}`), ctype: js}, status: 400, reason: ReasonJSONStringTooLong},
		{desc: "JSON number too long", rq: request{body: []byte(`[123456]`), ctype: js}, status: 400, reason: ReasonJSONNumberTooLong},
		{desc: "empty JSON body passes", rq: request{method: "POST", body: []byte{}, ctype: js}},

		// XML.
		{desc: "XML within every limit", rq: request{body: []byte(`<?xml version="1.0"?><a x="1"><b>t</b></a>`), ctype: xmlt}},
		{desc: "invalid XML", rq: request{body: []byte(`<a><b></a>`), ctype: xmlt}, status: 400, reason: ReasonInvalidXML},
		{desc: "XML DOCTYPE", rq: request{body: []byte(`<!DOCTYPE a><a/>`), ctype: "text/xml"}, status: 400, reason: ReasonXMLDTDForbidden},
		{desc: "XML too deep", rq: request{body: []byte(`<a><b><c><d/></c></b></a>`), ctype: xmlt}, status: 400, reason: ReasonXMLTooDeep},
		{desc: "XML too many tokens", rq: request{body: []byte(`<a>` + strings.Repeat(`<b/>`, 10) + `</a>`), ctype: xmlt}, status: 400, reason: ReasonXMLTooManyTokens},
		{desc: "XML too many attributes", rq: request{body: []byte(`<a x="1" y="2" z="3"/>`), ctype: "application/atom+xml"}, status: 400, reason: ReasonXMLTooManyAttributes},
		{desc: "XInclude", rq: request{body: []byte(`<a xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="file:///etc/passwd" parse="text"/></a>`), ctype: xmlt}, status: 400, reason: ReasonXMLXIncludeForbidden},

		// Multipart.
		{desc: "multipart within every limit", rq: request{body: multipartBody("XyZ", fd("a", "hello"), fd("b", "world")), ctype: mp}},
		{desc: "multipart without boundary", rq: request{body: multipartBody("XyZ", fd("a", "x")), ctype: "multipart/form-data"}, status: 400, reason: ReasonInvalidContentType},
		{desc: "multipart boundary too long", rq: request{body: []byte("x"), ctype: "multipart/form-data; boundary=" + strings.Repeat("b", 71)}, status: 400, reason: ReasonInvalidContentType},
		{desc: "multipart without closing delimiter", rq: request{body: []byte("--XyZ\r\n" + fd("a", "x") + "\r\n"), ctype: mp}, status: 400, reason: ReasonInvalidMultipart},
		{desc: "multipart wrong boundary", rq: request{body: multipartBody("Other", fd("a", "x")), ctype: mp}, status: 400, reason: ReasonInvalidMultipart},
		{desc: "multipart too many parts", rq: request{body: multipartBody("XyZ", fd("a", "1"), fd("b", "2"), fd("c", "3")), ctype: mp}, status: 400, reason: ReasonMultipartTooManyParts},
		{desc: "multipart part too large", rq: request{body: multipartBody("XyZ", fd("a", strings.Repeat("x", 17))), ctype: mp}, status: 413, reason: ReasonMultipartPartTooLarge},
		{desc: "multipart part at the size limit", rq: request{body: multipartBody("XyZ", fd("a", strings.Repeat("x", 16))), ctype: mp}},
		{desc: "multipart part with too many headers", rq: request{body: multipartBody("XyZ", "A: 1\r\nB: 2\r\n"+fd("a", "x")), ctype: mp}, status: 400, reason: ReasonMultipartPartTooManyHeaders},
		{desc: "JSON part is checked as JSON", rq: request{body: multipartBody("XyZ", "Content-Type: application/json\r\n\r\n[[[[1]]]]"), ctype: mp}, status: 400, reason: ReasonJSONTooDeep},
		{desc: "XML part is checked as XML", rq: request{body: multipartBody("XyZ", "Content-Type: text/xml\r\n\r\n<!DOCTYPE a><a/>"), ctype: mp}, status: 400, reason: ReasonXMLDTDForbidden},
		{desc: "part with two Content-Type fields", rq: request{body: multipartBody("XyZ", "Content-Type: text/plain\r\nContent-Type: application/json\r\n\r\n[[[[1]]]]"), ctype: mp}, status: 400, reason: ReasonInvalidContentType},
		{desc: "part with a malformed Content-Type", rq: request{body: multipartBody("XyZ", "Content-Type: json\r\n\r\n{}"), ctype: mp}, status: 400, reason: ReasonInvalidContentType},

		// Forms.
		{desc: "form within every limit", rq: request{body: []byte(`a=1&b=%20&c`), ctype: form}},
		{desc: "form too many fields", rq: request{body: []byte(`a=1&b=2&c=3&d=4`), ctype: form}, status: 400, reason: ReasonFormTooManyFields},
		{desc: "form field too long", rq: request{body: []byte(`a=12345678`), ctype: form}, status: 400, reason: ReasonFormFieldTooLong},
		{desc: "form semicolon separator", rq: request{body: []byte(`a=1;b=2`), ctype: form}, status: 400, reason: ReasonInvalidForm},
		{desc: "form bad escape", rq: request{body: []byte(`a=%zz`), ctype: form}, status: 400, reason: ReasonInvalidForm},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			_, err := run(t, small, 1<<20, tt.rq)
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var rej *gateway.Reject
			if !errors.As(err, &rej) {
				t.Fatalf("got %v, want a Reject %d %s", err, tt.status, tt.reason)
			}
			if rej.Status != tt.status || rej.ReasonID != tt.reason {
				t.Errorf("got %d %s (%s), want %d %s", rej.Status, rej.ReasonID, rej.Detail, tt.status, tt.reason)
			}
			if rej.Detail == "" {
				t.Error("no detail for the logs")
			}
		})
	}
}

func TestUnsupportedEncodingNamesAccepted(t *testing.T) {
	for _, tt := range []struct {
		desc    string
		enabled bool
		want    string
	}{
		{"decompression enabled", true, "gzip, deflate"},
		{"decompression disabled", false, "identity"},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			cfg := config.PayloadLimits{Decompression: config.PayloadDecompression{Disabled: boolp(!tt.enabled)}}
			_, err := run(t, cfg, 1<<20, request{body: []byte("x"), encoding: "br"})
			var rej *gateway.Reject
			if !errors.As(err, &rej) || rej.Status != 415 {
				t.Fatalf("got %v, want 415", err)
			}
			if got := rej.Header.Get("Accept-Encoding"); got != tt.want {
				t.Errorf("Accept-Encoding %q, want %q", got, tt.want)
			}
		})
	}
	// With decompression disabled even gzip is refused: a compressed body
	// would reach the upstream unchecked.
	cfg := config.PayloadLimits{Decompression: config.PayloadDecompression{Disabled: boolp(true)}}
	_, err := run(t, cfg, 1<<20, request{body: gzipped(t, []byte(`{}`)), ctype: "application/json", encoding: "gzip"})
	var rej *gateway.Reject
	if !errors.As(err, &rej) || rej.ReasonID != ReasonUnsupportedContentEncoding {
		t.Errorf("gzip with decompression disabled: %v", err)
	}
}

// TestDecodedBodyReplacesTheOriginal checks what later stages and the
// upstream see after decoding: the decoded bytes, a matching
// Content-Length, no Content-Encoding and no digest of the encoded bytes.
func TestDecodedBodyReplacesTheOriginal(t *testing.T) {
	doc := []byte(`{"name":"moat","tags":["a","b"]}`)
	rq := request{body: gzipped(t, doc), ctype: "application/json", encoding: "gzip",
		header: http.Header{"Content-Digest": {"sha-256=:abc=:"}, "Repr-Digest": {"sha-256=:abc=:"}}}
	ex, err := run(t, config.PayloadLimits{}, 1<<20, rq)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ex.ReadBody()
	if err != nil || !bytes.Equal(b, doc) {
		t.Fatalf("ReadBody = %q, %v; want the decoded document", b, err)
	}
	v, err := ex.JSONBody()
	if err != nil || v.(map[string]any)["name"] != "moat" {
		t.Errorf("JSONBody = %v, %v", v, err)
	}
	r := ex.Request
	if r.Header.Get("Content-Encoding") != "" || r.Header.Get("Content-Digest") != "" || r.Header.Get("Repr-Digest") != "" {
		t.Errorf("encoding headers left: %v", r.Header)
	}
	if r.ContentLength != int64(len(doc)) {
		t.Errorf("ContentLength %d, want %d", r.ContentLength, len(doc))
	}
	if got, _ := io.ReadAll(r.Body); !bytes.Equal(got, doc) {
		t.Errorf("upstream body %q", got)
	}
	if ex.Findings[FindingContentEncoding] != "gzip" {
		t.Errorf("findings %v", ex.Findings)
	}
}

// TestDefaultsFollowRouteMaxBody checks the sizes left unset: decoded bodies
// and multipart parts are bounded by the route's max_body.
func TestDefaultsFollowRouteMaxBody(t *testing.T) {
	doc := bytes.Repeat([]byte("abcdefghij"), 200) // 2000 bytes, gzip ratio ~50
	_, err := run(t, config.PayloadLimits{}, 1000, request{body: gzipped(t, doc), ctype: "text/plain", encoding: "gzip"})
	var rej *gateway.Reject
	if !errors.As(err, &rej) || rej.ReasonID != ReasonDecompressedTooLarge {
		t.Errorf("decoded 2000 bytes on a 1000-byte route: %v", err)
	}
	if _, err := run(t, config.PayloadLimits{}, 2000, request{body: gzipped(t, doc), ctype: "text/plain", encoding: "gzip"}); err != nil {
		t.Errorf("decoded 2000 bytes on a 2000-byte route: %v", err)
	}

	part := `Content-Disposition: form-data; name="f"` + "\r\n\r\n" + strings.Repeat("x", 600)
	body := multipartBody("b", part)
	if _, err := run(t, config.PayloadLimits{}, 600, request{body: body, ctype: "multipart/form-data; boundary=b"}); err != nil {
		t.Errorf("600-byte part on a 600-byte route: %v", err)
	}
	_, err = run(t, config.PayloadLimits{}, 599, request{body: body, ctype: "multipart/form-data; boundary=b"})
	if !errors.As(err, &rej) || rej.ReasonID != ReasonMultipartPartTooLarge {
		t.Errorf("600-byte part on a 599-byte route: %v", err)
	}
}

// stubResolver resolves every request to one address.
type stubResolver struct{}

func (stubResolver) Resolve(string, http.Header) (netip.Addr, netip.Addr, bool) {
	a := netip.MustParseAddr("192.0.2.1")
	return a, a, false
}

// readBodyStage buffers the body, as any body stage does; the baseline of
// the gateway benchmark.
type readBodyStage struct{}

func (readBodyStage) ProcessRequest(_ context.Context, ex *gateway.Exchange) error {
	_, err := ex.ReadBody()
	return err
}

// discardUpstream answers 200 after reading the body.
type discardUpstream struct{}

func (discardUpstream) Forward(w http.ResponseWriter, r *http.Request, _ *gateway.Exchange) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.WriteHeader(http.StatusOK)
}

// recordingUpstream records what the upstream receives.
type recordingUpstream struct {
	mu     sync.Mutex
	calls  int
	body   []byte
	header http.Header
}

func (u *recordingUpstream) Forward(w http.ResponseWriter, r *http.Request, _ *gateway.Exchange) {
	b, err := io.ReadAll(r.Body)
	u.mu.Lock()
	u.calls++
	u.body, u.header = b, r.Header.Clone()
	u.mu.Unlock()
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// newGateway serves POST and GET /items/{id} through stages and up, with
// the route's max_body set to maxBody.
func newGateway(tb testing.TB, maxBody int64, stages []gateway.RequestStage, up gateway.Handler) *gateway.Gateway {
	tb.Helper()
	rb := router.NewBuilder[*gateway.Route]()
	route := &gateway.Route{Name: "items", Template: "/items/{id}", MaxBody: maxBody, Request: stages, Upstream: up}
	if err := rb.Add("", []string{"GET", "POST"}, "/items/{id}", route); err != nil {
		tb.Fatal(err)
	}
	return gateway.New(gateway.Options{Router: rb.Build(), ClientIP: stubResolver{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// problem decodes a problem+json response.
func problem(t *testing.T, w *httptest.ResponseRecorder) (status int, reason string) {
	t.Helper()
	var p struct {
		Status   int    `json:"status"`
		ReasonID string `json:"reason_id"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("response is not a problem document: %v: %s", err, w.Body)
	}
	if p.Status != w.Code {
		t.Errorf("problem status %d, response %d", p.Status, w.Code)
	}
	return w.Code, p.ReasonID
}

// TestThroughGateway runs the stage in a real gateway: accepted requests
// reach the upstream decoded, refused ones get a problem document with the
// reason and never reach it.
func TestThroughGateway(t *testing.T) {
	st, err := New(config.PayloadLimits{JSON: config.PayloadJSON{MaxDepth: intp(4)}})
	if err != nil {
		t.Fatal(err)
	}
	up := &recordingUpstream{}
	g := newGateway(t, 64<<10, []gateway.RequestStage{st}, up)

	doc := []byte(`{"a":[[1]]}`)
	r := httptest.NewRequest("POST", "/items/1", bytes.NewReader(gzipped(t, doc)))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Content-Encoding", "gzip")
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if !bytes.Equal(up.body, doc) || up.header.Get("Content-Encoding") != "" || up.header.Get("Content-Length") != "11" {
		t.Errorf("upstream got %q with headers %v", up.body, up.header)
	}

	for _, tt := range []struct {
		desc   string
		req    func() *http.Request
		status int
		reason string
	}{
		{"too deep", func() *http.Request {
			r := httptest.NewRequest("POST", "/items/1", strings.NewReader(`[[[[[1]]]]]`))
			r.Header.Set("Content-Type", "application/json")
			return r
		}, 400, ReasonJSONTooDeep},
		{"over the route's max_body before any check", func() *http.Request {
			r := httptest.NewRequest("POST", "/items/1", bytes.NewReader(make([]byte, 65<<10)))
			r.Header.Set("Content-Type", "application/json")
			r.ContentLength = -1 // streamed: the cap is hit while reading
			return r
		}, 413, gateway.ReasonBodyTooLarge},
		{"query too long", func() *http.Request {
			return httptest.NewRequest("GET", "/items/1?q="+strings.Repeat("a", 5000), nil)
		}, 414, ReasonQueryTooLong},
		{"brotli", func() *http.Request {
			r := httptest.NewRequest("POST", "/items/1", strings.NewReader("x"))
			r.Header.Set("Content-Encoding", "br")
			return r
		}, 415, ReasonUnsupportedContentEncoding},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			calls := up.calls
			w := httptest.NewRecorder()
			g.ServeHTTP(w, tt.req())
			status, reason := problem(t, w)
			if status != tt.status || reason != tt.reason {
				t.Errorf("got %d %s, want %d %s", status, reason, tt.status, tt.reason)
			}
			if up.calls != calls {
				t.Error("a refused request reached the upstream")
			}
			if status == 415 && w.Header().Get("Accept-Encoding") != "gzip, deflate" {
				t.Errorf("415 without Accept-Encoding: %v", w.Header())
			}
		})
	}
}

func asReject(err error, rej **gateway.Reject) bool { return errors.As(err, rej) }
