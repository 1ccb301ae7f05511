package tlsx

import (
	"crypto/tls"
	"crypto/x509"
)

// VerifiedClientCert returns the client certificate that crypto/tls
// verified against the client CAs (the leaf of the first verified chain),
// or nil if cs is nil or the client presented no verified certificate.
// Use it with http.Request.TLS; unverified PeerCertificates are never
// returned.
func VerifiedClientCert(cs *tls.ConnectionState) *x509.Certificate {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil
	}
	return cs.VerifiedChains[0][0]
}
