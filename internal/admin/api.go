package admin

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/keys"
)

//go:embed openapi.json
var openapiDoc []byte

// maxJSONBody bounds the JSON bodies of the key endpoints.
const maxJSONBody = 64 << 10

// ConfigJSON returns cfg as the JSON GET /api/v1/config serves: the effective
// configuration with the YAML field names, defaults filled in, and every
// config.Secret written as REDACTED.
func ConfigJSON(cfg *config.Config) ([]byte, error) {
	y, err := cfg.Effective()
	if err != nil {
		return nil, fmt.Errorf("encoding configuration: %w", err)
	}
	var v any
	if err := yaml.Unmarshal(y, &v); err != nil {
		return nil, fmt.Errorf("re-reading configuration: %w", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding configuration as JSON: %w", err)
	}
	return b, nil
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request, _ *call) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openapiDoc)
}

func (s *Server) notConfigured(w http.ResponseWriter, what string) {
	s.problem(w, http.StatusNotImplemented, ReasonNotAvailable, what+" is not available on this gateway", nil)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, _ *call) {
	if s.deps.Status == nil {
		s.notConfigured(w, "status")
		return
	}
	st := s.deps.Status()
	if st.Version == "" {
		st.Version = s.deps.Version
	}
	if st.StartedAt.IsZero() {
		st.StartedAt = s.started
	}
	st.Uptime = s.now().Sub(st.StartedAt).Truncate(time.Second).String()
	s.writeJSON(w, r, http.StatusOK, st)
}

// quoteETag returns the strong entity tag of a configuration hash.
func quoteETag(hash string) string { return `"` + hash + `"` }

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request, _ *call) {
	if s.deps.Config == nil {
		s.notConfigured(w, "configuration")
		return
	}
	body, etag := s.deps.Config()
	if body == nil {
		s.problem(w, http.StatusServiceUnavailable, ReasonNotReady, "no configuration is loaded", nil)
		return
	}
	et := quoteETag(etag)
	w.Header().Set("ETag", et)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagListHas(inm, et) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

// etagListHas reports whether an If-Match or If-None-Match value names et
// (strong comparison; * matches any).
func etagListHas(list, et string) bool {
	for _, v := range strings.Split(list, ",") {
		v = strings.TrimSpace(v)
		if v == "*" || v == et {
			return true
		}
	}
	return false
}

// yamlTypes are the content types PUT /api/v1/config accepts.
var yamlTypes = map[string]bool{"application/yaml": true, "application/x-yaml": true, "text/yaml": true, "text/x-yaml": true}

func (s *Server) putConfig(w http.ResponseWriter, r *http.Request, c *call) {
	if s.deps.Config == nil || s.deps.Reload == nil {
		s.notConfigured(w, "configuration changes")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || !yamlTypes[mt] {
		s.problem(w, http.StatusUnsupportedMediaType, ReasonUnsupportedMediaType, "send the configuration as application/yaml", nil)
		return
	}
	ifMatch := r.Header.Get("If-Match")
	if ifMatch == "" {
		s.problem(w, http.StatusPreconditionRequired, ReasonPreconditionRequired, "send If-Match with the ETag of GET /api/v1/config", nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxConfigSize)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.problem(w, http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, "the configuration is over admin.max_config_size", nil)
			return
		}
		s.problem(w, http.StatusBadRequest, ReasonBadRequest, "reading the body failed", nil)
		return
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	_, etag := s.deps.Config()
	if !etagListHas(ifMatch, quoteETag(etag)) {
		w.Header().Set("ETag", quoteETag(etag))
		s.problem(w, http.StatusPreconditionFailed, ReasonPreconditionFailed, "the configuration changed since it was read; GET it again", nil)
		return
	}
	err = s.deps.Reload(body)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			probs := make([]map[string]any, len(ce.Problems))
			for i, p := range ce.Problems {
				probs[i] = map[string]any{"path": p.Path, "line": p.Line, "column": p.Col, "message": p.Msg}
			}
			s.audit("config_apply", c.actor, c.from, fmt.Sprintf("configuration refused: %d problems", len(ce.Problems)), err)
			s.problem(w, http.StatusUnprocessableEntity, ReasonConfigInvalid, "the configuration has problems; nothing was applied", map[string]any{"problems": probs})
			return
		}
		s.audit("config_apply", c.actor, c.from, "configuration not applied", err)
		s.problem(w, http.StatusConflict, ReasonReloadFailed, err.Error(), nil)
		return
	}
	_, etag = s.deps.Config()
	s.audit("config_apply", c.actor, c.from, "configuration applied: sha256 "+etag, nil)
	w.Header().Set("ETag", quoteETag(etag))
	s.writeJSON(w, r, http.StatusOK, map[string]any{"applied": true, "config_hash": etag})
}

