package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/moat-gateway/moat/internal/httpsyntax"
)

// WAF configures the web application firewall of a route: Coraza running the
// OWASP Core Rule Set (CRS) embedded in the binary, in anomaly-scoring mode.
// A route with a waf block has the WAF on unless enabled is false. Rule
// exclusions are written as data (IDs, tags, targets) and turned into
// directives by moat; raw SecLang is only accepted in the expert fields
// setup_directives and directives.
type WAF struct {
	Enabled                  *bool              `yaml:"enabled" jsonschema:"description=Turn the WAF on for this route. Default true when the waf block is present; false turns it off."`
	ParanoiaLevel            int                `yaml:"paranoia_level" jsonschema:"description=CRS paranoia level: 1 (default; few false positives) to 4 (most rules; expect tuning).,minimum=1,maximum=4"`
	InboundAnomalyThreshold  int                `yaml:"inbound_anomaly_threshold" jsonschema:"description=Request anomaly score at which the request is blocked (a critical match scores 5). Default 5.,minimum=1"`
	OutboundAnomalyThreshold int                `yaml:"outbound_anomaly_threshold" jsonschema:"description=Response anomaly score at which the response is blocked; used only with response_body. Default 4.,minimum=1"`
	Mode                     string             `yaml:"mode" jsonschema:"description=block (default): refuse requests over the threshold with 403 waf_blocked. detect: record findings (waf_rule_ids\\, waf_score\\, waf_would_block) and let the request through.,enum=block,enum=detect"`
	ExcludeRules             []string           `yaml:"exclude_rules" jsonschema:"description=CRS rule IDs (942100) or inclusive ID ranges (942100-942199) removed on this route. The rules the WAF cannot work without (200000-200099 body parsing\\, 900000-901999 CRS initialization\\, 949000-949999\\, 959000-959999 and 980000-980999 anomaly evaluation) cannot be removed."`
	ExcludeTags              []string           `yaml:"exclude_tags" jsonschema:"description=Rules carrying any of these tags (exact\\, case-sensitive: attack-sqli\\, paranoia-level/2\\, OWASP_CRS/ATTACK-XSS) are removed on this route."`
	ExcludeTargets           []WAFTargetRemoval `yaml:"exclude_targets" jsonschema:"description=Stop rules from inspecting one variable\\, such as ARGS:password for rule 942100; the rules still inspect everything else."`
	MaxArguments             int                `yaml:"max_arguments" jsonschema:"description=Arguments the WAF keeps per source (query string\\, body); a request with more is refused with 400 waf_uninspectable rather than inspected in part. A JSON body has one argument per leaf value. Default 1000.,minimum=1,maximum=100000"`
	MaxRequestBody           Size               `yaml:"max_request_body" jsonschema:"description=Largest request body the WAF inspects; a larger body is refused with 413 body_too_large\\, never passed uninspected. Default: the route's max_body (at most 1GiB)."`
	ResponseBody             bool               `yaml:"response_body" jsonschema:"description=Also inspect upstream responses (CRS RESPONSE-95x rules: data leakage\\, web shells) and block those over outbound_anomaly_threshold. Default false: only requests are inspected."`
	ResponseBodyLimit        Size               `yaml:"response_body_limit" jsonschema:"description=With response_body: how much of a response body is inspected; the rest is passed on uninspected. Default 512KiB."`
	ResponseMIMETypes        []string           `yaml:"response_mime_types" jsonschema:"description=With response_body: response content types whose bodies are inspected. Default application/json\\, application/problem+json\\, text/plain\\, text/html\\, text/xml\\, application/xml."`
	AllowedMethods           []string           `yaml:"allowed_methods" jsonschema:"description=Methods CRS rule 911100 lets through. Default GET\\, HEAD\\, POST\\, OPTIONS\\, PUT\\, PATCH\\, DELETE (the router already limits a route to its methods)."`
	AllowedContentTypes      []string           `yaml:"allowed_content_types" jsonschema:"description=Request content types (type/subtype\\, lower case) CRS rule 920420 lets through. Default: the CRS list (application/x-www-form-urlencoded\\, multipart/form-data\\, text/xml\\, application/xml\\, application/soap+xml\\, application/json) plus application/merge-patch+json\\, application/json-patch+json\\, application/vnd.api+json\\, application/problem+json."`
	SetupDirectives          string             `yaml:"setup_directives" jsonschema:"description=EXPERT ONLY. SecLang placed after the CRS setup and before the CRS rules\\, to set CRS variables (SecAction with setvar:tx.*). Directives that change the engine\\, body access\\, limits\\, audit or debug logging are refused."`
	Directives               string             `yaml:"directives" jsonschema:"description=EXPERT ONLY. SecLang placed after the CRS rules: custom SecRule rules and exclusions the typed fields cannot express. Same restrictions as setup_directives."`
}

