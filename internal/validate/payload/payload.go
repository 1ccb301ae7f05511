// Package payload implements the payload-limits stage: bounds on the request
// target, the header count, compressed bodies and the structure of JSON,
// XML, multipart and form bodies, enforced on every route before any stage
// parses the body. It is the first of the body stages (payload limits, then
// schema validation, then the WAF), so that no later parser ever sees a
// document deeper, wider or larger than these limits, a DTD, or a
// compressed body it would have to expand itself.
//
// The checks scan the buffered body without building a document: the JSON
// check is a single-pass scanner that allocates nothing, the XML check
// walks encoding/xml tokens and stops at the first violation, multipart
// bodies are walked part by part. Compressed bodies are decoded once, with
// a bound on both the decoded size and the expansion ratio, and the decoded
// bytes replace the body for every later stage and the upstream.
package payload

import (
	"context"
	"fmt"
	"math"
	"mime"
	"net/http"
	"strings"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/httpsyntax"
)

// Reasons the payload-limits stage refuses requests with, each documented in
// docs/payload-limits.md with its status. A body that is not valid JSON gets
// the kernel's invalid_json (gateway.ReasonInvalidJSON).
const (
	ReasonURLTooLong                  = "url_too_long"                    // 414
	ReasonQueryTooLong                = "query_too_long"                  // 414
	ReasonTooManyHeaders              = "too_many_headers"                // 431
	ReasonInvalidContentType          = "invalid_content_type"            // 400
	ReasonUnsupportedContentEncoding  = "unsupported_content_encoding"    // 415
	ReasonDecompressionFailed         = "decompression_failed"            // 400
	ReasonDecompressionRatioExceeded  = "decompression_ratio_exceeded"    // 413
	ReasonDecompressedTooLarge        = "decompressed_too_large"          // 413
	ReasonJSONTooDeep                 = "json_too_deep"                   // 400
	ReasonJSONTooManyKeys             = "json_too_many_keys"              // 400
	ReasonJSONArrayTooLong            = "json_array_too_long"             // 400
	ReasonJSONStringTooLong           = "json_string_too_long"            // 400
	ReasonJSONNumberTooLong           = "json_number_too_long"            // 400
	ReasonInvalidXML                  = "invalid_xml"                     // 400
	ReasonXMLDTDForbidden             = "xml_dtd_forbidden"               // 400
	ReasonXMLXIncludeForbidden        = "xml_xinclude_forbidden"          // 400
	ReasonXMLTooDeep                  = "xml_too_deep"                    // 400
	ReasonXMLTooManyTokens            = "xml_too_many_tokens"             // 400
	ReasonXMLTooManyAttributes        = "xml_too_many_attributes"         // 400
	ReasonInvalidMultipart            = "invalid_multipart"               // 400
	ReasonMultipartTooManyParts       = "multipart_too_many_parts"        // 400
	ReasonMultipartPartTooManyHeaders = "multipart_part_too_many_headers" // 400
	ReasonMultipartPartTooLarge       = "multipart_part_too_large"        // 413
	ReasonInvalidForm                 = "invalid_form"                    // 400
	ReasonFormTooManyFields           = "form_too_many_fields"            // 400
	ReasonFormFieldTooLong            = "form_field_too_long"             // 400
)

const reasonInvalidJSON = gateway.ReasonInvalidJSON

// FindingContentEncoding is the exchange finding (logs and audit) naming
// the content coding of a request body the stage decoded: gzip or deflate.
const FindingContentEncoding = "content_encoding"

