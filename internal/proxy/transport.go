package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

const (
	idleConnTimeout        = 90 * time.Second
	tcpKeepAlive           = 30 * time.Second
	expectContinueTimeout  = 1 * time.Second
	maxResponseHeaderBytes = 1 << 20
)

// newTransport builds the connection pool of one upstream. It is written out
// field by field rather than cloned from http.DefaultTransport so that every
// setting is visible here, and in particular so that Proxy stays nil: the
// gateway never routes through a proxy taken from the environment.
// Compression is left to the client and the upstream: bodies pass through
// untouched.
func newTransport(cfg *config.Upstream, targets int, https bool) (*http.Transport, error) {
	connect := orDefault(cfg.Timeouts.Connect.D(), config.DefaultConnectTimeout.D())
	idle := cfg.MaxIdleConns
	if idle <= 0 {
		idle = config.DefaultMaxIdleConns
	}
	tlsConf, err := tlsConfig(cfg.TLS)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: connect, KeepAlive: tcpKeepAlive}
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        tlsConf,
		TLSHandshakeTimeout:    connect,
		ResponseHeaderTimeout:  orDefault(cfg.Timeouts.ResponseHeader.D(), config.DefaultResponseHeaderTimeout.D()),
		ExpectContinueTimeout:  expectContinueTimeout,
		MaxIdleConns:           idle * targets,
		MaxIdleConnsPerHost:    idle,
		IdleConnTimeout:        idleConnTimeout,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		ForceAttemptHTTP2:      https,
		DisableCompression:     true,
	}, nil
}

// tlsConfig builds the client TLS settings towards https targets: TLS 1.2 at
// least, the configured CA bundle instead of the system roots, an optional
// server name and client certificate. Errors name the file, never its
// contents.
func tlsConfig(c *config.UpstreamTLS) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c == nil {
		return conf, nil
	}
	conf.ServerName = c.ServerName
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading tls.ca_file: %w", err) // *fs.PathError names the file
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no PEM certificates found", c.CAFile)
		}
		conf.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("tls.cert_file and tls.key_file must be set together")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading tls.cert_file %s with tls.key_file %s: %w", c.CertFile, c.KeyFile, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// leanHTTP1 makes plain http:// targets use h1Transport for the requests it
// serves (bodiless, idempotent, no upgrade). Off, every request goes through
// http.Transport.
var leanHTTP1 = true

// splitTransport is the RoundTripper of an upstream: the requests h1 can
// serve go through it, everything else (https targets, bodies, upgrades,
// 100-continue) through std.
type splitTransport struct {
	h1  *h1Transport // nil: none
	std *http.Transport
}

// newSplitTransport builds the RoundTripper of an upstream over std, whose
// dialer and settings h1 shares. Call it once the options have set std's
// dialer.
func newSplitTransport(std *http.Transport, targets []*target) *splitTransport {
	s := &splitTransport{std: std}
	if !leanHTTP1 {
		return s
	}
	var hosts []string
	for _, t := range targets {
		if t.url.Scheme == "http" {
			hosts = append(hosts, t.url.Host)
		}
	}
	if len(hosts) != 0 {
		s.h1 = newH1Transport(hosts, std.DialContext, std.ResponseHeaderTimeout, std.IdleConnTimeout, std.MaxIdleConnsPerHost)
	}
	return s
}

// RoundTrip implements http.RoundTripper.
func (s *splitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if s.h1 != nil {
		if p := s.h1.pool(req); p != nil {
			return s.h1.roundTrip(req, p)
		}
	}
	return s.std.RoundTrip(req)
}

// CloseIdleConnections closes the idle connections of both transports.
func (s *splitTransport) CloseIdleConnections() {
	if s.h1 != nil {
		s.h1.closeIdle()
	}
	s.std.CloseIdleConnections()
}

var _ http.RoundTripper = (*splitTransport)(nil)
