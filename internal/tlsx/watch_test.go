package tlsx

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/tlsx/tlstest"
)

// layout places a certificate pair on disk the way some tool does and
// replaces it later.
type layout struct {
	desc string
	// pollOnly turns file system events off, leaving the poll.
	pollOnly bool
	// setup writes the first pair into dir and returns the configured paths.
	setup func(t *testing.T, dir string, certPEM, keyPEM []byte) (certFile, keyFile string)
	// replace swaps in the second pair.
	replace func(t *testing.T, dir string, certPEM, keyPEM []byte)
}

func writeInPlace(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// k8sSecret lays files out like a Kubernetes secret volume: the visible
// names are symlinks through ..data to a timestamped directory, and an
// update swaps ..data atomically.
func k8sSecret(t *testing.T, dir, version string, certPEM, keyPEM []byte) {
	t.Helper()
	vdir := filepath.Join(dir, ".."+version)
	if err := os.Mkdir(vdir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeInPlace(t, filepath.Join(vdir, "tls.crt"), certPEM)
	writeInPlace(t, filepath.Join(vdir, "tls.key"), keyPEM)
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(".."+version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

var layouts = []layout{
	{
		desc: "temporary file renamed over the original",
		setup: func(t *testing.T, dir string, certPEM, keyPEM []byte) (string, string) {
			return tlstest.WriteFiles(t, dir, certPEM, keyPEM)
		},
		replace: func(t *testing.T, dir string, certPEM, keyPEM []byte) {
			tlstest.WriteFiles(t, dir, certPEM, keyPEM)
		},
	},
	{
		desc: "written in place",
		setup: func(t *testing.T, dir string, certPEM, keyPEM []byte) (string, string) {
			return tlstest.WriteFiles(t, dir, certPEM, keyPEM)
		},
		replace: func(t *testing.T, dir string, certPEM, keyPEM []byte) {
			writeInPlace(t, filepath.Join(dir, "cert.pem"), certPEM)
			writeInPlace(t, filepath.Join(dir, "key.pem"), keyPEM)
		},
	},
	{
		desc: "kubernetes ..data symlink swap",
		setup: func(t *testing.T, dir string, certPEM, keyPEM []byte) (string, string) {
			k8sSecret(t, dir, "v1", certPEM, keyPEM)
			for _, name := range []string{"tls.crt", "tls.key"} {
				if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
			return filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		},
		replace: func(t *testing.T, dir string, certPEM, keyPEM []byte) {
			k8sSecret(t, dir, "v2", certPEM, keyPEM)
		},
	},
	{
		desc:     "written in place, seen by the poll only",
		pollOnly: true,
		setup: func(t *testing.T, dir string, certPEM, keyPEM []byte) (string, string) {
			return tlstest.WriteFiles(t, dir, certPEM, keyPEM)
		},
		replace: func(t *testing.T, dir string, certPEM, keyPEM []byte) {
			// Move the modification time on explicitly: the pair may be
			// the same size and written within the file system's
			// timestamp granularity.
			later := time.Now().Add(time.Minute)
			for name, data := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM} {
				p := filepath.Join(dir, name)
				writeInPlace(t, p, data)
				if err := os.Chtimes(p, later, later); err != nil {
					t.Fatal(err)
				}
			}
		},
	},
}

func TestWatcherReloadsChangedCertificate(t *testing.T) {
	for _, tt := range layouts {
		t.Run(tt.desc, func(t *testing.T) {
			ca := tlstest.NewCA(t)
			certA, keyA, _ := ca.Issue(t, tlstest.Server, "A")
			certB, keyB, _ := ca.Issue(t, tlstest.Server, "B")
			dir := t.TempDir()
			certFile, keyFile := tt.setup(t, dir, certA, keyA)

			log, logs := testLogger()
			m := newManager(t, &config.ListenerTLS{CertFile: certFile, KeyFile: keyFile}, log)
			m.noEvents = tt.pollOnly
			m.PollInterval = time.Hour // events only, unless poll-only
			if tt.pollOnly {
				m.PollInterval = 20 * time.Millisecond
			}
			m.Debounce = 20 * time.Millisecond
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			m.Start(ctx)

			srv := startServer(t, m)
			if cn := srv.servedCN(t, ca); cn != "A" {
				t.Fatalf("serving %q, want A", cn)
			}
			tt.replace(t, dir, certB, keyB)
			waitFor(t, "certificate B to be served", func() bool { return srv.servedCN(t, ca) == "B" })
			if !strings.Contains(logs.String(), "subject_cn=B") {
				t.Errorf("reload of B not logged:\n%s", logs)
			}
		})
	}
}

func TestWatcherKeepsServingThroughHalfWrittenPair(t *testing.T) {
	ca := tlstest.NewCA(t)
	certA, keyA, _ := ca.Issue(t, tlstest.Server, "A")
	certB, keyB, _ := ca.Issue(t, tlstest.Server, "B")
	dir := t.TempDir()
	certFile, keyFile := tlstest.WriteFiles(t, dir, certA, keyA)
	log, logs := testLogger()
	m := newManager(t, &config.ListenerTLS{CertFile: certFile, KeyFile: keyFile}, log)
	m.PollInterval = time.Hour
	m.Debounce = 20 * time.Millisecond
	m.Start(context.Background())
	srv := startServer(t, m)

	// The new key lands first: it does not match the serving certificate.
	tlstest.WriteFile(t, keyFile, keyB)
	waitFor(t, "the mismatched pair to be rejected", func() bool {
		return strings.Contains(logs.String(), "tls reload failed")
	})
	if cn := srv.servedCN(t, ca); cn != "A" {
		t.Fatalf("serving %q while the pair is half written, want A", cn)
	}
	if err := m.Reload(); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("Reload = %v, want ErrKeyMismatch", err)
	}

	// The certificate follows; the next event completes the pair.
	tlstest.WriteFile(t, certFile, certB)
	waitFor(t, "certificate B to be served", func() bool { return srv.servedCN(t, ca) == "B" })
	if strings.Contains(logs.String(), "-----BEGIN") {
		t.Errorf("logs contain PEM:\n%s", logs)
	}
}

func TestReloadRejectsBadReplacement(t *testing.T) {
	ca := tlstest.NewCA(t)
	certA, keyA, _ := ca.Issue(t, tlstest.Server, "A")
	_, keyB, _ := ca.Issue(t, tlstest.Server, "B")
	tests := []struct {
		desc   string
		change func(t *testing.T, certFile, keyFile string)
		wantIs error
	}{
		{desc: "garbage certificate", change: func(t *testing.T, certFile, _ string) {
			tlstest.WriteFile(t, certFile, []byte("garbage"))
		}, wantIs: ErrNoCertificate},
		{desc: "empty key", change: func(t *testing.T, _, keyFile string) {
			tlstest.WriteFile(t, keyFile, nil)
		}, wantIs: ErrNoPrivateKey},
		{desc: "key of another certificate", change: func(t *testing.T, _, keyFile string) {
			tlstest.WriteFile(t, keyFile, keyB)
		}, wantIs: ErrKeyMismatch},
		{desc: "certificate removed", change: func(t *testing.T, certFile, _ string) {
			if err := os.Remove(certFile); err != nil {
				t.Fatal(err)
			}
		}, wantIs: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			certFile, keyFile := tlstest.WriteFiles(t, t.TempDir(), certA, keyA)
			log, logs := testLogger()
			m := newManager(t, &config.ListenerTLS{CertFile: certFile, KeyFile: keyFile}, log)
			srv := startServer(t, m)

			tt.change(t, certFile, keyFile)
			err := m.Reload()
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Reload = %v, want %v", err, tt.wantIs)
			}
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Errorf("Reload error %T is not a *FileError", err)
			}
			if cn := srv.servedCN(t, ca); cn != "A" {
				t.Errorf("serving %q after a failed reload, want A", cn)
			}
			if !strings.Contains(logs.String(), "tls reload failed") {
				t.Errorf("failure not logged:\n%s", logs)
			}

			tlstest.WriteFiles(t, filepath.Dir(certFile), certA, keyA)
			if err := m.Reload(); err != nil {
				t.Errorf("Reload after repair: %v", err)
			}
		})
	}
}

