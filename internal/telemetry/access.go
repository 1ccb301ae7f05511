package telemetry

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/jsonlex"
)

// jsonHandler is slog's JSON handler that also writes the gateway's access
// lines itself (gateway.AccessLineWriter): the same bytes slog would write,
// without building a slog.Record from attributes and without slog's
// encoding/json detour for floats. Everything else goes to slog.
type jsonHandler struct {
	*slog.JSONHandler
	w   io.Writer
	lvl slog.Leveler
}

func newJSONHandler(w io.Writer, o *slog.HandlerOptions) *jsonHandler {
	var lvl slog.Leveler = slog.LevelInfo
	if o != nil && o.Level != nil {
		lvl = o.Level
	}
	return &jsonHandler{JSONHandler: slog.NewJSONHandler(w, o), w: w, lvl: lvl}
}

// lineBufs holds the buffers access lines are encoded into.
var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// WriteAccessLine writes l as slog's JSON handler writes an "access" record
// at level INFO with l.Attrs(): one line, one Write. A line below the
// handler's level is dropped and counts as written.
func (h *jsonHandler) WriteAccessLine(_ context.Context, l *gateway.AccessLine) bool {
	if slog.LevelInfo < h.lvl.Level() {
		return true
	}
	bp := lineBufs.Get().(*[]byte)
	b := appendAccessLine((*bp)[:0], l)
	_, _ = h.w.Write(b) // as slog: a failed log write is not the request's failure
	if cap(b) <= 16<<10 {
		*bp = b
		lineBufs.Put(bp)
	}
	return true
}

// appendAccessLine appends the JSON line of l, with its newline.
func appendAccessLine(b []byte, l *gateway.AccessLine) []byte {
	b = append(b, '{')
	if !l.Time.IsZero() { // slog leaves out a zero time
		b = append(b, `"time":`...)
		b = appendTime(b, l.Time)
		b = append(b, ',')
	}
	b = append(b, `"level":"INFO","msg":"access","request_id":`...)
	b = appendString(b, l.RequestID)
	b = append(b, `,"method":`...)
	b = appendString(b, l.Method)
	b = append(b, `,"host":`...)
	b = appendString(b, l.Host)
	b = append(b, `,"path":`...)
	b = appendString(b, l.Path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(l.Status), 10)
	b = append(b, `,"client_ip":"`...)
	if l.ClientIP.IsValid() {
		b = l.ClientIP.AppendTo(b) // digits, hex, colons, dots and a zone: nothing to escape but the zone
		if l.ClientIP.Zone() != "" {
			b = b[:len(b)-len(l.ClientIP.Zone())]
			b = jsonlex.AppendEscaped(b, l.ClientIP.Zone())
		}
	} else {
		b = append(b, "invalid IP"...)
	}
	b = append(b, `","latency_ms":`...)
	b = appendFloat(b, l.LatencyMS)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, l.Bytes, 10)
	if l.Route != "" {
		b = append(b, `,"route":`...)
		b = appendString(b, l.Route)
	}
	if l.ReasonID != "" {
		b = append(b, `,"reason_id":`...)
		b = appendString(b, l.ReasonID)
	}
	if l.Detail != "" {
		b = append(b, `,"detail":`...)
		b = appendString(b, l.Detail)
	}
	if l.Upstream != "" {
		b = append(b, `,"upstream":`...)
		b = appendString(b, l.Upstream)
		b = append(b, `,"upstream_ms":`...)
		b = appendFloat(b, l.UpstreamMS)
	}
	return append(b, "}\n"...)
}

// appendTime writes t as slog's JSON handler does: RFC 3339 with
// nanoseconds, quoted.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendFloat writes f as encoding/json does, which is what slog's JSON
// handler calls for floats: the shortest decimal, in exponent form below
// 1e-6 and from 1e21 on, with a one-digit negative exponent written
// without padding. NaN and infinities, which encoding/json refuses, are
// written as 0: latencies are never either.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, '0')
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendString writes s quoted and escaped as slog's JSON handler does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = jsonlex.AppendEscaped(b, s)
	return append(b, '"')
}

var _ gateway.AccessLineWriter = (*jsonHandler)(nil)
