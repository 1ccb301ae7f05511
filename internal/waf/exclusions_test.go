package waf

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
)

// Payloads with a known, single-rule signature at paranoia level 1:
// the SQLi tautology matches 942100 (libinjection) only, the script tag
// matches four XSS rules.
var (
	sqliInQuery    = req{target: "/books?q=1'%20OR%20'1'='1"}
	sqliInPassword = req{method: "POST", target: "/login", body: `{"username":"bob","password":"' or '1'='1"}`}
	sqliInUsername = req{method: "POST", target: "/login", body: `{"username":"' or '1'='1","password":"x"}`}
	sqliInQueryPwd = req{target: "/login?password=%27%20or%20%271%27%3D%271"}
	sqliInCookie   = req{target: "/books", headers: map[string]string{"Cookie": "session=' or '1'='1; theme=dark"}}
	xssInQuery     = req{target: "/search?q=%3Cscript%3Ealert(1)%3C/script%3E"}
)

// TestExclusions shows that each kind of exclusion lets exactly the
// intended request through: the excluded rule (or variable) stops
// matching, and the same attack elsewhere, or another attack, is still
// blocked.
func TestExclusions(t *testing.T) {
	tests := []struct {
		desc    string
		cfg     config.WAF
		pass    []req // now let through
		block   []req // still refused
		notRule int   // rule that must no longer be noted on the passing requests
	}{
		{
			desc:    "by rule ID",
			cfg:     config.WAF{ExcludeRules: []string{"942100"}},
			pass:    []req{sqliInQuery, sqliInPassword, sqliInCookie},
			block:   []req{xssInQuery},
			notRule: 942100,
		},
		{
			desc:    "by rule ID range",
			cfg:     config.WAF{ExcludeRules: []string{"942000-942999"}},
			pass:    []req{sqliInQuery, sqliInCookie},
			block:   []req{xssInQuery},
			notRule: 942100,
		},
		{
			desc:    "by tag",
			cfg:     config.WAF{ExcludeTags: []string{"attack-sqli"}},
			pass:    []req{sqliInQuery, sqliInUsername},
			block:   []req{xssInQuery},
			notRule: 942100,
		},
		{
			desc:    "by target of one rule: a JSON field",
			cfg:     config.WAF{ExcludeTargets: []config.WAFTargetRemoval{{RuleID: "942100", Target: "ARGS:json.password"}}},
			pass:    []req{sqliInPassword},
			block:   []req{sqliInUsername, sqliInQueryPwd, sqliInCookie, xssInQuery},
			notRule: 942100,
		},
		{
			desc:    "by target of a range of rules",
			cfg:     config.WAF{ExcludeTargets: []config.WAFTargetRemoval{{RuleID: "942000-942999", Target: "ARGS:json.password"}}},
			pass:    []req{sqliInPassword},
			block:   []req{sqliInUsername, xssInQuery},
			notRule: 942100,
		},
		{
			desc:    "by target of one rule: a query parameter",
			cfg:     config.WAF{ExcludeTargets: []config.WAFTargetRemoval{{RuleID: "942100", Target: "ARGS:password"}}},
			pass:    []req{sqliInQueryPwd},
			block:   []req{sqliInPassword, sqliInQuery},
			notRule: 942100,
		},
		{
			desc:    "by target of tagged rules: a cookie",
			cfg:     config.WAF{ExcludeTargets: []config.WAFTargetRemoval{{Tag: "attack-sqli", Target: "REQUEST_COOKIES:session"}}},
			pass:    []req{sqliInCookie},
			block:   []req{sqliInQuery, {target: "/books", headers: map[string]string{"Cookie": "pref=' or '1'='1"}}},
			notRule: 942100,
		},
		{
			desc:    "by target with a regular expression",
			cfg:     config.WAF{ExcludeTargets: []config.WAFTargetRemoval{{RuleID: "942100", Target: `ARGS:/^json\.(password|passphrase)$/`}}},
			pass:    []req{sqliInPassword, {method: "POST", target: "/login", body: `{"passphrase":"' or '1'='1"}`}},
			block:   []req{sqliInUsername},
			notRule: 942100,
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			s := newStage(t, tt.cfg)
			for _, r := range tt.pass {
				ex, rej := verdict(t, s, r)
				if rej != nil {
					t.Errorf("%s %s %s: refused: %s", r.method, r.target, r.body, rej.Detail)
				}
				if hasRule(ex, tt.notRule) {
					t.Errorf("%s %s %s: rule %d still noted: %v", r.method, r.target, r.body, tt.notRule, ruleIDs(ex))
				}
			}
			for _, r := range tt.block {
				if _, rej := verdict(t, s, r); rej == nil || rej.ReasonID != ReasonBlocked {
					t.Errorf("%s %s %s: not blocked (%v)", r.method, r.target, r.body, rej)
				}
			}
		})
	}
	// The default configuration blocks every request the cases let through.
	s := newStage(t, config.WAF{})
	for _, r := range []req{sqliInQuery, sqliInPassword, sqliInUsername, sqliInQueryPwd, sqliInCookie, xssInQuery} {
		if _, rej := verdict(t, s, r); rej == nil {
			t.Errorf("default config passes %s %s %s", r.method, r.target, r.body)
		}
	}
}

