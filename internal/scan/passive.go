package scan

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// passive runs the checks that need no request of their own on every
// response: undeclared response properties, sensitive data, verbose
// errors and security headers.
func (sc *scanner) passive(res *response) {
	sc.hdr.observe(res, sc.s.base.Scheme == "https")
	var op *Operation
	if res.req != nil {
		op = res.req.op
	}
	if res.req != nil && res.req.probe != "injection" {
		if sig := matchSignature(res.body, errorSignatures); sig != nil {
			sc.add(finding(RuleVerboseErrors, SeverityMedium, "response carries "+sig.what,
				fmt.Sprintf("The response (status %d) carries %s: internals an attacker can use.", res.status, sig.what), res).withEvidence(sig.excerpt))
		}
	}
	if !res.ok() {
		return
	}
	var schema *openapi3.Schema
	if op != nil {
		schema = op.responseSchema(res.status)
	}
	v, isJSON := decodeJSON(res.body)
	if !isJSON {
		for _, h := range scanText(string(res.body), false) {
			sc.addSensitive(res, h)
		}
		return
	}
	w := &exposureWalk{}
	w.walk(v, schema, schema != nil, "", 0)
	for _, p := range w.undeclared {
		sev := SeverityMedium
		if sensitiveName.MatchString(p) {
			sev = SeverityHigh
		}
		sc.add(finding(RuleUndeclaredProperty, sev, "undeclared response property "+p,
			fmt.Sprintf("The response carries %s, which the response schema for status %d does not declare: data the API was not meant to expose.", p, res.status), res))
	}
	for _, p := range w.writeOnly {
		sc.add(finding(RuleUndeclaredProperty, SeverityHigh, "writeOnly property returned: "+p,
			fmt.Sprintf("The response carries %s, declared writeOnly: it must never be returned.", p), res))
	}
	for _, h := range w.hits {
		sc.addSensitive(res, h)
	}
}

func (sc *scanner) addSensitive(res *response, h hit) {
	where := ""
	if h.path != "" {
		where = " in " + h.path
	}
	sc.add(finding(RuleSensitiveData, h.sev, h.what+where,
		fmt.Sprintf("The response carries %s%s.", h.what, where), res).withEvidence(h.evidence))
}

func (f Finding) withEvidence(e string) Finding { f.Evidence = e; return f }

// sensitiveName matches property names that should never leave the server.
var sensitiveName = regexp.MustCompile(`(?i)(password|passwd|secret|token|hash|ssn|private|api_?key|credit|card|cvv|salt)`)

// exposureWalk compares a JSON value to its schema, collecting undeclared
// properties, returned writeOnly properties and sensitive values.
type exposureWalk struct {
	undeclared []string
	writeOnly  []string
	hits       []hit
}

// walk visits v. declared is false inside values the schema does not
// describe; strict is whether schema can be trusted to list properties.
func (w *exposureWalk) walk(v any, s *openapi3.Schema, declared bool, path string, depth int) {
	if depth > 12 {
		return
	}
	switch t := v.(type) {
	case map[string]any:
		props, closed := schemaProps(s)
		for _, k := range sortedKeys(t) {
			p := path + "/" + k
			ps, ok := props[k]
			if s != nil && declared && closed && !ok && len(w.undeclared) < 20 && !contains(w.undeclared, p) {
				w.undeclared = append(w.undeclared, p)
			}
			if ok && ps != nil && ps.WriteOnly && len(w.writeOnly) < 20 {
				w.writeOnly = append(w.writeOnly, p)
			}
			if !ok && s != nil && s.AdditionalProperties.Schema != nil {
				ps, ok = s.AdditionalProperties.Schema.Value, true
			}
			w.walk(t[k], ps, declared && ok, p, depth+1)
		}
	case []any:
		var item *openapi3.Schema
		if s != nil && s.Items != nil {
			item = s.Items.Value
		}
		for i, e := range t {
			if i >= 50 {
				break
			}
			w.walk(e, item, declared && (s == nil || item != nil), path+"/[]", depth+1)
		}
	case string:
		if len(w.hits) < 20 {
			w.hits = append(w.hits, scanValue(t, path, declared, s)...)
		}
	case json.Number:
		if len(w.hits) < 20 {
			w.hits = append(w.hits, scanValue(t.String(), path, declared, s)...)
		}
	}
}

// schemaProps returns the properties a schema declares (allOf, oneOf and
// anyOf merged) and whether the list is meant to be complete: false for a
// free-form object (no properties, or patternProperties).
func schemaProps(s *openapi3.Schema) (map[string]*openapi3.Schema, bool) {
	props := map[string]*openapi3.Schema{}
	if s == nil {
		return props, false
	}
	var add func(s *openapi3.Schema, depth int)
	add = func(s *openapi3.Schema, depth int) {
		if s == nil || depth > 8 {
			return
		}
		for k, p := range s.Properties {
			if p != nil {
				props[k] = p.Value
			}
		}
		for _, group := range []openapi3.SchemaRefs{s.AllOf, s.OneOf, s.AnyOf} {
			for _, r := range group {
				if r != nil {
					add(r.Value, depth+1)
				}
			}
		}
	}
	add(s, 0)
	closed := len(props) > 0 && len(s.PatternProperties) == 0 && s.AdditionalProperties.Schema == nil
	return props, closed
}

