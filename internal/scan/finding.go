package scan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Severity ranks a finding. The zero value is SeverityInfo.
type Severity int

// Severities, lowest first.
const (
	SeverityInfo Severity = iota
	SeverityLow
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

var severityNames = [...]string{"info", "low", "medium", "high", "critical"}

// String returns the lower-case name: info, low, medium, high or critical.
func (s Severity) String() string {
	if s < 0 || int(s) >= len(severityNames) {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// ParseSeverity parses low, medium, high or critical (and info), case
// insensitive.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(s, n) {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q: want low, medium, high or critical", s)
}

// MarshalText encodes the severity as its name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a severity name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err == nil {
		*s = v
	}
	return err
}

// sarifLevel maps a severity to a SARIF result level.
func (s Severity) sarifLevel() string {
	switch {
	case s >= SeverityHigh:
		return "error"
	case s == SeverityMedium:
		return "warning"
	default:
		return "note"
	}
}

// Rule is one kind of finding; every finding names its rule. Rules are the
// SARIF rules and map to an item of the OWASP API Security Top 10 2023.
type Rule struct {
	ID          string // stable, kebab-case: "bola"
	Name        string // short title
	Description string
	OWASP       string // "API1:2023"
	HelpURI     string
	// Owner says who can close findings of the rule: OwnerGateway (a moat
	// configuration closes it) or OwnerApplication (the API's code must be
	// fixed; the gateway at most mitigates).
	Owner string
	// Remediation says how to close a finding, in one or two sentences.
	Remediation string
}

// Owners of a rule's findings (Rule.Owner, Finding.Owner).
const (
	OwnerGateway     = "gateway"
	OwnerApplication = "application"
)

const owaspBase = "https://owasp.org/API-Security/editions/2023/en/"

var owaspPages = map[string]string{
	"API1:2023": "0xa1-broken-object-level-authorization/",
	"API2:2023": "0xa2-broken-authentication/",
	"API3:2023": "0xa3-broken-object-property-level-authorization/",
	"API4:2023": "0xa4-unrestricted-resource-consumption/",
	"API5:2023": "0xa5-broken-function-level-authorization/",
	"API7:2023": "0xa7-server-side-request-forgery/",
	"API8:2023": "0xa8-security-misconfiguration/",
	"API9:2023": "0xa9-improper-inventory-management/",
}

// Rule IDs. Each is documented in docs/scan.md.
const (
	RuleUnauthenticated     = "unauthenticated-access"
	RuleBOLA                = "bola"
	RuleBFLA                = "function-level-authz"
	RuleMassAssignment      = "mass-assignment"
	RuleUndeclaredProperty  = "undeclared-property"
	RuleSensitiveData       = "sensitive-data"
	RuleRateLimit           = "missing-rate-limit"
	RuleInjection           = "injection"
	RuleSSRF                = "ssrf"
	RuleCORS                = "cors"
	RuleSecurityHeaders     = "security-headers"
	RuleVerboseErrors       = "verbose-errors"
	RuleTrace               = "trace-enabled"
	RuleWeakTLS             = "weak-tls"
	RuleInventory           = "undocumented-endpoint"
	RuleJWTNone             = "jwt-alg-none"
	RuleJWTWeakSecret       = "jwt-weak-secret"
	RuleJWTSignatureIgnored = "jwt-signature-not-verified"
	RuleJWTExpired          = "jwt-expired-accepted"
)

// Rules lists every rule in a stable order (the SARIF rule order).
var Rules = []Rule{
	{RuleUnauthenticated, "Operation reachable without credentials", "An operation whose OpenAPI security requirement needs credentials answered 2xx to a request without any.", "API2:2023", "", "", ""},
	{RuleBOLA, "Broken object level authorization", "One identity read another identity's object by its ID (2xx on an operation with a path parameter).", "API1:2023", "", "", ""},
	{RuleBFLA, "Broken function level authorization", "A non-admin identity was answered 2xx by an admin operation (tagged admin, /admin path, x-moat-roles admin, or DELETE).", "API5:2023", "", "", ""},
	{RuleMassAssignment, "Mass assignment", "A create or update accepted an undeclared or readOnly property and reflected it back.", "API3:2023", "", "", ""},
	{RuleUndeclaredProperty, "Response property not in the schema", "A response carried a property its OpenAPI response schema does not declare (excessive data exposure).", "API3:2023", "", "", ""},
	{RuleSensitiveData, "Sensitive data in a response", "A response carried a card number (Luhn-valid), a private key, an AWS key, a JWT or an e-mail address the schema does not declare.", "API3:2023", "", "", ""},
	{RuleRateLimit, "No rate limit", "A bounded burst of requests got no 429 and no RateLimit or Retry-After headers.", "API4:2023", "", "", ""},
	{RuleInjection, "Injection error signature", "An injection payload (SQL, NoSQL, command, path traversal) provoked a database error, a stack trace or file content that a benign value did not.", "API8:2023", "", "", ""},
	{RuleSSRF, "Server-side request forgery", "A URL-valued parameter made the server fetch the scanner's canary URL.", "API7:2023", "", "", ""},
	{RuleCORS, "Permissive CORS", "The API reflected an arbitrary Origin, or allowed any origin with credentials.", "API8:2023", "", "", ""},
	{RuleSecurityHeaders, "Missing security headers", "Responses lack Strict-Transport-Security (https) or X-Content-Type-Options: nosniff.", "API8:2023", "", "", ""},
	{RuleVerboseErrors, "Verbose errors", "A response carried a stack trace or a database error message.", "API8:2023", "", "", ""},
	{RuleTrace, "TRACE enabled", "The server answered TRACE by echoing the request (cross-site tracing).", "API8:2023", "", "", ""},
	{RuleWeakTLS, "Weak TLS", "The server completed a TLS 1.0/1.1 handshake or one with an insecure cipher suite.", "API8:2023", "", "", ""},
	{RuleInventory, "Undocumented endpoint", "A path the document does not describe (actuator, debug, spec files, .env, an older API version) answered 2xx.", "API9:2023", "", "", ""},
	{RuleJWTNone, "JWT alg none accepted", "The API accepted the identity's token re-encoded with alg none and no signature.", "API2:2023", "", "", ""},
	{RuleJWTWeakSecret, "JWT signed with a weak secret", "The identity's HS256/384/512 token is signed with a secret from a list of well-known weak secrets.", "API2:2023", "", "", ""},
	{RuleJWTSignatureIgnored, "JWT signature not verified", "The API accepted the identity's token with its claims changed and the original signature kept.", "API2:2023", "", "", ""},
	{RuleJWTExpired, "Expired JWT accepted", "The API accepted a validly signed token whose exp is in the past.", "API2:2023", "", "", ""},
}

