package config

import (
	"fmt"
	"os"
	"strings"
)

// Load reads, decodes, defaults and validates the configuration file at path.
// On failure it returns an *Error listing every problem with file:line and
// field path, or an error naming the file if it cannot be read.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes, defaults and validates a configuration held in data; file
// names it in messages.
func Parse(file string, data []byte) (*Config, error) {
	const maxConfigSize = 16 << 20
	if len(data) > maxConfigSize {
		return nil, &Error{Problems: []Problem{{File: file, Msg: fmt.Sprintf("file is larger than %d MiB", maxConfigSize>>20)}}}
	}
	c := &Config{}
	pos, decodeErr := decodeYAML(file, data, c)
	var decoded []Problem
	if decodeErr != nil {
		decoded = decodeErr.(*Error).Problems
		if len(decoded) == 1 && decoded[0].Path == "" {
			return nil, decodeErr // not YAML, or empty: nothing to validate
		}
	}
	c.file, c.pos = file, pos
	applyDefaults(c)
	for i, r := range c.Routes {
		if r != nil {
			r.Line = pos[fmt.Sprintf("routes[%d]", i)].line
		}
	}
	// Validate even what decoded only partly, so that one run reports
	// every problem; skip findings about fields that failed to decode.
	p := &problems{file: file, pos: pos}
	validate(c, p)
	all := decoded
	for _, vp := range p.list {
		if !overlaps(vp.Path, decoded) {
			all = append(all, vp)
		}
	}
	if len(all) > 0 {
		e := &Error{Problems: all}
		e.sort()
		if n := len(e.Problems); n > maxProblems {
			e.Problems = append(e.Problems[:maxProblems], Problem{File: file, Msg: fmt.Sprintf("%d more problems not shown", n-maxProblems)})
		}
		return nil, e
	}
	return c, nil
}

// File returns the name of the file the configuration was read from.
func (c *Config) File() string { return c.file }

// Problems returns a collector for problems found after Load (while building
// stages from c): each Problem gets the position of its field path.
func (c *Config) Problems() *Problems {
	return &Problems{p: problems{file: c.file, pos: c.pos}}
}

// Problems collects problems against a loaded configuration's positions. The
// zero value is not usable; get one from Config.Problems.
type Problems struct{ p problems }

// Add records a problem at a field path such as routes[2].cors.
func (ps *Problems) Add(path string, err error) { ps.p.add(path, "%v", err) }

// Err returns an *Error with every problem added, or nil.
func (ps *Problems) Err() error { return ps.p.err() }

// overlaps reports whether path is, contains or lies inside the path of one of
// the problems.
func overlaps(path string, ps []Problem) bool {
	for _, p := range ps {
		if within(path, p.Path) || within(p.Path, path) {
			return true
		}
	}
	return false
}

// within reports whether path equals parent or lies below it.
func within(path, parent string) bool {
	if !strings.HasPrefix(path, parent) {
		return false
	}
	rest := path[len(parent):]
	return rest == "" || rest[0] == '.' || rest[0] == '['
}