// status returns the HTTP status a reason is answered with: 414, 431 and
// 415 where HTTP has a status for the case, 413 when the body or one part of
// it is too large, 400 for every other malformed or over-limit payload.
func status(reason string) int {
	switch reason {
	case ReasonURLTooLong, ReasonQueryTooLong:
		return http.StatusRequestURITooLong
	case ReasonTooManyHeaders:
		return http.StatusRequestHeaderFieldsTooLarge
	case ReasonUnsupportedContentEncoding:
		return http.StatusUnsupportedMediaType
	case ReasonDecompressionRatioExceeded, ReasonDecompressedTooLarge, ReasonMultipartPartTooLarge:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// limits are the per-body-type bounds, compiled from the configuration.
type limits struct {
	json      jsonLimits
	xml       xmlLimits
	form      formLimits
	multipart multipartLimits // maxPartSize 0: the route's max_body
}

// check runs the check for kind on b. Multipart bodies are not handled here
// (they need their boundary); other kinds pass.
func (l *limits) check(kind mediaKind, b []byte) finding {
	switch kind {
	case kindJSON:
		return scanJSON(b, &l.json)
	case kindXML:
		return checkXML(b, &l.xml)
	case kindForm:
		return checkForm(b, &l.form)
	}
	return finding{}
}

// Stage enforces payload limits on a route. It is built once by New,
// immutable, and safe for concurrent use.
type Stage struct {
	maxURL     int64
	maxQuery   int64
	maxHeaders int
	lim        limits

	decompress     bool
	maxRatio       int64
	maxDecoded     int64  // 0: the route's max_body
	acceptEncoding string // Accept-Encoding sent with 415 (RFC 9110 section 12.5.3)
}

// New compiles cfg, a route's effective limits (the global block merged with
// the route's override, see config.PayloadLimits.Merge). Unset fields take
// their defaults (cfg is not modified); out-of-range values are an error
// naming each one.
func New(cfg config.PayloadLimits) (*Stage, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("payload limits: %w", err)
	}
	s := &Stage{
		maxURL:     int64(*cfg.MaxURLLength),
		maxQuery:   int64(*cfg.MaxQueryLength),
		maxHeaders: *cfg.MaxHeaders,
		lim: limits{
			json: jsonLimits{
				maxDepth:  *cfg.JSON.MaxDepth,
				maxKeys:   *cfg.JSON.MaxObjectKeys,
				maxArray:  *cfg.JSON.MaxArrayLength,
				maxString: clampInt(int64(*cfg.JSON.MaxStringLength)),
				maxNumber: *cfg.JSON.MaxNumberLength,
			},
			xml: xmlLimits{
				maxDepth:  *cfg.XML.MaxDepth,
				maxTokens: *cfg.XML.MaxTokens,
				maxAttrs:  *cfg.XML.MaxAttributes,
			},
			form: formLimits{
				maxFields: *cfg.Form.MaxFields,
				maxField:  clampInt(int64(*cfg.Form.MaxFieldLength)),
			},
			multipart: multipartLimits{
				maxParts:       *cfg.Multipart.MaxParts,
				maxPartHeaders: *cfg.Multipart.MaxPartHeaders,
			},
		},
		decompress:     !*cfg.Decompression.Disabled,
		maxRatio:       int64(*cfg.Decompression.MaxRatio),
		acceptEncoding: "identity",
	}
	if v := cfg.Multipart.MaxPartSize; v != nil {
		s.lim.multipart.maxPartSize = int64(*v)
	}
	if v := cfg.Decompression.MaxSize; v != nil {
		s.maxDecoded = int64(*v)
	}
	if s.decompress {
		s.acceptEncoding = "gzip, deflate"
	}
	return s, nil
}

func clampInt(v int64) int { return int(min(v, math.MaxInt)) }

// ProcessRequest checks, in order: the request target's and query's length
// and the header count (no body needed); then, when there is a body, its
// content coding (decoding gzip and deflate into the body every later stage
// and the upstream see, with Content-Encoding removed), and its structure by
// media type. It returns a *gateway.Reject naming the first limit crossed,
// or the Reject of ex.ReadBody when the body is over the route's max_body.
func (s *Stage) ProcessRequest(_ context.Context, ex *gateway.Exchange) error {
	r := ex.Request
	if n := targetLength(r); n > s.maxURL {
		return reject(ReasonURLTooLong, "request target of %d bytes over the limit of %d", n, s.maxURL)
	}
	if q := r.URL.RawQuery; int64(len(q)) > s.maxQuery {
		return reject(ReasonQueryTooLong, "query of %d bytes over the limit of %d", len(q), s.maxQuery)
	} else if len(q) >= maxURLParams && strings.Count(q, "&")+1 > maxURLParams {
		return reject(ReasonQueryTooLong, "query with more than %d parameters, which net/url does not parse", maxURLParams)
	}
	headers := 0
	for _, vs := range r.Header {
		headers += len(vs)
	}
	if headers > s.maxHeaders {
		return reject(ReasonTooManyHeaders, "%d header fields over the limit of %d", headers, s.maxHeaders)
	}
	ct := r.Header["Content-Type"]
	if len(ct) > 1 {
		// Which one counts differs between parsers: the gateway must
		// check the body as the type the upstream will read.
		return reject(ReasonInvalidContentType, "%d Content-Type fields", len(ct))
	}

	b, err := ex.ReadBody()
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return nil
	}
	c, rej := s.contentCoding(r.Header["Content-Encoding"])
	if rej != nil {
		return rej
	}
	if c != codingIdentity {
		if b, err = s.decode(ex, b, c); err != nil {
			return err
		}
	}

	var contentType string
	if len(ct) == 1 {
		contentType = ct[0]
	}
	kind, ok := mediaType(contentType)
	if !ok {
		return reject(ReasonInvalidContentType, "Content-Type %.64q is not type/subtype", contentType)
	}
	var f finding
	if kind == kindMultipart {
		f = s.checkMultipart(ex, contentType, b)
	} else {
		f = s.lim.check(kind, b)
	}
	if !f.ok() {
		return rejectFinding(f)
	}
	return nil
}

