package payload

import (
	"bytes"
	"errors"
	"io"
	"mime/multipart"
)

// multipartLimits are the bounds checkMultipart enforces. Every field must
// be at least 1.
type multipartLimits struct {
	maxParts       int
	maxPartHeaders int
	maxPartSize    int64 // bytes of one part's content
}

// checkMultipart walks a multipart body part by part with mime/multipart
// (raw parts: no quoted-printable decoding) and checks the part count, each
// part's header count and content size, and the content of each part whose
// own Content-Type is JSON, XML or a form, with the same checks as a body of
// that type (so a JSON document cannot dodge the JSON limits by being sent
// as a form-data field). Nested multipart parts are counted and sized but
// not opened. The body must end with its closing delimiter.
//
// Memory is bounded by one part's content (only for parts that are checked
// by type; others are counted and discarded) and the reader's buffer.
func checkMultipart(b []byte, boundary string, l *limits) finding {
	mr := multipart.NewReader(bytes.NewReader(b), boundary)
	var buf bytes.Buffer
	for parts := 1; ; parts++ {
		p, err := mr.NextRawPart()
		// Only the bare io.EOF marks the end: NextRawPart wraps io.EOF
		// when the body ends before its closing delimiter.
		if err == io.EOF {
			return finding{}
		}
		if errors.Is(err, multipart.ErrMessageTooLarge) {
			// More header lines than mime/multipart reads (10000) or
			// 10 MiB of them: far over any max_part_headers.
			return finding{reason: ReasonMultipartPartTooManyHeaders, part: parts, limit: int64(l.multipart.maxPartHeaders)}
		}
		if err != nil {
			return finding{reason: ReasonInvalidMultipart, part: parts}
		}
		if parts > l.multipart.maxParts {
			return finding{reason: ReasonMultipartTooManyParts, part: parts, got: int64(parts), limit: int64(l.multipart.maxParts)}
		}
		headers := 0
		for _, vs := range p.Header {
			headers += len(vs)
		}
		if headers > l.multipart.maxPartHeaders {
			return finding{reason: ReasonMultipartPartTooManyHeaders, part: parts, got: int64(headers), limit: int64(l.multipart.maxPartHeaders)}
		}

		sizeLimit := l.multipart.maxPartSize
		ct := p.Header["Content-Type"]
		var kind mediaKind
		ok := len(ct) <= 1
		if len(ct) == 1 {
			kind, ok = mediaType(ct[0])
		}
		if !ok {
			return finding{reason: ReasonInvalidContentType, part: parts}
		}
		var n int64
		switch kind {
		case kindJSON, kindXML, kindForm:
			buf.Reset()
			n, err = buf.ReadFrom(io.LimitReader(p, sizeLimit+1))
		default:
			n, err = io.Copy(io.Discard, io.LimitReader(p, sizeLimit+1))
		}
		if err != nil {
			return finding{reason: ReasonInvalidMultipart, part: parts}
		}
		if n > sizeLimit {
			return finding{reason: ReasonMultipartPartTooLarge, part: parts, got: n, limit: sizeLimit}
		}
		if kind == kindJSON || kind == kindXML || kind == kindForm {
			if f := l.check(kind, buf.Bytes()); !f.ok() {
				f.part = parts
				return f
			}
		}
	}
}