// TestDetectMode checks that detect mode lets attacks through while noting
// what block mode would have done, and stays quiet on clean requests.
func TestDetectMode(t *testing.T) {
	s := newStage(t, config.WAF{Mode: "detect"})
	for _, tt := range attacks {
		t.Run(tt.desc, func(t *testing.T) {
			ex, rej := verdict(t, s, tt.r)
			if rej != nil {
				t.Fatalf("refused in detect mode: %d %s", rej.Status, rej.ReasonID)
			}
			if !hasRule(ex, 949110) || ex.Findings[NoteWouldBlock] != true {
				t.Errorf("findings %v: want 949110 and %s", ex.Findings, NoteWouldBlock)
			}
			if score, _ := ex.Findings[NoteScore].(int); score < 5 {
				t.Errorf("score %d, want at least 5", score)
			}
		})
	}
	t.Run("clean request", func(t *testing.T) {
		ex, rej := verdict(t, s, req{target: "/books?q=dune"})
		if rej != nil || len(ex.Findings) != 0 {
			t.Fatalf("reject %v, findings %v; want neither", rej, ex.Findings)
		}
	})
	t.Run("below the threshold", func(t *testing.T) {
		// A POST without Content-Length scores 3 (920180, warning): noted,
		// not a would-be block.
		ex := exchange(req{method: http.MethodPost, target: "/books", body: `{"title":"Dune"}`})
		ex.Request.Header.Del("Content-Length")
		if err := s.ProcessRequest(t.Context(), ex); err != nil {
			t.Fatal(err)
		}
		if !hasRule(ex, 920180) || ex.Findings[NoteScore] != 3 || ex.Findings[NoteWouldBlock] != nil {
			t.Fatalf("findings %v: want 920180, score 3, no %s", ex.Findings, NoteWouldBlock)
		}
	})
	t.Run("unparsable body", func(t *testing.T) {
		ex, rej := verdict(t, s, req{method: http.MethodPost, target: "/books", body: `{"title":`})
		if rej != nil || !hasRule(ex, ruleReqBodyError) || ex.Findings[NoteWouldBlock] != true {
			t.Fatalf("reject %v, findings %v: want a pass noting %d and %s", rej, ex.Findings, ruleReqBodyError, NoteWouldBlock)
		}
	})
}

// TestThresholdAndParanoia checks that the knobs change decisions the way
// CRS documents: a higher threshold lets a single critical match through, a
// higher paranoia level catches what level 1 does not.
func TestThresholdAndParanoia(t *testing.T) {
	lenient := newStage(t, config.WAF{InboundAnomalyThreshold: 10})
	if ex, rej := verdict(t, lenient, sqliInQuery); rej != nil || ex.Findings[NoteScore] != 5 {
		t.Errorf("threshold 10: reject %v, findings %v; want a pass with score 5", rej, ex.Findings)
	}
	if _, rej := verdict(t, lenient, xssInQuery); rej == nil {
		t.Error("threshold 10: XSS scoring 20 passed")
	}

	// 942432 (SQL meta-characters, more than 2 in a row) is a paranoia level 4 rule.
	meta := req{target: "/search?q=a%27%27%27b"}
	pl1 := newStage(t, config.WAF{})
	pl4 := newStage(t, config.WAF{ParanoiaLevel: 4})
	if ex, rej := verdict(t, pl1, meta); rej != nil || hasRule(ex, 942432) {
		t.Errorf("paranoia 1: reject %v, rules %v; want a pass without 942432", rej, ruleIDs(ex))
	}
	if ex, rej := verdict(t, pl4, meta); rej == nil || !hasRule(ex, 942432) {
		t.Errorf("paranoia 4: reject %v, rules %v; want a block by 942432", rej, ruleIDs(ex))
	}
}

