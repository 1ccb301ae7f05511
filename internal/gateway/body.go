package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// Several stages look at the request body: payload limits, OpenAPI
// validation, the WAF, object-level authorization. They share one buffer:
// the first stage that needs the body reads it, bounded by the route's
// max_body, and the request's Body is replaced with a reader over the same
// bytes, so the proxy forwards exactly what the stages checked.

// ReadBody buffers the request body once and returns it. It returns nil and
// no error for a request without a body. A body over the route's cap returns
// a 413 body_too_large *Reject; a client that fails mid-body returns a 400
// body_read_failed *Reject. The slice must not be modified; use SetBody.
func (ex *Exchange) ReadBody() ([]byte, error) {
	if ex.bodyRead {
		return ex.body, ex.bodyErr
	}
	ex.bodyRead = true
	r := ex.Request
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(r.Body)
	r.Body.Close()
	if err != nil {
		if IsBodyTooLarge(err) {
			ex.bodyErr = Rejectf(http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, "body over cap %d", ex.maxBody())
		} else {
			ex.bodyErr = &Reject{Status: http.StatusBadRequest, ReasonID: ReasonBodyReadFailed, Detail: "reading the request body", Err: err}
		}
		r.Body = http.NoBody
		return nil, ex.bodyErr
	}
	ex.SetBody(buf.Bytes())
	return ex.body, nil
}

// SetBody replaces the request body the upstream will receive (a stage that
// decompressed it, say) and fixes Content-Length to match. Stages after it
// see the new bytes; the parsed JSON document, if any, is discarded.
func (ex *Exchange) SetBody(b []byte) {
	ex.bodyRead, ex.body, ex.bodyErr = true, b, nil
	ex.json, ex.jsonErr, ex.jsonDone = nil, nil, false
	r := ex.Request
	r.ContentLength = int64(len(b))
	r.Header.Del("Transfer-Encoding")
	r.TransferEncoding = nil
	if len(b) == 0 {
		r.Body = http.NoBody
		r.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		r.Header.Set("Content-Length", "0")
		return
	}
	r.Header.Set("Content-Length", strconv.Itoa(len(b)))
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// JSONBody parses the buffered body as JSON once (numbers as json.Number) and
// returns the document for every stage that needs it. It returns (nil, nil)
// when the request has no body. Whether the content type is JSON is the
// caller's question; a body that is not valid JSON returns a 400
// invalid_json *Reject. Payload limits (nesting depth, sizes) are enforced
// before any stage calls this, so parsing is bounded.
func (ex *Exchange) JSONBody() (any, error) {
	if ex.jsonDone {
		return ex.json, ex.jsonErr
	}
	b, err := ex.ReadBody()
	if err != nil {
		return nil, err
	}
	ex.jsonDone = true
	if len(b) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		ex.jsonErr = &Reject{Status: http.StatusBadRequest, ReasonID: ReasonInvalidJSON, Detail: "request body is not valid JSON", Err: err}
		return nil, ex.jsonErr
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		ex.jsonErr = &Reject{Status: http.StatusBadRequest, ReasonID: ReasonInvalidJSON, Detail: "data after the JSON document"}
		return nil, ex.jsonErr
	}
	ex.json = v
	return v, nil
}

func (ex *Exchange) maxBody() int64 {
	if ex.Route == nil {
		return 0
	}
	return ex.Route.MaxBody
}
