package waf

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/experimental"
	"github.com/corazawaf/coraza/v3/types"

	"github.com/moat-gateway/moat/internal/config"
)

// CRSVersion is the version of the OWASP Core Rule Set compiled into moat.
const CRSVersion = "4.25.0"

// Rule IDs moat adds before the CRS. They keep the numbers of Coraza's
// recommended configuration (200000-200009), so documentation and CRS
// regression tests that mention them apply.
const (
	ruleReqBodyError   = 200002 // the request body could not be parsed
	ruleMultipartError = 200003 // the multipart body failed strict validation
	ruleArgsLimitURI   = 200004 // more query arguments than max_arguments
	ruleArgsLimitBody  = 200005 // more body arguments than max_arguments
	ruleURIParseError  = 200009 // the request URI could not be parsed
)

// uninspectable reports whether a rule refuses a request because the WAF
// cannot inspect all of it.
func uninspectable(id int) bool {
	switch id {
	case ruleReqBodyError, ruleMultipartError, ruleArgsLimitURI, ruleArgsLimitBody, ruleURIParseError:
		return true
	}
	return false
}

// engineBodyLimit is the request body limit given to Coraza: its maximum.
// The stage never writes more than the route's cap or max_request_body, and
// with the in-memory limit equal to it Coraza never spills a body to a
// temporary file.
const engineBodyLimit = int64(config.MaxWAFBody)

// settings is the part of a WAF configuration that shapes the Coraza engine.
// Two routes with equal settings share one engine.
type settings struct {
	paranoia          int
	maxArgs           int
	inbound, outbound int
	detect            bool
	responseBody      bool
	responseLimit     int64
	responseMIMETypes []string
	methods           []string
	contentTypes      []string
	excludeRules      []string
	excludeTags       []string
	excludeTargets    []config.WAFTargetRemoval
	setup, directives string
}

func settingsOf(cfg *config.WAF) settings {
	return settings{
		paranoia: cfg.ParanoiaLevel, maxArgs: cfg.MaxArguments, inbound: cfg.InboundAnomalyThreshold, outbound: cfg.OutboundAnomalyThreshold,
		detect: cfg.Mode == "detect", responseBody: cfg.ResponseBody, responseLimit: int64(cfg.ResponseBodyLimit),
		responseMIMETypes: cfg.ResponseMIMETypes, methods: cfg.AllowedMethods, contentTypes: cfg.AllowedContentTypes,
		excludeRules: cfg.ExcludeRules, excludeTags: cfg.ExcludeTags, excludeTargets: cfg.ExcludeTargets,
		setup: cfg.SetupDirectives, directives: cfg.Directives,
	}
}

