package audit

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

// sink delivers batches of event lines (each ending in a newline) to one
// destination. Its pipe calls send from one goroutine; send returns nil once
// the destination has taken every line, a *permanentError when it refused
// them for good (the pipe then drops them and counts them as rejected), or
// any other error to be retried.
type sink interface {
	send(ctx context.Context, lines [][]byte) error
	close() error
}

// permanentError is a refusal that retrying cannot fix: the batch is
// dropped and counted.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// stdoutSink writes lines to standard output (or a writer tests give).
type stdoutSink struct {
	w   io.Writer
	buf []byte
}

// send writes the batch in one Write, so lines from other writers cannot
// land inside it (up to the pipe buffer size on pipes).
func (s *stdoutSink) send(_ context.Context, lines [][]byte) error {
	s.buf = joinLines(s.buf[:0], lines)
	_, err := s.w.Write(s.buf)
	if cap(s.buf) > 4<<20 {
		s.buf = nil
	}
	return err
}

func (s *stdoutSink) close() error { return nil }

func joinLines(b []byte, lines [][]byte) []byte {
	for _, l := range lines {
		b = append(b, l...)
	}
	return b
}

// lineMeta is what the syslog and Splunk framings need from an event line,
// read from the fixed places appendEvent writes them.
type lineMeta struct {
	timestamp []byte // RFC 3339 with microseconds
	action    string
	failure   bool // event.outcome is failure
}

// metaOf reads an event line's @timestamp (always first) and, from the
// "event" object (always last, so its last opening is the real one), its
// action and outcome.
func metaOf(line []byte) lineMeta {
	var m lineMeta
	const tsKey = `{"@timestamp":"`
	if bytes.HasPrefix(line, []byte(tsKey)) {
		rest := line[len(tsKey):]
		if i := bytes.IndexByte(rest, '"'); i > 0 {
			m.timestamp = rest[:i]
		}
	}
	i := bytes.LastIndex(line, []byte(`"event":{"kind":`))
	if i < 0 {
		return m
	}
	ev := line[i:]
	if j := bytes.Index(ev, []byte(`,"action":"`)); j >= 0 {
		a := ev[j+len(`,"action":"`):]
		if k := bytes.IndexByte(a, '"'); k > 0 {
			m.action = string(a[:k])
		}
	}
	m.failure = bytes.Contains(ev, []byte(`,"outcome":"failure"`))
	return m
}

// unixTime turns an RFC 3339 timestamp into Unix seconds with a fraction,
// the form Splunk HEC takes ("1763719200.123456").
func unixTime(ts []byte) ([]byte, bool) {
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return nil, false
	}
	return fmt.Appendf(nil, "%d.%06d", t.Unix(), t.Nanosecond()/1000), true
}

// clientTLS builds the TLS configuration of a syslog or HTTP sink: TLS 1.2
// or later, the system roots or ca_file, and an optional client
// certificate.
func clientTLS(c *config.UpstreamTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c == nil {
		return tc, nil
	}
	tc.ServerName = c.ServerName
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("ca_file holds no PEM certificate")
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

var _ sink = (*stdoutSink)(nil)
