package tlsx

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/tlsx/tlstest"
)

// bound limits every wait in these tests; nothing is expected to take
// anywhere near as long.
const bound = 5 * time.Second

// syncBuffer is a log sink safe for the watcher goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testLogger returns a debug-level text logger writing to the returned
// buffer.
func testLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// fixture is a CA with a server certificate written to a temporary
// directory, and optionally a client CA bundle.
type fixture struct {
	ca                *tlstest.CA
	dir               string
	certFile, keyFile string
	caFile            string
}

// newFixture issues a server certificate with CN cn from a new CA and
// writes it to a new temporary directory.
func newFixture(t *testing.T, cn string) *fixture {
	t.Helper()
	f := &fixture{ca: tlstest.NewCA(t), dir: t.TempDir()}
	certPEM, keyPEM, _ := f.ca.Issue(t, tlstest.Server, cn)
	f.certFile, f.keyFile = tlstest.WriteFiles(t, f.dir, certPEM, keyPEM)
	return f
}

// withClientCAs writes a client CA bundle holding the given CAs.
func (f *fixture) withClientCAs(t *testing.T, cas ...*tlstest.CA) *fixture {
	t.Helper()
	f.caFile = filepath.Join(f.dir, "clients.pem")
	f.writeClientCAs(t, cas...)
	return f
}

// writeClientCAs atomically replaces the client CA bundle.
func (f *fixture) writeClientCAs(t *testing.T, cas ...*tlstest.CA) {
	t.Helper()
	var bundle []byte
	for _, ca := range cas {
		bundle = append(bundle, ca.CertPEM()...)
	}
	tlstest.WriteFile(t, f.caFile, bundle)
}

// config returns the listener configuration for f.
func (f *fixture) config(minVersion, mode string) *config.ListenerTLS {
	c := &config.ListenerTLS{CertFile: f.certFile, KeyFile: f.keyFile, MinVersion: minVersion}
	if mode != "" {
		c.ClientAuth = &config.ClientAuth{Mode: mode, CAFile: f.caFile}
	}
	return c
}

// newManager builds a Manager for cfg and closes it at cleanup.
func newManager(t *testing.T, cfg *config.ListenerTLS, log *slog.Logger) *Manager {
	t.Helper()
	m, err := NewServerConfig(cfg, log)
	if err != nil {
		t.Fatalf("NewServerConfig: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// serverResult is the server side of one handshake.
type serverResult struct {
	state tls.ConnectionState
	err   error
}

// tlsServer accepts TLS connections on loopback with a Manager's config.
// Each connection completes the handshake, writes "ok" on success, is
// closed, and its result is reported on results.
type tlsServer struct {
	addr    string
	results chan serverResult
}

func startServer(t *testing.T, m *Manager) *tlsServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{addr: ln.Addr().String(), results: make(chan serverResult)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	tl := tls.NewListener(ln, m.TLSConfig())
	wg.Go(func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(bound))
				tc := c.(*tls.Conn)
				err := tc.Handshake()
				if err == nil {
					_, err = io.WriteString(tc, "ok")
				}
				select {
				case s.results <- serverResult{state: tc.ConnectionState(), err: err}:
				case <-stop:
				}
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		close(stop)
		wg.Wait()
	})
	return s
}

// handshake dials s with cfg, completes the handshake and reads the
// server's "ok" (which is where a TLS 1.3 client learns that the server
// refused its certificate). It returns the client's connection state and
// error and the server's result.
func (s *tlsServer) handshake(t *testing.T, cfg *tls.Config) (tls.ConnectionState, error, serverResult) {
	t.Helper()
	state, clientErr := dial(s.addr, cfg)
	select {
	case r := <-s.results:
		return state, clientErr, r
	case <-time.After(bound):
		t.Fatalf("no server handshake result within %v (client error: %v)", bound, clientErr)
		return tls.ConnectionState{}, nil, serverResult{}
	}
}

func dial(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	tc := c.(*tls.Conn)
	_ = tc.SetDeadline(time.Now().Add(bound))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(tc, buf); err != nil {
		return tc.ConnectionState(), err
	}
	return tc.ConnectionState(), nil
}

// servedCN returns the CN of the certificate s presents to a client
// trusting ca, failing the test if the handshake fails.
func (s *tlsServer) servedCN(t *testing.T, ca *tlstest.CA) string {
	t.Helper()
	state, err, res := s.handshake(t, ca.ClientConfig(nil))
	if err != nil || res.err != nil {
		t.Fatalf("handshake failed: client: %v; server: %v", err, res.err)
	}
	return state.PeerCertificates[0].Subject.CommonName
}

// waitFor polls cond until it holds, failing the test after bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
