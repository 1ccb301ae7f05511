package audit

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/moat-gateway/moat/internal/jsonlex"
)

// ECSVersion is the Elastic Common Schema version the events follow, written
// as ecs.version.
const ECSVersion = "8.11.0"

// Dataset is event.dataset of every event.
const Dataset = "moat.audit"

// appendEvent appends ev as JSON without its end: the top-level object and
// its last member, "event", stay open, and the chain appends event.id,
// event.sequence and event.hash and closes both (see chain.seal). Field
// order is fixed, so the bytes of an event are stable for golden tests and
// for the hash chain. host is observer.hostname.
//
// It allocates nothing for the usual events (a findings map with more than
// 32 keys, or values of unusual types, do allocate).
func appendEvent(b []byte, ev *Event, host string) []byte {
	e := enc{b: b}
	e.b = append(e.b, `{"@timestamp":"`...)
	e.b = appendTime(e.b, ev.Time)
	e.b = append(e.b, `","ecs":{"version":"`+ECSVersion+`"}`...)
	e.str("message", ev.Message, maxString)

	if ev.ClientIP.IsValid() {
		m := e.begin("source")
		e.addr("ip", ev.ClientIP)
		e.finish(m)
	}

	m := e.begin("user")
	e.str("id", ev.UserID, maxString)
	e.strs("roles", ev.Roles)
	if ev.TargetUser != "" {
		t := e.begin("target")
		e.str("id", ev.TargetUser, maxString)
		e.finish(t)
	}
	e.finish(m)

	m = e.begin("http")
	e.str("version", ev.HTTPVersion, 8)
	r := e.begin("request")
	e.str("id", ev.RequestID, 128)
	e.str("method", ev.Method, 32)
	e.finish(r)
	if ev.Status != 0 {
		r = e.begin("response")
		e.int("status_code", int64(ev.Status))
		e.finish(r)
	}
	e.finish(m)

	m = e.begin("url")
	e.str("scheme", ev.Scheme, 8)
	e.str("domain", ev.Host, maxHost)
	e.str("path", ev.Path, maxPath)
	e.finish(m)

	if ev.UserAgent != "" {
		m = e.begin("user_agent")
		e.str("original", ev.UserAgent, maxUserAgent)
		e.finish(m)
	}
	if ev.TLSVersion != "" {
		m = e.begin("tls")
		e.str("version", ev.TLSVersion, 8)
		e.finish(m)
	}
	if ev.TraceID != "" {
		m = e.begin("trace")
		e.str("id", ev.TraceID, 32)
		e.finish(m)
	}
	m = e.begin("observer")
	e.str("hostname", host, maxHost)
	e.str("product", "moat", 0)
	e.finish(m)

	e.moat(ev)

	e.key("event")
	e.b = append(e.b, `{"kind":"event","category":[`...)
	e.b = appendString(e.b, ev.Category, 64)
	e.b = append(e.b, `],"type":[`...)
	e.b = appendString(e.b, ev.Types[0], 64)
	if ev.Types[1] != "" {
		e.b = append(e.b, ',')
		e.b = appendString(e.b, ev.Types[1], 64)
	}
	e.b = append(e.b, ']')
	e.first = false
	e.str("action", ev.Action, 64)
	e.str("outcome", ev.Outcome, 16)
	e.str("reason", ev.Reason, 128)
	e.str("dataset", Dataset, 0)
	if ev.Action == ActionHTTPRequest {
		e.int("duration", int64(ev.Duration))
	}
	return e.b
}

