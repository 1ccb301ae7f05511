package waf

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/moat-gateway/moat/internal/config"
)

// benignRequest is one line of testdata/benign.jsonl: a realistic API request
// that the default WAF must let through.
type benignRequest struct {
	Desc        string            `json:"desc"`
	Method      string            `json:"method"`
	Target      string            `json:"target"`
	Headers     map[string]string `json:"headers"`
	Body        string            `json:"body"`
	ContentType string            `json:"content_type"`
	// KnownFP marks a request CRS refuses at paranoia level 1: the rules it
	// trips and the route exclusion that lets it through. docs/waf.md lists
	// them; the test keeps that list true.
	KnownFP *struct {
		Rules []int          `json:"rules"`
		Fix   map[string]any `json:"fix"`
	} `json:"known_fp"`
}

func (b benignRequest) req() req {
	r := req{method: b.Method, target: b.Target, headers: map[string]string{}, body: b.Body}
	for k, v := range b.Headers {
		r.headers[k] = v
	}
	if b.ContentType != "" {
		r.headers["Content-Type"] = b.ContentType
	}
	return r
}

func loadBenign(t *testing.T) []benignRequest {
	t.Helper()
	f, err := os.Open("testdata/benign.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []benignRequest
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	seen := map[string]bool{}
	for line := 1; sc.Scan(); line++ {
		var b benignRequest
		dec := json.NewDecoder(bytesReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			t.Fatalf("benign.jsonl:%d: %v", line, err)
		}
		if b.Desc == "" || b.Method == "" || b.Target == "" || seen[b.Desc] {
			t.Fatalf("benign.jsonl:%d: desc, method and target are required and desc must be unique", line)
		}
		seen[b.Desc] = true
		out = append(out, b)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBenignCorpusPasses runs every request of the benign corpus through the
// default WAF (paranoia level 1, inbound threshold 5, no exclusions). None
// may be refused, except the known false positives, which must be refused
// by exactly the rules recorded for them (so docs/waf.md stays true) and
// pass once their documented exclusions are configured.
func TestBenignCorpusPasses(t *testing.T) {
	corpus := loadBenign(t)
	if len(corpus) < 200 {
		t.Fatalf("benign corpus has %d requests, want at least 200", len(corpus))
	}
	s := newStage(t, config.WAF{})
	var fixed config.WAF // every documented fix at once: one engine instead of one per fix
	var fps []benignRequest
	for _, b := range corpus {
		t.Run(b.Desc, func(t *testing.T) {
			ex, rej := verdict(t, s, b.req())
			if b.KnownFP == nil {
				if rej != nil {
					t.Fatalf("refused: %d %s (%s)", rej.Status, rej.ReasonID, rej.Detail)
				}
				if score, _ := ex.Findings[NoteScore].(int); score >= 5 {
					t.Fatalf("score %d reached the threshold without a block", score)
				}
				return
			}
			fps = append(fps, b)
			if rej == nil || rej.ReasonID != ReasonBlocked {
				t.Fatalf("known false positive was not blocked (%v); remove known_fp from testdata/benign.jsonl and docs/waf.md", rej)
			}
			got := slices.DeleteFunc(slices.Clone(ruleIDs(ex)), func(id int) bool { return id == 949110 })
			if !slices.Equal(got, b.KnownFP.Rules) {
				t.Errorf("blocked by rules %v, recorded as %v", got, b.KnownFP.Rules)
			}
			var fix config.WAF
			text, err := yaml.Marshal(b.KnownFP.Fix)
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.UnmarshalWithOptions(text, &fix, yaml.Strict()); err != nil {
				t.Fatalf("fix: %v", err)
			}
			fixed.ExcludeRules = append(fixed.ExcludeRules, fix.ExcludeRules...)
			fixed.ExcludeTags = append(fixed.ExcludeTags, fix.ExcludeTags...)
			fixed.ExcludeTargets = append(fixed.ExcludeTargets, fix.ExcludeTargets...)
		})
	}
	t.Logf("%d requests passed, %d known false positives refused as recorded", len(corpus)-len(fps), len(fps))
	if len(fps) == 0 {
		return
	}
	// docs/waf.md lists each of them with its rules.
	doc, err := os.ReadFile("../../docs/waf.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range fps {
		ids := make([]string, len(b.KnownFP.Rules))
		for i, id := range b.KnownFP.Rules {
			ids[i] = itoa(id)
		}
		if row := "| " + strings.Join(ids, ", ") + " |"; !strings.Contains(string(doc), row) {
			t.Errorf("docs/waf.md has no false-positive row with rules %q (%s)", row, b.Desc)
		}
	}
	if want := itoa(len(corpus)-len(fps)) + " pass with no exclusion"; !strings.Contains(string(doc), want) {
		t.Errorf("docs/waf.md does not say %q", want)
	}
	tuned := newStage(t, fixed)
	for _, b := range fps {
		t.Run("with its fix/"+b.Desc, func(t *testing.T) {
			if _, rej := verdict(t, tuned, b.req()); rej != nil {
				t.Errorf("still refused with the documented exclusions: %s", rej.Detail)
			}
		})
	}
}
