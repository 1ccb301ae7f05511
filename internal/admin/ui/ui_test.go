package ui

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func serve(t *testing.T, h http.Handler, method, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandler(t *testing.T) {
	h := New("/ui/")
	tests := []struct {
		desc, method, path string
		status             int
		ctype              string
	}{
		{"index at the prefix", "GET", "/ui/", 200, "text/html; charset=utf-8"},
		{"index by name", "GET", "/ui/index.html", 200, "text/html; charset=utf-8"},
		{"script", "GET", "/ui/app.js", 200, "text/javascript; charset=utf-8"},
		{"style", "GET", "/ui/style.css", 200, "text/css; charset=utf-8"},
		{"icon", "GET", "/ui/favicon.svg", 200, "image/svg+xml"},
		{"head", "HEAD", "/ui/app.js", 200, "text/javascript; charset=utf-8"},
		{"unknown file", "GET", "/ui/missing.js", 404, ""},
		{"directory name", "GET", "/ui/assets/app.js", 404, ""},
		{"outside the prefix", "GET", "/app.js", 404, ""},
		{"post", "POST", "/ui/", 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			rec := serve(t, h, tc.method, tc.path)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			if got := rec.Header().Get("Content-Security-Policy"); got != ContentSecurityPolicy {
				t.Errorf("CSP %q", got)
			}
			if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no nosniff")
			}
			if tc.status != 200 {
				return
			}
			if got := rec.Header().Get("Content-Type"); got != tc.ctype {
				t.Errorf("Content-Type %q, want %q", got, tc.ctype)
			}
			if rec.Header().Get("Cache-Control") != "no-cache" || rec.Header().Get("ETag") == "" {
				t.Errorf("caching headers %v", rec.Header())
			}
			if tc.method == "HEAD" && rec.Body.Len() != 0 {
				t.Error("HEAD with a body")
			}
			if tc.method == "GET" && rec.Body.Len() == 0 {
				t.Error("empty body")
			}
		})
	}
}

func TestHandlerRevalidation(t *testing.T) {
	h := New("/ui/")
	first := serve(t, h, "GET", "/ui/app.js")
	etag := first.Header().Get("ETag")
	if again := serve(t, h, "GET", "/ui/app.js", "If-None-Match", etag); again.Code != http.StatusNotModified || again.Body.Len() != 0 {
		t.Errorf("If-None-Match with the current ETag: %d, %d bytes", again.Code, again.Body.Len())
	}
	if other := serve(t, h, "GET", "/ui/app.js", "If-None-Match", `"stale"`); other.Code != 200 {
		t.Errorf("If-None-Match with another ETag: %d", other.Code)
	}
	if serve(t, h, "GET", "/ui/style.css").Header().Get("ETag") == etag {
		t.Error("two files share an ETag")
	}
}

func TestNewPrefix(t *testing.T) {
	for _, p := range []string{"", "ui/", "/ui"} {
		t.Run(p, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%q) did not panic", p)
				}
			}()
			New(p)
		})
	}
}

// TestAssetsPolicy keeps the assets within what ContentSecurityPolicy
// allows and the dashboard's rules: no inline script, style or event
// handler, nothing loaded from another origin, and no API that parses
// strings as HTML or code (event data comes from clients).
func TestAssetsPolicy(t *testing.T) {
	h := New("/ui/")
	body := func(name string) string { return string(h.files[name].body) }
	index := body("index.html")

	scripts := regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script>`).FindAllStringSubmatch(index, -1)
	if len(scripts) == 0 {
		t.Fatal("index.html loads no script")
	}
	for _, s := range scripts {
		if !regexp.MustCompile(`\bsrc="[a-z]+\.js"`).MatchString(s[1]) || strings.TrimSpace(s[2]) != "" {
			t.Errorf("inline or foreign script: %s", s[0])
		}
	}
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`),           // inline event handlers
		regexp.MustCompile(`(?i)\sstyle\s*=`),              // inline styles
		regexp.MustCompile(`(?i)<style\b`),                 // style elements
		regexp.MustCompile(`(?i)(src|href)="(https?:)?//`), // other origins
		regexp.MustCompile(`(?i)javascript:`),
	} {
		if m := bad.FindString(index); m != "" {
			t.Errorf("index.html has %q", m)
		}
	}
	for _, name := range []string{"app.js", "prom.js"} {
		js := strings.ReplaceAll(body(name), `'http://www.w3.org/2000/svg'`, "") // a namespace name, not a URL fetched
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage.setItem(TOKEN", "document.cookie", "http://", "https://"} {
			if strings.Contains(js, bad) {
				t.Errorf("%s uses %q", name, bad)
			}
		}
	}
	if app := body("app.js"); !strings.Contains(app, "sessionStorage.setItem(TOKEN_KEY") || strings.Contains(app, "localStorage.setItem(TOKEN_KEY") {
		t.Error("app.js must keep the token in sessionStorage only")
	}
	// Every input, select and textarea has a label.
	ids := regexp.MustCompile(`<(?:input|select|textarea)\b[^>]*\bid="([^"]+)"`).FindAllStringSubmatch(index, -1)
	for _, m := range ids {
		if !strings.Contains(index, `for="`+m[1]+`"`) && !regexp.MustCompile(`<label[^>]*>\s*<input[^>]*id="`+regexp.QuoteMeta(m[1])+`"`).MatchString(index) {
			t.Errorf("control #%s has no label", m[1])
		}
	}
	// Column headers have a scope.
	if m := regexp.MustCompile(`<th\b(?:[^>]*)>`).FindAllString(index, -1); len(m) == 0 {
		t.Error("no table header")
	} else {
		for _, th := range m {
			if !strings.Contains(th, `scope="`) {
				t.Errorf("header without scope: %s", th)
			}
		}
	}
}