// moat writes the moat object: what ECS has no field for.
func (e *enc) moat(ev *Event) {
	m := e.begin("moat")
	e.str("decision", ev.Decision, 16)
	e.str("route", ev.Route, maxString)
	e.str("path_template", ev.PathTemplate, maxPath)
	e.str("listener", ev.Listener, maxString)
	e.str("authenticator", ev.Authenticator, maxString)
	e.str("auth_kind", ev.AuthKind, 32)
	e.str("key_id", ev.KeyID, 256)
	e.str("plan", ev.Plan, 256)
	e.strs("scopes", ev.Scopes)
	e.queryKeys(ev.RawQuery)
	if ev.PeerIP.IsValid() {
		e.addr("peer_ip", ev.PeerIP)
	}
	e.str("detail", ev.Detail, maxDetail)
	if ev.Upstream != "" {
		u := e.begin("upstream")
		e.str("target", ev.Upstream, maxString)
		e.finish(u)
	}
	if ev.Action == ActionHTTPRequest {
		l := e.begin("latency")
		e.int("gateway_us", ev.GatewayTime.Microseconds())
		if ev.Upstream != "" {
			e.int("upstream_us", ev.UpstreamTime.Microseconds())
		}
		e.finish(l)
	}
	if len(ev.Limits) > 0 {
		e.key("limits")
		e.b = append(e.b, '[')
		for i := range min(len(ev.Limits), maxList) {
			l := &ev.Limits[i]
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.b = append(e.b, `{"name":`...)
			e.b = appendString(e.b, l.Name, 256)
			e.b = append(e.b, `,"allowed":`...)
			e.b = strconv.AppendBool(e.b, l.Allowed)
			e.b = append(e.b, `,"quota":`...)
			e.b = strconv.AppendInt(e.b, l.Quota, 10)
			e.b = append(e.b, `,"window_ms":`...)
			e.b = strconv.AppendInt(e.b, l.Window.Milliseconds(), 10)
			e.b = append(e.b, `,"remaining":`...)
			e.b = strconv.AppendInt(e.b, l.Remaining, 10)
			e.b = append(e.b, `,"reset_ms":`...)
			e.b = strconv.AppendInt(e.b, l.Reset.Milliseconds(), 10)
			e.b = append(e.b, '}')
		}
		e.b = append(e.b, ']')
	}
	e.findings(ev.Findings)
	if c := ev.Config; c != nil {
		o := e.begin("config")
		e.str("file", c.File, maxString)
		e.str("sha256", c.SHA256, 64)
		e.finish(o)
	}
	if c := ev.Chain; c != nil {
		o := e.begin("chain")
		e.str("reason", c.Reason, 32)
		e.str("previous_hash", c.PreviousHash, 64)
		if c.PreviousHash != "" {
			e.int("previous_sequence", int64(c.PreviousSequence))
		}
		e.str("key_id", c.KeyID, 64)
		e.finish(o)
	}
	if ev.Dropped > 0 {
		e.int("dropped_events", int64(ev.Dropped))
	}
	e.finish(m)
}

// queryKeys writes the names of the query parameters, never their values:
// a value may be a credential (an API key in a query parameter) or personal
// data. Names are written as sent, percent-encoding included.
func (e *enc) queryKeys(q string) {
	if q == "" {
		return
	}
	n := 0
	for q != "" && n < maxList {
		var part string
		if i := indexByte(q, '&'); i >= 0 {
			part, q = q[:i], q[i+1:]
		} else {
			part, q = q, ""
		}
		if i := indexByte(part, '='); i >= 0 {
			part = part[:i]
		}
		if part == "" {
			continue
		}
		if n == 0 {
			e.key("query_keys")
			e.b = append(e.b, '[')
		} else {
			e.b = append(e.b, ',')
		}
		e.b = appendString(e.b, part, 256)
		n++
	}
	if n > 0 {
		e.b = append(e.b, ']')
	}
}

