package openapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
)

// maxFuzzDocument bounds the documents FuzzLoad tries, so that one input
// cannot take long (the meta-schema check is linear in the document).
const maxFuzzDocument = 64 << 10

func FuzzLoad(f *testing.F) {
	for _, file := range []string{api31, api30, bookstore, "testdata/bench.yaml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(doc31("  /a/{x}.{y}:\n    get:\n      parameters: [{name: x, in: path, required: true}, {name: y, in: path, required: true}]\n" + okResponse)))
	f.Add([]byte("openapi: 3.0.0\ninfo: {title: t, version: \"1\"}\npaths: {}\nx-a: &a {b: *a}\n"))
	f.Add([]byte(doc31("  /a:\n    get:\n      deprecated: true\n      x-moat-deprecation: {deprecated_at: 2026-06-01T00:00:00Z, sunset: 2027-01-01T00:00:00Z, link: 'https://a.test/x'}\n" + okResponse)))
	f.Add([]byte(`{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{"/":{"$ref":"#/paths/~1"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxFuzzDocument {
			t.Skip()
		}
		var d *Document
		var err error
		within(t, 20*time.Second, func() { d, err = LoadBytes("fuzz.yaml", b) })
		if err != nil {
			if d != nil {
				t.Fatal("a document and an error")
			}
			return
		}
		// Whatever loaded must route and validate without panicking.
		for _, op := range d.Operations() {
			if _, err := d.Validator(op, Options{Strict: true}); err != nil {
				t.Fatal(err)
			}
			_ = op.ReadOnlyProperties()
		}
		s, err := d.Dispatcher(Options{})
		if err != nil {
			t.Fatal(err)
		}
		ex := fuzzExchange("POST", "/a/b.c", "x=1", "application/json", []byte(`{"a":1}`))
		checkStageError(t, s.ProcessRequest(context.Background(), ex))
	})
}

func FuzzValidate(f *testing.F) {
	f.Add(uint8(0), "/books", "limit=5", "application/json", []byte(`{"title":"a","author":"b"}`))
	f.Add(uint8(1), "/books/12", "", "", []byte(nil))
	f.Add(uint8(0), "/books", "limit=1;limit=2&x=%zz", "application/json; charset=utf-8", []byte(`{"title":"a","author":"b","year":1e400}`))
	f.Add(uint8(2), "/v1/items/5", "filter[color]=red&tags=a&tags=b&ids=1,2&doc=%7B%7D&space=1+2", "", []byte(nil))
	f.Add(uint8(3), "/v1/items", "", "application/merge-patch+json", []byte(`{"name":"a","kind":"book","owner_id":"u","lines":[{"sku":"a","children":[]}]}`))
	f.Add(uint8(2), "/v1/files/a.b.c", "", "", []byte(nil))
	f.Add(uint8(2), "/v1/matrix/;id=1;id=2", "", "", []byte(nil))
	f.Add(uint8(2), "/v1/colors/R=1,G", "", "", []byte(nil))
	bs, v1 := testDoc(f, bookstore), testDoc(f, api31)
	stages := map[bool][2]*Dispatcher{}
	for _, strict := range []bool{false, true} {
		a, err := bs.Dispatcher(Options{Strict: strict})
		if err != nil {
			f.Fatal(err)
		}
		b, err := v1.Dispatcher(Options{Strict: strict, Unknown: UnknownShadow, Shadow: NewShadowReport(100, nil)})
		if err != nil {
			f.Fatal(err)
		}
		stages[strict] = [2]*Dispatcher{a, b}
	}
	methods := []string{"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"}
	f.Fuzz(func(t *testing.T, sel uint8, path, rawQuery, contentType string, body []byte) {
		if len(body) > 1<<16 || len(rawQuery) > 1<<12 || len(path) > 1<<10 {
			t.Skip()
		}
		s := stages[sel&4 != 0][sel&1]
		ex := fuzzExchange(methods[int(sel>>3)%len(methods)], path, rawQuery, contentType, body)
		ex.Request.Header.Set("X-Tenant", tenant)
		ex.Request.Header.Set("Cookie", "theme=dark")
		var err error
		within(t, 10*time.Second, func() { err = s.ProcessRequest(context.Background(), ex) })
		checkStageError(t, err)
	})
}

// within runs f and fails the test if it has not returned after d: a
// fuzz input must never hang the loader or a stage. (d is far above the
// milliseconds any input takes, so that a loaded machine does not flake.)
func within(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("still running after %v", d)
	}
}

// fuzzExchange builds an exchange without parsing a request target, so
// that any path and query reach the stage.
func fuzzExchange(method, path, rawQuery, contentType string, body []byte) *gateway.Exchange {
	r := &http.Request{Method: method, URL: &url.URL{Path: path, RawQuery: rawQuery}, Header: http.Header{}, Body: http.NoBody}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	return &gateway.Exchange{Request: r}
}

// checkStageError fails unless err is nil or a client error reject.
func checkStageError(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var rej *gateway.Reject
	if !errors.As(err, &rej) {
		t.Fatalf("stage returned %v, not a reject", err)
	}
	switch rej.Status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusUnsupportedMediaType:
	default:
		t.Fatalf("status %d (%s)", rej.Status, rej.Error())
	}
}
