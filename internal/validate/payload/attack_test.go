package payload

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/router"
)

// allocated returns the bytes allocated, by every goroutine, while f ran.
// TotalAlloc only grows, so it bounds the peak heap f could have caused.
func allocated(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// attackGateway serves /items/{id} through a payload stage with default
// limits, logging (access log included) into logs.
func attackGateway(t *testing.T, maxBody int64, cfg config.PayloadLimits, up gateway.Handler, logs io.Writer) *gateway.Gateway {
	t.Helper()
	st, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rb := router.NewBuilder[*gateway.Route]()
	route := &gateway.Route{Name: "items", Template: "/items/{id}", MaxBody: maxBody, Request: []gateway.RequestStage{st}, Upstream: up}
	if err := rb.Add("", []string{"POST"}, "/items/{id}", route); err != nil {
		t.Fatal(err)
	}
	return gateway.New(gateway.Options{Router: rb.Build(), ClientIP: stubResolver{}, AccessLog: true,
		Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
}

// bombRequest streams a generated compressed body through a pipe, as a
// chunked upload: the bomb is never held in the test.
func bombRequest(t *testing.T, gen func(io.Writer, uint64) error, size uint64, encoding string) *http.Request {
	t.Helper()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(gen(pw, size)) }()
	r := httptest.NewRequest("POST", "/items/1", pr)
	r.ContentLength = -1
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Content-Encoding", encoding)
	return r
}

// TestCompressionBombs sends 1 GiB bombs of about 1 MB to a route with a
// 2 MiB max_body: each is refused after decoding at most its bound, with
// far less memory allocated than the bomb expands to.
func TestCompressionBombs(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		desc     string
		gen      func(io.Writer, uint64) error
		encoding string
		cfg      config.PayloadLimits
		reason   string
		maxAlloc uint64
	}{
		{desc: "gzip, decoded size bound (route max_body)", gen: gzipZeros, encoding: "gzip",
			reason: ReasonDecompressedTooLarge, maxAlloc: 32 << 20},
		{desc: "deflate, decoded size bound (route max_body)", gen: zlibZeros, encoding: "deflate",
			reason: ReasonDecompressedTooLarge, maxAlloc: 32 << 20},
		{desc: "gzip, ratio bound", gen: gzipZeros, encoding: "gzip",
			cfg:    config.PayloadLimits{Decompression: config.PayloadDecompression{MaxRatio: intp(10), MaxSize: sizep(gib)}},
			reason: ReasonDecompressionRatioExceeded, maxAlloc: 64 << 20},
		{desc: "gzip members in series", gen: gzipMembers, encoding: "x-gzip",
			reason: ReasonDecompressedTooLarge, maxAlloc: 32 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			up := &recordingUpstream{}
			g := attackGateway(t, 2<<20, tt.cfg, up, io.Discard)
			w := httptest.NewRecorder()
			start := time.Now()
			alloc := allocated(func() { g.ServeHTTP(w, bombRequest(t, tt.gen, gib, tt.encoding)) })
			status, reason := problem(t, w)
			if status != http.StatusRequestEntityTooLarge || reason != tt.reason {
				t.Fatalf("got %d %s, want 413 %s", status, reason, tt.reason)
			}
			if up.calls != 0 {
				t.Error("the bomb reached the upstream")
			}
			if alloc > tt.maxAlloc {
				t.Errorf("allocated %d MiB to refuse a 1 GiB bomb, want < %d MiB", alloc>>20, tt.maxAlloc>>20)
			}
			t.Logf("refused in %v with %.1f MiB allocated", time.Since(start).Round(time.Millisecond), float64(alloc)/(1<<20))
		})
	}
}

