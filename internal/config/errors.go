package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a configuration file.
type Problem struct {
	File string // file name as given to Load or Parse
	Line int    // 1-based; 0 when the problem has no position (a missing section)
	Col  int
	Path string // field path such as routes[2].upstream; "" for the whole file
	Msg  string
}

// String formats the problem as file:line:col: path: message.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, p.Col)
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is every problem found in a configuration, reported at once.
type Error struct {
	Problems []Problem
}

// Error lists the problems, one per line, in file order.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (e *Error) sort() {
	sort.SliceStable(e.Problems, func(i, j int) bool {
		a, b := e.Problems[i], e.Problems[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// problems collects Problems with positions looked up from the decoded file.
type problems struct {
	file string
	pos  map[string]position
	list []Problem
}

type position struct{ line, col int }

// add records a problem at path; the position is that of path or of its
// nearest ancestor present in the file.
func (p *problems) add(path string, format string, args ...any) {
	pos := p.lookup(path)
	p.list = append(p.list, Problem{File: p.file, Line: pos.line, Col: pos.col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) addAt(pos position, path, format string, args ...any) {
	p.list = append(p.list, Problem{File: p.file, Line: pos.line, Col: pos.col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) lookup(path string) position {
	for path != "" {
		if pos, ok := p.pos[path]; ok {
			return pos
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return position{}
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	e := &Error{Problems: p.list}
	e.sort()
	return e
}