// targetLength is the length of the request target as the client sent it.
func targetLength(r *http.Request) int64 {
	if r.RequestURI != "" {
		return int64(len(r.RequestURI))
	}
	// A request built in-process (not by the server) has no RequestURI.
	p := r.URL.RawPath
	if p == "" {
		p = r.URL.Path
	}
	n := len(p)
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		n += 1 + len(r.URL.RawQuery)
	}
	return int64(n)
}

// contentCoding reads the Content-Encoding fields: nothing or identity, or
// exactly one of gzip (x-gzip) and deflate when decompression is enabled.
// Anything else, including codings in series, is refused with 415 and an
// Accept-Encoding header naming what is accepted.
func (s *Stage) contentCoding(fields []string) (coding, *gateway.Reject) {
	c := codingIdentity
	for _, field := range fields {
		for field != "" {
			var tok string
			tok, field, _ = strings.Cut(field, ",")
			tok = strings.Trim(tok, " \t")
			var next coding
			switch {
			case tok == "", strings.EqualFold(tok, "identity"):
				continue
			case !s.decompress:
				return 0, s.unsupported("content coding %.32q: decompression is disabled", tok)
			case strings.EqualFold(tok, "gzip"), strings.EqualFold(tok, "x-gzip"):
				next = codingGzip
			case strings.EqualFold(tok, "deflate"):
				next = codingDeflate
			default:
				return 0, s.unsupported("content coding %.32q", tok)
			}
			if c != codingIdentity {
				return 0, s.unsupported("several content codings in series")
			}
			c = next
		}
	}
	return c, nil
}

func (s *Stage) unsupported(format string, args ...any) *gateway.Reject {
	rej := reject(ReasonUnsupportedContentEncoding, format, args...)
	rej.Header = http.Header{"Accept-Encoding": {s.acceptEncoding}}
	return rej
}

// decode expands a compressed body within the ratio and size bounds, makes
// the decoded bytes the body (Content-Length follows), and removes the
// headers that described the encoded form: Content-Encoding, and digests
// computed over the encoded bytes, which no longer match.
func (s *Stage) decode(ex *gateway.Exchange, b []byte, c coding) ([]byte, error) {
	size := s.maxDecoded
	if size == 0 {
		size = routeCap(ex)
	}
	ratio := satMul(int64(len(b)), s.maxRatio)
	out, over, err := decodeBody(b, c, min(size, ratio))
	switch {
	case err != nil:
		return nil, &gateway.Reject{Status: http.StatusBadRequest, ReasonID: ReasonDecompressionFailed,
			Detail: fmt.Sprintf("decoding the %s body of %d bytes", c, len(b)), Err: err}
	case over && ratio < size:
		return nil, reject(ReasonDecompressionRatioExceeded, "%s body of %d bytes expands past %d bytes (ratio %d)", c, len(b), ratio, s.maxRatio)
	case over:
		return nil, reject(ReasonDecompressedTooLarge, "%s body of %d bytes expands past %d bytes", c, len(b), size)
	}
	ex.SetBody(out)
	h := ex.Request.Header
	h.Del("Content-Encoding")
	h.Del("Content-Digest")
	h.Del("Repr-Digest")
	h.Del("Digest")
	h.Del("Content-Md5")
	ex.Note(FindingContentEncoding, c.String())
	return out, nil
}

