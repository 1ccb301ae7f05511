// Package clientcert takes the principal from the client certificate that a
// mutual-TLS listener verified.
//
// The listener's handshake has already checked the certificate's chain
// against the listener's client CAs, its validity period and its key usage;
// this package only reads the verified certificate (gateway.Exchange's
// ClientCert, never the unverified PeerCertificates) and, when ca_file is
// set, narrows the CAs accepted for this authenticator to an allowlist.
package clientcert

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moat-gateway/moat/internal/authn"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// Reasons for refusing a verified client certificate.
const (
	// ReasonNoIdentity: the certificate lacks the name the authenticator
	// takes the subject from (or, for spiffe, holds no valid SPIFFE ID).
	ReasonNoIdentity = "client_cert_no_identity"
	// ReasonCANotAllowed: the certificate does not chain to a CA of the
	// authenticator's ca_file allowlist.
	ReasonCANotAllowed = "client_cert_ca_not_allowed"
	// ReasonExpired: the certificate expired after the connection's
	// handshake (a long-lived connection outlived it).
	ReasonExpired = "client_cert_expired"
)

// Kind is the Principal.Kind of client-certificate principals.
const Kind = "client_cert"

// Subject sources, the values of client_cert.subject.
const (
	SubjectCN     = "cn"     // the subject common name
	SubjectDNS    = "dns"    // the first DNS subject alternative name
	SubjectURI    = "uri"    // the first URI subject alternative name
	SubjectEmail  = "email"  // the first email subject alternative name
	SubjectSPIFFE = "spiffe" // the SPIFFE ID: the one URI SAN, spiffe://trust-domain/path
)

// maxSPIFFEID is the longest SPIFFE ID accepted, in bytes.
const maxSPIFFEID = 2048

// Authenticator turns the verified client certificate into a Principal.
// Create it with New; it is immutable and safe for concurrent use.
type Authenticator struct {
	name    string
	subject string
	roots   *x509.CertPool   // the ca_file allowlist; nil: every CA the listener trusts
	allowed map[string]bool  // the allowlist's certificates, by DER
	now     func() time.Time // replaced in tests
}

// New builds the Authenticator called name (its key under authenticators)
// from cfg, reading the allowlist in cfg.CAFile if set: PEM certificates,
// each a CA. Errors name the field and file.
func New(name string, cfg *config.ClientCertAuth) (*Authenticator, error) {
	field := "authenticators." + name + ".client_cert"
	if cfg == nil {
		return nil, fmt.Errorf("%s: no configuration", field)
	}
	a := &Authenticator{name: name, subject: cfg.Subject, now: time.Now}
	switch cfg.Subject {
	case "":
		a.subject = SubjectCN
	case SubjectCN, SubjectDNS, SubjectURI, SubjectEmail, SubjectSPIFFE:
	default:
		return nil, fmt.Errorf("%s.subject: %q is not one of cn, dns, uri, email, spiffe", field, cfg.Subject)
	}
	if cfg.CAFile != "" {
		cas, err := loadCAs(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.ca_file: %w", field, err)
		}
		a.roots = x509.NewCertPool()
		a.allowed = make(map[string]bool, len(cas))
		for _, c := range cas {
			a.roots.AddCert(c)
			a.allowed[string(c.Raw)] = true
		}
	}
	return a, nil
}

// loadCAs reads a bundle of PEM CA certificates.
func loadCAs(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cas []*x509.Certificate
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n++
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %d is a %s, not a CERTIFICATE", path, n, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, n, err)
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("%s: certificate %d (%q) is not a CA", path, n, c.Subject.CommonName)
		}
		cas = append(cas, c)
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: no PEM certificates", path)
	}
	return cas, nil
}

// Challenge returns "": a client certificate has no WWW-Authenticate
// challenge.
func (a *Authenticator) Challenge() string { return "" }

