package openapi

import (
	"context"

	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/router"
)

// Dispatcher is the request stage of a hand-written route that names a
// document: it finds the operation of each request by method and path (the
// document's templates, with its base path) and validates the request
// against it; a request that matches no operation goes to the Undocumented
// policy. It is built by Document.Dispatcher, immutable, and safe for
// concurrent use.
type Dispatcher struct {
	doc          *Document
	validators   []*Validator // by Operation.index
	undocumented *Undocumented
}

// Dispatcher returns the stage that validates every request against the
// operation it matches, with opts; see Dispatcher. It returns an error when
// opts.Unknown is UnknownShadow without opts.Shadow.
func (d *Document) Dispatcher(opts Options) (*Dispatcher, error) {
	u, err := NewUndocumented(opts)
	if err != nil {
		return nil, err
	}
	s := &Dispatcher{doc: d, validators: make([]*Validator, len(d.ops)), undocumented: u}
	for i, op := range d.ops {
		if s.validators[i], err = d.Validator(op, opts); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ProcessRequest matches the request to an operation, records its
// operationId (or method and path) under "openapi_operation", and
// validates it; see Validator.ProcessRequest and Undocumented.
func (s *Dispatcher) ProcessRequest(ctx context.Context, ex *gateway.Exchange) error {
	var buf [4]router.Param
	op, params, ok := s.doc.Match(ex.Request.Method, ex.Request.URL.Path, buf[:0])
	if !ok {
		return s.undocumented.ProcessRequest(ctx, ex)
	}
	if op.ID != "" {
		ex.Note(NoteOperation, op.ID)
	} else {
		ex.Note(NoteOperation, op.Method+" "+op.Path)
	}
	return s.validators[op.index].check(ex, params)
}

var _ gateway.RequestStage = (*Dispatcher)(nil)
