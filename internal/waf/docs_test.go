package waf

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/moat-gateway/moat/internal/config"
)

// TestDocExamples decodes every waf block of the YAML examples in
// docs/waf.md strictly and builds it, so the documentation cannot show an
// option, tag or rule ID that does not work.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/waf.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	var wafs []any
	var find func(v any)
	find = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == "waf" {
					wafs = append(wafs, e)
				} else {
					find(e)
				}
			}
		case []any:
			for _, e := range x {
				find(e)
			}
		}
	}
	for _, b := range blocks {
		var v any
		if err := yaml.Unmarshal([]byte(dedent(b[1])), &v); err != nil {
			t.Fatalf("example does not parse: %v\n%s", err, b[1])
		}
		find(v)
	}
	if len(wafs) < 5 {
		t.Fatalf("found %d waf examples, want at least 5", len(wafs))
	}
	for _, w := range wafs {
		text, err := yaml.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		var cfg config.WAF
		if err := yaml.UnmarshalWithOptions(text, &cfg, yaml.Strict()); err != nil {
			t.Errorf("example waf block %s: %v", text, err)
			continue
		}
		newStage(t, cfg)
	}
}

// dedent removes the indentation common to every non-blank line.
func dedent(s string) string {
	lines := strings.Split(s, "\n")
	common := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " "))
		if common < 0 || n < common {
			common = n
		}
	}
	for i, l := range lines {
		if len(l) >= common && common > 0 {
			lines[i] = l[common:]
		}
	}
	return strings.Join(lines, "\n")
}