// TestUninspectable checks that a request the WAF cannot inspect in full is
// refused with 400 waf_uninspectable, not passed with parts unseen.
func TestUninspectable(t *testing.T) {
	s := newStage(t, config.WAF{})
	few := newStage(t, config.WAF{MaxArguments: 10})
	var args, leaves []string
	for i := range 11 {
		args = append(args, "f"+itoa(i)+"=1")
		leaves = append(leaves, `"f`+itoa(i)+`":1`)
	}
	tests := []struct {
		desc string
		s    *Stage
		r    req
		rule int
	}{
		{desc: "truncated JSON", s: s, r: req{method: http.MethodPost, target: "/books", body: `{"title":"Dune",`}, rule: ruleReqBodyError},
		{desc: "JSON with trailing garbage", s: s, r: req{method: http.MethodPost, target: "/books", body: `{"a":1}}}`}, rule: ruleReqBodyError},
		{desc: "multipart without a closing boundary", s: s, r: req{method: http.MethodPost, target: "/upload",
			body:    "--b1\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue\r\n",
			headers: map[string]string{"Content-Type": "multipart/form-data; boundary=b1"}}, rule: ruleMultipartError},
		{desc: "more JSON leaves than max_arguments", s: few, r: req{method: http.MethodPost, target: "/books", body: "{" + strings.Join(leaves, ",") + "}"}, rule: ruleArgsLimitBody},
		{desc: "more query arguments than max_arguments", s: few, r: req{target: "/books?" + strings.Join(args, "&")}, rule: ruleArgsLimitURI},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			ex, rej := verdict(t, tt.s, tt.r)
			if rej == nil || rej.Status != http.StatusBadRequest || rej.ReasonID != ReasonUninspectable {
				t.Fatalf("got %v (findings %v), want 400 %s", rej, ex.Findings, ReasonUninspectable)
			}
			if !hasRule(ex, tt.rule) {
				t.Errorf("rules %v lack %d", ruleIDs(ex), tt.rule)
			}
		})
	}
	// At the limit is fine.
	if _, rej := verdict(t, few, req{target: "/books?" + strings.Join(args[:10], "&")}); rej != nil {
		t.Errorf("10 arguments with max_arguments 10: %v", rej)
	}
}

// TestMaxRequestBody checks that a body over max_request_body is refused,
// never inspected in part.
func TestMaxRequestBody(t *testing.T) {
	s := newStage(t, config.WAF{MaxRequestBody: 64})
	if _, rej := verdict(t, s, req{method: http.MethodPost, target: "/books", body: `{"title":"Dune"}`}); rej != nil {
		t.Fatalf("small body refused: %v", rej)
	}
	big := `{"title":"Dune, the 40th anniversary edition with a new foreword","x":1}`
	_, rej := verdict(t, s, req{method: http.MethodPost, target: "/books", body: big})
	if rej == nil || rej.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("body of %d bytes: got %v, want 413", len(big), rej)
	}
}

// TestAllowedMethodsAndContentTypes checks the CRS policy variables moat
// sets: API methods and JSON media types pass by default, anything else
// is refused by 911100 or 920420 until listed.
func TestAllowedMethodsAndContentTypes(t *testing.T) {
	def := newStage(t, config.WAF{})
	textBody := req{method: http.MethodPost, target: "/notes", body: "remember the milk", headers: map[string]string{"Content-Type": "text/plain; charset=utf-8"}}
	for _, r := range []req{
		{method: http.MethodDelete, target: "/books/1"},
		{method: http.MethodPatch, target: "/books/1", body: `{"stock":3}`, headers: map[string]string{"Content-Type": "application/merge-patch+json"}},
		{method: http.MethodPost, target: "/articles", body: `{"data":{}}`, headers: map[string]string{"Content-Type": "application/vnd.api+json"}},
	} {
		if _, rej := verdict(t, def, r); rej != nil {
			t.Errorf("%s %s %s: refused: %s", r.method, r.target, r.headers["Content-Type"], rej.Detail)
		}
	}
	if ex, rej := verdict(t, def, textBody); rej == nil || !hasRule(ex, 920420) {
		t.Errorf("text/plain body: reject %v, rules %v; want a block by 920420", rej, ruleIDs(ex))
	}
	plain := newStage(t, config.WAF{AllowedContentTypes: append(slices.Clone(config.DefaultWAFAllowedContentTypes), "text/plain")})
	if _, rej := verdict(t, plain, textBody); rej != nil {
		t.Errorf("text/plain listed: refused: %s", rej.Detail)
	}
	getOnly := newStage(t, config.WAF{AllowedMethods: []string{"GET", "HEAD"}})
	if ex, rej := verdict(t, getOnly, req{method: http.MethodDelete, target: "/books/1"}); rej == nil || !hasRule(ex, 911100) {
		t.Errorf("DELETE with allowed_methods GET, HEAD: reject %v, rules %v; want a block by 911100", rej, ruleIDs(ex))
	}
}
