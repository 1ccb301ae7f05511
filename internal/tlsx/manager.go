// Package tlsx builds the server-side TLS configuration of a listener: its
// certificate and key, optional client-certificate verification (mutual
// TLS), and hot reload of those files when they change on disk.
//
// NewServerConfig loads and checks every file once and fails with an error
// naming the file at fault. TLSConfig returns the *tls.Config to serve
// with; every handshake takes the material current at that moment through
// GetConfigForClient, so a reload (Reload, or the watcher run by Start)
// applies to new connections without restarting the listener and leaves
// established connections alone. A failed reload changes nothing.
package tlsx

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-gateway/moat/internal/config"

	"github.com/moat-gateway/moat/internal/filewatch"
)

// expiryWarning is how close to NotAfter a certificate must be for a load
// to log a warning.
const expiryWarning = 7 * 24 * time.Hour

// cipherSuites are the TLS 1.2 suites offered: forward-secret ECDHE key
// exchange with an AEAD cipher only. TLS 1.3 suites are not configurable
// in crypto/tls and are all AEAD.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// nextProtos are the ALPN protocols offered, HTTP/2 first.
var nextProtos = []string{"h2", "http/1.1"}

// Manager holds a listener's TLS material (certificate chain, key, client
// CA pool) and swaps it atomically on reload. Create it with
// NewServerConfig; the zero value is not usable.
//
// All methods are safe for concurrent use. The exported fields must be set
// before Start and not changed afterwards.
type Manager struct {
	// PollInterval is how often the watcher started by Start compares the
	// size and modification time of the files, as a fallback for changes
	// that file system events miss (network file systems, a watched
	// directory replaced, an exhausted inotify limit). It also retries a
	// failed reload. Zero means 30s.
	PollInterval time.Duration

	// Debounce is how long the watcher waits after the last file system
	// event before reloading, so a burst of changes (an editor's temporary
	// file and rename, a Kubernetes symlink swap, certificate then key)
	// loads once. Zero means 100ms.
	Debounce time.Duration

	certFile, keyFile, caFile string
	minVersion                uint16
	clientAuth                tls.ClientAuthType
	log                       *slog.Logger
	now                       func() time.Time

	// current is the material every new handshake uses.
	current atomic.Pointer[material]

	// reloadMu serialises loads and guards stamps and failed.
	reloadMu sync.Mutex
	stamps   stamps // files' size and mtime when last read
	failed   bool   // the last load attempt failed

	watcher filewatch.Watcher // started by Start

	noEvents bool // tests: poll only, no fsnotify
}

// material is one consistent set of loaded files and the tls.Config built
// from them. It is immutable once stored in Manager.current.
type material struct {
	cert   tls.Certificate // Leaf is set
	cas    []*x509.Certificate
	config *tls.Config
	digest [sha256.Size]byte
}

// NewServerConfig loads the certificate chain and key of cfg and, when
// cfg.ClientAuth is set, the client CA bundle, and returns a Manager
// serving them. It fails if an option is invalid, a file cannot be read,
// holds no usable PEM data, or the key does not match the certificate;
// file problems are *FileError values naming the file (never its
// content). A nil log discards logs. It logs the loaded certificate and
// warns if it has expired or expires within 7 days.
//
// The Manager does not watch the files until Start is called.
func NewServerConfig(cfg *config.ListenerTLS, log *slog.Logger) (*Manager, error) {
	if cfg == nil {
		return nil, errors.New("no tls configuration")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		certFile: cfg.CertFile,
		keyFile:  cfg.KeyFile,
		log:      log,
		now:      time.Now,
	}
	switch cfg.MinVersion {
	case "", "1.2":
		m.minVersion = tls.VersionTLS12
	case "1.3":
		m.minVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("min_version %q: want \"1.2\" or \"1.3\"", cfg.MinVersion)
	}
	if cfg.CertFile == "" {
		return nil, errors.New("cert_file: required")
	}
	if cfg.KeyFile == "" {
		return nil, errors.New("key_file: required")
	}
	if ca := cfg.ClientAuth; ca != nil {
		switch ca.Mode {
		case "require":
			m.clientAuth = tls.RequireAndVerifyClientCert
		case "optional":
			m.clientAuth = tls.VerifyClientCertIfGiven
		default:
			return nil, fmt.Errorf("client_auth.mode %q: want \"require\" or \"optional\"", ca.Mode)
		}
		if ca.CAFile == "" {
			return nil, errors.New("client_auth.ca_file: required")
		}
		m.caFile = ca.CAFile
	}
	m.stamps = m.stat()
	r, err := m.read()
	if err != nil {
		return nil, err
	}
	mat, err := m.build(r)
	if err != nil {
		return nil, err
	}
	m.current.Store(mat)
	m.logLoaded(mat, "initial load")
	return m, nil
}

// TLSConfig returns a new *tls.Config for http.Server.TLSConfig or
// tls.NewListener. Its GetConfigForClient hands each handshake the config
// built from the current material (certificate, client CAs, client-auth
// mode, TLS 1.2 minimum or 1.3, ECDHE+AEAD suites, ALPN h2 and http/1.1),
// so reloads apply to new handshakes. Changing fields of the returned
// config other than session-ticket settings has no effect on handshakes.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         m.minVersion,
		CipherSuites:       slices.Clone(cipherSuites),
		NextProtos:         slices.Clone(nextProtos),
		GetConfigForClient: m.GetConfigForClient,
	}
}