// gzipMembers writes n zeros as gzip members of 1 MiB each, which gzip
// readers decode as one stream.
func gzipMembers(w io.Writer, n uint64) error {
	var member bytes.Buffer
	if err := gzipZeros(&member, 1<<20); err != nil {
		return err
	}
	for ; n >= 1<<20; n -= 1 << 20 {
		if _, err := w.Write(member.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// TestBillionLaughs sends the classic entity-expansion document and its
// quadratic variant: the DTD is refused before any entity could be
// expanded, by the gateway or by the upstream.
func TestBillionLaughs(t *testing.T) {
	var laughs strings.Builder
	laughs.WriteString(`<?xml version="1.0"?>` + "\n" + `<!DOCTYPE lolz [` + "\n" + ` <!ENTITY lol "lol">` + "\n")
	prev := "lol"
	for i := 1; i <= 9; i++ {
		name := "lol" + string(rune('0'+i))
		laughs.WriteString(` <!ENTITY ` + name + ` "` + strings.Repeat("&"+prev+";", 10) + `">` + "\n")
		prev = name
	}
	laughs.WriteString(`]>` + "\n" + `<lolz>&lol9;</lolz>`)
	quadratic := `<?xml version="1.0"?><!DOCTYPE kaboom [<!ENTITY a "` + strings.Repeat("x", 50000) + `">]><kaboom>` + strings.Repeat("&a;", 20000) + `</kaboom>`

	for _, tt := range []struct{ desc, doc string }{
		{"billion laughs", laughs.String()},
		{"quadratic blowup", quadratic},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			up := &recordingUpstream{}
			g := attackGateway(t, 1<<20, config.PayloadLimits{}, up, io.Discard)
			r := httptest.NewRequest("POST", "/items/1", strings.NewReader(tt.doc))
			r.Header.Set("Content-Type", "application/xml")
			w := httptest.NewRecorder()
			alloc := allocated(func() { g.ServeHTTP(w, r) })
			if status, reason := problem(t, w); status != 400 || reason != ReasonXMLDTDForbidden {
				t.Fatalf("got %d %s, want 400 %s", status, reason, ReasonXMLDTDForbidden)
			}
			if up.calls != 0 {
				t.Error("the document reached the upstream")
			}
			if limit := uint64(4*len(tt.doc)) + 1<<20; alloc > limit {
				t.Errorf("allocated %d bytes for a %d-byte document", alloc, len(tt.doc))
			}
		})
	}
}

// TestXXE sends documents that try to read a local file through an
// external entity, an external DTD, a parameter entity or XInclude: each is
// refused, and the file's content appears nowhere: not in the response, not
// in the logs, not upstream.
func TestXXE(t *testing.T) {
	canary := "moat-xxe-canary-7f3a9c"
	secret := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(secret, []byte(canary), 0o600); err != nil {
		t.Fatal(err)
	}
	uri := "file://" + filepath.ToSlash(secret)
	tests := []struct {
		desc   string
		ctype  string
		doc    string
		reason string
	}{
		{"external general entity", "application/xml",
			`<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "` + uri + `">]><foo>&xxe;</foo>`, ReasonXMLDTDForbidden},
		{"external DTD", "text/xml",
			`<?xml version="1.0"?><!DOCTYPE foo SYSTEM "` + uri + `"><foo/>`, ReasonXMLDTDForbidden},
		{"parameter entity", "application/soap+xml",
			`<!DOCTYPE foo [<!ENTITY % p SYSTEM "` + uri + `"> %p;]><foo/>`, ReasonXMLDTDForbidden},
		{"public identifier", "application/xml",
			`<!DOCTYPE foo PUBLIC "-//X//Y" "` + uri + `"><foo/>`, ReasonXMLDTDForbidden},
		{"lowercase doctype after a comment", "application/xml",
			`<!-- hello --><!doctype foo [<!ENTITY xxe SYSTEM "` + uri + `">]><foo>&xxe;</foo>`, ReasonXMLDTDForbidden},
		{"entity declaration inside the root", "application/xml",
			`<foo><!ENTITY xxe SYSTEM "` + uri + `"></foo>`, ReasonXMLDTDForbidden},
		{"XInclude", "application/xml",
			`<foo xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include parse="text" href="` + uri + `"/></foo>`, ReasonXMLXIncludeForbidden},
		{"XInclude as the default namespace", "application/xml",
			`<foo><include xmlns="http://www.w3.org/2003/XInclude" href="` + uri + `"/></foo>`, ReasonXMLXIncludeForbidden},
		{"in a multipart part", "multipart/form-data; boundary=B",
			string(multipartBody("B", "Content-Type: application/xml\r\n\r\n<!DOCTYPE foo [<!ENTITY xxe SYSTEM \""+uri+"\">]><foo>&xxe;</foo>")), ReasonXMLDTDForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			var logs bytes.Buffer
			up := &recordingUpstream{}
			g := attackGateway(t, 1<<20, config.PayloadLimits{}, up, &logs)
			r := httptest.NewRequest("POST", "/items/1", strings.NewReader(tt.doc))
			r.Header.Set("Content-Type", tt.ctype)
			w := httptest.NewRecorder()
			g.ServeHTTP(w, r)
			if status, reason := problem(t, w); status != 400 || reason != tt.reason {
				t.Errorf("got %d %s, want 400 %s", status, reason, tt.reason)
			}
			if up.calls != 0 {
				t.Error("the document reached the upstream")
			}
			if strings.Contains(w.Body.String(), canary) || strings.Contains(logs.String(), canary) {
				t.Error("the file's content leaked")
			}
			if !strings.Contains(logs.String(), tt.reason) {
				t.Errorf("the access log does not record %s: %s", tt.reason, logs.String())
			}
		})
	}
}

