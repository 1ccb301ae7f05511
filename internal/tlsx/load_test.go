package tlsx

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/tlsx/tlstest"
)

func TestNewServerConfigErrors(t *testing.T) {
	ca := tlstest.NewCA(t)
	certPEM, keyPEM, _ := ca.Issue(t, tlstest.Server, "srv")
	_, otherKeyPEM, _ := ca.Issue(t, tlstest.Server, "other")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert := write("cert.pem", certPEM)
	key := write("key.pem", keyPEM)
	otherKey := write("other-key.pem", otherKeyPEM)
	bundle := write("ca.pem", ca.CertPEM())
	missing := filepath.Join(dir, "missing.pem")
	empty := write("empty.pem", nil)
	garbage := write("garbage.pem", []byte("this is not PEM\x00\xff"))
	keyOnlyBundle := write("key-bundle.pem", keyPEM)
	corruptKey := write("corrupt-key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not a key at all")}))
	corruptCert := write("corrupt-cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not a certificate")}))
	encryptedKey := write("encrypted-key.pem", pem.EncodeToMemory(&pem.Block{
		Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00000000000000000000000000000000"}, Bytes: []byte("secret"),
	}))
	huge := write("huge.pem", bytes.Repeat([]byte("A"), maxFileSize+1))

	mtls := func(c *config.ListenerTLS, mode, caFile string) *config.ListenerTLS {
		c.ClientAuth = &config.ClientAuth{Mode: mode, CAFile: caFile}
		return c
	}
	tests := []struct {
		desc    string
		cfg     *config.ListenerTLS
		wantIs  error
		wantIn  []string // substrings of the message
		notIn   []string // must not be in the message
		notFile bool     // the error is about an option, not a file
	}{
		{desc: "nil configuration", cfg: nil, wantIn: []string{"no tls configuration"}, notFile: true},
		{desc: "unknown min_version", cfg: &config.ListenerTLS{CertFile: cert, KeyFile: key, MinVersion: "1.1"}, wantIn: []string{`min_version "1.1"`}, notFile: true},
		{desc: "no cert_file", cfg: &config.ListenerTLS{KeyFile: key}, wantIn: []string{"cert_file"}, notFile: true},
		{desc: "no key_file", cfg: &config.ListenerTLS{CertFile: cert}, wantIn: []string{"key_file"}, notFile: true},
		{desc: "unknown client_auth mode", cfg: mtls(&config.ListenerTLS{CertFile: cert, KeyFile: key}, "sometimes", bundle), wantIn: []string{`client_auth.mode "sometimes"`}, notFile: true},
		{desc: "client_auth without ca_file", cfg: mtls(&config.ListenerTLS{CertFile: cert, KeyFile: key}, "require", ""), wantIn: []string{"client_auth.ca_file"}, notFile: true},
		{desc: "missing certificate file", cfg: &config.ListenerTLS{CertFile: missing, KeyFile: key}, wantIs: fs.ErrNotExist, wantIn: []string{"certificate file", missing}},
		{desc: "missing key file", cfg: &config.ListenerTLS{CertFile: cert, KeyFile: missing}, wantIs: fs.ErrNotExist, wantIn: []string{"key file", missing}},
		{desc: "missing client CA file", cfg: mtls(&config.ListenerTLS{CertFile: cert, KeyFile: key}, "require", missing), wantIs: fs.ErrNotExist, wantIn: []string{"client CA file", missing}},
		{desc: "empty certificate file", cfg: &config.ListenerTLS{CertFile: empty, KeyFile: key}, wantIs: ErrNoCertificate, wantIn: []string{"certificate file", empty}},
		{desc: "garbage certificate file", cfg: &config.ListenerTLS{CertFile: garbage, KeyFile: key}, wantIs: ErrNoCertificate, wantIn: []string{garbage}},
		{desc: "corrupt certificate", cfg: &config.ListenerTLS{CertFile: corruptCert, KeyFile: key}, wantIn: []string{corruptCert, "parsing certificate 1"}},
		{desc: "key and certificate swapped", cfg: &config.ListenerTLS{CertFile: key, KeyFile: cert}, wantIs: ErrNoCertificate, wantIn: []string{"certificate file", key}},
		{desc: "key file without a key", cfg: &config.ListenerTLS{CertFile: cert, KeyFile: bundle}, wantIs: ErrNoPrivateKey, wantIn: []string{"key file", bundle}},
		{desc: "corrupt key", cfg: &config.ListenerTLS{CertFile: cert, KeyFile: corruptKey}, wantIn: []string{"key file", corruptKey, "PRIVATE KEY block is not a valid PKCS #8 private key"}, notIn: []string{"asn1"}},
		{desc: "encrypted key", cfg: &config.ListenerTLS{CertFile: cert, KeyFile: encryptedKey}, wantIn: []string{encryptedKey, "encrypted"}},
		{desc: "key of another certificate", cfg: &config.ListenerTLS{CertFile: cert, KeyFile: otherKey}, wantIs: ErrKeyMismatch, wantIn: []string{"key file", otherKey, cert}},
		{desc: "empty client CA bundle", cfg: mtls(&config.ListenerTLS{CertFile: cert, KeyFile: key}, "require", empty), wantIs: ErrNoCertificate, wantIn: []string{"client CA file", empty}},
		{desc: "client CA bundle holding only a key", cfg: mtls(&config.ListenerTLS{CertFile: cert, KeyFile: key}, "optional", keyOnlyBundle), wantIs: ErrNoCertificate, wantIn: []string{"client CA file", keyOnlyBundle}},
		{desc: "oversized certificate file", cfg: &config.ListenerTLS{CertFile: huge, KeyFile: key}, wantIn: []string{huge, "larger than"}},
	}
	// Material that must never appear in a message: PEM armour and any
	// line of the key's or certificate's base64 body.
	secrets := []string{"-----BEGIN", "-----END"}
	for _, b := range [][]byte{keyPEM, otherKeyPEM, certPEM} {
		for _, line := range strings.Split(string(b), "\n") {
			if len(line) > 16 && !strings.HasPrefix(line, "-----") {
				secrets = append(secrets, line[:16])
			}
		}
	}

	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			m, err := NewServerConfig(tt.cfg, nil)
			if err == nil {
				_ = m.Close()
				t.Fatal("NewServerConfig succeeded; want an error")
			}
			msg := err.Error()
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", msg, tt.wantIs)
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not contain %q", msg, s)
				}
			}
			var fe *FileError
			if isFile := errors.As(err, &fe); isFile == tt.notFile {
				t.Errorf("error %q: *FileError = %v, want %v", msg, isFile, !tt.notFile)
			}
			for _, s := range append(secrets, tt.notIn...) {
				if strings.Contains(msg, s) {
					t.Errorf("error %q contains file content %q", msg, s)
				}
			}
		})
	}
}

