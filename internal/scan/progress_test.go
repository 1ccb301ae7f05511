package scan

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestProgress pins what the progress writer prints on a terminal (one
// line redrawn with \r and an erase, a bar of 24 cells, counts, the probe)
// and elsewhere (a plain line per probe, no control characters).
func TestProgress(t *testing.T) {
	const erase = "\r\x1b[K"
	tests := []struct {
		desc string
		tty  bool
		max  int
		run  func(p *progress)
		want string
	}{
		{
			desc: "terminal: redraw per probe and request, erase before the summary",
			tty:  true, max: 100,
			run: func(p *progress) {
				p.probe("discovery", 0)
				p.request(1, 0)
				p.request(50, 2)
				p.probe("bola", 50)
				p.request(100, 3)
				p.done(100, 3)
			},
			want: erase + "moat scan [........................] 0/100 requests  discovery" +
				erase + "moat scan [........................] 1/100 requests, 0 findings  discovery" +
				erase + "moat scan [############............] 50/100 requests, 2 findings  discovery" +
				erase + "moat scan [############............] 50/100 requests  bola" +
				erase + "moat scan [########################] 100/100 requests, 3 findings  bola" +
				erase + "moat scan: done, 100 requests, 3 findings\n",
		},
		{
			desc: "terminal: the bar is capped at its width",
			tty:  true, max: 4,
			run:  func(p *progress) { p.request(6, 0) },
			want: erase + "moat scan [########################] 6/4 requests, 0 findings  ",
		},
		{
			desc: "terminal: nothing drawn, nothing erased",
			tty:  true, max: 10,
			run:  func(p *progress) { p.done(0, 0) },
			want: "moat scan: done, 0 requests, 0 findings\n",
		},
		{
			desc: "not a terminal: a line per probe, requests silent",
			max:  100,
			run: func(p *progress) {
				p.probe("discovery", 0)
				p.request(1, 0)
				p.request(50, 2)
				p.probe("bola", 50)
				p.done(60, 2)
			},
			want: "moat scan: discovery (0/100 requests)\n" +
				"moat scan: bola (50/100 requests)\n" +
				"moat scan: done, 60 requests, 2 findings\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var b bytes.Buffer
			tc.run(newProgress(&b, tc.tty, tc.max))
			if got := b.String(); got != tc.want {
				t.Errorf("wrote\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

// TestProgressNilWriter checks that a scan without progress output writes
// nothing and does not fail.
func TestProgressNilWriter(t *testing.T) {
	p := newProgress(nil, true, 10)
	p.probe("discovery", 0)
	p.request(1, 0)
	p.done(1, 0)
}

// TestProgressOfAScan runs a scan with progress to a non-terminal: one
// plain line per probe that ran, in order, then the summary; no control
// characters.
func TestProgressOfAScan(t *testing.T) {
	api := newTestAPI(false)
	srv := httptest.NewServer(api)
	defer srv.Close()
	var b bytes.Buffer
	o := testOptions(t, api, srv.URL)
	o.Progress, o.Probes = &b, []string{"cors", "trace"}
	runScan(t, o)
	out := b.String()
	if strings.ContainsAny(out, "\r\x1b") {
		t.Errorf("control characters in non-terminal progress: %q", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{"moat scan: discovery (", "moat scan: cors (", "moat scan: trace (", "moat scan: done, "}
	if len(lines) != len(want) {
		t.Fatalf("progress lines:\n%s\nwant %d lines", out, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d %q, want prefix %q", i, lines[i], w)
		}
	}
	if last := lines[len(lines)-1]; !strings.HasSuffix(last, " findings") {
		t.Errorf("summary line %q", last)
	}
}