// findings writes the findings whose key starts with "waf_" under moat.waf
// (without the prefix; waf_rule_ids as strings), and every other one under
// moat.findings, keys sorted, at most maxMapKeys in all. A waf_rule_ids or
// waf_score of an unexpected type stays in moat.findings under its key.
func (e *enc) findings(f map[string]any) {
	if len(f) == 0 {
		return
	}
	var buf [maxMapKeys]string
	keys := buf[:0]
	if len(f) > maxMapKeys {
		keys = make([]string, 0, len(f))
	}
	for k := range f {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	keys = keys[:min(len(keys), maxMapKeys)]
	inWAF := func(k string) bool {
		switch k {
		case FindingWAFRuleIDs:
			return isRuleIDs(f[k])
		case FindingWAFScore:
			return isNumber(f[k])
		}
		return len(k) > 4 && k[:4] == "waf_"
	}
	w := e.begin("waf")
	for _, k := range keys {
		if !inWAF(k) {
			continue
		}
		e.anyKey(k[4:])
		if k == FindingWAFRuleIDs {
			e.ruleIDs(f[k])
		} else {
			e.b = appendValue(e.b, f[k], 1)
		}
	}
	e.finish(w)
	o := e.begin("findings")
	for _, k := range keys {
		if inWAF(k) {
			continue
		}
		e.anyKey(k)
		e.b = appendValue(e.b, f[k], 1)
	}
	e.finish(o)
}

func isRuleIDs(v any) bool {
	switch x := v.(type) {
	case []string, []int, []int64, string, int, int64:
		return true
	case []any:
		for _, el := range x {
			if _, ok := el.(string); !ok && !isNumber(el) {
				return false
			}
		}
		return true
	}
	return false
}

// ruleIDs writes WAF rule IDs as an array of strings.
func (e *enc) ruleIDs(v any) {
	e.b = append(e.b, '[')
	switch x := v.(type) {
	case []string:
		for i, s := range x[:min(len(x), maxList)] {
			e.b = e.sep(i)
			e.b = appendString(e.b, s, 128)
		}
	case []int:
		for i, n := range x[:min(len(x), maxList)] {
			e.b = e.sep(i)
			e.b = append(e.b, '"')
			e.b = strconv.AppendInt(e.b, int64(n), 10)
			e.b = append(e.b, '"')
		}
	case []int64:
		for i, n := range x[:min(len(x), maxList)] {
			e.b = e.sep(i)
			e.b = append(e.b, '"')
			e.b = strconv.AppendInt(e.b, n, 10)
			e.b = append(e.b, '"')
		}
	case []any:
		for i, el := range x[:min(len(x), maxList)] {
			e.b = e.sep(i)
			e.b = appendAsString(e.b, el)
		}
	default:
		e.b = appendAsString(e.b, x)
	}
	e.b = append(e.b, ']')
}

func (e *enc) sep(i int) []byte {
	if i > 0 {
		return append(e.b, ',')
	}
	return e.b
}

// appendAsString writes a string or a number as a JSON string.
func appendAsString(b []byte, v any) []byte {
	switch x := v.(type) {
	case string:
		return appendString(b, x, 128)
	case json.Number:
		return appendString(b, string(x), 128)
	}
	b = append(b, '"')
	b = appendValue(b, v, maxDepth)
	return append(b, '"')
}

func isNumber(v any) bool {
	switch x := v.(type) {
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return true
	case float32:
		return !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0)
	case float64:
		return !math.IsNaN(x) && !math.IsInf(x, 0)
	case json.Number:
		return validNumber(string(x))
	}
	return false
}

// appendValue writes a finding's value. Strings are clipped, lists and maps
// bounded, nesting limited; types without a JSON form are written as their
// fmt.Sprint string (findings never hold secrets, by the kernel's contract).
func appendValue(b []byte, v any, depth int) []byte {
	if depth > maxDepth {
		return append(b, `"..."`...)
	}
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendString(b, x, maxString)
	case bool:
		return strconv.AppendBool(b, x)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case int8:
		return strconv.AppendInt(b, int64(x), 10)
	case int16:
		return strconv.AppendInt(b, int64(x), 10)
	case int32:
		return strconv.AppendInt(b, int64(x), 10)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case uint:
		return strconv.AppendUint(b, uint64(x), 10)
	case uint8:
		return strconv.AppendUint(b, uint64(x), 10)
	case uint16:
		return strconv.AppendUint(b, uint64(x), 10)
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10)
	case uint64:
		return strconv.AppendUint(b, x, 10)
	case float32:
		return appendFloat(b, float64(x), 32)
	case float64:
		return appendFloat(b, x, 64)
	case json.Number:
		if validNumber(string(x)) && len(x) <= 64 {
			return append(b, x...)
		}
		return appendString(b, string(x), 64)
	case time.Time:
		b = append(b, '"')
		b = appendTime(b, x)
		return append(b, '"')
	case time.Duration:
		return appendString(b, x.String(), 64)
	case netip.Addr:
		b = append(b, '"')
		b = x.AppendTo(b)
		return append(b, '"')
	case []string:
		b = append(b, '[')
		for i, s := range x[:min(len(x), maxList)] {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s, maxString)
		}
		return append(b, ']')
	case []int:
		b = append(b, '[')
		for i, n := range x[:min(len(x), maxList)] {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(n), 10)
		}
		return append(b, ']')
	case []any:
		b = append(b, '[')
		for i, el := range x[:min(len(x), maxList)] {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, el, depth+1)
		}
		return append(b, ']')
	case map[string]any:
		return appendMap(b, x, depth)
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, v := range x {
			m[k] = v
		}
		return appendMap(b, m, depth)
	case error:
		return appendString(b, x.Error(), maxString)
	case fmt.Stringer:
		return appendString(b, x.String(), maxString)
	}
	return appendString(b, fmt.Sprint(v), maxString)
}

