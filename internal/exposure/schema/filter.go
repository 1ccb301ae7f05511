// Package schema is moat's response positive model: upstream JSON
// responses are checked against the response schema an OpenAPI document
// declares for the operation, status and content type. Properties the
// schema does not declare are logged, stripped or refused; writeOnly
// properties never leave the gateway; a deny-list of member names is
// removed at any depth, with or without a document.
//
// The document's schemas and shapes are compiled once per load
// (openapi.Document.CompileResponses); per response, the body is buffered
// up to a cap, rewritten in one pass that copies everything it keeps byte
// for byte (key order, number text, escapes), and, with a schema, checked
// by a second pass over the text (check.go) that proves it valid without
// decoding it. Only a body that pass cannot prove valid is decoded and
// validated by the full JSON Schema validator, which names the violations.
// docs/response-filtering.md is the user documentation.
package schema

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/router"
	"github.com/moat-gateway/moat/internal/validate/openapi"
)

// Reason IDs of response filtering.
const (
	// ReasonResponseSchemaViolation (502): in block mode, the upstream's
	// JSON response has properties its schema does not declare, fails
	// the schema, or is not JSON.
	ReasonResponseSchemaViolation = "response_schema_violation"
	// ReasonResponseUnscannable (502): the body is larger than max_body,
	// or compressed, and oversize is block. The same reason as masking's.
	ReasonResponseUnscannable = "response_unscannable"
)

// KeywordNumberSize is the keyword of the violation recorded, instead of
// validating the body, for a body that the fast check could not prove
// valid and that holds a number literal of more than 400 bytes or with an
// exponent beyond ±999: the full validator's exact arithmetic on such a
// number can take seconds.
const KeywordNumberSize = "number_size"

// Finding keys recorded on the exchange (ex.Note) for logs and audit.
const (
	// FindingRemoved lists the members removed: []Removal.
	FindingRemoved = "response_removed"
	// FindingUndeclared lists undeclared members left in the body (log
	// mode) or that caused a block: []Removal.
	FindingUndeclared = "response_undeclared"
	// FindingViolations lists the schema violations of the body, after
	// stripping: []openapi.Violation.
	FindingViolations = "response_validation_errors"
	// FindingUnchecked says why a JSON body was not checked: "oversize",
	// "compressed", "invalid_json", or "not_documented" (the document
	// declares no JSON schema for the operation, status and content type).
	FindingUnchecked = "response_unchecked"
)

// Filter is the response-filtering stage of one route. It is a request
// stage, which asks the upstream for an uncompressed response, and a
// response stage. Built by New; safe for concurrent use. Its configuration
// is immutable; it keeps the fast checker of each response schema it meets,
// compiled on first use (Filter.checker).
type Filter struct {
	mode          string
	maxBody       int64
	oversizeBlock bool
	deny          map[string]bool // normalized names
	resp          *openapi.Responses
	op            *openapi.Operation // nil: matched per request in resp's document
	checkers      sync.Map           // *openapi.ResponseSchema -> *checker (nil: the full validator only)
}

// New returns the stage for cfg (defaulted and validated here too) on a
// route whose responses are described by resp, the compiled responses of
// its document, or nil for a route without one. op is the operation of a
// route generated from the document; nil on a hand-written route that
// names a document, whose requests are matched to an operation per
// response (method and path, as the request validation does). New returns
// nil, nil when there is nothing to do: no document and no deny_fields.
// It returns an error when cfg is invalid, or op is set without resp.
func New(cfg config.ResponseFiltering, resp *openapi.Responses, op *openapi.Operation) (*Filter, error) {
	cfg.ApplyDefaults()
	if ps := cfg.Validate("response_filtering"); len(ps) > 0 {
		return nil, errors.New(ps[0].Path + ": " + ps[0].Msg)
	}
	if op != nil && resp == nil {
		return nil, errors.New("response filtering: an operation without its document")
	}
	if resp == nil && len(cfg.DenyFields) == 0 {
		return nil, nil
	}
	f := &Filter{mode: cfg.Mode, maxBody: int64(cfg.MaxBody), oversizeBlock: cfg.Oversize == config.ResponseOversizeBlock,
		resp: resp, op: op}
	if len(cfg.DenyFields) > 0 {
		f.deny = make(map[string]bool, len(cfg.DenyFields))
		for _, n := range cfg.DenyFields {
			f.deny[normalize(n)] = true
		}
	}
	return f, nil
}

