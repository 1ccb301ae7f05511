// Command goproxy is the reference point for bench/run.sh: the smallest
// reverse proxy the Go standard library offers (net/http server plus
// httputil.ReverseProxy over a keep-alive Transport), with nothing of moat's
// own. The gap between it and nginx is what net/http costs; the gap between
// moat and it is what moat adds.
//
//	goproxy -listen 127.0.0.1:18090 -upstream http://127.0.0.1:18080
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18090", "address to serve on")
	upstream := flag.String("upstream", "http://127.0.0.1:18080", "upstream base URL")
	flag.Parse()

	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		log.Fatalf("goproxy: bad -upstream %q", *upstream)
	}
	// Same pool settings as moat's upstream transport (256 idle per host,
	// no compression negotiation).
	transport := &http.Transport{
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = target.Host
		},
		Transport: transport,
	}
	srv := &http.Server{
		Addr:              *listen,
		Handler:           proxy,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	log.Fatal(srv.ListenAndServe())
}