// TestDeepJSON sends 100,000 levels of nesting: refused at level 65 after
// reading the body once, with no per-level cost.
func TestDeepJSON(t *testing.T) {
	const levels = 100_000
	for _, tt := range []struct{ desc, open, close string }{
		{"arrays", "[", "]"},
		{"objects", `{"a":`, "}"},
		{"unclosed", "[", ""},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			doc := strings.Repeat(tt.open, levels) + "1" + strings.Repeat(tt.close, levels)
			up := &recordingUpstream{}
			g := attackGateway(t, 1<<20, config.PayloadLimits{}, up, io.Discard)
			r := httptest.NewRequest("POST", "/items/1", strings.NewReader(doc))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			alloc := allocated(func() { g.ServeHTTP(w, r) })
			if status, reason := problem(t, w); status != 400 || reason != ReasonJSONTooDeep {
				t.Fatalf("got %d %s, want 400 %s", status, reason, ReasonJSONTooDeep)
			}
			if up.calls != 0 {
				t.Error("the document reached the upstream")
			}
			if limit := uint64(3*len(doc)) + 1<<20; alloc > limit {
				t.Errorf("allocated %d bytes for a %d-byte document", alloc, len(doc))
			}
		})
	}
}

// TestWideJSON sends a megabyte-wide array and object: refused at the first
// element or key over the limit.
func TestWideJSON(t *testing.T) {
	for _, tt := range []struct {
		desc, doc, reason string
	}{
		{"array", "[" + strings.Repeat("0,", 500_000) + "0]", ReasonJSONArrayTooLong},
		{"object", "{" + strings.Repeat(`"k":0,`, 150_000) + `"k":0}`, ReasonJSONTooManyKeys},
		{"string", `"` + strings.Repeat("a", 900_000) + `"`, ReasonJSONStringTooLong},
		{"number", strings.Repeat("9", 900_000), ReasonJSONNumberTooLong},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			_, err := run(t, config.PayloadLimits{}, 1<<20, request{body: []byte(tt.doc), ctype: "application/json"})
			var rej *gateway.Reject
			if !asReject(err, &rej) || rej.ReasonID != tt.reason {
				t.Errorf("got %v, want %s", err, tt.reason)
			}
		})
	}
}
