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
