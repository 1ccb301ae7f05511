package gateway

import (
	"fmt"
	"net/http"
)

// Reject is a denial decided by a stage. Status and ReasonID reach the client
// in a problem+json body; Detail and Err go to logs and audit only, never to
// the client.
type Reject struct {
	Status   int    // HTTP status sent to the client
	ReasonID string // stable snake_case identifier, documented in docs/reasons.md
	Detail   string // internal detail for logs and audit; never sent to the client
	Err      error  // underlying cause, if any
	Header   http.Header
	// PublicReason, when set, is the reason_id the client sees instead of
	// ReasonID, which then goes to logs and audit only: a bad credential
	// answers "invalid_credentials" whatever exactly was wrong with it.
	PublicReason string
}

// Error returns the reason and detail; it is meant for logs.
func (r *Reject) Error() string {
	if r.Detail == "" {
		return r.ReasonID
	}
	return r.ReasonID + ": " + r.Detail
}

// Unwrap returns the underlying cause.
func (r *Reject) Unwrap() error { return r.Err }

// Rejectf builds a Reject with a formatted internal detail.
func Rejectf(status int, reasonID, format string, args ...any) *Reject {
	return &Reject{Status: status, ReasonID: reasonID, Detail: fmt.Sprintf(format, args...)}
}

// Answer is returned by a request stage that answers the request itself
// without proxying it, and without it being a denial (a CORS preflight is the
// example). The response stages still run on it.
type Answer struct {
	Status int
	Header http.Header
}

// Error describes the answer; it is meant for logs.
func (a *Answer) Error() string { return fmt.Sprintf("answered locally with %d", a.Status) }

// Reason identifiers used by the kernel. Each is documented in docs/reasons.md;
// stage packages declare their own next to the code that returns them.
const (
	ReasonRouteNotFound       = "route_not_found"
	ReasonMethodNotAllowed    = "method_not_allowed"
	ReasonInvalidPath         = "invalid_path"
	ReasonBodyTooLarge        = "body_too_large"
	ReasonUpstreamUnreachable = "upstream_unreachable"
	ReasonUpstreamTimeout     = "upstream_timeout"
	ReasonUpstreamUnavailable = "upstream_unavailable"
	ReasonUpstreamCircuitOpen = "upstream_circuit_open"
	ReasonUpstreamBadResponse = "upstream_bad_response"
	ReasonInternalError       = "internal_error"
	ReasonCORSOriginDenied    = "cors_origin_denied"
	ReasonCORSPreflightDenied = "cors_preflight_denied"
	ReasonInvalidCredentials  = "invalid_credentials"
	ReasonBodyReadFailed      = "body_read_failed"
	ReasonInvalidJSON         = "invalid_json"
)