// WAFTargetRemoval removes one variable from the rules selected by RuleID or
// Tag (exactly one of them).
type WAFTargetRemoval struct {
	RuleID string `yaml:"rule_id" jsonschema:"description=Rule ID (942100) or inclusive ID range (942100-942199) to change."`
	Tag    string `yaml:"tag" jsonschema:"description=Change every rule with this tag instead of a rule ID."`
	Target string `yaml:"target" jsonschema:"description=Variable the rules stop inspecting: COLLECTION:key (ARGS:password\\, REQUEST_COOKIES:session\\, REQUEST_HEADERS:referer; JSON body fields are ARGS:json.path.to.field)\\, COLLECTION:/regex/ (ARGS:/^json\\.notes\\./)\\, or a whole variable (REQUEST_BODY)."`
}

// WAF defaults. They live beside the type rather than in defaults.go so the
// WAF block can be wired in without touching the shared defaults.
const (
	DefaultWAFParanoiaLevel      = 1
	DefaultWAFInboundThreshold   = 5
	DefaultWAFOutboundThreshold  = 4
	DefaultWAFMode               = "block"
	DefaultWAFResponseBodyLimit  = Size(512 << 10)
	DefaultWAFMaxArguments       = 1000
	MaxWAFBody                   = Size(1 << 30) // Coraza's hard limit on a buffered body
	wafProtectedRuleRangesString = "200000-200099, 900000-901999, 949000-949999, 959000-959999, 980000-980999"
)

// DefaultWAFResponseMIMETypes are the response content types inspected by default.
var DefaultWAFResponseMIMETypes = []string{"application/json", "application/problem+json", "text/plain", "text/html", "text/xml", "application/xml"}

// DefaultWAFAllowedMethods are the methods CRS lets through by default; CRS's
// own default (GET HEAD POST OPTIONS) would block every PUT, PATCH and DELETE
// of an API.
var DefaultWAFAllowedMethods = []string{"GET", "HEAD", "POST", "OPTIONS", "PUT", "PATCH", "DELETE"}

// DefaultWAFAllowedContentTypes is CRS's list plus the JSON media types APIs use.
var DefaultWAFAllowedContentTypes = []string{
	"application/x-www-form-urlencoded", "multipart/form-data", "text/xml", "application/xml",
	"application/soap+xml", "application/json",
	"application/merge-patch+json", "application/json-patch+json", "application/vnd.api+json", "application/problem+json",
}

// wafProtectedRanges are the rules that refuse what the WAF cannot inspect
// (moat's 2000xx), initialize the CRS, and turn anomaly scores into
// decisions; removing any of them disables the WAF, or part of it,
// silently, so exclusions may not touch them.
var wafProtectedRanges = [][2]int{{200000, 200099}, {900000, 901999}, {949000, 949999}, {959000, 959999}, {980000, 980999}}

// IsOn reports whether the WAF is configured and enabled.
func (w *WAF) IsOn() bool { return w != nil && (w.Enabled == nil || *w.Enabled) }