func appendMap(b []byte, m map[string]any, depth int) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys[:min(len(keys), maxMapKeys)] {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k, 128)
		b = append(b, ':')
		b = appendValue(b, m[k], depth+1)
	}
	return append(b, '}')
}

// appendFloat writes a finite float as a JSON number, and NaN or an infinity
// as null (JSON has no form for them).
func appendFloat(b []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, bits)
}

// validNumber reports whether s is a JSON number (RFC 8259 section 6).
func validNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	return i == len(s)
}

// enc writes JSON members, tracking whether a comma is due.
type enc struct {
	b     []byte
	first bool // no member written yet in the current object
}

// mark remembers where an object began, to drop it if it stays empty.
type mark struct {
	pos   int
	first bool
}

func (e *enc) key(k string) {
	if !e.first {
		e.b = append(e.b, ',')
	}
	e.first = false
	e.b = append(e.b, '"')
	e.b = append(e.b, k...)
	e.b = append(e.b, '"', ':')
}

// anyKey writes a member name that comes from elsewhere (a finding's key),
// escaped and clipped.
func (e *enc) anyKey(k string) {
	if !e.first {
		e.b = append(e.b, ',')
	}
	e.first = false
	e.b = appendString(e.b, k, 128)
	e.b = append(e.b, ':')
}

// begin opens the object member k; finish closes it, or removes it when no
// member was written.
func (e *enc) begin(k string) mark {
	m := mark{pos: len(e.b), first: e.first}
	e.key(k)
	e.b = append(e.b, '{')
	e.first = true
	return m
}

func (e *enc) finish(m mark) {
	if e.first {
		e.b, e.first = e.b[:m.pos], m.first
		return
	}
	e.b = append(e.b, '}')
}

// str writes a string member unless v is empty; max clips it (0: no clip).
func (e *enc) str(k, v string, max int) {
	if v == "" {
		return
	}
	e.key(k)
	e.b = appendString(e.b, v, max)
}

func (e *enc) int(k string, v int64) {
	e.key(k)
	e.b = strconv.AppendInt(e.b, v, 10)
}

func (e *enc) addr(k string, a netip.Addr) {
	e.key(k)
	e.b = append(e.b, '"')
	e.b = a.Unmap().AppendTo(e.b)
	e.b = append(e.b, '"')
}

// strs writes a list of strings unless it is empty, bounded to maxList.
func (e *enc) strs(k string, vs []string) {
	if len(vs) == 0 {
		return
	}
	e.key(k)
	e.b = append(e.b, '[')
	for i, v := range vs[:min(len(vs), maxList)] {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.b = appendString(e.b, v, 256)
	}
	e.b = append(e.b, ']')
}

// appendString writes s as a JSON string: quotes, backslashes and control
// characters escaped, every byte of invalid UTF-8 replaced by U+FFFD (as
// encoding/json does), U+2028 and U+2029 escaped. When max > 0 and s is
// longer, it is cut at a character boundary at most max bytes in and "..."
// is added.
func appendString(b []byte, s string, max int) []byte {
	clipped := false
	if max > 0 && len(s) > max {
		n := max
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s, clipped = s[:n], true
	}
	b = append(b, '"')
	b = jsonlex.AppendEscaped(b, s)
	if clipped {
		b = append(b, "..."...)
	}
	return append(b, '"')
}

// appendTime writes t in UTC as RFC 3339 with microseconds:
// 2026-11-21T10:00:00.123456Z.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	}
	h, mi, s := t.Clock()
	us := t.Nanosecond() / 1000
	b = append(b, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+int(mo)/10), byte('0'+int(mo)%10), '-', byte('0'+d/10), byte('0'+d%10), 'T',
		byte('0'+h/10), byte('0'+h%10), ':', byte('0'+mi/10), byte('0'+mi%10), ':', byte('0'+s/10), byte('0'+s%10), '.')
	for div := 100000; div > 0; div /= 10 {
		b = append(b, byte('0'+us/div%10))
	}
	return append(b, 'Z')
}
