package vulnapi

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"time"
)

// WeakCipherSuite is the insecure cipher suite the vulnerable variant's
// TLSConfig accepts: 3DES (64-bit blocks, Sweet32) with RSA key exchange
// (no forward secrecy). It is in tls.InsecureCipherSuites.
const WeakCipherSuite = tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA

// modernSuites are the TLS 1.2 suites of the hardened variant: ECDHE key
// exchange with AEAD ciphers only. TLS 1.3 suites are not configurable
// and all modern.
var modernSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// TLSConfig returns the server TLS configuration of the variant, serving
// cert. The vulnerable one carries the planted weak-tls flaw: it accepts
// TLS 1.0 and 1.1 and, next to Go's secure suites, WeakCipherSuite. The
// hardened one accepts TLS 1.2 and later with ECDHE and AEAD suites only.
//
// Both are set explicitly, so they hold whatever the GODEBUG settings
// (tls10server, tlsrsakex, tls3des), which only change crypto/tls's
// defaults. The weak suite needs an RSA certificate, as SelfSignedCert
// makes.
func TLSConfig(hardened bool, cert tls.Certificate) *tls.Config {
	if hardened {
		return &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			CipherSuites: append([]uint16(nil), modernSuites...),
		}
	}
	var suites []uint16
	for _, cs := range tls.CipherSuites() {
		suites = append(suites, cs.ID)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS10, // planted: TLS 1.0 and 1.1 accepted
		CipherSuites: append(suites, WeakCipherSuite),
	}
}

// SelfSignedCert returns a self-signed RSA 2048 certificate for localhost,
// 127.0.0.1 and ::1, valid from an hour ago for a day, generated in memory
// (nothing is written to disk). Clients must skip verification (moat scan
// --insecure, curl -k) or trust the certificate itself.
func SelfSignedCert() (tls.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "vulnapi (self-signed)"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("creating certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parsing certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