// GetConfigForClient returns the config built from the current material;
// it never fails and does not allocate. It is the callback installed by
// TLSConfig, exported so a server that swaps Managers on configuration
// reload can delegate to the current one from its own listener config.
// The returned config must not be modified.
func (m *Manager) GetConfigForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	return m.current.Load().config, nil
}

// Reload re-reads every file now and, if they load and the key matches the
// certificate, serves them to new handshakes. On error the previous
// material keeps serving; the error (a *FileError for file problems) is
// returned and logged. Reload may be called at any time, with or without
// Start, also after Close.
func (m *Manager) Reload() error {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	m.stamps = m.stat()
	return m.reloadLocked("requested", true)
}

// reloadLocked reads and loads the files. Unless force is set it does
// nothing when their content equals the serving material. It logs the
// outcome. m.reloadMu must be held.
func (m *Manager) reloadLocked(reason string, force bool) error {
	r, err := m.read()
	if err == nil && !force && r.digest() == m.current.Load().digest {
		if m.failed {
			m.log.Info("tls files match the serving certificate again", "reason", reason, "cert_file", m.certFile)
		}
		m.failed = false
		return nil
	}
	var mat *material
	if err == nil {
		mat, err = m.build(r)
	}
	if err != nil {
		m.failed = true
		m.log.Error("tls reload failed; previous certificate keeps serving", "reason", reason, "error", err)
		return err
	}
	m.current.Store(mat)
	m.failed = false
	m.logLoaded(mat, reason)
	return nil
}

// read reads the certificate, key and CA files.
func (m *Manager) read() (raw, error) {
	var r raw
	var err error
	if r.cert, err = readFile(roleCert, m.certFile); err != nil {
		return raw{}, err
	}
	if r.key, err = readFile(roleKey, m.keyFile); err != nil {
		return raw{}, err
	}
	if m.caFile != "" {
		if r.ca, err = readFile(roleCA, m.caFile); err != nil {
			return raw{}, err
		}
	}
	return r, nil
}

// build parses r and builds the tls.Config that serves it.
func (m *Manager) build(r raw) (*material, error) {
	cert, err := loadKeyPair(m.certFile, m.keyFile, r.cert, r.key)
	if err != nil {
		return nil, err
	}
	mat := &material{cert: cert, digest: r.digest()}
	cfg := &tls.Config{
		MinVersion:   m.minVersion,
		CipherSuites: slices.Clone(cipherSuites),
		NextProtos:   slices.Clone(nextProtos),
		Certificates: []tls.Certificate{cert},
		ClientAuth:   m.clientAuth,
	}
	if m.caFile != "" {
		pool, cas, err := loadCAs(m.caFile, r.ca)
		if err != nil {
			return nil, err
		}
		mat.cas = cas
		cfg.ClientCAs = pool
		// Session tickets are shared by every config GetConfigForClient
		// returns. crypto/tls (Go 1.26) re-verifies a resumed session's
		// client chain against this config's ClientCAs and falls back to
		// a full handshake if it no longer verifies, so a CA dropped from
		// the bundle cannot be bypassed by resumption (pinned by
		// TestResumedSessionRespectsCAReload).
	}
	mat.config = cfg
	return mat, nil
}

// logLoaded logs the material now serving and warns about expiry.
func (m *Manager) logLoaded(mat *material, reason string) {
	leaf := mat.cert.Leaf
	attrs := []any{
		"reason", reason,
		"cert_file", m.certFile,
		"subject_cn", leaf.Subject.CommonName,
		"sans", subjectAltNames(leaf),
		"not_after", leaf.NotAfter.UTC(),
	}
	if m.caFile != "" {
		attrs = append(attrs, "client_ca_file", m.caFile, "client_cas", len(mat.cas))
	}
	m.log.Info("tls certificate loaded", attrs...)

	now := m.now()
	switch {
	case now.After(leaf.NotAfter):
		m.log.Warn("tls certificate has expired", "cert_file", m.certFile, "subject_cn", leaf.Subject.CommonName, "not_after", leaf.NotAfter.UTC())
	case leaf.NotAfter.Sub(now) < expiryWarning:
		m.log.Warn("tls certificate expires soon", "cert_file", m.certFile, "subject_cn", leaf.Subject.CommonName, "not_after", leaf.NotAfter.UTC(), "expires_in", leaf.NotAfter.Sub(now).Round(time.Minute))
	case now.Before(leaf.NotBefore):
		m.log.Warn("tls certificate is not valid yet", "cert_file", m.certFile, "subject_cn", leaf.Subject.CommonName, "not_before", leaf.NotBefore.UTC())
	}
	for i, ca := range mat.cas {
		switch {
		case !ca.IsCA:
			m.log.Warn("client CA bundle holds a certificate that is not a CA; it cannot sign client certificates", "client_ca_file", m.caFile, "index", i+1, "subject_cn", ca.Subject.CommonName)
		case now.After(ca.NotAfter):
			m.log.Warn("client CA certificate has expired", "client_ca_file", m.caFile, "index", i+1, "subject_cn", ca.Subject.CommonName, "not_after", ca.NotAfter.UTC())
		}
	}
}

// subjectAltNames lists the DNS, IP, URI and email names of c.
func subjectAltNames(c *x509.Certificate) []string {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	for _, u := range c.URIs {
		names = append(names, u.String())
	}
	return append(names, c.EmailAddresses...)
}