// hit is one sensitive value.
type hit struct {
	what     string
	path     string
	sev      Severity
	evidence string
}

var (
	cardRe  = regexp.MustCompile(`\b(?:\d[ -]?){12,18}\d\b`)
	emailRe = regexp.MustCompile(`[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,24}`)
	jwtRe   = regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*`)
	pkRe    = regexp.MustCompile(`-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----`)
	awsRe   = regexp.MustCompile(`\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`)
)

// scanValue looks for sensitive data in one JSON value. Card numbers,
// private keys and AWS keys are reported wherever they are; e-mail
// addresses and JWTs only where the schema does not declare them.
func scanValue(v, path string, declared bool, s *openapi3.Schema) []hit {
	var out []hit
	for _, h := range scanText(v, true) {
		h.path = path
		out = append(out, h)
	}
	if !declared {
		if m := emailRe.FindString(v); m != "" {
			out = append(out, hit{what: "an e-mail address the schema does not declare", path: path, sev: SeverityMedium, evidence: maskEmail(m)})
		}
		if m := jwtRe.FindString(v); m != "" {
			out = append(out, hit{what: "a JWT the schema does not declare", path: path, sev: SeverityHigh, evidence: m[:min(len(m), 12)] + "…"})
		}
	}
	return out
}

// scanText finds card numbers (Luhn-valid, with a card network prefix),
// private keys and AWS access keys in text. Outside JSON (inJSON false)
// JWTs count too.
func scanText(t string, inJSON bool) []hit {
	var out []hit
	for _, m := range cardRe.FindAllString(t, 5) {
		d := strings.NewReplacer(" ", "", "-", "").Replace(m)
		if luhn(d) && cardPrefix(d) {
			out = append(out, hit{what: "a payment card number", sev: SeverityHigh, evidence: d[:4] + strings.Repeat("*", len(d)-8) + d[len(d)-4:]})
			break
		}
	}
	if pkRe.MatchString(t) {
		out = append(out, hit{what: "a private key", sev: SeverityCritical, evidence: pkRe.FindString(t)})
	}
	if m := awsRe.FindString(t); m != "" {
		out = append(out, hit{what: "an AWS access key ID", sev: SeverityCritical, evidence: m[:8] + "…"})
	}
	if !inJSON {
		if m := jwtRe.FindString(t); m != "" {
			out = append(out, hit{what: "a JWT", sev: SeverityMedium, evidence: m[:min(len(m), 12)] + "…"})
		}
	}
	return out
}

// luhn reports whether the digit string passes the Luhn check.
func luhn(d string) bool {
	if len(d) < 13 || len(d) > 19 {
		return false
	}
	sum, dbl := 0, false
	for i := len(d) - 1; i >= 0; i-- {
		c := d[i]
		if c < '0' || c > '9' {
			return false
		}
		n := int(c - '0')
		if dbl {
			n *= 2
			if n > 9 {
				n -= 9
			}
		}
		sum += n
		dbl = !dbl
	}
	return sum%10 == 0
}

// cardPrefix reports whether the number starts like a Visa, Mastercard,
// American Express, Discover, JCB or Diners card.
func cardPrefix(d string) bool {
	switch {
	case d[0] == '4':
		return true
	case d[:2] >= "51" && d[:2] <= "55", d[:4] >= "2221" && d[:4] <= "2720":
		return true
	case d[:2] == "34" || d[:2] == "37" || d[:2] == "36" || d[:2] == "38":
		return true
	case d[:4] == "6011" || d[:2] == "65" || d[:2] == "35":
		return true
	}
	return false
}

func maskEmail(e string) string {
	local, domain, _ := strings.Cut(e, "@")
	if len(local) > 1 {
		local = local[:1] + "***"
	}
	return local + "@" + domain
}

// signature is an error message pattern.
type signature struct {
	what string
	re   *regexp.Regexp
	sev  Severity
}

// sigMatch is a signature found in a body.
type sigMatch struct {
	what    string
	sev     Severity
	excerpt string
}

var (
	sqlSignatures = []signature{
		{"an SQL error", regexp.MustCompile(`(?i)(you have an error in your sql syntax|sql syntax.{0,40}(mysql|mariadb)|SQLSTATE\[|\bORA-\d{5}\b|pg_query\(|PSQLException|unterminated quoted string at or near|syntax error at or near|sqlite3?\.OperationalError|SQLITE_ERROR|near "[^"]{0,40}": syntax error|unclosed quotation mark after the character string|quoted string not properly terminated|Microsoft OLE DB Provider for SQL Server|\[SQL Server\]|MySqlException|org\.hibernate\.|java\.sql\.SQLException|SQLSTATE)`), SeverityHigh},
	}
	nosqlSignatures = []signature{
		{"a NoSQL error", regexp.MustCompile(`(MongoError|MongoServerError|BSONError|CastError: Cast to ObjectId failed|unknown operator: \$|\$where is not allowed|com\.mongodb\.)`), SeverityHigh},
	}
	commandSignatures = []signature{
		{"command output", regexp.MustCompile(`\buid=\d+\([^)]{0,32}\) gid=\d+`), SeverityCritical},
		{"a shell error", regexp.MustCompile(`(sh: \d+: [^\n]{0,60}: not found|/bin/(ba)?sh: [^\n]{0,60}(not found|syntax error))`), SeverityHigh},
	}
	fileSignatures = []signature{
		{"/etc/passwd content", regexp.MustCompile(`root:[x*]?:0:0:`), SeverityCritical},
		{"win.ini content", regexp.MustCompile(`(?i)\[(fonts|extensions)\][\r\n]`), SeverityCritical},
	}
	stackSignatures = []signature{
		{"a stack trace", regexp.MustCompile(`(Traceback \(most recent call last\)|\bat java\.|\bat [\w$.]+\([\w]+\.java:\d+\)|goroutine \d+ \[running\]|\bat [\w.<>]+ in [^\n]{0,120}\.cs:line \d+|System\.[\w.]+Exception:|Fatal error: [^\n]{0,200} on line \d+|\bat Object\.<anonymous> \(|node:internal/|\.rb:\d+:in \x60)`), SeverityMedium},
	}
	errorSignatures   = concat(sqlSignatures, nosqlSignatures, stackSignatures)
	payloadSignatures = concat(sqlSignatures, nosqlSignatures, commandSignatures, fileSignatures, stackSignatures)
)

func concat(lists ...[]signature) []signature {
	var out []signature
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// matchSignature returns the first signature found in the body, or nil.
func matchSignature(body []byte, sigs []signature) *sigMatch {
	if len(body) == 0 {
		return nil
	}
	for _, s := range sigs {
		if loc := s.re.FindIndex(body); loc != nil {
			a, b := max(0, loc[0]-40), min(len(body), loc[1]+40)
			return &sigMatch{what: s.what, sev: s.sev, excerpt: string(body[a:b])}
		}
	}
	return nil
}

// headerStats counts security headers over the scan's 2xx responses.
type headerStats struct {
	responses  int
	noSniff    []string // operations missing X-Content-Type-Options: nosniff
	noHSTS     []string // https: operations missing Strict-Transport-Security
	https      bool
	firstNoHdr *response
}

func (h *headerStats) observe(res *response, https bool) {
	if !res.ok() || res.req == nil || res.req.op == nil {
		return
	}
	h.https = https
	h.responses++
	op := res.req.op.String()
	if !strings.EqualFold(strings.TrimSpace(res.header.Get("X-Content-Type-Options")), "nosniff") && !contains(h.noSniff, op) {
		h.noSniff = append(h.noSniff, op)
		if h.firstNoHdr == nil {
			h.firstNoHdr = res
		}
	}
	if https && res.header.Get("Strict-Transport-Security") == "" && !contains(h.noHSTS, op) {
		h.noHSTS = append(h.noHSTS, op)
		if h.firstNoHdr == nil {
			h.firstNoHdr = res
		}
	}
}

// finishHeaders turns the header counts into target-wide findings.
func (sc *scanner) finishHeaders() {
	h := &sc.hdr
	list := func(ops []string) string {
		if len(ops) > 3 {
			return strings.Join(ops[:3], ", ") + fmt.Sprintf(" and %d more", len(ops)-3)
		}
		return strings.Join(ops, ", ")
	}
	if len(h.noSniff) > 0 {
		f := finding(RuleSecurityHeaders, SeverityLow, "X-Content-Type-Options: nosniff missing",
			"Responses of "+list(h.noSniff)+" lack X-Content-Type-Options: nosniff, so browsers may sniff them as HTML.", h.firstNoHdr)
		f.Operation, f.Method, f.Identity, f.Line = "", "", "", 0
		sc.add(f)
	}
	if len(h.noHSTS) > 0 {
		f := finding(RuleSecurityHeaders, SeverityMedium, "Strict-Transport-Security missing",
			"HTTPS responses of "+list(h.noHSTS)+" lack Strict-Transport-Security.", h.firstNoHdr)
		f.Operation, f.Method, f.Identity, f.Line = "", "", "", 0
		sc.add(f)
	}
}
