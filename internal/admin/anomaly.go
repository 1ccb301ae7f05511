package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/moat-gateway/moat/internal/anomaly"
)

// BlockStore is what the block endpoints need of the anomaly block store;
// anomaly.Memory and anomaly.Redis (any anomaly.Blocker) are one.
type BlockStore interface {
	Block(ctx context.Context, kind, subject string, until time.Time) error
	Blocked(ctx context.Context, kind, subject string) (bool, time.Time, error)
	List(ctx context.Context) ([]anomaly.Block, error)
	Unblock(ctx context.Context, kind, subject string) error
}

// ErrNotAvailable may be returned (wrapped) by a Deps function or store to
// say the serving configuration does not provide it; the endpoint answers
// 501 admin_not_available.
var ErrNotAvailable = errors.New("not available")

// Bounds of the alert and block endpoints.
const (
	defaultAlertsLimit = 100
	maxAlertsLimit     = anomaly.DefaultRecentAlerts
	minBlockDuration   = time.Second
	maxBlockDuration   = 30 * 24 * time.Hour
)

// AlertView is an anomaly alert as GET /api/v1/alerts reports it.
type AlertView struct {
	Detector     string           `json:"detector"`
	Signal       string           `json:"signal"`
	Severity     string           `json:"severity"`
	SubjectKind  string           `json:"subject_kind"`
	Subject      string           `json:"subject"`
	Count        int              `json:"count"`
	Threshold    int              `json:"threshold"`
	Baseline     *float64         `json:"baseline,omitempty"` // volume_spike only
	Window       string           `json:"window"`
	WindowSecs   float64          `json:"window_seconds"`
	At           time.Time        `json:"at"`
	EndsAt       time.Time        `json:"ends_at"`
	BlockedUntil time.Time        `json:"blocked_until,omitzero"` // set when the alert blocked its subject
	Sample       []anomaly.Sample `json:"sample"`
}

func viewAlert(a *anomaly.Alert) AlertView {
	v := AlertView{Detector: a.Detector, Signal: a.Signal, Severity: a.Severity, SubjectKind: a.SubjectKind,
		Subject: a.Subject, Count: a.Count, Threshold: a.Threshold, Window: a.Window.String(),
		WindowSecs: a.Window.Seconds(), At: a.At.UTC(), EndsAt: a.EndsAt.UTC(), Sample: a.Sample}
	if !a.BlockedUntil.IsZero() {
		v.BlockedUntil = a.BlockedUntil.UTC()
	}
	if a.Detector == anomaly.DetectorVolumeSpike {
		b := a.Baseline
		v.Baseline = &b
	}
	if v.Sample == nil {
		v.Sample = []anomaly.Sample{}
	}
	return v
}

var detectors = map[string]bool{anomaly.DetectorAuthFailures: true, anomaly.DetectorEnumeration: true,
	anomaly.DetectorVolumeSpike: true, anomaly.DetectorWAFBurst: true}

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request, _ *call) {
	if s.deps.Alerts == nil {
		s.notConfigured(w, "anomaly alerts")
		return
	}
	q := r.URL.Query()
	det, kind, subject := q.Get("detector"), q.Get("subject_kind"), q.Get("subject")
	if det != "" && !detectors[det] {
		s.problem(w, http.StatusBadRequest, ReasonBadRequest, "detector must be auth_failures, enumeration, volume_spike or waf_burst", nil)
		return
	}
	if kind != "" && kind != anomaly.KindIP && kind != anomaly.KindPrincipal {
		s.problem(w, http.StatusBadRequest, ReasonBadRequest, "subject_kind must be ip or principal", nil)
		return
	}
	if len(subject) > anomaly.MaxSubjectLen {
		s.problem(w, http.StatusBadRequest, ReasonBadRequest, fmt.Sprintf("subject is over %d bytes", anomaly.MaxSubjectLen), nil)
		return
	}
	limit := defaultAlertsLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAlertsLimit {
			s.problem(w, http.StatusBadRequest, ReasonBadRequest, fmt.Sprintf("limit must be between 1 and %d", maxAlertsLimit), nil)
			return
		}
		limit = n
	}
	all := s.deps.Alerts(0)
	out := make([]AlertView, 0, min(limit, len(all)))
	for i := range all {
		a := &all[i]
		if (det != "" && a.Detector != det) || (kind != "" && a.SubjectKind != kind) || (subject != "" && a.Subject != subject) {
			continue
		}
		out = append(out, viewAlert(a))
		if len(out) == limit {
			break
		}
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{"alerts": out})
}

