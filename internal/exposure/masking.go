package exposure

import (
	"bytes"
	"context"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/exposure/mask"
	"github.com/moat-gateway/moat/internal/gateway"
)

// FindingMasking is the finding key under which masking records what it
// found: detector, JSON pointer and action, never the value.
const FindingMasking = "masking"

// Masking masks personal data and secrets in upstream responses (see
// internal/exposure/mask). It is a request stage, which asks the upstream
// for an uncompressed response so the body can be scanned, and a response
// stage, which scans JSON and text bodies up to the configured size.
// A Masking is immutable and safe for concurrent use.
type Masking struct {
	m *mask.Masker
}

// NewMasking returns the stage for cfg, or nil when cfg is nil.
func NewMasking(cfg *config.Masking) (*Masking, error) {
	if cfg == nil {
		return nil, nil
	}
	m, err := mask.New(*cfg)
	if err != nil {
		return nil, err
	}
	return &Masking{m: m}, nil
}

// ProcessRequest removes Accept-Encoding from the request to the upstream:
// a compressed response could not be scanned.
func (s *Masking) ProcessRequest(_ context.Context, ex *gateway.Exchange) error {
	ex.Request.Header.Del("Accept-Encoding")
	return nil
}

// ProcessResponse scans a JSON or text body and masks, or refuses the
// response (502 sensitive_data_blocked) when a blocking rule matched. A body
// over max_body, or one the upstream compressed anyway, is handled as the
// oversize setting says: passed unscanned with a finding, or refused
// (502 response_unscannable).
func (s *Masking) ProcessResponse(_ context.Context, ex *gateway.Exchange, res *http.Response) error {
	if res.Body == nil || res.Body == http.NoBody || res.StatusCode == http.StatusNoContent ||
		res.StatusCode == http.StatusNotModified || (res.Request != nil && res.Request.Method == http.MethodHead) {
		return nil
	}
	kind := bodyKind(res.Header.Get("Content-Type"))
	if kind == "" {
		return nil
	}
	if ce := res.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return s.unscanned(ex, res, nil)
	}
	limit := s.m.MaxBody()
	buf, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
	if err != nil {
		return &gateway.Reject{Status: http.StatusBadGateway, ReasonID: gateway.ReasonUpstreamBadResponse, Detail: "reading the response body to mask it", Err: err}
	}
	if int64(len(buf)) > limit {
		return s.unscanned(ex, res, buf)
	}
	res.Body.Close()
	var out []byte
	var fs []mask.Finding
	if kind == "json" {
		if out, fs, err = s.m.MaskJSON(buf); err != nil {
			out, fs = s.m.MaskText(buf) // not JSON after all: still scanned as text
		}
	} else {
		out, fs = s.m.MaskText(buf)
	}
	if len(fs) > 0 {
		ex.Note(FindingMasking, fs)
	}
	if mask.Blocked(fs) {
		return mask.Reject(fs)
	}
	if !bytes.Equal(out, buf) {
		res.Header.Del("ETag")
		res.Header.Del("Content-MD5")
		res.Header.Del("Content-Digest")
		res.Header.Del("Repr-Digest")
	}
	res.Body = io.NopCloser(bytes.NewReader(out))
	res.ContentLength = int64(len(out))
	res.Header.Set("Content-Length", strconv.Itoa(len(out)))
	res.TransferEncoding = nil
	return nil
}

// unscanned handles a body masking cannot scan; head is what was read of it.
func (s *Masking) unscanned(ex *gateway.Exchange, res *http.Response, head []byte) error {
	f := s.m.OversizeFinding()
	ex.Note(FindingMasking, []mask.Finding{f})
	if mask.Blocked([]mask.Finding{f}) {
		res.Body.Close()
		return mask.Reject([]mask.Finding{f})
	}
	if head != nil {
		res.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head), res.Body), res.Body}
	}
	return nil
}

// bodyKind says how a response body is scanned: "json", "text", or "" for
// not at all (images, archives, event streams).
func bodyKind(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ""
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return "json"
	case mt == "text/event-stream":
		return "" // a stream never ends: it cannot be buffered
	case strings.HasPrefix(mt, "text/") || mt == "application/xml" || strings.HasSuffix(mt, "+xml"):
		return "text"
	}
	return ""
}

var (
	_ gateway.RequestStage  = (*Masking)(nil)
	_ gateway.ResponseStage = (*Masking)(nil)
)