// ApplyDefaults fills every unset field of w with its default. It changes
// nothing when w is nil. MaxRequestBody stays 0 (meaning the route's
// max_body): the route is not known here.
func (w *WAF) ApplyDefaults() {
	if w == nil {
		return
	}
	if w.Enabled == nil {
		w.Enabled = ptr(true)
	}
	if w.ParanoiaLevel == 0 {
		w.ParanoiaLevel = DefaultWAFParanoiaLevel
	}
	if w.InboundAnomalyThreshold == 0 {
		w.InboundAnomalyThreshold = DefaultWAFInboundThreshold
	}
	if w.OutboundAnomalyThreshold == 0 {
		w.OutboundAnomalyThreshold = DefaultWAFOutboundThreshold
	}
	if w.Mode == "" {
		w.Mode = DefaultWAFMode
	}
	if w.ResponseBodyLimit == 0 {
		w.ResponseBodyLimit = DefaultWAFResponseBodyLimit
	}
	if w.MaxArguments == 0 {
		w.MaxArguments = DefaultWAFMaxArguments
	}
	if w.ResponseMIMETypes == nil {
		w.ResponseMIMETypes = append([]string(nil), DefaultWAFResponseMIMETypes...)
	}
	if w.AllowedMethods == nil {
		w.AllowedMethods = append([]string(nil), DefaultWAFAllowedMethods...)
	}
	if w.AllowedContentTypes == nil {
		w.AllowedContentTypes = append([]string(nil), DefaultWAFAllowedContentTypes...)
	}
}

// Validate checks a defaulted WAF block and returns every problem found, each
// with its field path below path (such as routes[3].waf). Problems carry no
// file position; validate.go adds it with problems.add. A nil or disabled
// block has no problems. Validate changes nothing.
func (w *WAF) Validate(path string) []Problem {
	if !w.IsOn() {
		return nil
	}
	var out []Problem
	add := func(field, format string, args ...any) {
		out = append(out, Problem{Path: join(path, field), Msg: fmt.Sprintf(format, args...)})
	}
	if w.ParanoiaLevel < 1 || w.ParanoiaLevel > 4 {
		add("paranoia_level", "must be 1, 2, 3 or 4")
	}
	if w.InboundAnomalyThreshold < 1 {
		add("inbound_anomaly_threshold", "must be at least 1")
	}
	if w.OutboundAnomalyThreshold < 1 {
		add("outbound_anomaly_threshold", "must be at least 1")
	}
	if w.Mode != "block" && w.Mode != "detect" {
		add("mode", "must be block or detect, not %q", w.Mode)
	}
	for i, r := range w.ExcludeRules {
		f := fmt.Sprintf("exclude_rules[%d]", i)
		lo, hi, err := ParseWAFRuleRange(r)
		if err != nil {
			add(f, "%v", err)
		} else if protectedWAFRange(lo, hi) {
			add(f, "%q covers rules the WAF cannot work without (%s: body parsing, CRS initialization, anomaly evaluation); use enabled: false, mode: detect or max_arguments instead", r, wafProtectedRuleRangesString)
		}
	}
	for i, t := range w.ExcludeTags {
		if !validWAFTag(t) {
			add(fmt.Sprintf("exclude_tags[%d]", i), "%q is not a rule tag (letters, digits and _ . - / only)", t)
		}
	}
	for i, x := range w.ExcludeTargets {
		f := fmt.Sprintf("exclude_targets[%d]", i)
		switch {
		case (x.RuleID == "") == (x.Tag == ""):
			add(f, "set exactly one of rule_id and tag")
		case x.RuleID != "":
			if _, _, err := ParseWAFRuleRange(x.RuleID); err != nil {
				add(f+".rule_id", "%v", err)
			}
		case !validWAFTag(x.Tag):
			add(f+".tag", "%q is not a rule tag (letters, digits and _ . - / only)", x.Tag)
		}
		if err := ValidateWAFTarget(x.Target); err != nil {
			add(f+".target", "%v", err)
		}
	}
	if w.MaxArguments < 1 || w.MaxArguments > 100000 {
		add("max_arguments", "must be between 1 and 100000")
	}
	if w.MaxRequestBody < 0 || w.MaxRequestBody > MaxWAFBody {
		add("max_request_body", "must be between 1 byte and 1GiB (0: the route's max_body)")
	}
	if w.ResponseBodyLimit < 1 || w.ResponseBodyLimit > MaxWAFBody {
		add("response_body_limit", "must be between 1 byte and 1GiB")
	}
	for i, m := range w.ResponseMIMETypes {
		if !validMediaType(m) {
			add(fmt.Sprintf("response_mime_types[%d]", i), "%q is not a media type (type/subtype, lower case, no parameters)", m)
		}
	}
	if len(w.AllowedMethods) == 0 {
		add("allowed_methods", "at least one method is required")
	}
	for i, m := range w.AllowedMethods {
		if !httpsyntax.IsToken(m) || strings.ToUpper(m) != m {
			add(fmt.Sprintf("allowed_methods[%d]", i), "%q is not an upper-case method", m)
		}
	}
	for i, c := range w.AllowedContentTypes {
		if !validMediaType(c) {
			add(fmt.Sprintf("allowed_content_types[%d]", i), "%q is not a media type (type/subtype, lower case, no parameters)", c)
		}
	}
	for _, d := range []struct{ field, text string }{{"setup_directives", w.SetupDirectives}, {"directives", w.Directives}} {
		for _, err := range CheckWAFDirectives(d.text) {
			add(d.field, "%v", err)
		}
	}
	return out
}

