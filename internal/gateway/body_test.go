package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadBodyShared checks that stages share one buffered body and that the
// upstream receives exactly the bytes the stages saw (or the ones SetBody put).
func TestReadBodyShared(t *testing.T) {
	tests := []struct {
		desc     string
		body     string
		chunked  bool
		stage    func(ex *Exchange) error
		status   int
		reason   string
		upstream string
	}{
		{desc: "read twice, forwarded once", body: `{"a":1}`, status: 200, upstream: `{"a":1}`, stage: func(ex *Exchange) error {
			a, err := ex.ReadBody()
			if err != nil {
				return err
			}
			b, _ := ex.ReadBody()
			if string(a) != `{"a":1}` || string(b) != string(a) {
				return errors.New("second read differs")
			}
			v, err := ex.JSONBody()
			if err != nil {
				return err
			}
			if m, ok := v.(map[string]any); !ok || m["a"] != json.Number("1") {
				return errors.New("json not parsed with numbers")
			}
			return nil
		}},
		{desc: "chunked body gets a length", body: "1234", chunked: true, status: 200, upstream: "1234", stage: func(ex *Exchange) error {
			_, err := ex.ReadBody()
			return err
		}},
		{desc: "set body replaces it", body: "zzz", status: 200, upstream: "plain", stage: func(ex *Exchange) error {
			if _, err := ex.ReadBody(); err != nil {
				return err
			}
			ex.SetBody([]byte("plain"))
			return nil
		}},
		{desc: "over the cap while streaming", body: "123456789", chunked: true, status: 413, reason: ReasonBodyTooLarge, stage: func(ex *Exchange) error {
			_, err := ex.ReadBody()
			return err
		}},
		{desc: "invalid json", body: `{"a":`, status: 400, reason: ReasonInvalidJSON, stage: func(ex *Exchange) error {
			_, err := ex.JSONBody()
			return err
		}},
		{desc: "trailing data after json", body: `{} {}`, status: 400, reason: ReasonInvalidJSON, stage: func(ex *Exchange) error {
			_, err := ex.JSONBody()
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			stage := stageFunc(func(_ context.Context, ex *Exchange) error { return tt.stage(ex) })
			g := newTestGateway(t, stage, handlerFunc(func(w http.ResponseWriter, r *http.Request, ex *Exchange) {
				b, err := io.ReadAll(r.Body)
				if err != nil || string(b) != tt.upstream {
					t.Errorf("upstream got %q, %v; want %q", b, err, tt.upstream)
				}
				if r.ContentLength != int64(len(tt.upstream)) {
					t.Errorf("Content-Length %d, want %d", r.ContentLength, len(tt.upstream))
				}
				w.WriteHeader(200)
			}))
			req := httptest.NewRequest("POST", "/items/7", strings.NewReader(tt.body))
			if tt.chunked {
				req.ContentLength = -1
			}
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.reason != "" && !strings.Contains(rec.Body.String(), `"reason_id":"`+tt.reason+`"`) {
				t.Errorf("body %s lacks reason %s", rec.Body, tt.reason)
			}
		})
	}
}

func TestReadBodyClientFails(t *testing.T) {
	stage := stageFunc(func(_ context.Context, ex *Exchange) error {
		_, err := ex.ReadBody()
		return err
	})
	g := newTestGateway(t, stage, handlerFunc(func(w http.ResponseWriter, r *http.Request, ex *Exchange) { w.WriteHeader(200) }))
	req := httptest.NewRequest("POST", "/items/7", iotest.ErrReader(errors.New("connection reset")))
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), ReasonBodyReadFailed) || strings.Contains(rec.Body.String(), "reset") {
		t.Fatalf("status %d body %s", rec.Code, rec.Body)
	}
}
