package audit

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// HTTP batch formats.
const (
	FormatJSON      = "json"       // a JSON array of events
	FormatNDJSON    = "ndjson"     // one event per line
	FormatSplunkHEC = "splunk_hec" // Splunk HTTP Event Collector envelopes, one per line
)

// httpSink POSTs each batch to an endpoint. A 2xx answer acknowledges the
// whole batch. 400, 413 and 422 say the batch itself is unacceptable, so it
// is dropped (counted as rejected, logged); every other answer, a redirect
// included, and every transport error is retried. Redirects are not
// followed, so the token never goes to another host.
type httpSink struct {
	url        string
	format     string
	auth       string // Authorization header value, or ""
	client     *http.Client
	timeout    time.Duration
	host       string
	index      string
	source     string
	sourceType string
	buf        bytes.Buffer
}

func newHTTPSink(url, format, token string, tc *tls.Config, timeout time.Duration, host, index, source, sourceType string) *httpSink {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConns:          2,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	s := &httpSink{url: url, format: format, timeout: timeout, host: host, index: index, source: source, sourceType: sourceType,
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	if token != "" {
		scheme := "Bearer "
		if format == FormatSplunkHEC {
			scheme = "Splunk "
		}
		s.auth = scheme + token
	}
	return s
}

func (s *httpSink) send(ctx context.Context, lines [][]byte) error {
	s.buf.Reset()
	ct := s.body(lines)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(s.buf.Bytes()))
	if err != nil {
		return &permanentError{err}
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("User-Agent", "moat-audit")
	if s.auth != "" {
		req.Header.Set("Authorization", s.auth)
	}
	res, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("posting audit events: %w", err)
	}
	snippet, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	if s.buf.Cap() > 4<<20 {
		s.buf = bytes.Buffer{}
	}
	switch {
	case res.StatusCode >= 200 && res.StatusCode < 300:
		return nil
	case res.StatusCode == http.StatusBadRequest || res.StatusCode == http.StatusRequestEntityTooLarge || res.StatusCode == http.StatusUnprocessableEntity:
		return &permanentError{fmt.Errorf("audit endpoint refused the batch: %s: %s", res.Status, printable(snippet))}
	}
	return fmt.Errorf("audit endpoint answered %s: %s", res.Status, printable(snippet))
}

// body writes the batch in the sink's format and returns its content type.
func (s *httpSink) body(lines [][]byte) string {
	b := &s.buf
	switch s.format {
	case FormatNDJSON:
		for _, l := range lines {
			b.Write(l)
		}
		return "application/x-ndjson"
	case FormatSplunkHEC:
		for _, l := range lines {
			s.splunkEvent(l)
		}
		return "application/json"
	}
	b.WriteByte('[')
	for i, l := range lines {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(bytes.TrimSuffix(l, []byte{'\n'}))
	}
	b.WriteByte(']')
	return "application/json"
}

// splunkEvent writes one HEC envelope: {"time":...,"host":...,"source":...,
// "sourcetype":...,"index":...,"event":<the event>}.
func (s *httpSink) splunkEvent(line []byte) {
	b := &s.buf
	var tmp []byte
	b.WriteByte('{')
	if ts, ok := unixTime(metaOf(line).timestamp); ok {
		b.WriteString(`"time":`)
		b.Write(ts)
		b.WriteByte(',')
	}
	for _, f := range [...]struct{ k, v string }{{"host", s.host}, {"source", s.source}, {"sourcetype", s.sourceType}, {"index", s.index}} {
		if f.v == "" {
			continue
		}
		tmp = append(tmp[:0], '"')
		tmp = append(tmp, f.k...)
		tmp = append(tmp, '"', ':')
		tmp = appendString(tmp, f.v, 0)
		tmp = append(tmp, ',')
		b.Write(tmp)
	}
	b.WriteString(`"event":`)
	b.Write(bytes.TrimSuffix(line, []byte{'\n'}))
	b.WriteString("}\n")
}

func (s *httpSink) close() error {
	s.client.CloseIdleConnections()
	return nil
}

// printable keeps a response snippet fit for a log line.
func printable(b []byte) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c >= 32 && c < 127 {
			out = append(out, c)
		} else {
			out = append(out, ' ')
		}
	}
	return string(bytes.TrimSpace(out))
}

var _ sink = (*httpSink)(nil)