// validateWAF records the problems of a route's WAF block in p, with their
// positions. validate.go calls it for each route (and for a top-level
// default, if one is added).
func validateWAF(w *WAF, path string, p *problems) {
	for _, pr := range w.Validate(path) {
		p.add(pr.Path, "%s", pr.Msg)
	}
}

// ParseWAFRuleRange parses a rule ID ("942100") or an inclusive range
// ("942100-942199") and returns its bounds.
func ParseWAFRuleRange(s string) (lo, hi int, err error) {
	s = strings.TrimSpace(s)
	a, b, isRange := strings.Cut(s, "-")
	lo, err1 := parseRuleID(a)
	hi, err2 := lo, error(nil)
	if isRange {
		hi, err2 = parseRuleID(b)
	}
	switch {
	case err1 != nil || err2 != nil:
		return 0, 0, fmt.Errorf("%q is not a rule ID or an ID range like 942100-942199", s)
	case hi < lo:
		return 0, 0, fmt.Errorf("%q: the range ends before it starts", s)
	}
	return lo, hi, nil
}

func parseRuleID(s string) (int, error) {
	if s == "" || len(s) > 9 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("not an ID")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("not an ID")
	}
	return n, nil
}

func protectedWAFRange(lo, hi int) bool {
	for _, p := range wafProtectedRanges {
		if lo <= p[1] && hi >= p[0] {
			return true
		}
	}
	return false
}

var wafTagRe = regexp.MustCompile(`^[A-Za-z0-9_./-]+$`)

func validWAFTag(t string) bool { return len(t) <= 128 && wafTagRe.MatchString(t) }

// wafKeyedCollections are the collections an exclusion target may select a
// key of; wafWholeVariables are those it may name without a key.
var (
	wafKeyedCollections = map[string]bool{
		"ARGS": true, "ARGS_GET": true, "ARGS_POST": true, "ARGS_PATH": true,
		"ARGS_NAMES": true, "ARGS_GET_NAMES": true, "ARGS_POST_NAMES": true,
		"REQUEST_COOKIES": true, "REQUEST_COOKIES_NAMES": true,
		"REQUEST_HEADERS": true, "REQUEST_HEADERS_NAMES": true,
		"FILES": true, "FILES_NAMES": true, "MULTIPART_PART_HEADERS": true,
		"RESPONSE_HEADERS": true, "RESPONSE_HEADERS_NAMES": true,
	}
	wafWholeVariables = map[string]bool{
		"REQUEST_BODY": true, "REQUEST_URI": true, "REQUEST_URI_RAW": true, "REQUEST_FILENAME": true,
		"REQUEST_BASENAME": true, "REQUEST_LINE": true, "QUERY_STRING": true, "RESPONSE_BODY": true,
		"XML": true,
	}
	wafTargetKeyRe = regexp.MustCompile(`^[A-Za-z0-9_.\-\[\]$@~+:#]+$`)
)

