package waf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/corazawaf/coraza/v3/types"

	"github.com/moat-gateway/moat/internal/gateway"
)

// responseStage runs the response phases of the CRS (data leakage, web
// shells; RESPONSE-95x) on the transaction the request stage left open.
type responseStage struct {
	s     *Stage
	limit int64 // bytes of a response body inspected
}

// ProcessResponse inspects the status, headers and up to the configured
// limit of the body of res, if the request stage passed the request, and
// refuses the response with 403 waf_blocked when it reaches the outbound
// threshold. The body is buffered only as far as it is inspected and
// re-exposed unchanged: the client receives exactly what the upstream sent.
// Bodies with a content encoding (gzip, ...) or a content type outside
// response_mime_types are not inspected. A body that fails mid-read is a
// 502 upstream_bad_response; a WAF failure is a 500 waf_error.
func (rs *responseStage) ProcessResponse(_ context.Context, ex *gateway.Exchange, res *http.Response) (err error) {
	v, ok := rs.s.open.LoadAndDelete(ex)
	if !ok {
		return nil // the request was refused, or never reached the WAF
	}
	tx := v.(types.Transaction)
	defer func() {
		if p := recover(); p != nil {
			err = rs.s.fail(ex, "response", fmt.Errorf("panic: %v", p))
		}
	}()

	for k, vs := range res.Header {
		for _, v := range vs {
			tx.AddResponseHeader(k, v)
		}
	}
	proto := res.Proto
	if proto == "" {
		proto = fmt.Sprintf("HTTP/%d.%d", res.ProtoMajor, res.ProtoMinor)
	}
	if it := tx.ProcessResponseHeaders(res.StatusCode, proto); it != nil {
		return rs.s.decide(ex, tx, it, true)
	}

	// A 101 response's body is the upgraded connection, not a body.
	if res.Body != nil && res.Body != http.NoBody && res.StatusCode != http.StatusSwitchingProtocols && tx.IsResponseBodyAccessible() {
		switch enc := res.Header.Get("Content-Encoding"); {
		case enc != "" && !strings.EqualFold(enc, "identity"):
			ex.Note(NoteUninspected, "content-encoding "+enc)
		case !tx.IsResponseBodyProcessable():
			// Not one of response_mime_types: passed on as is.
		default:
			buf, rerr := readPrefix(res.Body, rs.limit)
			res.Body = &prefixedBody{Reader: io.MultiReader(bytes.NewReader(buf), res.Body), body: res.Body}
			if rerr != nil {
				return &gateway.Reject{Status: http.StatusBadGateway, ReasonID: gateway.ReasonUpstreamBadResponse,
					Detail: "reading the response body for the WAF", Err: rerr}
			}
			if len(buf) > 0 {
				it, _, werr := tx.WriteResponseBody(buf)
				if werr != nil {
					return rs.s.fail(ex, "response", fmt.Errorf("writing the response body to the WAF: %w", werr))
				}
				if it != nil {
					return rs.s.decide(ex, tx, it, true)
				}
			}
		}
	}
	it, perr := tx.ProcessResponseBody()
	if perr != nil {
		return rs.s.fail(ex, "response", fmt.Errorf("processing the response body: %w", perr))
	}
	return rs.s.decide(ex, tx, it, true)
}

// readPrefix reads up to limit bytes of r: all of a shorter body, without
// waiting for more once limit bytes are in.
func readPrefix(r io.Reader, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(io.LimitReader(r, limit))
	if err != nil && !errors.Is(err, io.EOF) {
		return buf.Bytes(), err
	}
	return buf.Bytes(), nil
}

// prefixedBody re-exposes a response body of which a prefix was read.
type prefixedBody struct {
	io.Reader
	body io.ReadCloser
}

func (b *prefixedBody) Close() error { return b.body.Close() }
