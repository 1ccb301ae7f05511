package versioning

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
)

// FindingDeprecatedOperation is the finding key under which an Operations
// stage records the deprecated operation a request used: its operationId,
// or its method and path ("GET /books").
const FindingDeprecatedOperation = "deprecated_operation"

// OperationLookup finds the operation a request calls: its name for
// findings and usage, and its notice; a nil Notice stands for an operation
// that is not deprecated, or for no operation at all. It is called for the
// request and again for the response, so it must be safe for concurrent
// use, should be cheap, and must return the same answer for one request.
type OperationLookup func(r *http.Request) (name string, n *Notice)

// Operations is the deprecation stage of a route whose OpenAPI document
// deprecates operations: a request stage that refuses an operation past
// its sunset and counts the use of deprecated ones per principal, and a
// response stage that announces them. It is built by NewOperations,
// immutable afterwards except for its usage counter, and safe for
// concurrent use.
type Operations struct {
	lookup OperationLookup
	now    func() time.Time
	usage  *Counter
}

// NewOperations returns the stage finding each request's operation with
// lookup, with the clock now (time.Now when nil).
func NewOperations(lookup OperationLookup, now func() time.Time) *Operations {
	if now == nil {
		now = time.Now
	}
	return &Operations{lookup: lookup, now: now, usage: NewCounter(DefaultMaxPrincipals)}
}

// ProcessRequest refuses a request for an operation past its sunset (410
// api_version_retired). A deprecated operation in use (from its
// deprecation date on) is counted for the principal and noted in the
// finding deprecated_operation. Requests for other operations pass.
func (s *Operations) ProcessRequest(_ context.Context, ex *gateway.Exchange) error {
	name, n := s.lookup(ex.Request)
	if n == nil {
		return nil
	}
	now := s.now()
	if n.Retired(now) {
		return &gateway.Reject{Status: http.StatusGone, ReasonID: ReasonVersionRetired,
			Detail: "operation " + clip(name) + " was retired at " + n.Sunset().UTC().Format(time.RFC3339)}
	}
	if n.InEffect(now) {
		s.usage.Add(principalKey(ex.Principal))
		ex.Note(FindingDeprecatedOperation, name)
	}
	return nil
}

// ProcessResponse adds the Deprecation, Sunset and Link headers of the
// request's operation, on upstream and gateway-generated responses alike
// (the 410 included). It never rejects.
func (s *Operations) ProcessResponse(_ context.Context, ex *gateway.Exchange, res *http.Response) error {
	if res == nil {
		return errors.New("versioning: no response")
	}
	if ex == nil || ex.Request == nil {
		return nil
	}
	if _, n := s.lookup(ex.Request); n != nil {
		if res.Header == nil {
			res.Header = make(http.Header, 4)
		}
		n.Apply(res.Header)
	}
	return nil
}

// Usage returns a snapshot of the deprecated-operation requests counted per
// principal key (see Counter).
func (s *Operations) Usage() map[string]uint64 { return s.usage.Snapshot() }

var (
	_ gateway.RequestStage  = (*Operations)(nil)
	_ gateway.ResponseStage = (*Operations)(nil)
)