func TestClientCABundleReload(t *testing.T) {
	caOld, caNew := tlstest.NewCA(t), tlstest.NewCA(t)
	_, _, oldClient := caOld.Issue(t, tlstest.Client, "old-client")
	_, _, newClient := caNew.Issue(t, tlstest.Client, "new-client")
	f := newFixture(t, "srv").withClientCAs(t, caOld)
	log, logs := testLogger()
	m := newManager(t, f.config("", "require"), log)
	m.PollInterval = time.Hour
	m.Debounce = 20 * time.Millisecond
	m.Start(context.Background())
	srv := startServer(t, m)

	accepted := func(cert *tls.Certificate) bool {
		_, err, res := srv.handshake(t, f.ca.ClientConfig(cert))
		return err == nil && res.err == nil
	}
	if !accepted(oldClient) || accepted(newClient) {
		t.Fatal("before the reload: want the old CA's client accepted and the new CA's refused")
	}

	f.writeClientCAs(t, caNew)
	waitFor(t, "the new CA's client to be accepted", func() bool { return accepted(newClient) })
	if accepted(oldClient) {
		t.Error("old CA's client still accepted after the bundle dropped it")
	}
	if !strings.Contains(logs.String(), "client_cas=1") {
		t.Errorf("CA reload not logged:\n%s", logs)
	}

	// An empty bundle is refused; the new CA keeps being trusted.
	f.writeClientCAs(t)
	if err := m.Reload(); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("Reload with an empty bundle = %v, want ErrNoCertificate", err)
	}
	if !accepted(newClient) {
		t.Error("new CA's client refused after a failed reload")
	}
}

