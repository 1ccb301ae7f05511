package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"time"
)

// AccessLine is one access log record, the fields of the "access" line in
// the order they are written: request_id, method, host, path, status,
// client_ip, latency_ms, bytes, then route, reason_id, detail, and upstream
// with upstream_ms, each only when set (docs/operations.md).
type AccessLine struct {
	Time       time.Time
	RequestID  string
	Method     string
	Host       string // clipped to 256 bytes
	Path       string // clipped to 1024 bytes
	Status     int
	ClientIP   netip.Addr // written as netip.Addr.String does: "invalid IP" when unset
	LatencyMS  float64    // microsecond resolution
	Bytes      int64
	Route      string
	ReasonID   string
	Detail     string // clipped to 1024 bytes
	Upstream   string // the target; upstream_ms is written with it
	UpstreamMS float64
}

// AccessLineWriter is implemented by log handlers that write access lines
// themselves, without slog's generic record encoding, in exactly the form
// slog would have written them (telemetry's JSON handler). The gateway uses
// it when its logger's handler implements it; WriteAccessLine reports
// whether the line was written or left to the caller (level disabled lines
// count as written).
type AccessLineWriter interface {
	WriteAccessLine(ctx context.Context, l *AccessLine) bool
}

// logAccess sets the exchange's final status (499 when the client left
// before any response) and writes the access line, when the access log is
// on: through the handler's AccessLineWriter when it has one, else as slog
// attributes.
func (g *Gateway) logAccess(rw *responseWriter, r *http.Request, ex *Exchange) {
	ex.Status = rw.status
	if ex.Status == 0 {
		ex.Status = 499 // the client went away before any response
	}
	if !g.accessLog {
		return
	}
	l := AccessLine{
		Time:      time.Now(),
		RequestID: ex.ID,
		Method:    r.Method,
		Host:      clip(r.Host, 256),
		Path:      clip(r.URL.Path, 1024),
		Status:    ex.Status,
		ClientIP:  ex.ClientIP,
		LatencyMS: float64(time.Since(ex.Start).Microseconds()) / 1000,
		Bytes:     rw.bytes,
		ReasonID:  ex.ReasonID,
		Detail:    clip(ex.Detail, 1024),
		Upstream:  ex.Target,
	}
	if ex.Route != nil {
		l.Route = ex.Route.Name
	}
	if ex.Target != "" {
		l.UpstreamMS = float64(ex.UpstreamLatency.Microseconds()) / 1000
	}
	if g.accessWriter != nil && g.accessWriter.WriteAccessLine(r.Context(), &l) {
		return
	}
	g.log.LogAttrs(r.Context(), slog.LevelInfo, "access", l.Attrs()...)
}

// Attrs returns the line's fields as slog attributes, in order, without
// the time, level and message.
func (l *AccessLine) Attrs() []slog.Attr {
	attrs := make([]slog.Attr, 0, 14)
	attrs = append(attrs,
		slog.String("request_id", l.RequestID),
		slog.String("method", l.Method),
		slog.String("host", l.Host),
		slog.String("path", l.Path),
		slog.Int("status", l.Status),
		slog.String("client_ip", l.ClientIP.String()),
		slog.Float64("latency_ms", l.LatencyMS),
		slog.Int64("bytes", l.Bytes),
	)
	if l.Route != "" {
		attrs = append(attrs, slog.String("route", l.Route))
	}
	if l.ReasonID != "" {
		attrs = append(attrs, slog.String("reason_id", l.ReasonID))
	}
	if l.Detail != "" {
		attrs = append(attrs, slog.String("detail", l.Detail))
	}
	if l.Upstream != "" {
		attrs = append(attrs, slog.String("upstream", l.Upstream), slog.Float64("upstream_ms", l.UpstreamMS))
	}
	return attrs
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
