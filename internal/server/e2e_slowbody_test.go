package server_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSlowBodyClient: a client that sends its headers at once and then
// trickles the body a byte at a time loses its connection when
// server.read_timeout runs out, counted from the start of the request,
// however steadily it sends; meanwhile other clients are served. Its
// request never completes at the upstream.
func TestSlowBodyClient(t *testing.T) {
	const readTimeout = time.Second
	a := newUpstream(t, "a")
	g := startGateway(t, fmt.Sprintf(`
server:
  watch_config: false
  shutdown_grace: 5s
  read_header_timeout: 500ms
  read_timeout: %s
listeners:
  - address: 127.0.0.1:0
upstreams:
  a:
    targets: [%s]
routes:
  - {name: books, path: /books, methods: [GET, POST], upstream: a, public: true}
  - {name: buffered, path: /buffered, methods: [POST], upstream: a, public: true, payload_limits: {json: {max_depth: 4}}}
`, readTimeout, a.URL()))

	tests := []struct {
		desc, path string
		interval   time.Duration // between body bytes
	}{
		{desc: "streamed body, 1 byte/s", path: "/books", interval: time.Second},
		{desc: "streamed body, 1 byte every 100ms", path: "/books", interval: 100 * time.Millisecond},
		{desc: "body buffered by a stage, 1 byte every 100ms", path: "/buffered", interval: 100 * time.Millisecond},
	}
	for i, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			caseID := fmt.Sprintf("slow-body-%d", i)
			conn, err := net.DialTimeout("tcp", g.addrs[0], 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			// 1000 bytes announced: at the rates above the body would take
			// 100s or more.
			head := "POST " + tt.path + " HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nX-Test-Case: " + caseID + "\r\n\r\n["
			if _, err := io.WriteString(conn, head); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var trickle sync.WaitGroup
			trickle.Add(1)
			go func() {
				defer trickle.Done()
				for range 20 { // bounded: stops at the first write error or after 20 bytes
					select {
					case <-stop:
						return
					case <-time.After(tt.interval):
					}
					if _, err := conn.Write([]byte("1")); err != nil {
						return
					}
				}
			}()
			defer func() { close(stop); trickle.Wait() }()

			// Normal clients are served while the slow one holds its
			// connection, on new connections and on a kept-alive one.
			served := 0
			for time.Since(start) < readTimeout/2 {
				if e := g.getEcho(t, "/books"); e.Upstream != "a" {
					t.Fatalf("normal request went to %q", e.Upstream)
				}
				served++
				time.Sleep(20 * time.Millisecond)
			}
			if served == 0 {
				t.Fatal("no normal request completed")
			}

			// The slow connection ends: EOF or a reset, possibly after a 400
			// body_read_failed problem response, never a 2xx.
			_ = conn.SetReadDeadline(time.Now().Add(readTimeout + 4*time.Second))
			br := bufio.NewReader(conn)
			status := 0
			resp, err := http.ReadResponse(br, nil)
			if err == nil {
				status = resp.StatusCode
				body, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if rerr != nil {
					t.Fatalf("reading the error response: %v", rerr)
				}
				// The gateway reports the body it could not read, without
				// forwarding anything complete.
				wantProblem(t, resp, body, http.StatusBadRequest, "body_read_failed")
				_, err = br.ReadByte()
			}
			elapsed := time.Since(start)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("slow connection still open %s after it started (read_timeout %s); response status %d", elapsed, readTimeout, status)
			}
			if err == nil {
				t.Fatalf("slow connection still usable after status %d", status)
			}
			if !errors.Is(err, io.EOF) && !isReset(err) {
				t.Fatalf("slow connection: unexpected error %v", err)
			}
			if elapsed < readTimeout-50*time.Millisecond {
				t.Errorf("slow connection closed after %s, before read_timeout %s", elapsed, readTimeout)
			}
			if elapsed > readTimeout+2*time.Second {
				t.Errorf("slow connection closed after %s, want about read_timeout %s", elapsed, readTimeout)
			}
			if _, complete := a.saw(caseID); complete {
				t.Error("the upstream received the slow request's body in full")
			}
			t.Logf("closed after %s, status %d, %v", elapsed.Round(time.Millisecond), status, err)

			// And the gateway still serves.
			if e := g.getEcho(t, "/books"); e.Upstream != "a" {
				t.Errorf("request after the slow client went to %q", e.Upstream)
			}
		})
	}
}

// isReset reports whether err is a connection reset or broken pipe.
func isReset(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe")
}
