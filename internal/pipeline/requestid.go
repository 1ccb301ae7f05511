package pipeline

import (
	"context"
	"net/http"

	"github.com/moat-gateway/moat/internal/gateway"
)

// requestID returns the exchange's request ID to the client on every
// response, replacing any value the upstream set.
type requestID struct{ header string }

// ProcessResponse sets the request ID header.
func (s *requestID) ProcessResponse(_ context.Context, ex *gateway.Exchange, res *http.Response) error {
	res.Header[s.header] = []string{ex.ID}
	return nil
}

var _ gateway.ResponseStage = (*requestID)(nil)
