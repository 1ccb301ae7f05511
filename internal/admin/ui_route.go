package admin

import (
	"net/http"

	"github.com/moat-gateway/moat/internal/admin/ui"
)

// UIPrefix is where the admin listener serves the dashboard
// (docs/dashboard.md); / and /ui redirect there.
const UIPrefix = "/ui/"

// uiEndpoints routes the dashboard. Its pages and scripts carry no data and
// need no token (the login form is one of them): the endpoints have no role,
// like the health checks, and still go through the Host check. Everything
// the page shows it fetches from the API with the operator's token. They are
// not API endpoints, so they are kept out of endpoints() and openapi.json.
func (s *Server) uiEndpoints() []endpoint {
	h := ui.New(UIPrefix)
	serve := func(w http.ResponseWriter, r *http.Request, _ *call) { h.ServeHTTP(w, r) }
	toUI := func(w http.ResponseWriter, r *http.Request, _ *call) {
		http.Redirect(w, r, UIPrefix, http.StatusFound)
	}
	return []endpoint{
		{"GET", "/", "", toUI},
		{"GET", "/ui", "", toUI},
		{"GET", UIPrefix, "", serve},
		{"GET", UIPrefix + "{id}", "", serve},
	}
}