// render returns the SecLang of an engine, in this order: moat's engine
// settings and body-processor rules, the CRS setup, moat's CRS variables,
// setup_directives, the CRS rules, the exclusions, directives. Everything
// from configuration has been validated (config.WAF.Validate), so values are
// inserted as they are.
func (s *settings) render() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	engine := "On"
	if s.detect {
		engine = "DetectionOnly"
	}
	w("SecRuleEngine %s", engine)
	// Coraza's @rx literal pre-filter stays off: in Coraza 3.8.1 it skips
	// expressions that would have matched (CRS 942220 at PL1 misses
	// ?i=2.2250738585072011e-308), so it trades detection for about 20% of
	// CPU. TestCRSPrefilterEquivalence (crsregress tag) tracks it.
	w("SecRxPreFilter Off")
	w("SecRequestBodyAccess On")
	w("SecRequestBodyLimit %d", engineBodyLimit)
	w("SecRequestBodyInMemoryLimit %d", engineBodyLimit)
	w("SecRequestBodyLimitAction Reject")
	w("SecRequestBodyJsonDepthLimit 1024")
	w("SecArgumentsLimit %d", s.maxArgs)
	if s.responseBody {
		w("SecResponseBodyAccess On")
		w("SecResponseBodyLimit %d", s.responseLimit)
		w("SecResponseBodyLimitAction ProcessPartial")
		w("SecResponseBodyMimeTypesClear")
		w("SecResponseBodyMimeType %s", strings.Join(s.responseMIMETypes, " "))
	} else {
		w("SecResponseBodyAccess Off")
	}
	w("SecAuditEngine Off")
	// As in Coraza's recommended configuration: XML, JSON and +json bodies
	// are parsed into ARGS; a request the WAF cannot inspect in full (a
	// body that does not parse, a malformed multipart body, more arguments
	// than it keeps, a URI that does not parse) is refused rather than
	// passed with parts unseen.
	w(`SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"`)
	w(`SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"`)
	w(`SecRule REQUEST_HEADERS:Content-Type "^application/[a-z0-9.-]+[+]json" "id:200006,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"`)
	w(`SecRule URI_PARSE_ERROR "@eq 1" "id:%d,phase:1,t:none,log,deny,status:400,msg:'URI failed to parse.'"`, ruleURIParseError)
	w(`SecRule ARGUMENTS_LIMIT_REACHED "@eq 1" "id:%d,phase:1,t:none,log,deny,status:400,msg:'Argument limit reached (query arguments).'"`, ruleArgsLimitURI)
	w(`SecRule REQBODY_ERROR "!@eq 0" "id:%d,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',severity:2"`, ruleReqBodyError)
	w(`SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:%d,phase:2,t:none,log,deny,status:400,msg:'Multipart request body failed strict validation.'"`, ruleMultipartError)
	w(`SecRule ARGUMENTS_LIMIT_REACHED "@eq 1" "id:%d,phase:2,t:none,log,deny,status:400,msg:'Argument limit reached (body arguments).'"`, ruleArgsLimitBody)

	w("Include @crs-setup.conf.example")
	// The CRS setup sets default actions for the request phases only; the
	// response rules need theirs to log (and so to be findings).
	w(`SecDefaultAction "phase:3,log,auditlog,pass"`)
	w(`SecDefaultAction "phase:4,log,auditlog,pass"`)
	w(`SecAction "id:900000,phase:1,pass,t:none,nolog,tag:'OWASP_CRS',setvar:tx.blocking_paranoia_level=%d"`, s.paranoia)
	w(`SecAction "id:900110,phase:1,pass,t:none,nolog,tag:'OWASP_CRS',setvar:tx.inbound_anomaly_score_threshold=%d,setvar:tx.outbound_anomaly_score_threshold=%d"`, s.inbound, s.outbound)
	w(`SecAction "id:900200,phase:1,pass,t:none,nolog,tag:'OWASP_CRS',setvar:'tx.allowed_methods=%s'"`, strings.Join(s.methods, " "))
	w(`SecAction "id:900220,phase:1,pass,t:none,nolog,tag:'OWASP_CRS',setvar:'tx.allowed_request_content_type=|%s|'"`, strings.Join(s.contentTypes, "| |"))
	if !s.responseBody {
		// The response phases never run; say so to the CRS as well.
		w(`SecAction "id:900500,phase:1,pass,t:none,nolog,tag:'OWASP_CRS',setvar:tx.crs_skip_response_analysis=1"`)
	}
	if s.setup != "" {
		w("%s", s.setup)
	}
	w("Include @owasp_crs/*.conf")

	for _, r := range s.excludeRules {
		w("SecRuleRemoveById %s", strings.TrimSpace(r))
	}
	for _, t := range s.excludeTags {
		w("SecRuleRemoveByTag %s", t)
	}
	for _, x := range s.excludeTargets {
		if x.RuleID != "" {
			// One directive per rule: Coraza applies only the first ID of a list.
			w(`SecRuleUpdateTargetById %s "!%s"`, strings.TrimSpace(x.RuleID), x.Target)
		} else {
			w(`SecRuleUpdateTargetByTag %s "!%s"`, x.Tag, x.Target)
		}
	}
	if s.directives != "" {
		w("%s", s.directives)
	}
	return b.String()
}

// engine is one compiled Coraza WAF, shared by every stage whose settings
// render to the same SecLang. It is safe for concurrent use.
type engine struct {
	key  [32]byte
	waf  coraza.WAF
	refs int // guarded by cache.mu
	// ready is closed when the build finished; err is then set.
	ready chan struct{}
	err   error
}

// cache holds the engines in use. Building the CRS takes hundreds of
// milliseconds and tens of megabytes, so a thousand routes with one WAF
// configuration build it once, and a reload that keeps the configuration
// reuses it.
var cache = struct {
	mu sync.Mutex
	m  map[[32]byte]*engine
}{m: map[[32]byte]*engine{}}

