package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium, which the dashboard test drives.
const chromiumPath = "/usr/bin/chromium"

// browserLimit bounds the whole browser test: the browser and every step.
const browserLimit = 60 * time.Second

// dashboardShots are the screenshots docs/dashboard.md shows, copied to
// docs/img when UPDATE_SCREENSHOTS=1.
var dashboardShots = []string{"dashboard-login", "dashboard-overview", "dashboard-overview-dark", "dashboard-events",
	"dashboard-alerts", "dashboard-alerts-dark", "dashboard-posture", "dashboard-keys"}

// TestDashboardServed checks how the admin listener mounts the dashboard,
// without a browser: / redirects to /ui/, the assets need no token but
// still pass the Host check, carry the dashboard's Content-Security-Policy
// and not the API's, and nothing else is served under /ui/.
func TestDashboardServed(t *testing.T) {
	g, _, _ := startDashboardGateway(t)
	base := "http://" + g.srv.AdminAddr()

	resp, _ := g.do(t, newRequest(t, "GET", base+"/", nil))
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /: %d Location %q, want 302 /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	tests := []struct {
		desc, method, path string
		header             []string
		status             int
		ctype              string
	}{
		{"index", "GET", "/ui/", nil, 200, "text/html; charset=utf-8"},
		{"script", "GET", "/ui/app.js", nil, 200, "text/javascript; charset=utf-8"},
		{"parser", "GET", "/ui/prom.js", nil, 200, "text/javascript; charset=utf-8"},
		{"style", "GET", "/ui/style.css", nil, 200, "text/css; charset=utf-8"},
		{"icon", "HEAD", "/ui/favicon.svg", nil, 200, "image/svg+xml"},
		{"unknown asset", "GET", "/ui/secrets.json", nil, 404, ""},
		{"traversal", "GET", "/ui/..%2fadmin.go", nil, 404, ""},
		{"nested", "GET", "/ui/a/b.js", nil, 404, ""},
		{"post", "POST", "/ui/", nil, 405, ""},
		{"rebound host", "GET", "/ui/", []string{"Host", "attacker.example"}, 403, ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			resp, body := g.do(t, newRequest(t, tc.method, base+tc.path, nil, tc.header...))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, clip(body))
			}
			if tc.status != 200 {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != tc.ctype {
				t.Errorf("Content-Type %q, want %q", ct, tc.ctype)
			}
			csp := resp.Header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe") {
				t.Errorf("CSP %q allows unsafe sources", csp)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("ETag") == "" {
				t.Errorf("headers %v", resp.Header)
			}
		})
	}
	// The API keeps its own, stricter policy.
	resp, _ = g.do(t, newRequest(t, "GET", base+"/api/v1/status", nil))
	if resp.StatusCode != 401 || resp.Header.Get("Content-Security-Policy") != "default-src 'none'; frame-ancestors 'none'" {
		t.Errorf("API without a token: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
}

// startDashboardGateway runs a gateway with an admin listener, an API key
// authenticator on the embedded key store, a route it protects (/api), a
// public route (/open) and an upstream. Its brute-force lockout and anomaly
// detection have low thresholds, so that a few bad keys from one address
// get it locked out (after 6 failures) and then blocked (after 8). It
// returns the gateway, the admin token and the key store's path.
func startDashboardGateway(t *testing.T) (*gw, string, string) {
	t.Helper()
	const token = "dashboard-test-admin-token-0123456789abcdef"
	sum := sha256.Sum256([]byte(token))
	up := newUpstream(t, "orders")
	keysFile := filepath.Join(t.TempDir(), "keys.db")
	g := startGateway(t, fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
state: {keys_file: %q}
admin:
  address: 127.0.0.1:0
  tokens: [{name: ops, sha256: %s, role: write}]
authenticators:
  keys: {api_key: {}}
brute_force: {max_failures: 5, window: 1m, cooldown: 5m}
anomaly:
  detectors:
    auth_failures: {window: 1m, threshold: 8}
  block: {enabled: true, duration: 10m}
upstreams:
  orders: {targets: [%q]}
routes:
  - {name: orders, path: /api, methods: [GET], upstream: orders, auth: {authenticators: [keys], scopes: {any_of: ["orders:read"]}}}
  - {name: open, path: /open, methods: [GET], upstream: orders, public: true}
`, keysFile, hex.EncodeToString(sum[:]), up.URL()))
	return g, token, keysFile
}

// browserEvents collects what the page reports that a working dashboard
// never causes: uncaught exceptions and console or security errors (a
// Content-Security-Policy violation among them).
type browserEvents struct {
	mu       sync.Mutex
	errors   []string
	allow429 bool // the test locked itself out of the admin API on purpose
}

func (b *browserEvents) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		msg := ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			msg += " " + ev.ExceptionDetails.Exception.Description
		}
		b.errors = append(b.errors, "exception: "+msg)
	case *cdplog.EventEntryAdded:
		e := ev.Entry
		if e.Level != cdplog.EntryLevelError {
			return
		}
		// The login test sends a wrong token on purpose, and logout ends
		// with one refused call: the browser logs those 401s.
		if e.Source == cdplog.EntrySourceNetwork && (strings.Contains(e.Text, "401") || b.allow429 && strings.Contains(e.Text, "429")) {
			return
		}
		b.errors = append(b.errors, fmt.Sprintf("%s %s: %s (%s)", e.Source, e.Level, e.Text, e.URL))
	}
}

// expect429 stops counting 429 answers as errors.
func (b *browserEvents) expect429() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.allow429 = true
}

func (b *browserEvents) get() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// TestDashboard drives the dashboard in headless Chromium against a running
// gateway: sign in, watch the request count rise while Go sends traffic,
// filter the security events and drill into one, see the anomaly alert and
// block that bad keys from 127.0.0.2 caused, add a block and lift that one
// from the page and see the gateway admit 127.0.0.2 again, read the posture
// matrix, create an API key and use it through the gateway, revoke it in
// the page and see the gateway refuse it, and finally see the sign-in form
// refused after wrong admin tokens locked this address out. It saves a
// screenshot of each page.
func TestDashboard(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("MOAT_REQUIRE_BROWSER") != "" {
			t.Fatalf("MOAT_REQUIRE_BROWSER is set but %s is missing: apt-get install -y chromium", chromiumPath)
		}
		t.Skipf("%s not found: install Debian's chromium (apt-get install -y chromium) to run the dashboard test; set MOAT_REQUIRE_BROWSER=1 to fail instead of skipping", chromiumPath)
	}
	g, token, _ := startDashboardGateway(t)
	admin := "http://" + g.srv.AdminAddr()
	shots := screenshotDir(t)

	root, cancel := context.WithTimeout(context.Background(), browserLimit)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(root,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer cancelCtx()

	events := &browserEvents{}
	if err := chromedp.Listen(ctx, events.listen); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("Log.enable: %v", err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v\nbrowser errors: %v", what, err, events.get())
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	eval := func(js string, v any) {
		t.Helper()
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js))
		if err != nil {
			t.Fatalf("evaluating %s: %v", js, err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("evaluating %s: decoding %s: %v", js, raw, err)
		}
	}
	// waitFor evaluates cond (a JavaScript expression) every 100ms until it
	// is true, for up to 15s.
	waitFor := func(what, cond string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			var ok bool
			eval("Boolean("+cond+")", &ok)
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s not true within 15s\nbrowser errors: %v", what, cond, events.get())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	shot := func(name string) {
		t.Helper()
		do("settling before "+name, chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`))
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Sign in: a wrong token is refused, the right one is kept in
	// sessionStorage only.
	do("opening the dashboard", chromedp.Navigate(admin+"/"), chromedp.WaitVisible(chromedp.ID("login-token")))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != admin+"/ui/" {
		t.Errorf("/ led to %s, want %s/ui/", loc, admin)
	}
	shot("dashboard-login")
	do("signing in with a wrong token",
		chromedp.SendKeys(chromedp.ID("login-token"), "not-the-token"),
		chromedp.Click(chromedp.ID("login-submit")))
	waitFor("the refusal", `document.getElementById('login-error').textContent.includes('refused')`)
	do("signing in",
		chromedp.SetValue(chromedp.ID("login-token"), token),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("page-overview")))
	var stored struct {
		Session, Local, Cookie string
		Input                  string
	}
	eval(`({session: sessionStorage.getItem('moat.admin.token') || '', local: JSON.stringify(localStorage),
		cookie: document.cookie, input: document.getElementById('login-token').value})`, &stored)
	if stored.Session != token || strings.Contains(stored.Local, token) || stored.Cookie != "" || stored.Input != "" {
		t.Errorf("token storage: session %q, local %q, cookie %q, input %q", stored.Session, stored.Local, stored.Cookie, stored.Input)
	}

	// The Prometheus parser, on what the gateway's exposition does not show:
	// escapes in label values, special values, timestamps, and a histogram.
	var parsed struct {
		Escaped string
		Sum     float64
		Inf     bool
		P50     float64
		P99     float64
		Bad     string
	}
	eval(`(() => {
		const m = MoatProm.parse('# HELP x y\n# TYPE x counter\nx{a="q\\"uo\\\\te\\nnl",b="}"} 2 1700000000000\nx{a="p"} 3\ny +Inf\n' +
			'h_bucket{le="0.1"} 5\nh_bucket{le="1"} 9\nh_bucket{le="+Inf"} 10\nh_sum 3\nh_count 10\n');
		let bad = '';
		try { MoatProm.parse('x{a="unterminated} 1'); } catch (e) { bad = e.message; }
		const hist = MoatProm.histogram(m, 'h');
		return {escaped: m.get('x')[0].labels.a, sum: MoatProm.sum(m, 'x'), inf: m.get('y')[0].value === Infinity,
			p50: MoatProm.quantile(0.5, hist), p99: MoatProm.quantile(0.99, hist), bad};
	})()`, &parsed)
	if parsed.Escaped != "q\"uo\\te\nnl" || parsed.Sum != 5 || !parsed.Inf || parsed.P50 != 0.1 || parsed.P99 != 1 || !strings.Contains(parsed.Bad, "line 1") {
		t.Errorf("MoatProm: %+v", parsed)
	}

	// Live numbers: the request count shown rises while Go sends traffic.
	number := func(sel string) int {
		t.Helper()
		s := strings.ReplaceAll(text(sel), ",", "")
		n, err := strconv.Atoi(s)
		if err != nil {
			return -1
		}
		return n
	}
	waitFor("the first numbers", `/^[0-9,]+$/.test(document.getElementById('stat-total').textContent)`)
	before := number("#stat-total")
	stop := make(chan struct{})
	var traffic sync.WaitGroup
	traffic.Add(1)
	go func() {
		defer traffic.Done()
		c := &http.Client{Timeout: 5 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			path := "/open"
			if i%3 == 2 {
				path = "/api" // no key: credentials_missing
			}
			if resp, err := c.Get(g.url() + path); err == nil {
				resp.Body.Close()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		traffic.Wait()
	}()
	deadline := time.Now().Add(15 * time.Second)
	for number("#stat-total") <= before {
		if time.Now().After(deadline) {
			t.Fatalf("the request count stayed at %d while traffic flowed\nbrowser errors: %v", before, events.get())
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitFor("a request rate", `parseFloat(document.getElementById('stat-rps').textContent) > 0`)
	waitFor("the chart", `document.querySelectorAll('#chart polyline').length === 2 && document.querySelector('#chart polyline').getAttribute('points').split(' ').length >= 3`)
	waitFor("the reasons table", `[...document.querySelectorAll('#reasons-table tbody th')].some((th) => th.textContent === 'credentials_missing')`)
	if s := text("#stat-overhead"); !regexp.MustCompile(`^[0-9.]+\x{00a0}(µs|ms|s) / [0-9.]+\x{00a0}(µs|ms|s)$`).MatchString(s) {
		t.Errorf("gateway overhead shows %q", s)
	}
	close(stop)
	traffic.Wait()
	lockOut(t, g) // a lockout, an anomaly alert and a block of 127.0.0.2, for the alerts page
	waitFor("the lockout and block in the reasons table", `(() => { const r = [...document.querySelectorAll('#reasons-table tbody th')].map((th) => th.textContent);
		return r.includes('auth_locked_out') && r.includes('temporarily_blocked'); })()`)
	shot("dashboard-overview")

	// Theme: the toggle switches to dark and back, and says so.
	do("dark theme", chromedp.Click(chromedp.ID("theme-toggle")))
	var theme struct{ Theme, Pressed, Bg string }
	eval(`({theme: document.documentElement.dataset.theme, pressed: document.getElementById('theme-toggle').getAttribute('aria-pressed'),
		bg: getComputedStyle(document.body).backgroundColor})`, &theme)
	if theme.Theme != "dark" || theme.Pressed != "true" || theme.Bg != "rgb(15, 19, 23)" {
		t.Errorf("after the toggle: %+v", theme)
	}
	shot("dashboard-overview-dark")
	do("light theme", chromedp.Click(chromedp.ID("theme-toggle")))

	// Security events: filter on a reason and a route, drill into a request.
	do("opening the events", chromedp.Click(chromedp.CSS(`#nav a[href="#events"]`)), chromedp.WaitVisible(chromedp.ID("page-events")))
	waitFor("events", `document.querySelectorAll('#events-table tbody button[data-rid]').length > 0`)
	do("filtering on a reason",
		chromedp.SendKeys(chromedp.ID("f-reason"), "credentials_missing"),
		chromedp.SendKeys(chromedp.ID("f-route"), "orders"),
		chromedp.Click(chromedp.ID("f-apply")))
	waitFor("the filtered events", `document.getElementById('events-summary').textContent.includes('reason=credentials_missing')`)
	var rows []struct{ Reason, Route, Principal string }
	eval(`[...document.querySelectorAll('#events-table tbody tr')].map((tr) => ({reason: tr.cells[5].textContent, route: tr.cells[2].textContent}))`, &rows)
	if len(rows) == 0 {
		t.Fatal("no event matches reason=credentials_missing")
	}
	for _, r := range rows {
		if r.Reason != "credentials_missing" || r.Route != "orders" {
			t.Fatalf("a filtered row shows %+v", r)
		}
	}
	var topIP string
	eval(`document.querySelector('#top-ips tbody th').textContent`, &topIP)
	if topIP != "127.0.0.1" {
		t.Errorf("top client IP %q", topIP)
	}
	var rid string
	eval(`document.querySelector('#events-table tbody button[data-rid]').dataset.rid`, &rid)
	do("drilling into a request", chromedp.Click(chromedp.CSS(`#events-table tbody button[data-rid]`)), chromedp.WaitVisible(chromedp.ID("drill")))
	if body := text("#drill-body"); !strings.Contains(body, rid) || !strings.Contains(body, "credentials_missing") || !strings.Contains(body, "/api") {
		t.Errorf("request details: %q", body)
	}
	shot("dashboard-events")

	// Alerts: the bad keys from 127.0.0.2 raised an auth_failures alert
	// that blocked it; the block is listed, and so are its lockout and
	// block denials. Keyboard: the nav link is reached by focus and
	// followed with Enter.
	do("opening the alerts by keyboard", chromedp.Focus(chromedp.CSS(`#nav a[href="#alerts"]`)), chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.ID("page-alerts")))
	waitFor("the alert", `[...document.querySelectorAll('#anomaly-alerts-table tbody tr')].some((tr) => tr.cells.length === 8 &&
		tr.cells[1].textContent === 'auth_failures' && tr.cells[3].textContent === 'ip 127.0.0.2' && tr.cells[6].querySelector('time') !== null)`)
	if s := text("#anomaly-alerts-summary"); !strings.Contains(s, "of which blocked the subject") {
		t.Errorf("alerts summary %q", s)
	}
	waitFor("the block", `document.querySelector('#blocks-table tbody tr[data-kind="ip"][data-subject="127.0.0.2"] button[data-act="unblock"]') !== null`)
	waitFor("the denials", `(() => { const r = [...document.querySelectorAll('#alerts-table tbody code')].map((c) => c.textContent);
		return r.includes('auth_locked_out') && r.includes('temporarily_blocked'); })()`)
	if s := text("#alerts-table tbody tr td:nth-child(3)"); s != "127.0.0.2" {
		t.Errorf("locked-out client shows %q", s)
	}
	// A manual block, with the keyboard: Enter in the subject submits.
	do("adding a block",
		chromedp.SetValue(chromedp.ID("block-kind"), "principal"),
		chromedp.SendKeys(chromedp.ID("block-subject"), "keys:mallory\r"))
	waitFor("the manual block", `document.querySelector('#blocks-table tbody tr[data-kind="principal"][data-subject="keys:mallory"]') !== null`)
	if s := text("#flash"); !strings.HasPrefix(s, "Blocked principal keys:mallory until ") {
		t.Errorf("after adding a block the page says %q", s)
	}
	shot("dashboard-alerts")
	do("dark theme", chromedp.Click(chromedp.ID("theme-toggle")))
	shot("dashboard-alerts-dark")
	do("light theme", chromedp.Click(chromedp.ID("theme-toggle")))

	// Lift the anomaly block from the page, with the keyboard: the Unblock
	// button opens the confirmation, whose OK lifts it; the gateway admits
	// 127.0.0.2 again.
	do("unblocking 127.0.0.2",
		chromedp.Focus(chromedp.CSS(`#blocks-table button[data-act="unblock"][data-subject="127.0.0.2"]`)),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.ID("confirm")))
	if s := text("#confirm-title"); s != "Unblock ip 127.0.0.2" {
		t.Errorf("confirmation titled %q", s)
	}
	do("confirming", chromedp.Click(chromedp.ID("confirm-ok")), chromedp.WaitNotVisible(chromedp.ID("confirm")))
	waitFor("the block's removal", `document.querySelector('#blocks-table tbody tr[data-subject="127.0.0.2"]') === null &&
		document.querySelector('#blocks-table tbody tr[data-subject="keys:mallory"]') !== null`)
	waitFor("the focus back on the table's controls", `document.activeElement === document.getElementById('blocks-refresh')`)
	if s := text("#flash"); s != "Unblocked ip 127.0.0.2." {
		t.Errorf("after unblocking the page says %q", s)
	}
	if resp, body := send(t, fromLoopback2(), newRequest(t, "GET", g.url()+"/open", nil)); resp.StatusCode != 200 {
		t.Errorf("127.0.0.2 after the block was lifted: %d %s", resp.StatusCode, clip(body))
	}

	// Posture: the public route's gaps are flagged.
	do("opening the posture", chromedp.Click(chromedp.CSS(`#nav a[href="#posture"]`)), chromedp.WaitVisible(chromedp.ID("page-posture")))
	waitFor("the matrix", `document.querySelectorAll('#posture-table tbody tr').length === 2`)
	var posture []struct {
		Route, Class, Authn, Warnings string
	}
	eval(`[...document.querySelectorAll('#posture-table tbody tr')].map((tr) => ({route: tr.cells[0].firstChild.textContent,
		class: tr.className, authn: tr.cells[1].className + ':' + tr.cells[1].textContent, warnings: tr.cells[8].textContent}))`, &posture)
	for _, p := range posture {
		switch p.Route {
		case "open":
			if p.Class != "warn" || p.Authn != "gap:public" || !strings.Contains(p.Warnings, "without a rate limit") {
				t.Errorf("public route: %+v", p)
			}
		case "orders":
			if p.Class == "warn" || p.Authn != "okcell:keys" {
				t.Errorf("protected route: %+v", p)
			}
		default:
			t.Errorf("unexpected route %+v", p)
		}
	}
	shot("dashboard-posture")

	// API keys: create one, use it through the gateway, revoke it in the
	// page, see the gateway refuse it.
	do("opening the keys", chromedp.Click(chromedp.CSS(`#nav a[href="#keys"]`)), chromedp.WaitVisible(chromedp.ID("page-keys")))
	do("creating a key",
		chromedp.SendKeys(chromedp.ID("key-name"), "ci-bot"),
		chromedp.SendKeys(chromedp.ID("key-subject"), "team-ci"),
		chromedp.SendKeys(chromedp.ID("key-roles"), "deployer, reader"),
		chromedp.SendKeys(chromedp.ID("key-scopes"), "orders:read"),
		chromedp.Click(chromedp.ID("key-create")),
		chromedp.WaitVisible(chromedp.ID("new-key")))
	key := text("#new-key-value")
	if !regexp.MustCompile(`^moat_[0-9A-Za-z]{8}_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}$`).MatchString(key) {
		t.Fatalf("the page shows %q as the new key", key)
	}
	id := strings.Split(key, "_")[1]
	waitFor("the new key's row", fmt.Sprintf(`document.querySelector('#keys-table tr[data-key=%q] .badge.active') !== null`, id))
	e := g.getEcho(t, "/api", "X-API-Key", key)
	if h := http.Header(e.Header); h.Get("X-Moat-Subject") != "team-ci" || h.Get("X-Moat-Roles") != "deployer,reader" {
		t.Errorf("upstream saw principal headers %v", h)
	}
	shot("dashboard-keys")
	do("dismissing the key", chromedp.Click(chromedp.ID("new-key-done")), chromedp.WaitNotVisible(chromedp.ID("new-key")))
	if s := text("#new-key-value"); s != "" {
		t.Errorf("the key is still in the page after dismissal: %q", s)
	}
	do("revoking the key",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`button[data-act="revoke"][data-id=%q]`, id))),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm-ok")))
	waitFor("the revoked status", fmt.Sprintf(`document.querySelector('#keys-table tr[data-key=%q] .badge.revoked') !== null`, id))
	deadline = time.Now().Add(5 * time.Second)
	for {
		resp, body := g.get(t, "/api", "X-API-Key", key)
		if resp.StatusCode == 401 {
			wantProblem(t, resp, body, 401, "invalid_credentials")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key revoked in the dashboard still works after 5s: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Logout forgets the token.
	do("logging out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("page-login")))
	var left string
	eval(`sessionStorage.getItem('moat.admin.token') || ''`, &left)
	if left != "" {
		t.Error("the token is still in sessionStorage after logout")
	}

	// Wrong admin tokens from this address lock it out of the admin API:
	// the right token is then refused, and the sign-in form says why.
	events.expect429()
	for i := 0; ; i++ {
		resp, _ := g.do(t, newRequest(t, "GET", admin+"/api/v1/status", nil, "Authorization", fmt.Sprintf("Bearer wrong-%d", i)))
		if resp.StatusCode == http.StatusTooManyRequests {
			break
		}
		if resp.StatusCode != http.StatusUnauthorized || i == 20 {
			t.Fatalf("wrong admin token %d: %d, want 401 until the lockout", i+1, resp.StatusCode)
		}
	}
	do("signing in while locked out",
		chromedp.SetValue(chromedp.ID("login-token"), token),
		chromedp.Click(chromedp.ID("login-submit")))
	waitFor("the lockout message", `document.getElementById('login-error').textContent.startsWith('Too many failed sign-ins from this address')`)
	if s := text("#login-error"); !strings.Contains(s, "whatever the token, for 5") {
		t.Errorf("the lockout message says %q", s)
	}
	if page, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById('page-login').hidden`)); err != nil || page {
		t.Errorf("signed in while locked out (login page hidden: %v, %v)", page, err)
	}

	if errs := events.get(); len(errs) > 0 {
		t.Errorf("the page reported errors:\n%s", strings.Join(errs, "\n"))
	}
	if os.Getenv("UPDATE_SCREENSHOTS") == "1" && !t.Failed() {
		for _, name := range dashboardShots {
			b, err := os.ReadFile(filepath.Join(shots, name+".png"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join("..", "..", "docs", "img", name+".png"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("screenshots copied to docs/img")
	}
}

// fromLoopback2 returns a client whose requests come from 127.0.0.2.
func fromLoopback2() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext,
	}}
}

// lockOut sends bad API keys from 127.0.0.2 until the gateway locks that
// address out (429 auth_locked_out) and then, as the failures go on, the
// anomaly detection's auth_failures alert blocks it (403
// temporarily_blocked), leaving 127.0.0.1 unaffected.
func lockOut(t *testing.T, g *gw) {
	t.Helper()
	c := fromLoopback2()
	lockedOut := false
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		req := newRequest(t, "GET", g.url()+"/api", nil, "X-API-Key", fmt.Sprintf("moat_bad%05d_%043d_000000", i, i))
		resp, body := send(t, c, req)
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			lockedOut = true
		case resp.StatusCode == http.StatusForbidden && lockedOut:
			wantProblem(t, resp, body, 403, "temporarily_blocked")
			return
		case resp.StatusCode != http.StatusUnauthorized:
			t.Fatalf("bad key %d from 127.0.0.2: %d %s", i+1, resp.StatusCode, clip(body))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bad keys from 127.0.0.2 in 10s: locked out %v, never blocked", i+1, lockedOut)
		}
		if lockedOut {
			time.Sleep(20 * time.Millisecond) // the alert's worker writes the block
		}
	}
}

// screenshotDir returns where the test saves its screenshots:
// $MOAT_TEST_OUTPUT/dashboard when set, else a temporary directory.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if out := os.Getenv("MOAT_TEST_OUTPUT"); out != "" {
		dir = filepath.Join(out, "dashboard")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots in %s", dir)
	return dir
}