func TestResumedSessionRespectsCAReload(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			caOld, caNew := tlstest.NewCA(t), tlstest.NewCA(t)
			_, _, client := caOld.Issue(t, tlstest.Client, "client")
			f := newFixture(t, "srv").withClientCAs(t, caOld)
			m := newManager(t, f.config("", "require"), nil)
			srv := startServer(t, m)

			cfg := f.ca.ClientConfig(client)
			cfg.MaxVersion = version
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			connect := func() (resumed bool, err error) {
				_, cerr, res := srv.handshake(t, cfg)
				if res.err != nil {
					return false, res.err
				}
				if cerr != nil {
					return false, cerr
				}
				if VerifiedClientCert(&res.state) == nil {
					t.Error("no verified client certificate")
				}
				return res.state.DidResume, nil
			}

			tests := []struct {
				desc        string
				bundle      []*tlstest.CA
				wantResumed bool
				wantErr     bool
			}{
				{desc: "first connection is a full handshake", wantResumed: false},
				{desc: "second connection resumes", wantResumed: true},
				{desc: "resumes after a reload that still trusts the CA", bundle: []*tlstest.CA{caOld, caNew}, wantResumed: true},
				{desc: "resumption refused after a reload that drops the CA", bundle: []*tlstest.CA{caNew}, wantErr: true},
			}
			for _, tt := range tests {
				if tt.bundle != nil {
					f.writeClientCAs(t, tt.bundle...)
					if err := m.Reload(); err != nil {
						t.Fatalf("%s: Reload: %v", tt.desc, err)
					}
				}
				resumed, err := connect()
				switch {
				case tt.wantErr && err == nil:
					t.Fatalf("%s: connection accepted (resumed %v); want refused", tt.desc, resumed)
				case !tt.wantErr && err != nil:
					t.Fatalf("%s: %v", tt.desc, err)
				case !tt.wantErr && resumed != tt.wantResumed:
					t.Fatalf("%s: resumed = %v, want %v", tt.desc, resumed, tt.wantResumed)
				}
			}
		})
	}
}

func TestStartAndClose(t *testing.T) {
	f := newFixture(t, "srv")
	m, err := NewServerConfig(f.config("", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close before Start: %v", err)
	}
	m.Start(context.Background()) // after Close: does nothing
	if m.watcher.Done() != nil {
		t.Fatal("Start after Close started a watcher")
	}

	m = newManager(t, f.config("", ""), nil)
	ctx, cancel := context.WithCancel(context.Background())
	m.Start(ctx)
	m.Start(ctx) // second call: does nothing
	cancel()
	select {
	case <-m.watcher.Done():
	case <-time.After(bound):
		t.Fatal("watcher still running after its context ended")
	}
	for range 2 {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if err := m.Reload(); err != nil {
		t.Errorf("Reload after Close: %v", err)
	}
}
