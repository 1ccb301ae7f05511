package audit

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

// syslogSink sends each event as an RFC 5424 message over TCP or TLS, framed
// by octet counting (RFC 6587 section 3.4.1): "LEN SP MSG". The message is
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - BOM JSON
//
// with the event's @timestamp, MSGID its event.action, no structured data,
// and the event's JSON as MSG (UTF-8, so it starts with the byte order mark
// the RFC requires). Severity is warning (4) for events whose outcome is
// failure, informational (6) otherwise.
//
// TCP has no application acknowledgement: a batch written into a connection
// the receiver has just closed may be lost without an error. The sink checks
// that the connection is still open before each batch, which narrows that
// window to the round trip of the batch itself.
type syslogSink struct {
	addr         string
	tls          *tls.Config // nil for plain TCP
	dialTimeout  time.Duration
	writeTimeout time.Duration
	facility     int
	hostname     string // already in PRINTUSASCII form
	app          string
	procID       string

	conn net.Conn
	buf  []byte
	msg  []byte
}

func newSyslogSink(addr string, tc *tls.Config, dial, write time.Duration, facility int, hostname, app string) *syslogSink {
	return &syslogSink{addr: addr, tls: tc, dialTimeout: dial, writeTimeout: write, facility: facility,
		hostname: syslogToken(hostname, 255), app: syslogToken(app, 48), procID: strconv.Itoa(os.Getpid())}
}

func (s *syslogSink) send(ctx context.Context, lines [][]byte) error {
	if s.conn != nil && !stillOpen(s.conn) {
		s.conn.Close()
		s.conn = nil
	}
	if s.conn == nil {
		c, err := s.dial(ctx)
		if err != nil {
			return err
		}
		s.conn = c
	}
	s.buf = s.buf[:0]
	for _, l := range lines {
		s.buf = s.frame(s.buf, l)
	}
	deadline := time.Now().Add(s.writeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = s.conn.SetWriteDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = s.conn.SetWriteDeadline(time.Unix(1, 0)) })
	_, err := s.conn.Write(s.buf)
	stop()
	if cap(s.buf) > 4<<20 {
		s.buf = nil
	}
	if err != nil {
		s.conn.Close()
		s.conn = nil
		return fmt.Errorf("writing to syslog %s: %w", s.addr, err)
	}
	return nil
}

func (s *syslogSink) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dialTimeout)
	defer cancel()
	var c net.Conn
	var err error
	if s.tls != nil {
		d := &tls.Dialer{Config: s.tls}
		c, err = d.DialContext(ctx, "tcp", s.addr)
	} else {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", s.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("connecting to syslog %s: %w", s.addr, err)
	}
	return c, nil
}

// frame appends one octet-counted RFC 5424 message.
func (s *syslogSink) frame(b, line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte{'\n'})
	m := metaOf(line)
	sev := 6
	if m.failure {
		sev = 4
	}
	ts := m.timestamp
	if ts == nil {
		ts = []byte("-")
	}
	msg := s.msg[:0]
	msg = append(msg, '<')
	msg = strconv.AppendInt(msg, int64(s.facility*8+sev), 10)
	msg = append(msg, ">1 "...)
	msg = append(msg, ts...)
	msg = append(msg, ' ')
	msg = append(msg, s.hostname...)
	msg = append(msg, ' ')
	msg = append(msg, s.app...)
	msg = append(msg, ' ')
	msg = append(msg, s.procID...)
	msg = append(msg, ' ')
	msg = append(msg, syslogToken(m.action, 32)...)
	msg = append(msg, " - \xef\xbb\xbf"...)
	msg = append(msg, line...)
	s.msg = msg
	b = strconv.AppendInt(b, int64(len(msg)), 10)
	b = append(b, ' ')
	return append(b, msg...)
}

// syslogToken turns s into a header field: printable US-ASCII without
// spaces, at most max bytes, or "-" (the nil value) when empty.
func syslogToken(s string, max int) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
	if len(b) > max {
		b = b[:max]
	}
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}

// stillOpen reports whether the receiver has not closed c: a syslog receiver
// never sends, so end of file (or any data, or an error) means the
// connection is going away. The check waits at most a millisecond.
func stillOpen(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
	var one [1]byte
	_, err := c.Read(one[:])
	_ = c.SetReadDeadline(time.Time{})
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, io.EOF)
}

func (s *syslogSink) close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

var _ sink = (*syslogSink)(nil)
