package gateway

import (
	"context"
	"net/http"
)

// RequestStage inspects a request before it is proxied. ProcessRequest returns
// nil to let the exchange continue, a *Reject to deny it, or an *Answer to
// answer it locally (a CORS preflight, say). Any other error is treated as an
// internal failure and answered with 500 internal_error: stages fail closed.
//
// A RequestStage is built once at configuration load and must be safe for
// concurrent use; per-request state belongs in the Exchange.
type RequestStage interface {
	ProcessRequest(ctx context.Context, ex *Exchange) error
}

// ResponseStage inspects or rewrites the response headers (and, in later
// stages, the body) before it reaches the client. It runs on upstream
// responses and on responses the gateway generates itself (rejections,
// preflights), so headers such as HSTS or CORS are present on both.
// ProcessResponse returns nil or a *Reject; it must be safe for concurrent use.
type ResponseStage interface {
	ProcessResponse(ctx context.Context, ex *Exchange, res *http.Response) error
}

// Handler forwards an accepted exchange to its upstream and writes the
// response. The proxy implements it; the gateway calls it after every request
// stage has passed.
type Handler interface {
	Forward(w http.ResponseWriter, r *http.Request, ex *Exchange)
}
