package gateway

import (
	"errors"
	"io"
	"net/http"
)

// responseWriter records the status and size of the response.
type responseWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

// WriteHeader records the status. Informational responses other than 101
// (an upstream's 103 Early Hints, say) are dropped: their headers would reach
// the client without passing the response stages.
func (w *responseWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		return
	}
	if !w.wroteHeader {
		if code >= 200 || code == http.StatusSwitchingProtocols {
			w.wroteHeader = true
			w.status = code
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.wroteHeader = true
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush lets streaming responses through.
func (w *responseWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController (and so the reverse proxy's protocol
// upgrades) access to the underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// capReader enforces a route's body cap while the body streams, whatever the
// Content-Length said (chunked bodies have none).
type capReader struct {
	rc   io.ReadCloser
	left int64 // bytes still allowed
	ex   *Exchange
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, &http.MaxBytesError{Limit: c.ex.Route.MaxBody}
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		c.ex.bodyOverflow.Store(true)
		return n + int(c.left), &http.MaxBytesError{Limit: c.ex.Route.MaxBody}
	}
	return n, err
}

func (c *capReader) Close() error { return c.rc.Close() }

// IsBodyTooLarge reports whether err comes from a body over its cap.
func IsBodyTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}