// Authenticate returns the principal of ex.ClientCert. It returns
// authn.ErrNoCredentials when the connection presented no verified
// certificate; a *authn.Failure with ReasonExpired when the certificate
// has expired since the handshake, ReasonCANotAllowed when it does not
// chain to a CA of the allowlist, or ReasonNoIdentity when it lacks the
// configured name; else a Principal whose KeyID is the hex SHA-256
// fingerprint of the certificate and ExpiresAt its NotAfter.
func (a *Authenticator) Authenticate(_ context.Context, ex *gateway.Exchange) (*gateway.Principal, error) {
	cert := ex.ClientCert
	if cert == nil {
		return nil, authn.ErrNoCredentials
	}
	now := a.now()
	if now.After(cert.NotAfter) {
		return nil, authn.Fail(ReasonExpired, "certificate %q expired at %s", cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if a.roots != nil {
		if err := a.verify(ex, cert, now); err != nil {
			return nil, &authn.Failure{ReasonID: ReasonCANotAllowed,
				Detail: fmt.Sprintf("certificate %q issued by %q does not chain to a CA of ca_file", cert.Subject.CommonName, cert.Issuer.CommonName),
				Err:    err}
		}
	}
	subject, err := a.identity(cert)
	if err != nil {
		return nil, authn.Fail(ReasonNoIdentity, "certificate %q: %v", cert.Subject.CommonName, err)
	}
	sum := sha256.Sum256(cert.Raw)
	return &gateway.Principal{
		Subject:       subject,
		Authenticator: a.name,
		Kind:          Kind,
		KeyID:         hex.EncodeToString(sum[:]),
		ExpiresAt:     cert.NotAfter,
	}, nil
}

// verify checks that cert chains to the allowlist. A chain the handshake
// verified that passes through an allowlisted CA settles it without more
// signature checks; otherwise cert is verified against the allowlist, with
// the other certificates the client sent as candidate intermediates.
func (a *Authenticator) verify(ex *gateway.Exchange, cert *x509.Certificate, now time.Time) error {
	if ex.TLS != nil {
		for _, chain := range ex.TLS.VerifiedChains {
			if len(chain) == 0 || !chain[0].Equal(cert) {
				continue
			}
			for _, c := range chain[1:] {
				if now.After(c.NotAfter) {
					break // expired since the handshake, and so is the rest of the chain to us
				}
				if a.allowed[string(c.Raw)] {
					return nil
				}
			}
		}
	}
	opts := x509.VerifyOptions{
		Roots:       a.roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if ex.TLS != nil && len(ex.TLS.PeerCertificates) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range ex.TLS.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
	}
	_, err := cert.Verify(opts)
	return err
}

// identity returns the subject named by the configured source.
func (a *Authenticator) identity(c *x509.Certificate) (string, error) {
	var id string
	switch a.subject {
	case SubjectCN:
		if id = c.Subject.CommonName; id == "" {
			return "", fmt.Errorf("no subject common name")
		}
	case SubjectDNS:
		if len(c.DNSNames) == 0 {
			return "", fmt.Errorf("no DNS subject alternative name")
		}
		id = c.DNSNames[0]
	case SubjectURI:
		if len(c.URIs) == 0 {
			return "", fmt.Errorf("no URI subject alternative name")
		}
		id = c.URIs[0].String()
	case SubjectEmail:
		if len(c.EmailAddresses) == 0 {
			return "", fmt.Errorf("no email subject alternative name")
		}
		id = c.EmailAddresses[0]
	case SubjectSPIFFE:
		if len(c.URIs) != 1 {
			return "", fmt.Errorf("an X.509-SVID has exactly one URI subject alternative name, found %d", len(c.URIs))
		}
		id = c.URIs[0].String()
		if err := checkSPIFFEID(id); err != nil {
			return "", err
		}
	}
	if !utf8.ValidString(id) || strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("the %s holds control characters or invalid UTF-8", a.subject)
	}
	return id, nil
}

// checkSPIFFEID checks id against the SPIFFE ID specification:
// spiffe://trust-domain/path, the trust domain of lower-case letters,
// digits, '.', '-' and '_', and a non-empty path of segments of letters,
// digits, '.', '-' and '_', none empty, "." or "..". A workload's ID has a
// path; no query, fragment, port, user or percent-encoding is allowed.
func checkSPIFFEID(id string) error {
	if len(id) > maxSPIFFEID {
		return fmt.Errorf("SPIFFE ID longer than %d bytes", maxSPIFFEID)
	}
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return fmt.Errorf("URI SAN is not a spiffe:// ID")
	}
	td, path, hasPath := strings.Cut(rest, "/")
	if td == "" {
		return fmt.Errorf("SPIFFE ID has no trust domain")
	}
	for i := 0; i < len(td); i++ {
		if c := td[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("SPIFFE ID trust domain has a character other than a-z, 0-9, '.', '-', '_'")
		}
	}
	if !hasPath || path == "" {
		return fmt.Errorf("SPIFFE ID has no path: it names a trust domain, not a workload")
	}
	for seg := range strings.SplitSeq(path, "/") {
		switch seg {
		case "":
			return fmt.Errorf("SPIFFE ID path has an empty segment")
		case ".", "..":
			return fmt.Errorf("SPIFFE ID path has a dot segment")
		}
		for i := 0; i < len(seg); i++ {
			if c := seg[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				return fmt.Errorf("SPIFFE ID path has a character other than letters, digits, '.', '-', '_'")
			}
		}
	}
	return nil
}

var _ authn.Authenticator = (*Authenticator)(nil)