// checkMultipart checks a multipart body; the part size defaults to the
// route's max_body.
func (s *Stage) checkMultipart(ex *gateway.Exchange, contentType string, b []byte) finding {
	_, params, err := mime.ParseMediaType(contentType)
	boundary := params["boundary"]
	if err != nil || boundary == "" || len(boundary) > 70 {
		// RFC 2046 section 5.1.1: 1 to 70 characters.
		return finding{reason: ReasonInvalidContentType}
	}
	l := s.lim
	if l.multipart.maxPartSize == 0 {
		l.multipart.maxPartSize = routeCap(ex)
	}
	return checkMultipart(b, boundary, &l)
}

// routeCap is the route's max_body, the bound for sizes left to default.
// A route always has one; the fallback covers an exchange built by hand.
func routeCap(ex *gateway.Exchange) int64 {
	if ex.Route != nil && ex.Route.MaxBody > 0 {
		return ex.Route.MaxBody
	}
	return int64(config.DefaultMaxBody)
}

func satMul(a, b int64) int64 {
	if a != 0 && b > math.MaxInt64/a {
		return math.MaxInt64
	}
	return a * b
}

func reject(reason, format string, args ...any) *gateway.Reject {
	return gateway.Rejectf(status(reason), reason, format, args...)
}

// rejectFinding turns a failed check into the Reject the client gets; what
// was measured and where goes to Detail, for logs only.
func rejectFinding(f finding) *gateway.Reject {
	var d strings.Builder
	if f.part > 0 {
		fmt.Fprintf(&d, "multipart part %d: ", f.part)
	}
	switch {
	case f.limit > 0 && f.got > 0:
		fmt.Fprintf(&d, "%s: %d over the limit of %d", f.reason, f.got, f.limit)
	case f.limit > 0:
		fmt.Fprintf(&d, "%s: over the limit of %d", f.reason, f.limit)
	default:
		d.WriteString(f.reason)
	}
	if f.part == 0 {
		fmt.Fprintf(&d, " at byte %d", f.at)
	}
	return &gateway.Reject{Status: status(f.reason), ReasonID: f.reason, Detail: d.String()}
}

// mediaKind is how the stage checks a body.
type mediaKind uint8

const (
	kindOther mediaKind = iota // not checked beyond the size caps
	kindJSON
	kindXML
	kindMultipart
	kindForm
)

// mediaType classifies a Content-Type value by its type/subtype, ignoring
// parameters and ASCII case, without allocating. An empty value is
// kindOther; ok is false when the value is present but its type/subtype is
// not two tokens around a slash.
func mediaType(v string) (kind mediaKind, ok bool) {
	essence, _, _ := strings.Cut(v, ";")
	essence = strings.Trim(essence, " \t")
	if essence == "" {
		return kindOther, v == ""
	}
	typ, sub, found := strings.Cut(essence, "/")
	if !found || !httpsyntax.IsToken(typ) || !httpsyntax.IsToken(sub) {
		return kindOther, false
	}
	application, text := strings.EqualFold(typ, "application"), strings.EqualFold(typ, "text")
	switch {
	case (application || text) && strings.EqualFold(sub, "json"), hasSuffixFold(sub, "+json"):
		return kindJSON, true
	case (application || text) && strings.EqualFold(sub, "xml"), hasSuffixFold(sub, "+xml"):
		return kindXML, true
	case application && strings.EqualFold(sub, "x-www-form-urlencoded"):
		return kindForm, true
	case strings.EqualFold(typ, "multipart"):
		return kindMultipart, true
	}
	return kindOther, true
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

var _ gateway.RequestStage = (*Stage)(nil)
