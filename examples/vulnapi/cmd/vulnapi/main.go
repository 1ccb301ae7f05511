// Command vulnapi serves the deliberately vulnerable sample API of package
// vulnapi on a loopback address, for trying moat scan and moat in front of
// it:
//
//	go run ./examples/vulnapi/cmd/vulnapi -addr 127.0.0.1:9090
//	moat scan --target http://127.0.0.1:9090 --spec examples/vulnapi/openapi.yaml \
//	  --auth alice="Authorization: Bearer $(go run ./examples/vulnapi/cmd/vulnapi -print-token)" \
//	  --auth bob="X-API-Key: bob-key-0123456789"
//
// With -tls it serves HTTPS with a self-signed certificate generated at
// start (in memory; -tls-cert and -tls-key serve a certificate of yours
// instead). The vulnerable variant then accepts TLS 1.0, TLS 1.1 and a 3DES
// suite (the planted weak-tls flaw), the hardened one TLS 1.2 and later
// with modern suites; scan it with --target https://127.0.0.1:9443
// --insecure:
//
//	go run ./examples/vulnapi/cmd/vulnapi -addr 127.0.0.1:9443 -tls
//
// It refuses non-loopback addresses unless -unsafe-listen is given.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/moat-gateway/moat/examples/vulnapi"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9090", "listen address")
	hardened := flag.Bool("hardened", false, "serve the hardened variant")
	subject := flag.String("subject-header", "", "trust this header (set by moat, e.g. X-Moat-Subject) for the caller's user ID")
	useTLS := flag.Bool("tls", false, "serve HTTPS with a self-signed certificate generated at start (the vulnerable variant accepts TLS 1.0, 1.1 and a 3DES suite)")
	certFile := flag.String("tls-cert", "", "serve HTTPS with this PEM certificate instead of a generated one")
	keyFile := flag.String("tls-key", "", "PEM private key of -tls-cert")
	unsafe := flag.Bool("unsafe-listen", false, "allow a non-loopback listen address")
	printToken := flag.Bool("print-token", false, "print a token for alice (user 1) and exit")
	flag.Parse()

	api := vulnapi.New(vulnapi.Options{Hardened: *hardened, SubjectHeader: *subject})
	if *printToken {
		fmt.Println(api.AliceToken())
		return
	}
	if err := run(api, *addr, *hardened, *useTLS || *certFile != "", *certFile, *keyFile, *unsafe); err != nil {
		log.Fatalf("vulnapi: %v", err)
	}
}

func run(api *vulnapi.API, addr string, hardened, useTLS bool, certFile, keyFile string, unsafe bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); !unsafe && (ip == nil || !ip.IsLoopback()) && host != "localhost" {
		return errors.New("refusing to serve a deliberately vulnerable API on a non-loopback address (use -unsafe-listen)")
	}
	srv := &http.Server{Addr: addr, Handler: api, ReadHeaderTimeout: 5 * time.Second}
	if !useTLS {
		fmt.Fprintf(os.Stderr, "vulnapi (hardened=%v) listening on http://%s\n", hardened, addr)
		return srv.ListenAndServe()
	}
	var cert tls.Certificate
	if certFile != "" {
		cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	} else {
		cert, err = vulnapi.SelfSignedCert()
	}
	if err != nil {
		return err
	}
	srv.TLSConfig = vulnapi.TLSConfig(hardened, cert)
	fmt.Fprintf(os.Stderr, "vulnapi (hardened=%v) listening on https://%s\n", hardened, addr)
	return srv.ListenAndServeTLS("", "")
}
