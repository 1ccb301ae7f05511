package tlstest_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/tlsx/tlstest"
)

func TestIssue(t *testing.T) {
	ca := tlstest.NewCA(t)
	other := tlstest.NewCA(t)
	tests := []struct {
		desc    string
		opts    tlstest.Options
		usage   x509.ExtKeyUsage
		dnsName string
	}{
		{desc: "server certificate verifies for localhost", opts: tlstest.Options{Kind: tlstest.Server, CommonName: "srv"}, usage: x509.ExtKeyUsageServerAuth, dnsName: "localhost"},
		{desc: "server certificate verifies for 127.0.0.1", opts: tlstest.Options{Kind: tlstest.Server, CommonName: "srv"}, usage: x509.ExtKeyUsageServerAuth, dnsName: "127.0.0.1"},
		{desc: "server certificate verifies for ::1", opts: tlstest.Options{Kind: tlstest.Server, CommonName: "srv"}, usage: x509.ExtKeyUsageServerAuth, dnsName: "::1"},
		{desc: "server certificate verifies for an extra name", opts: tlstest.Options{Kind: tlstest.Server, CommonName: "srv", DNSNames: []string{"api.test"}}, usage: x509.ExtKeyUsageServerAuth, dnsName: "api.test"},
		{desc: "rsa server certificate", opts: tlstest.Options{Kind: tlstest.Server, CommonName: "srv", RSA: true}, usage: x509.ExtKeyUsageServerAuth, dnsName: "localhost"},
		{desc: "client certificate", opts: tlstest.Options{Kind: tlstest.Client, CommonName: "alice"}, usage: x509.ExtKeyUsageClientAuth},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			certPEM, keyPEM, cert := ca.IssueWith(t, tt.opts)
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatalf("X509KeyPair: %v", err)
			}
			if !bytes.Equal(pair.Certificate[0], cert.Certificate[0]) {
				t.Fatal("PEM and tls.Certificate differ")
			}
			if cert.Leaf.Subject.CommonName != tt.opts.CommonName {
				t.Errorf("CN = %q, want %q", cert.Leaf.Subject.CommonName, tt.opts.CommonName)
			}
			opts := x509.VerifyOptions{Roots: ca.Pool(), DNSName: tt.dnsName, KeyUsages: []x509.ExtKeyUsage{tt.usage}}
			if _, err := cert.Leaf.Verify(opts); err != nil {
				t.Errorf("Verify with issuing CA: %v", err)
			}
			opts.Roots = other.Pool()
			if _, err := cert.Leaf.Verify(opts); err == nil {
				t.Error("Verify with another CA succeeded")
			}
		})
	}
}

func TestIssueExpired(t *testing.T) {
	ca := tlstest.NewCA(t)
	notAfter := time.Now().Add(-time.Hour).Truncate(time.Second)
	_, _, cert := ca.IssueWith(t, tlstest.Options{Kind: tlstest.Client, CommonName: "old", NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter})
	if !cert.Leaf.NotAfter.Equal(notAfter) {
		t.Errorf("NotAfter = %v, want %v", cert.Leaf.NotAfter, notAfter)
	}
}

func TestWriteFiles(t *testing.T) {
	ca := tlstest.NewCA(t)
	dir := t.TempDir()
	for _, cn := range []string{"first", "second"} {
		certPEM, keyPEM, _ := ca.Issue(t, tlstest.Server, cn)
		certPath, keyPath := tlstest.WriteFiles(t, dir, certPEM, keyPEM)
		gotCert, err := os.ReadFile(certPath)
		if err != nil {
			t.Fatal(err)
		}
		gotKey, err := os.ReadFile(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(gotCert, certPEM) || !bytes.Equal(gotKey, keyPEM) {
			t.Fatalf("%s: files do not hold the written PEM", cn)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("dir holds %d entries, want 2 (no temporary files left)", len(entries))
	}
}