func TestLoadKeyFormats(t *testing.T) {
	ca := tlstest.NewCA(t)
	ecCertPEM, ecKeyPEM, ecCert := ca.Issue(t, tlstest.Server, "ec")
	rsaCertPEM, rsaKeyPEM, rsaCert := ca.IssueWith(t, tlstest.Options{Kind: tlstest.Server, CommonName: "rsa", RSA: true})

	// reencode converts a PKCS #8 key to the legacy format named by typ.
	reencode := func(typ string, keyPEM []byte) []byte {
		t.Helper()
		block, _ := pem.Decode(keyPEM)
		k, err := parsePrivateKey("k", keyPEM)
		if err != nil || block == nil {
			t.Fatal(err)
		}
		var der []byte
		switch typ {
		case "EC PRIVATE KEY":
			der, err = marshalEC(k)
		case "RSA PRIVATE KEY":
			der, err = marshalRSA(k)
		}
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	}

	tests := []struct {
		desc      string
		certPEM   []byte
		keyPEM    []byte
		wantChain [][]byte
	}{
		{desc: "ecdsa pkcs8", certPEM: ecCertPEM, keyPEM: ecKeyPEM, wantChain: ecCert.Certificate},
		{desc: "ecdsa sec1 after ec parameters", certPEM: ecCertPEM,
			keyPEM:    append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}}), reencode("EC PRIVATE KEY", ecKeyPEM)...),
			wantChain: ecCert.Certificate},
		{desc: "rsa pkcs8", certPEM: rsaCertPEM, keyPEM: rsaKeyPEM, wantChain: rsaCert.Certificate},
		{desc: "rsa pkcs1", certPEM: rsaCertPEM, keyPEM: reencode("RSA PRIVATE KEY", rsaKeyPEM), wantChain: rsaCert.Certificate},
		{desc: "combined file: key and chain in one", certPEM: append(append([]byte{}, ecKeyPEM...), ecCertPEM...), keyPEM: append(append([]byte{}, ecCertPEM...), ecKeyPEM...), wantChain: ecCert.Certificate},
		{desc: "chain with CA kept in order", certPEM: append(append([]byte{}, ecCertPEM...), ca.CertPEM()...), keyPEM: ecKeyPEM, wantChain: [][]byte{ecCert.Certificate[0], ca.Cert.Raw}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := loadKeyPair("cert.pem", "key.pem", tt.certPEM, tt.keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Certificate) != len(tt.wantChain) {
				t.Fatalf("chain has %d certificates, want %d", len(got.Certificate), len(tt.wantChain))
			}
			for i := range tt.wantChain {
				if !bytes.Equal(got.Certificate[i], tt.wantChain[i]) {
					t.Errorf("certificate %d differs", i)
				}
			}
			if got.Leaf == nil || !bytes.Equal(got.Leaf.Raw, tt.wantChain[0]) {
				t.Error("Leaf is not the first certificate")
			}
		})
	}
}

func marshalEC(k crypto.Signer) ([]byte, error) {
	return x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
}

func marshalRSA(k crypto.Signer) ([]byte, error) {
	return x509.MarshalPKCS1PrivateKey(k.(*rsa.PrivateKey)), nil
}