// BlockView is a block as the block endpoints report it.
type BlockView struct {
	Kind    string    `json:"kind"`    // ip or principal
	Subject string    `json:"subject"` // as the block stage looks it up
	Until   time.Time `json:"until"`
	// Hashed says Subject is the SHA-256 the Redis store keeps of a
	// subject over 128 bytes ("sha256:<hex>"); DELETE accepts it as is.
	Hashed bool `json:"hashed,omitempty"`
}

// blockPath is the URL of one block, for Location and the dashboard.
func blockPath(kind, subject string) string {
	return "/api/v1/blocks/" + kind + "/" + url.PathEscape(subject)
}

// blockError answers a block store error: 501 when the store says it is
// not available, else 500 (logged; the store's error stays in the log).
func (s *Server) blockError(w http.ResponseWriter, op string, err error) {
	if errors.Is(err, ErrNotAvailable) {
		s.notConfigured(w, "the anomaly block store")
		return
	}
	s.log.Error("admin: block store failed", "op", op, "error", err)
	s.problem(w, http.StatusInternalServerError, ReasonInternalError, "the block store failed", nil)
}

func (s *Server) listBlocks(w http.ResponseWriter, r *http.Request, _ *call) {
	if s.deps.Blocks == nil {
		s.notConfigured(w, "the anomaly block store")
		return
	}
	bs, err := s.deps.Blocks.List(r.Context())
	if err != nil {
		s.blockError(w, "list", err)
		return
	}
	out := make([]BlockView, len(bs))
	for i, b := range bs {
		out[i] = BlockView{Kind: b.Kind, Subject: b.Subject, Until: b.Until.UTC(), Hashed: b.Hashed}
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{"blocks": out, "truncated": len(bs) >= anomaly.MaxListedBlocks})
}

// AddBlockRequest is the body of POST /api/v1/blocks.
type AddBlockRequest struct {
	Kind     string `json:"kind"`     // ip or principal
	Subject  string `json:"subject"`  // an IP address or IPv6 prefix, or "authenticator:subject"
	Duration string `json:"duration"` // a Go duration between 1s and 720h
}

func (s *Server) addBlock(w http.ResponseWriter, r *http.Request, c *call) {
	if s.deps.Blocks == nil {
		s.notConfigured(w, "the anomaly block store")
		return
	}
	var req AddBlockRequest
	if !s.decodeJSON(w, r, &req, false) {
		return
	}
	subject, err := anomaly.ParseSubject(req.Kind, req.Subject, s.deps.BlockIPv6Prefix)
	if err != nil {
		s.problem(w, http.StatusBadRequest, ReasonBadRequest, err.Error(), nil)
		return
	}
	d, err := time.ParseDuration(req.Duration)
	if err != nil || d < minBlockDuration || d > maxBlockDuration {
		s.problem(w, http.StatusBadRequest, ReasonBadRequest, "duration must be a duration between 1s and 720h, such as 15m", nil)
		return
	}
	until := s.now().Add(d)
	what := req.Kind + " " + subject
	if err := s.deps.Blocks.Block(r.Context(), req.Kind, subject, until); err != nil {
		s.audit("block_add", c.actor, c.from, what+" not blocked", err)
		s.blockError(w, "block", err)
		return
	}
	// A block never shortens a longer one: report the end in force.
	if ok, u, err := s.deps.Blocks.Blocked(r.Context(), req.Kind, subject); err == nil && ok && u.After(until) {
		until = u
	}
	s.audit("block_add", c.actor, c.from, fmt.Sprintf("%s blocked until %s (requested %s)", what, until.UTC().Format(time.RFC3339), d), nil)
	w.Header().Set("Location", blockPath(req.Kind, subject))
	s.writeJSON(w, r, http.StatusCreated, BlockView{Kind: req.Kind, Subject: subject, Until: until.UTC()})
}

func (s *Server) removeBlock(w http.ResponseWriter, r *http.Request, c *call) {
	if s.deps.Blocks == nil {
		s.notConfigured(w, "the anomaly block store")
		return
	}
	kind := c.params["kind"]
	subject, err := anomaly.ParseSubject(kind, c.params["subject"], s.deps.BlockIPv6Prefix)
	if err != nil {
		s.problem(w, http.StatusBadRequest, ReasonBadRequest, err.Error(), nil)
		return
	}
	what := kind + " " + subject
	switch err := s.deps.Blocks.Unblock(r.Context(), kind, subject); {
	case errors.Is(err, anomaly.ErrNotBlocked):
		s.audit("block_remove", c.actor, c.from, what+" was not blocked", err)
		s.problem(w, http.StatusNotFound, ReasonNotFound, "no block in force for "+what, nil)
	case err != nil:
		s.audit("block_remove", c.actor, c.from, what+" not unblocked", err)
		s.blockError(w, "unblock", err)
	default:
		s.audit("block_remove", c.actor, c.from, what+" unblocked", nil)
		w.WriteHeader(http.StatusNoContent)
	}
}
