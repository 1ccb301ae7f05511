package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/moat-gateway/moat/examples"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/server"
)

// Options configures Run.
type Options struct {
	Listen     string    // gateway address; must be loopback
	ConfigPath string    // configuration file; "" means the embedded quickstart
	Out        io.Writer // where the URLs and curl commands are printed
	Log        *slog.Logger
	Ready      func(gateway, upstream string) // called once both are serving
}

// Run starts the bookstore on a free loopback port and the gateway in front of
// it, prints how to try them, and serves until ctx is cancelled.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	host, _, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %v", o.Listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--listen %q: the demo listens on loopback only (127.0.0.1 or ::1)", o.Listen)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("starting the bookstore: %w", err)
	}
	api := &http.Server{Handler: NewBookstore().Handler(), ReadHeaderTimeout: 5 * time.Second}
	go api.Serve(ln)
	defer api.Close()
	upstream := "http://" + ln.Addr().String()

	path := o.ConfigPath
	if path == "" {
		dir, err := os.MkdirTemp("", "moat-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "quickstart.yaml")
		if err := os.WriteFile(path, examples.Quickstart, 0o600); err != nil {
			return err
		}
	}
	patch := func(c *config.Config) {
		if u, ok := c.Upstreams["bookstore"]; ok && len(u.Targets) > 0 {
			var t config.URL
			_ = t.UnmarshalText([]byte(upstream))
			u.Targets = []config.URL{t}
		}
		if len(c.Listeners) > 0 {
			c.Listeners[0].Address = o.Listen
		}
	}
	ready := func(addrs []net.Addr) {
		gw := "http://" + addrs[0].String()
		printIntro(o.Out, gw, upstream)
		if o.Ready != nil {
			o.Ready(gw, upstream)
		}
	}
	return server.Run(ctx, path, server.Options{Patch: patch, Ready: ready, Log: o.Log})
}

func printIntro(w io.Writer, gw, upstream string) {
	fmt.Fprintf(w, `moat demo
  gateway:   %[1]s   (examples/quickstart.yaml)
  bookstore: %[2]s   (examples/bookstore.openapi.yaml)

Try:
  # allowed: proxied to the bookstore, with security headers added and Server/X-Powered-By removed
  curl -i %[1]s/books

  # unknown path: 404 problem+json with reason_id route_not_found
  curl -i %[1]s/admin

  # method not declared for the path: 405 with Allow
  curl -i -X DELETE %[1]s/books/1

  # CORS preflight from an origin that is not allowed: 403 cors_origin_denied
  curl -i -X OPTIONS -H 'Origin: https://evil.example' -H 'Access-Control-Request-Method: GET' %[1]s/books

  # CORS preflight from the allowed origin: 204 with Access-Control-Allow-Origin
  curl -i -X OPTIONS -H 'Origin: https://app.example.com' -H 'Access-Control-Request-Method: GET' %[1]s/books

Press Ctrl-C to stop.
`, gw, upstream)
}
