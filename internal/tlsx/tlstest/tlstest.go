// Package tlstest generates throw-away certificate authorities, server and
// client certificates in memory for tests, and writes them as PEM files.
//
// Every function takes a testing.TB and fails the test on error (with
// t.Fatalf, so call them from the test's goroutine); callers need no error
// handling. Keys are ECDSA P-256 unless Options.RSA is set.
// Nothing here is fit for production use.
package tlstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Kind selects what an issued certificate is for.
type Kind int

const (
	// Server certificates carry the serverAuth extended key usage and are
	// always valid for localhost, 127.0.0.1 and ::1.
	Server Kind = iota + 1
	// Client certificates carry the clientAuth extended key usage.
	Client
)

// String returns "server" or "client".
func (k Kind) String() string {
	switch k {
	case Server:
		return "server"
	case Client:
		return "client"
	}
	return "unknown"
}

// CA is an in-memory certificate authority. Its methods are safe for
// concurrent use.
type CA struct {
	// Cert is the self-signed CA certificate.
	Cert *x509.Certificate

	key     crypto.Signer
	certPEM []byte
}

// NewCA returns a new self-signed ECDSA P-256 CA, valid from an hour ago
// for a day. Its subject CN is "moat test CA " and a random suffix, so CAs
// of one test are told apart by name as well as by key.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key := newECDSAKey(t)
	now := time.Now()
	serial := newSerial(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("moat test CA %x", serial.Uint64()&0xffffffff), Organization: []string{"moat tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("tlstest: creating CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("tlstest: parsing CA certificate: %v", err)
	}
	return &CA{
		Cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}
}

// CertPEM returns the CA certificate as PEM, suitable for a CA bundle file.
// Concatenate several CAs' CertPEM to build a bundle of more than one.
func (ca *CA) CertPEM() []byte {
	return append([]byte(nil), ca.certPEM...)
}

// Pool returns a new pool holding only this CA, for a client's RootCAs or
// a server's ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// ClientConfig returns a TLS client configuration that trusts only this CA
// to sign server certificates and, when cert is not nil, presents cert as
// its client certificate. Dial 127.0.0.1, [::1] or localhost: server
// certificates from Issue are valid for those names.
//
// The client certificate is presented whenever the server asks for one,
// even if the server's list of acceptable CAs does not name its issuer (a
// client with tls.Config.Certificates would then silently send none), so
// tests see how the server treats a certificate from an untrusted CA.
func (ca *CA) ClientConfig(cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		c := *cert
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &c, nil
		}
	}
	return cfg
}

// Options describes a certificate for IssueWith. The zero value of each
// field takes the default given beside it.
type Options struct {
	// Kind is Server or Client. Required.
	Kind Kind
	// CommonName is the subject CN.
	CommonName string
	// DNSNames are subject alternative names; server certificates always
	// include localhost as well.
	DNSNames []string
	// IPAddresses are subject alternative names; server certificates always
	// include 127.0.0.1 and ::1 as well.
	IPAddresses []net.IP
	// NotBefore defaults to an hour ago.
	NotBefore time.Time
	// NotAfter defaults to a day from now. Set it in the past for an
	// expired certificate.
	NotAfter time.Time
	// RSA selects an RSA 2048 key instead of ECDSA P-256.
	RSA bool
}

// Issue returns a certificate of the given kind signed by ca, with subject
// CN cn and the given extra DNS names, as PEM (the key as PKCS #8) and as a
// parsed tls.Certificate whose Leaf is set.
func (ca *CA) Issue(t testing.TB, kind Kind, cn string, dnsNames ...string) (certPEM, keyPEM []byte, cert *tls.Certificate) {
	t.Helper()
	return ca.IssueWith(t, Options{Kind: kind, CommonName: cn, DNSNames: dnsNames})
}

// IssueWith is Issue with every option; see Options.
func (ca *CA) IssueWith(t testing.TB, o Options) (certPEM, keyPEM []byte, cert *tls.Certificate) {
	t.Helper()
	var key crypto.Signer
	if o.RSA {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatalf("tlstest: generating RSA key: %v", err)
		}
		key = k
	} else {
		key = newECDSAKey(t)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(t),
		Subject:      pkix.Name{CommonName: o.CommonName, Organization: []string{"moat tests"}},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     append([]string(nil), o.DNSNames...),
		IPAddresses:  append([]net.IP(nil), o.IPAddresses...),
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = now.Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = now.Add(24 * time.Hour)
	}
	if o.RSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	switch o.Kind {
	case Server:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = append(tmpl.DNSNames, "localhost")
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IPv4(127, 0, 0, 1), net.IPv6loopback)
	case Client:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		t.Fatalf("tlstest: Options.Kind must be Server or Client, got %d", o.Kind)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		t.Fatalf("tlstest: creating %s certificate %q: %v", o.Kind, o.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("tlstest: parsing %s certificate %q: %v", o.Kind, o.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("tlstest: encoding key: %v", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// WriteFiles writes certPEM to dir/cert.pem and then keyPEM to dir/key.pem
// (mode 0600), each with WriteFile, and returns both paths. Called again
// with the same dir it replaces the pair, certificate first.
func WriteFiles(t testing.TB, dir string, certPEM, keyPEM []byte) (certPath, keyPath string) {
	t.Helper()
	certPath = filepath.Join(dir, "cert.pem")
	keyPath = filepath.Join(dir, "key.pem")
	WriteFile(t, certPath, certPEM)
	WriteFile(t, keyPath, keyPEM)
	return certPath, keyPath
}

// WriteFile replaces path with data atomically, the way editors and
// deployment tools do: it writes a temporary file in the same directory
// (mode 0600) and renames it over path.
func WriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	f, err := os.CreateTemp(filepath.Dir(path), ".tlstest-*")
	if err != nil {
		t.Fatalf("tlstest: %v", err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr != nil || cerr != nil {
		_ = os.Remove(tmp)
		t.Fatalf("tlstest: writing %s: %v %v", tmp, werr, cerr)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		t.Fatalf("tlstest: %v", err)
	}
}

func newECDSAKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("tlstest: generating ECDSA key: %v", err)
	}
	return k
}

func newSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("tlstest: serial number: %v", err)
	}
	return n.Add(n, big.NewInt(1))
}