// normalize is the form deny_fields compare in: lower case without
// underscores and hyphens.
func normalize(name string) string { return config.NormalizeMaskingField(name) }

// ProcessRequest removes Accept-Encoding from the request to the upstream:
// a compressed response could not be checked.
func (f *Filter) ProcessRequest(_ context.Context, ex *gateway.Exchange) error {
	ex.Request.Header.Del("Accept-Encoding")
	return nil
}

// ProcessResponse checks and rewrites a JSON response body (see the package
// documentation and docs/response-filtering.md). Responses the gateway
// generated itself (nil Body), bodiless responses and non-JSON content
// types pass untouched. It returns a *gateway.Reject 502
// response_schema_violation in block mode, 502 response_unscannable for an
// oversize or compressed body when oversize is block, and 502
// upstream_bad_response when the body cannot be read.
func (f *Filter) ProcessResponse(_ context.Context, ex *gateway.Exchange, res *http.Response) error {
	if res.Body == nil || res.Body == http.NoBody || res.StatusCode == http.StatusNoContent ||
		res.StatusCode == http.StatusNotModified || (res.Request != nil && res.Request.Method == http.MethodHead) ||
		(ex.Request != nil && ex.Request.Method == http.MethodHead) {
		return nil
	}
	ct := res.Header.Get("Content-Type")
	if !isJSON(ct) {
		return nil
	}
	var rs *openapi.ResponseSchema
	if f.resp != nil {
		if op := f.operation(ex); op != nil {
			var ok bool
			if rs, _, ok = f.resp.Lookup(op, res.StatusCode, ct); !ok {
				ex.Note(FindingUnchecked, "not_documented")
			}
		}
	}
	if rs == nil && f.deny == nil {
		return nil
	}
	if ce := res.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return f.unchecked(ex, res, nil, "compressed")
	}
	buf, err := readBody(res.Body, f.maxBody, res.ContentLength)
	if err != nil {
		return &gateway.Reject{Status: http.StatusBadGateway, ReasonID: gateway.ReasonUpstreamBadResponse, Detail: "reading the response body to check it", Err: err}
	}
	if int64(len(buf)) > f.maxBody {
		return f.unchecked(ex, res, buf, "oversize")
	}
	res.Body.Close()

	out, err := f.filter(ex, buf, rs)
	if err != nil {
		return err
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

// filter rewrites and checks one buffered body against rs (nil: deny_fields
// only) and returns what to send, or a *gateway.Reject.
func (f *Filter) filter(ex *gateway.Exchange, buf []byte, rs *openapi.ResponseSchema) ([]byte, error) {
	var shape *openapi.Shape
	if rs != nil {
		shape = rs.Shape
	}
	w := rewriter{deny: f.deny, strip: rs != nil && f.mode == config.ResponseModeStrip}
	out, err := w.rewrite(buf, shape)
	if err != nil {
		ex.Note(FindingUnchecked, "invalid_json")
		if rs != nil && f.mode == config.ResponseModeBlock {
			return nil, &gateway.Reject{Status: http.StatusBadGateway, ReasonID: ReasonResponseSchemaViolation, Detail: "the response is not valid JSON", Err: err}
		}
		return buf, nil // not JSON after all: nothing to remove
	}
	if len(w.removed) > 0 {
		ex.Note(FindingRemoved, w.removed)
	}
	if len(w.found) > 0 {
		ex.Note(FindingUndeclared, w.found)
	}
	if rs == nil {
		return out, nil
	}
	var violations []openapi.Violation
	if !f.checker(rs).valid(out) {
		switch v, err := decode(out); {
		case err != nil:
			violations = []openapi.Violation{{Reason: ReasonResponseSchemaViolation, In: "body", Keyword: "invalid"}}
		case hasCostlyNumber(out):
			// The full validator evaluates numbers exactly: such a
			// literal could cost it seconds. Refused unevaluated.
			violations = []openapi.Violation{{Reason: ReasonResponseSchemaViolation, In: "body", Keyword: KeywordNumberSize}}
		default:
			violations = rs.Schema.Validate(v)
			for i := range violations {
				violations[i].Reason = ReasonResponseSchemaViolation
			}
		}
	}
	if len(violations) > 0 {
		ex.Note(FindingViolations, violations)
	}
	if f.mode == config.ResponseModeBlock && (len(violations) > 0 || w.nFound > 0) {
		return nil, &gateway.Reject{Status: http.StatusBadGateway, ReasonID: ReasonResponseSchemaViolation,
			Detail: "the response does not match schema " + rs.Schema.Pointer() + " (" + rs.Status + " " + rs.MediaType + "): " +
				strconv.Itoa(len(violations)) + " violations, " + strconv.Itoa(w.nFound) + " undeclared properties"}
	}
	return out, nil
}

// checker returns the fast checker of rs, compiled on the first response
// that needs it and kept for the life of the Filter; nil when the schema
// uses keywords the checker does not implement.
func (f *Filter) checker(rs *openapi.ResponseSchema) *checker {
	if c, ok := f.checkers.Load(rs); ok {
		return c.(*checker)
	}
	c, err := compileChecker(rs.Schema.Compiled())
	if err != nil {
		c = nil
	}
	f.checkers.Store(rs, c)
	return c
}

// operation returns the operation the exchange's request is for: the
// route's, or the one its method and path match in the document.
func (f *Filter) operation(ex *gateway.Exchange) *openapi.Operation {
	if f.op != nil {
		return f.op
	}
	if ex.Request == nil {
		return nil
	}
	var buf [4]router.Param
	op, _, ok := f.resp.Document().Match(ex.Request.Method, ex.Request.URL.Path, buf[:0])
	if !ok {
		return nil
	}
	return op
}

// unchecked handles a body that cannot be checked; head is what was read
// of it.
func (f *Filter) unchecked(ex *gateway.Exchange, res *http.Response, head []byte, why string) error {
	ex.Note(FindingUnchecked, why)
	if f.oversizeBlock {
		res.Body.Close()
		return &gateway.Reject{Status: http.StatusBadGateway, ReasonID: ReasonResponseUnscannable, Detail: "response body " + why + ": not checked against its schema"}
	}
	if head != nil {
		res.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head), res.Body), res.Body}
	}
	return nil
}

// readBody reads body up to limit+1 bytes (one more than limit shows the
// body is larger). hint is the announced length, -1 when unknown: with a
// hint within limit the buffer is allocated once, at its final size.
func readBody(body io.Reader, limit, hint int64) ([]byte, error) {
	if hint < 0 || hint > limit {
		return io.ReadAll(io.LimitReader(body, limit+1))
	}
	r := io.LimitReader(body, limit+1)
	buf := make([]byte, 0, hint+1) // +1: the read that sees EOF needs room
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// decode parses one JSON value with numbers as json.Number, as the schema
// validators expect.
func decode(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("data after the top-level value")
	}
	return v, nil
}

// isJSON reports whether a Content-Type value is JSON: application/json or
// a +json suffix.
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

var (
	_ gateway.RequestStage  = (*Filter)(nil)
	_ gateway.ResponseStage = (*Filter)(nil)
)
