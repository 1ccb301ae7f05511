package scan

import (
	"fmt"
	"io"
)

// progress writes the scan's progress. On a terminal it redraws one line;
// otherwise it writes a line when each probe starts, so logs stay readable.
type progress struct {
	w     io.Writer
	tty   bool
	max   int
	name  string
	dirty bool
}

func newProgress(w io.Writer, tty bool, max int) *progress {
	return &progress{w: w, tty: tty, max: max}
}

func (p *progress) probe(name string, used int) {
	if p.w == nil {
		return
	}
	p.name = name
	if p.tty {
		p.draw(used, -1)
		return
	}
	fmt.Fprintf(p.w, "moat scan: %s (%d/%d requests)\n", name, used, p.max)
}

func (p *progress) request(used, findings int) {
	if p.w == nil || !p.tty {
		return
	}
	p.draw(used, findings)
}

func (p *progress) draw(used, findings int) {
	const width = 24
	n := 0
	if p.max > 0 {
		n = min(width, used*width/p.max)
	}
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = '.'
		if i < n {
			bar[i] = '#'
		}
	}
	f := ""
	if findings >= 0 {
		f = fmt.Sprintf(", %d findings", findings)
	}
	fmt.Fprintf(p.w, "\r\x1b[Kmoat scan [%s] %d/%d requests%s  %s", bar, used, p.max, f, p.name)
	p.dirty = true
}

func (p *progress) done(used, findings int) {
	if p.w == nil {
		return
	}
	if p.tty && p.dirty {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	fmt.Fprintf(p.w, "moat scan: done, %d requests, %d findings\n", used, findings)
}