func (s *Server) listRoutes(w http.ResponseWriter, r *http.Request, _ *call) {
	if s.deps.Routes == nil {
		s.notConfigured(w, "route listing")
		return
	}
	routes := s.deps.Routes()
	if routes == nil {
		routes = []RoutePosture{}
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{"routes": routes})
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request, _ *call) {
	if s.deps.Metrics == nil {
		s.problem(w, http.StatusNotFound, ReasonNotFound, "metrics are not enabled", nil)
		return
	}
	s.deps.Metrics.ServeHTTP(w, r)
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, _ *call) {
	q := r.URL.Query()
	f := Filter{Reason: q.Get("reason"), Route: q.Get("route"), Principal: q.Get("principal"), Limit: 100}
	if v := q.Get("client_ip"); v != "" {
		if ip, err := netip.ParseAddr(v); err == nil {
			f.ClientIP = ip.Unmap()
		} else if p, err := netip.ParsePrefix(v); err == nil {
			f.Prefix = p.Masked()
		} else {
			s.problem(w, http.StatusBadRequest, ReasonBadRequest, "client_ip must be an IP address or CIDR prefix", nil)
			return
		}
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			d, derr := time.ParseDuration(v)
			if derr != nil || d <= 0 {
				s.problem(w, http.StatusBadRequest, ReasonBadRequest, "since must be an RFC 3339 time or a positive duration such as 15m", nil)
				return
			}
			t = s.now().Add(-d)
		}
		f.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > s.cfg.EventsBuffer {
			s.problem(w, http.StatusBadRequest, ReasonBadRequest, fmt.Sprintf("limit must be between 1 and %d", s.cfg.EventsBuffer), nil)
			return
		}
		f.Limit = n
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{"events": s.events.Query(f)})
}

// KeyView is an API key record as the admin API shows it: never the key
// nor its hash.
type KeyView struct {
	ID          string            `json:"id"`
	Name        string            `json:"name,omitempty"`
	Subject     string            `json:"subject"`
	Roles       []string          `json:"roles,omitempty"`
	Scopes      []string          `json:"scopes,omitempty"`
	Plan        string            `json:"plan,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Status      string            `json:"status"` // active, revoked or expired
	ExpiresAt   time.Time         `json:"expires_at,omitzero"`
	CreatedAt   time.Time         `json:"created_at"`
	LastUsedAt  time.Time         `json:"last_used_at,omitzero"`
	RevokedAt   time.Time         `json:"revoked_at,omitzero"`
	RotatedFrom string            `json:"rotated_from,omitempty"`
	ReplacedBy  string            `json:"replaced_by,omitempty"`
}

func viewKey(r *keys.Record, now time.Time) KeyView {
	return KeyView{ID: r.ID, Name: r.Name, Subject: r.Subject, Roles: r.Roles, Scopes: r.Scopes, Plan: r.Plan,
		Metadata: r.Metadata, Status: r.Status(now), ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt,
		LastUsedAt: r.LastUsedAt, RevokedAt: r.RevokedAt, RotatedFrom: r.RotatedFrom, ReplacedBy: r.ReplacedBy}
}

// keyError answers a key store error.
func (s *Server) keyError(w http.ResponseWriter, op string, err error) {
	switch {
	case errors.Is(err, keys.ErrNotFound):
		s.problem(w, http.StatusNotFound, ReasonNotFound, "no such API key", nil)
	case errors.Is(err, keys.ErrRevoked), errors.Is(err, keys.ErrExpired):
		s.problem(w, http.StatusConflict, ReasonKeyConflict, err.Error(), nil)
	default:
		s.log.Error("admin: key store failed", "op", op, "error", err)
		s.problem(w, http.StatusInternalServerError, ReasonInternalError, "the key store failed", nil)
	}
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, _ *call) {
	if s.deps.Keys == nil {
		s.notConfigured(w, "the API key store")
		return
	}
	recs, err := s.deps.Keys.List(r.Context())
	if err != nil {
		s.keyError(w, "list", err)
		return
	}
	now := s.now()
	views := make([]KeyView, len(recs))
	for i := range recs {
		views[i] = viewKey(&recs[i], now)
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{"keys": views})
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request, c *call) {
	if s.deps.Keys == nil {
		s.notConfigured(w, "the API key store")
		return
	}
	if keys.ValidID(c.id) != nil {
		s.problem(w, http.StatusNotFound, ReasonNotFound, "no such API key", nil)
		return
	}
	rec, err := s.deps.Keys.Get(r.Context(), c.id)
	if err != nil {
		s.keyError(w, "get", err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, viewKey(&rec, s.now()))
}

// CreateKeyRequest is the body of POST /api/v1/keys.
type CreateKeyRequest struct {
	Subject   string            `json:"subject"`
	Name      string            `json:"name,omitempty"`
	Roles     []string          `json:"roles,omitempty"`
	Scopes    []string          `json:"scopes,omitempty"`
	Plan      string            `json:"plan,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	ExpiresAt time.Time         `json:"expires_at,omitzero"`
	TTL       string            `json:"ttl,omitempty"` // a Go duration such as 720h; instead of expires_at
}

