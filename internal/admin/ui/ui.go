// Package ui serves the admin dashboard: a single page of HTML, CSS and
// vanilla JavaScript embedded in the binary, which talks to the admin API
// of the same listener with the bearer token an operator pastes into its
// login form (see docs/dashboard.md). Nothing is fetched from elsewhere at
// run time.
//
// The assets hold no secret and no data: they are served without
// authentication, and every number and record the page shows comes from the
// admin API, which checks the token on each call.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// ContentSecurityPolicy is sent with every dashboard response: scripts,
// styles, images and fetches from the listener's own origin only, no inline
// script or style, no plugins, no framing, and forms that post nowhere (the
// page submits through fetch).
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

//go:embed assets
var assets embed.FS

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string // quoted strong entity tag: a prefix of the SHA-256 of body
}

// Handler serves the embedded dashboard. Create it with New; it is safe for
// concurrent use and holds no per-request state.
type Handler struct {
	prefix string
	files  map[string]asset // by name relative to the prefix; "" is index.html
}

// New returns a Handler serving the dashboard under prefix, which must start
// and end with a slash (such as "/ui/"): prefix itself answers index.html,
// prefix+"app.js" the script, and so on. It reads the embedded files once.
func New(prefix string) *Handler {
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") {
		panic("ui: prefix must start and end with /: " + prefix)
	}
	h := &Handler{prefix: prefix, files: map[string]asset{}}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		name := strings.TrimPrefix(p, "assets/")
		h.files[name] = asset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		panic("ui: reading embedded assets: " + err.Error()) // the files are compiled in: cannot happen
	}
	h.files[""] = h.files["index.html"]
	return h
}

// Files lists the names the handler serves under its prefix, "" for the
// index page.
func (h *Handler) Files() []string {
	out := make([]string, 0, len(h.files))
	for name := range h.files {
		out = append(out, name)
	}
	return out
}

// ServeHTTP answers GET and HEAD for an embedded file under the prefix,
// with the ContentSecurityPolicy, and 404 for any other path or 405 for any
// other method. Responses are revalidated on each use (Cache-Control:
// no-cache with an ETag), so an upgraded binary's page is never mixed with
// an old script.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, h.prefix)
	a, found := h.files[name]
	if !ok || !found {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Content-Type", a.contentType)
	hd.Set("ETag", a.etag)
	// ServeContent answers If-None-Match with 304, HEAD without a body,
	// and sets Content-Length.
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
}