// acquire returns the engine for s, building it on first use. Each
// successful acquire must be paired with one release.
func acquire(s *settings) (*engine, error) {
	text := s.render()
	key := sha256.Sum256([]byte(text))
	cache.mu.Lock()
	e, ok := cache.m[key]
	if ok {
		e.refs++
		cache.mu.Unlock()
		<-e.ready
		if e.err != nil {
			release(e)
			return nil, e.err
		}
		return e, nil
	}
	e = &engine{key: key, refs: 1, ready: make(chan struct{})}
	cache.m[key] = e
	cache.mu.Unlock()

	e.waf, e.err = build(text, s)
	close(e.ready)
	if e.err != nil {
		release(e)
		return nil, e.err
	}
	return e, nil
}

// release drops one reference to e; the last one closes the engine (its
// compiled expressions are freed) and forgets it.
func release(e *engine) {
	cache.mu.Lock()
	e.refs--
	last := e.refs == 0
	if last && cache.m[e.key] == e {
		delete(cache.m, e.key)
	}
	cache.mu.Unlock()
	if last && e.waf != nil {
		if c, ok := e.waf.(io.Closer); ok {
			_ = c.Close()
		}
	}
}

// build compiles the SecLang and checks that every exclusion names rules
// and tags that exist, so a typo is a configuration error rather than an
// exclusion that silently does nothing.
func build(text string, s *settings) (coraza.WAF, error) {
	ids := map[int]bool{}
	tags := map[string][]int{}
	cfg := coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(text)
	cfg = experimental.WAFConfigWithRuleObserver(cfg, func(r types.RuleMetadata) {
		if r.ID() == 0 {
			return
		}
		ids[r.ID()] = true
		for _, t := range r.Tags() {
			tags[t] = append(tags[t], r.ID())
		}
	})
	waf, err := coraza.NewWAF(cfg)
	if err != nil {
		return nil, fmt.Errorf("building the WAF: %w", err)
	}
	var errs []error
	anyIn := func(lo, hi int) bool {
		for id := range ids {
			if id >= lo && id <= hi {
				return true
			}
		}
		return false
	}
	for i, r := range s.excludeRules {
		lo, hi, _ := config.ParseWAFRuleRange(r)
		switch {
		case anyIn(lo, hi):
		case lo == hi:
			errs = append(errs, fmt.Errorf("exclude_rules[%d]: no CRS %s rule has ID %d", i, CRSVersion, lo))
		default:
			errs = append(errs, fmt.Errorf("exclude_rules[%d]: no CRS %s rule has an ID in %d-%d", i, CRSVersion, lo, hi))
		}
	}
	checkTag := func(field, t string, removal bool) {
		ruleIDs, ok := tags[t]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: no CRS %s rule has the tag %q (tags are case-sensitive)", field, CRSVersion, t))
			return
		}
		for _, id := range ruleIDs {
			if removal && protected(id) {
				errs = append(errs, fmt.Errorf("%s: the tag %q is carried by rule %d, which the CRS needs to score and block; removing it would disable the WAF", field, t, id))
				return
			}
		}
	}
	for i, t := range s.excludeTags {
		checkTag(fmt.Sprintf("exclude_tags[%d]", i), t, true)
	}
	for i, x := range s.excludeTargets {
		if x.Tag != "" {
			checkTag(fmt.Sprintf("exclude_targets[%d].tag", i), x.Tag, false)
		} else if lo, hi, _ := config.ParseWAFRuleRange(x.RuleID); lo != hi && !anyIn(lo, hi) {
			errs = append(errs, fmt.Errorf("exclude_targets[%d].rule_id: no CRS %s rule has an ID in %s", i, CRSVersion, x.RuleID))
		}
	}
	if err := errors.Join(errs...); err != nil {
		if c, ok := waf.(io.Closer); ok {
			_ = c.Close()
		}
		return nil, err
	}
	return waf, nil
}

// protected reports whether a rule refuses what the WAF cannot inspect,
// initializes the CRS or turns scores into decisions (see
// config.WAF.ExcludeRules).
func protected(id int) bool {
	return id >= 200000 && id <= 200099 || id >= 900000 && id <= 901999 || id >= 949000 && id <= 949999 ||
		id >= 959000 && id <= 959999 || id >= 980000 && id <= 980999
}

// sortedUnique sorts ids and removes duplicates in place.
func sortedUnique(ids []int) []int {
	sort.Ints(ids)
	out := ids[:0]
	for i, id := range ids {
		if i == 0 || id != ids[i-1] {
			out = append(out, id)
		}
	}
	return out
}