// decodeJSON reads a JSON body into v, refusing unknown fields, trailing
// data, bodies over maxJSONBody and other content types. An empty body is
// allowed when optional.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		s.problem(w, http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, "the body is over 64KiB", nil)
		return false
	}
	if len(bytes.TrimSpace(b)) == 0 && optional {
		return true
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.problem(w, http.StatusUnsupportedMediaType, ReasonUnsupportedMediaType, "send the body as application/json", nil)
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		s.problem(w, http.StatusBadRequest, ReasonBadRequest, "invalid JSON body: "+err.Error(), nil)
		return false
	}
	if dec.More() {
		s.problem(w, http.StatusBadRequest, ReasonBadRequest, "invalid JSON body: data after the object", nil)
		return false
	}
	return true
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, c *call) {
	if s.deps.Keys == nil {
		s.notConfigured(w, "the API key store")
		return
	}
	var req CreateKeyRequest
	if !s.decodeJSON(w, r, &req, false) {
		return
	}
	now := s.now()
	if strings.TrimSpace(req.Subject) == "" {
		s.problem(w, http.StatusBadRequest, ReasonBadRequest, "subject is required", nil)
		return
	}
	if req.TTL != "" {
		if !req.ExpiresAt.IsZero() {
			s.problem(w, http.StatusBadRequest, ReasonBadRequest, "give expires_at or ttl, not both", nil)
			return
		}
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			s.problem(w, http.StatusBadRequest, ReasonBadRequest, "ttl must be a positive duration such as 720h", nil)
			return
		}
		req.ExpiresAt = now.Add(d)
	}
	if !req.ExpiresAt.IsZero() && !req.ExpiresAt.After(now) {
		s.problem(w, http.StatusBadRequest, ReasonBadRequest, "expires_at must be in the future", nil)
		return
	}
	rec, key, err := keys.Issue(r.Context(), s.deps.Keys, keys.Record{
		Name: req.Name, Subject: req.Subject, Roles: req.Roles, Scopes: req.Scopes, Plan: req.Plan,
		Metadata: req.Metadata, ExpiresAt: req.ExpiresAt.UTC(),
	}, now)
	if err != nil {
		s.audit("key_create", c.actor, c.from, "api key for subject "+req.Subject+" not created", err)
		s.keyError(w, "create", err)
		return
	}
	s.audit("key_create", c.actor, c.from, "api key "+rec.ID+" created for subject "+rec.Subject, nil)
	w.Header().Set("Location", "/api/v1/keys/"+rec.ID)
	s.writeJSON(w, r, http.StatusCreated, map[string]any{"key": key, "record": viewKey(&rec, now)})
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, c *call) {
	if s.deps.Keys == nil {
		s.notConfigured(w, "the API key store")
		return
	}
	if keys.ValidID(c.id) != nil {
		s.problem(w, http.StatusNotFound, ReasonNotFound, "no such API key", nil)
		return
	}
	now := s.now()
	if err := s.deps.Keys.Revoke(r.Context(), c.id, now); err != nil {
		s.audit("key_revoke", c.actor, c.from, "api key "+c.id+" not revoked", err)
		s.keyError(w, "revoke", err)
		return
	}
	s.audit("key_revoke", c.actor, c.from, "api key "+c.id+" revoked", nil)
	rec, err := s.deps.Keys.Get(r.Context(), c.id)
	if err != nil {
		s.keyError(w, "get", err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, viewKey(&rec, now))
}

// RotateKeyRequest is the optional body of POST /api/v1/keys/{id}/rotate.
type RotateKeyRequest struct {
	// Grace keeps the old key valid this long (a Go duration such as 24h);
	// empty or 0 revokes it at once.
	Grace string `json:"grace,omitempty"`
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request, c *call) {
	if s.deps.Keys == nil {
		s.notConfigured(w, "the API key store")
		return
	}
	if keys.ValidID(c.id) != nil {
		s.problem(w, http.StatusNotFound, ReasonNotFound, "no such API key", nil)
		return
	}
	var req RotateKeyRequest
	if !s.decodeJSON(w, r, &req, true) {
		return
	}
	var grace time.Duration
	if req.Grace != "" {
		d, err := time.ParseDuration(req.Grace)
		if err != nil || d < 0 || d > 90*24*time.Hour {
			s.problem(w, http.StatusBadRequest, ReasonBadRequest, "grace must be a duration between 0s and 2160h", nil)
			return
		}
		grace = d
	}
	now := s.now()
	rec, key, err := s.deps.Keys.Rotate(r.Context(), c.id, now, grace)
	if err != nil {
		s.audit("key_rotate", c.actor, c.from, "api key "+c.id+" not rotated", err)
		s.keyError(w, "rotate", err)
		return
	}
	s.audit("key_rotate", c.actor, c.from, fmt.Sprintf("api key %s rotated to %s (grace %s)", c.id, rec.ID, grace), nil)
	w.Header().Set("Location", "/api/v1/keys/"+rec.ID)
	s.writeJSON(w, r, http.StatusCreated, map[string]any{"key": key, "record": viewKey(&rec, now), "replaced": c.id})
}