// remediations gives each scan rule its owner and remediation: what moat
// configuration closes it, or why the application must be fixed.
var remediations = map[string][2]string{
	RuleUnauthenticated:     {OwnerGateway, "Give the route an auth block (docs/authentication.md); only routes meant to be public say public: true."},
	RuleBOLA:                {OwnerGateway, "Bind the object ID to the principal with an owner rule on the route (auth.owner, docs/authorization.md), and check ownership in the application too."},
	RuleBFLA:                {OwnerGateway, "Require the admin role or scope on the route (auth.roles, auth.methods; docs/authorization.md)."},
	RuleMassAssignment:      {OwnerGateway, "List the properties clients may not set in auth.properties.read_only (or write_roles), and bind only declared fields in the application."},
	RuleUndeclaredProperty:  {OwnerGateway, "Remove the property with a masking field rule (masking.fields action remove, docs/masking.md), and stop serializing it in the application."},
	RuleSensitiveData:       {OwnerGateway, "Turn on masking for the route (docs/masking.md): cards, keys and e-mail addresses are masked or the response blocked."},
	RuleRateLimit:           {OwnerGateway, "Apply a rate limit to the route or its upstream (rate_limits, docs/ratelimits.md)."},
	RuleInjection:           {OwnerApplication, "Use parameterized queries and never pass input to a shell or a path; the WAF (docs/waf.md) mitigates known payloads but is no fix."},
	RuleSSRF:                {OwnerApplication, "Fetch only allow-listed hosts, resolve and refuse internal addresses in the application; the gateway cannot see where the application connects."},
	RuleCORS:                {OwnerGateway, "Set a CORS policy with exact allow_origins (docs/configuration.md); moat strips the upstream's Access-Control-* headers."},
	RuleSecurityHeaders:     {OwnerGateway, "Serve through moat with security_headers on (the default) and TLS with HSTS on the listener."},
	RuleVerboseErrors:       {OwnerApplication, "Return generic error bodies and log details server-side; WAF response_body inspection mitigates known leak signatures."},
	RuleTrace:               {OwnerGateway, "Serve through moat: its router refuses TRACE and CONNECT."},
	RuleWeakTLS:             {OwnerGateway, "Terminate TLS at moat (listeners[].tls, TLS 1.2 minimum with modern suites only)."},
	RuleInventory:           {OwnerGateway, "Route only documented paths through moat (unrouted paths get 404 route_not_found), and remove debug endpoints and old versions from the application."},
	RuleJWTNone:             {OwnerGateway, "Verify tokens at moat with a jwt authenticator (algorithms listed explicitly; none is never accepted)."},
	RuleJWTWeakSecret:       {OwnerGateway, "Rotate to a random HMAC secret of at least 32 bytes or an asymmetric key, and verify tokens at moat."},
	RuleJWTSignatureIgnored: {OwnerGateway, "Verify tokens at moat with a jwt authenticator; the application must not trust unverified tokens."},
	RuleJWTExpired:          {OwnerGateway, "Verify tokens at moat with a jwt authenticator (exp is checked with a small leeway)."},
}

func init() {
	for i := range Rules {
		Rules[i].HelpURI = owaspBase + owaspPages[Rules[i].OWASP]
		if r, ok := remediations[Rules[i].ID]; ok {
			Rules[i].Owner, Rules[i].Remediation = r[0], r[1]
		}
	}
}

// ruleByID returns the rule with the ID, or nil.
func ruleByID(id string) *Rule {
	for i := range Rules {
		if Rules[i].ID == id {
			return &Rules[i]
		}
	}
	return nil
}

// Finding is one problem the scanner found. Findings never hold credentials:
// identities appear by name, and evidence is redacted.
type Finding struct {
	Rule      string   `json:"rule"`
	OWASP     string   `json:"owasp"`
	Severity  Severity `json:"severity"`
	Title     string   `json:"title"`
	Message   string   `json:"message"`
	Operation string   `json:"operation,omitempty"` // "GET /users/{id}"; "" for target-wide findings
	Method    string   `json:"method,omitempty"`
	URL       string   `json:"url,omitempty"`      // the request that showed it
	Identity  string   `json:"identity,omitempty"` // the identity used, by name; "" for none
	Evidence  string   `json:"evidence,omitempty"` // short, redacted
	Line      int      `json:"line,omitempty"`     // the operation's line in the spec, when known
	// Owner is the rule's owner: gateway or application (Rule.Owner).
	Owner string `json:"owner,omitempty"`
}

// fingerprint identifies a finding for deduplication and SARIF
// partialFingerprints.
func (f *Finding) fingerprint() string {
	h := sha256.Sum256([]byte(f.Rule + "\x00" + f.Operation + "\x00" + f.Title))
	return hex.EncodeToString(h[:12])
}
