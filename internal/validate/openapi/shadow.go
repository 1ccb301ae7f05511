package openapi

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/moat-gateway/moat/internal/gateway"
)

// DefaultShadowEntries is the size of a ShadowReport built with 0 entries.
const DefaultShadowEntries = 10000

// Bounds of one normalized path in the shadow report.
const (
	maxShadowSegments = 16  // segments kept; the rest become "/..."
	maxShadowPath     = 256 // bytes kept
)

// ShadowReport collects the requests that matched no operation of a
// document and were let through (unknown_operations: shadow): the "shadow
// API" that traffic uses but the document does not describe. Entries are
// keyed by source, method and normalized path (NormalizePath), so that
// /orders/17 and /orders/18 count as one. The report holds at most its
// size in entries; requests for new keys beyond it are counted as dropped.
//
// A ShadowReport is safe for concurrent use. Create it once and keep it
// across configuration reloads, as rate-limit counters are.
type ShadowReport struct {
	mu      sync.Mutex
	max     int
	now     func() time.Time
	entries map[shadowKey]*ShadowEntry
	dropped uint64
}

type shadowKey struct{ source, method, path string }

// ShadowEntry is one undocumented method and path seen in traffic.
type ShadowEntry struct {
	Source    string    `json:"source,omitempty"` // the document or upstream
	Method    string    `json:"method"`           // the request method; OTHER for non-standard ones
	Path      string    `json:"path"`             // the normalized path
	Count     uint64    `json:"count"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// ShadowSnapshot is a copy of a report at one moment.
type ShadowSnapshot struct {
	Entries []ShadowEntry `json:"entries"` // most requested first
	Dropped uint64        `json:"dropped"` // requests not recorded because the report was full
}

// NewShadowReport returns an empty report of at most maxEntries entries
// (DefaultShadowEntries when 0) that reads the time from now (time.Now when
// nil).
func NewShadowReport(maxEntries int, now func() time.Time) *ShadowReport {
	if maxEntries <= 0 {
		maxEntries = DefaultShadowEntries
	}
	if now == nil {
		now = time.Now
	}
	return &ShadowReport{max: maxEntries, now: now, entries: map[shadowKey]*ShadowEntry{}}
}

// Record counts one request for method and path (the request path,
// normalized here) from source.
func (r *ShadowReport) Record(source, method, path string) {
	k := shadowKey{source: source, method: normalizeMethod(method), path: NormalizePath(path)}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.entries[k]; ok {
		e.Count++
		e.LastSeen = now
		return
	}
	if len(r.entries) >= r.max {
		r.dropped++
		return
	}
	r.entries[k] = &ShadowEntry{Source: k.source, Method: k.method, Path: k.path, Count: 1, FirstSeen: now, LastSeen: now}
}

// Snapshot returns a copy of the report, the most requested entries first
// (then by source, path and method).
func (r *ShadowReport) Snapshot() ShadowSnapshot {
	r.mu.Lock()
	s := ShadowSnapshot{Entries: make([]ShadowEntry, 0, len(r.entries)), Dropped: r.dropped}
	for _, e := range r.entries {
		s.Entries = append(s.Entries, *e)
	}
	r.mu.Unlock()
	slices.SortFunc(s.Entries, func(a, b ShadowEntry) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Source, b.Source),
			cmp.Compare(a.Path, b.Path), cmp.Compare(a.Method, b.Method))
	})
	return s
}

var standardMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace,
}

// normalizeMethod keeps the standard methods and folds every other into
// OTHER, so that clients cannot grow the report with invented methods.
func normalizeMethod(m string) string {
	if slices.Contains(standardMethods, m) {
		return m
	}
	return "OTHER"
}

// NormalizePath folds the variable parts of a request path so that the
// requests of one endpoint count together, and bounds what is kept. A
// segment becomes {id} when it is all digits, a UUID, at least 16
// hexadecimal digits, or at least 20 characters of letters mixed with
// digits (tokens, ULIDs, base64 IDs). Other segments are kept, with
// control characters replaced by "?" and at most 64 bytes; at most 16
// segments and 256 bytes are kept, the rest written "/...". The query is
// never recorded.
func NormalizePath(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if p == "" || p == "/" {
		return "/"
	}
	var b strings.Builder
	rest := strings.TrimPrefix(p, "/")
	for n := 0; ; n++ {
		if n == maxShadowSegments {
			b.WriteString("/...")
			break
		}
		seg, tail, more := strings.Cut(rest, "/")
		b.WriteByte('/')
		if isIDSegment(seg) {
			b.WriteString("{id}")
		} else {
			b.WriteString(clip(seg))
		}
		if !more {
			break
		}
		rest = tail
	}
	s := b.String()
	if len(s) > maxShadowPath {
		cut := maxShadowPath - 4
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "/..."
	}
	return s
}

// isIDSegment reports whether a path segment looks like an identifier.
func isIDSegment(s string) bool {
	if s == "" {
		return false
	}
	digits, hex, letters, other := 0, 0, 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
			hex++
		case c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
			hex++
			letters++
		case c >= 'g' && c <= 'z' || c >= 'G' && c <= 'Z':
			letters++
		case c == '-' || c == '_':
			other++
		default:
			return false
		}
	}
	switch {
	case digits == len(s):
		return true
	case isUUID(s):
		return true
	case hex == len(s) && len(s) >= 16:
		return true
	case len(s) >= 20 && digits > 0 && letters > 0:
		return true
	}
	return false
}

// isUUID reports whether s is 8-4-4-4-12 hexadecimal digits.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// Undocumented is the request stage for requests that match no operation
// of a document: a catch-all route beside the routes generated from it, or
// the Dispatcher's fallback. With UnknownDeny it answers 404
// operation_not_documented; with UnknownShadow it records the request in
// the shadow report and lets it through. It is safe for concurrent use.
type Undocumented struct {
	deny   bool
	report *ShadowReport
	source string
}

// NewUndocumented builds the stage from opts.Unknown, opts.Shadow (required
// with UnknownShadow) and opts.Source.
func NewUndocumented(opts Options) (*Undocumented, error) {
	if opts.Unknown == UnknownShadow && opts.Shadow == nil {
		return nil, errors.New("openapi: unknown_operations: shadow needs a shadow report")
	}
	return &Undocumented{deny: opts.Unknown == UnknownDeny, report: opts.Shadow, source: opts.Source}, nil
}

// ProcessRequest denies or records the request; see Undocumented.
func (u *Undocumented) ProcessRequest(_ context.Context, ex *gateway.Exchange) error {
	r := ex.Request
	if u.deny {
		return &gateway.Reject{Status: http.StatusNotFound, ReasonID: ReasonOperationNotDocumented,
			Detail: normalizeMethod(r.Method) + " " + NormalizePath(r.URL.Path) + " is not in the OpenAPI document"}
	}
	u.report.Record(u.source, r.Method, r.URL.Path)
	ex.Note(NoteShadow, true)
	return nil
}

var _ gateway.RequestStage = (*Undocumented)(nil)
