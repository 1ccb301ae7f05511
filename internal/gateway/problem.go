package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"
)

// ProblemContentType is the media type of every error body the gateway writes.
const ProblemContentType = "application/problem+json"

// Render answers the client with rej as an RFC 9457 problem document. The body
// holds the status, its standard title, the reason_id and the request ID,
// and nothing else: Detail and Err are recorded on the exchange for logs and
// audit only. The route's response stages (or the gateway's global ones when
// no route matched) run on the response first, so security and CORS headers
// are present on errors too. Render must be called before anything was
// written to w.
func Render(w http.ResponseWriter, r *http.Request, ex *Exchange, rej *Reject) {
	ex.ReasonID = rej.ReasonID
	switch {
	case rej.Detail != "" && rej.Err != nil:
		ex.Detail = rej.Detail + ": " + rej.Err.Error()
	case rej.Err != nil:
		ex.Detail = rej.Err.Error()
	default:
		ex.Detail = rej.Detail
	}
	h := make(http.Header, 4+len(rej.Header))
	for k, v := range rej.Header {
		h[k] = v
	}
	h.Set("Content-Type", ProblemContentType)
	public := rej.ReasonID
	if rej.PublicReason != "" {
		public = rej.PublicReason
	}
	body := problemBody(rej.Status, public, ex.ID)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	writeLocal(w, r, ex, rej.Status, h, body)
}

// answer writes a locally generated non-error response, such as a preflight.
func answer(w http.ResponseWriter, r *http.Request, ex *Exchange, a *Answer) {
	h := a.Header
	if h == nil {
		h = http.Header{}
	}
	writeLocal(w, r, ex, a.Status, h, nil)
}

// writeLocal runs the response stages on a gateway-generated response and
// writes it.
func writeLocal(w http.ResponseWriter, r *http.Request, ex *Exchange, status int, h http.Header, body []byte) {
	res := &http.Response{StatusCode: status, Header: h, Request: r, ProtoMajor: 1, ProtoMinor: 1}
	var stages []ResponseStage
	if ex.Route != nil {
		stages = ex.Route.Response
	} else if ex.gw != nil {
		stages = ex.gw.global
	}
	ctx := context.Background()
	if r != nil {
		ctx = r.Context()
	}
	for _, st := range stages {
		if err := st.ProcessResponse(ctx, ex, res); err != nil && ex.gw != nil {
			// A stage that refuses a gateway-generated response cannot
			// change it into another one without looping; log and go on.
			ex.gw.log.Warn("response stage failed on a local response", "request_id", ex.ID, "error", err)
		}
	}
	dst := w.Header()
	for k, v := range res.Header {
		dst[k] = v
	}
	w.WriteHeader(res.StatusCode)
	if r != nil && r.Method == http.MethodHead {
		return
	}
	if len(body) > 0 {
		_, _ = w.Write(body)
	}
}

// problemBody formats the problem document by hand: it is small and fixed,
// and this keeps it allocation-light and its field order stable.
func problemBody(status int, reasonID, requestID string) []byte {
	title := http.StatusText(status)
	if title == "" {
		title = "Error"
	}
	var b strings.Builder
	b.Grow(128 + len(reasonID) + len(requestID))
	b.WriteString(`{"type":"about:blank","title":`)
	b.WriteString(strconv.Quote(title))
	b.WriteString(`,"status":`)
	b.WriteString(strconv.Itoa(status))
	b.WriteString(`,"reason_id":`)
	b.WriteString(strconv.Quote(reasonID))
	b.WriteString(`,"request_id":`)
	b.WriteString(strconv.Quote(requestID))
	b.WriteString("}\n")
	return []byte(b.String())
}
