package tlsx

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// maxFileSize bounds how much of a certificate, key or CA file is read, so a
// path pointing at a device or a huge file cannot exhaust memory. The
// largest public CA bundles are well under 1 MiB.
const maxFileSize = 4 << 20

// Sentinel errors wrapped by FileError; test with errors.Is.
var (
	// ErrNoCertificate means a certificate or CA file holds no CERTIFICATE
	// PEM block.
	ErrNoCertificate = errors.New("no CERTIFICATE PEM block found")
	// ErrNoPrivateKey means a key file holds no private key PEM block.
	ErrNoPrivateKey = errors.New("no PRIVATE KEY PEM block found")
	// ErrKeyMismatch means the private key does not belong to the
	// certificate: the files are from different pairs, or one was replaced
	// and the other not yet.
	ErrKeyMismatch = errors.New("private key does not match the certificate")
)

// FileError reports a problem with one of the files a Manager loads. Its
// message names the file and what is wrong with it and never quotes the
// file's content.
type FileError struct {
	// Role is "certificate", "key" or "client CA".
	Role string
	// Path is the file's path as configured.
	Path string
	// Err is the cause; it may wrap ErrNoCertificate, ErrNoPrivateKey,
	// ErrKeyMismatch or an fs error such as fs.ErrNotExist.
	Err error
}

// Error returns `<role> file "<path>": <cause>`.
func (e *FileError) Error() string {
	return fmt.Sprintf("%s file %q: %v", e.Role, e.Path, e.Err)
}

// Unwrap returns the cause.
func (e *FileError) Unwrap() error { return e.Err }

const (
	roleCert = "certificate"
	roleKey  = "key"
	roleCA   = "client CA"
)

// raw is the content of the files a Manager loads, read in one go.
type raw struct {
	cert, key, ca []byte
}

// digest identifies the content of all three files, to tell whether a file
// system event changed anything.
func (r raw) digest() [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	for _, b := range [][]byte{r.cert, r.key, r.ca} {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// readFile reads at most maxFileSize bytes of path.
func readFile(role, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &FileError{Role: role, Path: path, Err: stripPath(err)}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, &FileError{Role: role, Path: path, Err: stripPath(err)}
	}
	if len(b) > maxFileSize {
		return nil, &FileError{Role: role, Path: path, Err: fmt.Errorf("larger than %d MiB", maxFileSize>>20)}
	}
	return b, nil
}

// stripPath drops the path from an *fs.PathError, which FileError already
// names, and keeps the operation and cause (still matching fs.ErrNotExist
// and friends with errors.Is).
func stripPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// parseCertificates returns every CERTIFICATE block of data, in order, and
// their DER encodings. Other block types (a key in a combined file, EC
// PARAMETERS) are skipped. It fails if a certificate does not parse or
// there is none.
func parseCertificates(role, path string, data []byte) ([]*x509.Certificate, [][]byte, error) {
	var certs []*x509.Certificate
	var ders [][]byte
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, &FileError{Role: role, Path: path, Err: fmt.Errorf("parsing certificate %d: %w", len(certs)+1, err)}
		}
		certs = append(certs, c)
		ders = append(ders, block.Bytes)
	}
	if len(certs) == 0 {
		return nil, nil, &FileError{Role: role, Path: path, Err: ErrNoCertificate}
	}
	return certs, ders, nil
}

// parsePrivateKey returns the first private key in data: PKCS #8
// ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or PKCS #1 ("RSA PRIVATE KEY").
// Encrypted keys are refused. Other block types are skipped.
func parsePrivateKey(path string, data []byte) (crypto.Signer, error) {
	fail := func(err error) (crypto.Signer, error) {
		return nil, &FileError{Role: roleKey, Path: path, Err: err}
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return fail(ErrNoPrivateKey)
		}
		var key any
		var err error
		var format string
		switch {
		case block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] == "4,ENCRYPTED":
			return fail(errors.New("encrypted private keys are not supported; store the key unencrypted with mode 0600"))
		case block.Type == "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
			format = "PKCS #8"
		case block.Type == "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
			format = "SEC 1 EC"
		case block.Type == "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
			format = "PKCS #1 RSA"
		default:
			continue
		}
		if err != nil {
			// The parser's message can describe the key's encoding (ASN.1
			// tags and lengths); say only that it is not valid.
			return fail(fmt.Errorf("%s block is not a valid %s private key", block.Type, format))
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
			return k.(crypto.Signer), nil
		default:
			return fail(fmt.Errorf("unsupported private key type %T; want ECDSA, RSA or Ed25519", key))
		}
	}
}

// loadKeyPair parses the certificate chain and key and checks that the key
// belongs to the first (leaf) certificate.
func loadKeyPair(certPath, keyPath string, certPEM, keyPEM []byte) (tls.Certificate, error) {
	certs, ders, err := parseCertificates(roleCert, certPath, certPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := parsePrivateKey(keyPath, keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(certs[0].PublicKey) {
		return tls.Certificate{}, &FileError{Role: roleKey, Path: keyPath, Err: fmt.Errorf("%w in %q", ErrKeyMismatch, certPath)}
	}
	return tls.Certificate{Certificate: ders, PrivateKey: key, Leaf: certs[0]}, nil
}

// loadCAs parses a CA bundle into a pool; it fails unless every
// CERTIFICATE block parses and there is at least one.
func loadCAs(path string, data []byte) (*x509.CertPool, []*x509.Certificate, error) {
	certs, _, err := parseCertificates(roleCA, path, data)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, certs, nil
}