// ValidateWAFTarget checks an exclusion target: COLLECTION:key,
// COLLECTION:/regex/ or a whole variable. Keys and regular expressions may
// not contain white space or quotes (they become one SecLang argument), nor
// a regular expression an unescaped /.
func ValidateWAFTarget(t string) error {
	if t == "" {
		return fmt.Errorf("a target is required, such as ARGS:password")
	}
	name, key, keyed := strings.Cut(t, ":")
	if !keyed {
		if wafWholeVariables[name] || wafKeyedCollections[name] {
			return nil
		}
		return fmt.Errorf("%q is not a variable exclusions support (ARGS, REQUEST_COOKIES, REQUEST_HEADERS, REQUEST_BODY, ...; upper case)", name)
	}
	if !wafKeyedCollections[name] {
		return fmt.Errorf("%q cannot be narrowed to a key; use one of ARGS, ARGS_GET, ARGS_POST, ARGS_NAMES, REQUEST_COOKIES, REQUEST_HEADERS, FILES, ... (upper case)", name)
	}
	if len(key) > 256 {
		return fmt.Errorf("key of %q is longer than 256 bytes", name)
	}
	if len(key) >= 2 && key[0] == '/' && key[len(key)-1] == '/' {
		rx := key[1 : len(key)-1]
		if rx == "" || strings.ContainsAny(rx, "\"' \t\r\n") || !escapedSlashesOnly(rx) {
			return fmt.Errorf("regular expression %q: empty, or contains white space, quotes or an unescaped /", rx)
		}
		if _, err := regexp.Compile(rx); err != nil {
			return fmt.Errorf("regular expression %q: %v", rx, err)
		}
		return nil
	}
	if !wafTargetKeyRe.MatchString(key) {
		return fmt.Errorf("key %q: use letters, digits and _ . - [ ] $ @ ~ + : # only, or a /regex/", key)
	}
	return nil
}

func escapedSlashesOnly(rx string) bool {
	for i := 0; i < len(rx); i++ {
		switch rx[i] {
		case '\\':
			i++
		case '/':
			return false
		}
	}
	return true
}

var mediaTypeRe = regexp.MustCompile(`^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$`)

func validMediaType(s string) bool { return len(s) <= 127 && mediaTypeRe.MatchString(s) }

// wafForbiddenDirectives are SecLang directives the expert fields may not
// use: moat sets them itself (engine mode, body access and limits, which
// keep bodies in memory and inspected in full), audits on its own (audit
// log), or they touch files or the network at load (debug log, data and
// upload directories, remote rules), or they lose detection (the regex
// prefilter).
var wafForbiddenDirectives = map[string]bool{
	"secruleengine": true, "secrequestbodyaccess": true, "secrequestbodylimit": true,
	"secrequestbodyinmemorylimit": true, "secrequestbodylimitaction": true, "secrequestbodynofileslimit": true,
	"secresponsebodyaccess": true, "secresponsebodylimit": true, "secresponsebodylimitaction": true,
	"secresponsebodymimetype": true, "secresponsebodymimetypesclear": true,
	"secauditengine": true, "secauditlog": true, "secauditlogtype": true, "secauditlogformat": true,
	"secauditlogstoragedir": true, "secauditlogdirmode": true, "secauditlogfilemode": true,
	"secauditlogrelevantstatus": true, "secauditlogparts": true,
	"secdebuglog": true, "secdebugloglevel": true, "secdatadir": true, "secuploaddir": true,
	"secuploadkeepfiles": true, "secuploadfilemode": true, "secuploadfilelimit": true, "sectmpdir": true,
	"secremoterules": true, "secremoterulesfailaction": true, "include": true,
	// The regex prefilter makes CRS rules miss attacks (Coraza 3.8.1:
	// 942220 and 932311 cases of the CRS regression suite).
	"secrxprefilter": true,
}

// CheckWAFDirectives returns a problem for each directive of an expert
// SecLang block that moat does not allow (see the docs of
// WAF.SetupDirectives). It checks names only; whether the SecLang compiles is
// known when the WAF is built.
func CheckWAFDirectives(text string) []error {
	var errs []error
	line := 0
	var logical strings.Builder
	start := 0
	flush := func() {
		s := strings.TrimSpace(logical.String())
		logical.Reset()
		if s == "" || strings.HasPrefix(s, "#") {
			return
		}
		name, _, _ := strings.Cut(s, " ")
		name, _, _ = strings.Cut(name, "\t")
		if wafForbiddenDirectives[strings.ToLower(name)] {
			errs = append(errs, fmt.Errorf("line %d: %s is not allowed here (moat sets it, or it reaches outside the process)", start, name))
		}
	}
	for _, l := range strings.Split(text, "\n") {
		line++
		l = strings.TrimRight(l, "\r")
		if logical.Len() == 0 {
			start = line
		}
		if strings.HasSuffix(l, "\\") {
			logical.WriteString(strings.TrimSuffix(l, "\\"))
			logical.WriteByte(' ')
			continue
		}
		logical.WriteString(l)
		flush()
	}
	flush()
	return errs
}
