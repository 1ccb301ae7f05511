package waf

import (
	"strings"
	"sync"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
)

func cached(e *engine) bool {
	cache.mu.Lock()
	defer cache.mu.Unlock()
	return cache.m[e.key] == e
}

// TestEngineShared checks that routes with the same effective WAF
// configuration share one engine, that a different configuration gets its
// own, and that the engine is dropped when its last stage closes.
func TestEngineShared(t *testing.T) {
	build := func(cfg config.WAF) *Stage {
		cfg.ApplyDefaults()
		s, err := New(&cfg, quiet)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Built concurrently, as a thousand routes might be: one engine.
	stages := make([]*Stage, 8)
	var wg sync.WaitGroup
	for i := range stages {
		wg.Go(func() { stages[i] = build(config.WAF{ParanoiaLevel: 2}) })
	}
	wg.Wait()
	for _, s := range stages[1:] {
		if s.eng != stages[0].eng {
			t.Fatal("equal configurations got different engines")
		}
	}
	// Explicit defaults are the same configuration as implicit ones;
	// max_request_body is enforced by the stage and does not split engines.
	same := build(config.WAF{ParanoiaLevel: 2, Mode: "block", InboundAnomalyThreshold: 5, MaxRequestBody: 4096})
	if same.eng != stages[0].eng {
		t.Error("a configuration differing only in explicit defaults and max_request_body got its own engine")
	}
	other := build(config.WAF{ParanoiaLevel: 3})
	if other.eng == stages[0].eng {
		t.Error("paranoia levels 2 and 3 share an engine")
	}
	other.Close()
	if cached(other.eng) {
		t.Error("engine still cached after its only stage closed")
	}

	eng := stages[0].eng
	for _, s := range stages {
		s.Close()
		s.Close() // idempotent
	}
	if !cached(eng) {
		t.Fatal("engine dropped while a stage still uses it")
	}
	if _, rej := verdict(t, same, sqliInQuery); rej == nil {
		t.Error("the remaining stage no longer blocks")
	}
	same.Close()
	if cached(eng) {
		t.Error("engine still cached after the last stage closed")
	}
}

// TestRender pins the generated SecLang for a configuration with every kind
// of exclusion: the order matters (exclusions after the rules they change,
// CRS variables before the rules read them).
func TestRender(t *testing.T) {
	cfg := config.WAF{
		ParanoiaLevel: 2, InboundAnomalyThreshold: 7, Mode: "detect",
		ExcludeRules:    []string{"942100", "920300-920330"},
		ExcludeTags:     []string{"attack-xss"},
		ExcludeTargets:  []config.WAFTargetRemoval{{RuleID: "932235", Target: "ARGS:json.query"}, {Tag: "attack-sqli", Target: "REQUEST_COOKIES:session"}},
		SetupDirectives: `SecAction "id:900300,phase:1,pass,nolog,setvar:tx.arg_length=2000"`,
		Directives:      `SecRule ARGS:debug "@streq 1" "id:10001,phase:1,deny,status:403,log"`,
	}
	cfg.ApplyDefaults()
	set := settingsOf(&cfg)
	text := set.render()
	order := []string{
		"SecRuleEngine DetectionOnly",
		"SecRxPreFilter Off\n",
		"SecRequestBodyInMemoryLimit 1073741824",
		"SecResponseBodyAccess Off",
		"SecAuditEngine Off",
		"ctl:requestBodyProcessor=JSON",
		"Include @crs-setup.conf.example",
		"setvar:tx.blocking_paranoia_level=2",
		"setvar:tx.inbound_anomaly_score_threshold=7",
		"tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE",
		"tx.allowed_request_content_type=|application/x-www-form-urlencoded| |multipart/form-data|",
		"setvar:tx.arg_length=2000",
		"Include @owasp_crs/*.conf",
		"SecRuleRemoveById 942100\n",
		"SecRuleRemoveById 920300-920330\n",
		"SecRuleRemoveByTag attack-xss\n",
		`SecRuleUpdateTargetById 932235 "!ARGS:json.query"`,
		`SecRuleUpdateTargetByTag attack-sqli "!REQUEST_COOKIES:session"`,
		`SecRule ARGS:debug`,
	}
	at := 0
	for _, want := range order {
		i := strings.Index(text[at:], want)
		if i < 0 {
			t.Fatalf("%q missing or out of order in:\n%s", want, text)
		}
		at += i + len(want)
	}
	// And it compiles, with the expert rule active.
	s := newStage(t, cfg)
	ex, rej := verdict(t, s, req{target: "/books?debug=1"})
	if rej != nil || !hasRule(ex, 10001) {
		t.Errorf("detect mode with a custom deny rule: reject %v, rules %v; want a pass noting 10001", rej, ruleIDs(ex))
	}
}

// TestNewRefuses checks the configuration errors New reports, including
// those only the compiled rule set can tell (unknown IDs and tags).
func TestNewRefuses(t *testing.T) {
	tests := []struct {
		desc string
		cfg  config.WAF
		want string
	}{
		{desc: "paranoia out of range", cfg: config.WAF{ParanoiaLevel: 5}, want: "paranoia_level: must be 1, 2, 3 or 4"},
		{desc: "unknown mode", cfg: config.WAF{Mode: "log"}, want: `mode: must be block or detect, not "log"`},
		{desc: "rule ID not in CRS", cfg: config.WAF{ExcludeRules: []string{"942999"}}, want: "exclude_rules[0]: no CRS 4.25.0 rule has ID 942999"},
		{desc: "range without rules", cfg: config.WAF{ExcludeRules: []string{"1-99"}}, want: "exclude_rules[0]: no CRS 4.25.0 rule has an ID in 1-99"},
		{desc: "blocking evaluation rule", cfg: config.WAF{ExcludeRules: []string{"949110"}}, want: `"949110" covers rules the WAF cannot work without`},
		{desc: "range over initialization", cfg: config.WAF{ExcludeRules: []string{"900000-999999"}}, want: `"900000-999999" covers rules`},
		{desc: "argument limit rule", cfg: config.WAF{ExcludeRules: []string{"200005"}}, want: `"200005" covers rules the WAF cannot work without`},
		{desc: "unknown tag", cfg: config.WAF{ExcludeTags: []string{"attack-SQLI"}}, want: `exclude_tags[0]: no CRS 4.25.0 rule has the tag "attack-SQLI"`},
		{desc: "tag of the evaluation rules", cfg: config.WAF{ExcludeTags: []string{"OWASP_CRS"}}, want: "which the CRS needs to score and block"},
		{desc: "target of unknown rule", cfg: config.WAF{ExcludeTargets: []config.WAFTargetRemoval{{RuleID: "942999", Target: "ARGS:x"}}}, want: `rule "942999" not found`},
		{desc: "target of unknown tag", cfg: config.WAF{ExcludeTargets: []config.WAFTargetRemoval{{Tag: "nope", Target: "ARGS:x"}}}, want: `exclude_targets[0].tag: no CRS 4.25.0 rule has the tag "nope"`},
		{desc: "target without key syntax", cfg: config.WAF{ExcludeTargets: []config.WAFTargetRemoval{{RuleID: "942100", Target: `ARGS:a"b`}}}, want: "exclude_targets[0].target"},
		{desc: "both rule and tag", cfg: config.WAF{ExcludeTargets: []config.WAFTargetRemoval{{RuleID: "942100", Tag: "attack-sqli", Target: "ARGS:x"}}}, want: "set exactly one of rule_id and tag"},
		{desc: "expert directive that turns the engine off", cfg: config.WAF{Directives: "# tuning\nSecRuleEngine Off"}, want: "directives: line 2: SecRuleEngine is not allowed"},
		{desc: "expert directive continued over lines", cfg: config.WAF{SetupDirectives: "SecAction \"id:1,pass\"\nSecAuditLog \\\n  /var/log/audit.log"}, want: "setup_directives: line 2: SecAuditLog is not allowed"},
		{desc: "expert SecLang that does not compile", cfg: config.WAF{Directives: `SecRule ARGS "@rx (" "id:10002,phase:1,deny"`}, want: "building the WAF"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			cfg := tt.cfg
			cfg.ApplyDefaults()
			s, err := New(&cfg, quiet)
			if err == nil {
				s.Close()
				t.Fatalf("New succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// TestNewDisabled checks that a missing or disabled block builds no stage.
func TestNewDisabled(t *testing.T) {
	off := false
	for _, cfg := range []*config.WAF{nil, {Enabled: &off, ParanoiaLevel: 9}} {
		s, err := New(cfg, quiet)
		if s != nil || err != nil {
			t.Fatalf("New(%+v) = %v, %v; want nil, nil", cfg, s, err)
		}
	}
}

// TestValidateTargets pins the target syntax accepted in configuration.
func TestValidateTargets(t *testing.T) {
	ok := []string{"ARGS:password", "ARGS:json.user.password", "ARGS:json.items.0.note", "REQUEST_COOKIES:session",
		"REQUEST_HEADERS:User-Agent", "ARGS_NAMES:$filter", `ARGS:/^json\.notes\./`, `ARGS:/^(a|b)$/`, `ARGS:/a\/b/`, "REQUEST_BODY", "ARGS"}
	bad := []string{"", "args:password", "ARGS:pass word", `ARGS:"x"`, "ARGS:a'b", "TX:score", "REQUEST_BODY:x", `ARGS:/a/b/`, `ARGS:/(/`, "ARGS://", "NOPE"}
	for _, s := range ok {
		if err := config.ValidateWAFTarget(s); err != nil {
			t.Errorf("ValidateWAFTarget(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range bad {
		if err := config.ValidateWAFTarget(s); err == nil {
			t.Errorf("ValidateWAFTarget(%q) = nil, want an error", s)
		}
	}
}

// TestValidatePaths checks that problems name the field at fault below the
// given path and that every problem is reported at once.
func TestValidatePaths(t *testing.T) {
	cfg := config.WAF{ParanoiaLevel: 7, Mode: "x", ExcludeRules: []string{"abc", "5-1"}, AllowedMethods: []string{"get"},
		AllowedContentTypes: []string{"Application/JSON"}, ResponseMIMETypes: []string{"json"}, MaxRequestBody: -1}
	cfg.ApplyDefaults()
	var paths []string
	for _, p := range cfg.Validate("routes[2].waf") {
		paths = append(paths, p.Path)
	}
	want := []string{"routes[2].waf.paranoia_level", "routes[2].waf.mode", "routes[2].waf.exclude_rules[0]", "routes[2].waf.exclude_rules[1]",
		"routes[2].waf.max_request_body", "routes[2].waf.response_mime_types[0]", "routes[2].waf.allowed_methods[0]", "routes[2].waf.allowed_content_types[0]"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("problem paths\n got %v\nwant %v", paths, want)
	}
}
