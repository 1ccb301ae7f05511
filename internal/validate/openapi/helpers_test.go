package openapi

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/moat-gateway/moat/internal/gateway"
)

var (
	docsMu sync.Mutex
	docs   = map[string]*Document{}
)

// testDoc loads a document of testdata once per test binary.
func testDoc(t testing.TB, file string) *Document {
	t.Helper()
	docsMu.Lock()
	defer docsMu.Unlock()
	if d, ok := docs[file]; ok {
		return d
	}
	d, err := Load(file)
	if err != nil {
		t.Fatalf("loading %s: %v", file, err)
	}
	docs[file] = d
	return d
}

const (
	api31     = "testdata/api31.yaml"
	api30     = "testdata/api30.yaml"
	bookstore = "../../../examples/bookstore.openapi.yaml"
)

// request builds an exchange. header holds name, value pairs.
func request(method, target, body string, header ...string) *gateway.Exchange {
	var r = httptest.NewRequest(method, target, nil)
	if body != "" {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return &gateway.Exchange{Request: r}
}

// validate runs the Validator of the operation the request matches, with
// the route parameters the router would give, and checks the operation.
func validate(t *testing.T, d *Document, wantOp string, opts Options, ex *gateway.Exchange) error {
	t.Helper()
	op, params, ok := d.Match(ex.Request.Method, ex.Request.URL.Path, nil)
	if !ok {
		t.Fatalf("%s %s matches no operation", ex.Request.Method, ex.Request.URL.Path)
	}
	if op.ID != wantOp {
		t.Fatalf("%s %s matched %s, want %s", ex.Request.Method, ex.Request.URL.Path, op, wantOp)
	}
	ex.Params = params
	v, err := d.Validator(op, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v.ProcessRequest(context.Background(), ex)
}

// expectReject checks err against the wanted status and reason (none
// when reason is "") and that the recorded violations include want.
func expectReject(t *testing.T, ex *gateway.Exchange, err error, status int, reason, want string) {
	t.Helper()
	if reason == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var rej *gateway.Reject
	if !errors.As(err, &rej) {
		t.Fatalf("got %v, want a %d %s reject", err, status, reason)
	}
	if rej.Status != status || rej.ReasonID != reason {
		t.Fatalf("got %d %s (%s), want %d %s", rej.Status, rej.ReasonID, rej.Detail, status, reason)
	}
	if want != "" && !slices.Contains(violations(ex), want) {
		t.Fatalf("violations %q do not include %q", violations(ex), want)
	}
}

func violations(ex *gateway.Exchange) []string {
	v, _ := ex.Findings[NoteViolations].([]string)
	return v
}

func mustJSON(t *testing.T, s string) any {
	t.Helper()
	v, err := decodeJSON(s)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return v
}
