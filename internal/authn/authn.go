// Package authn establishes who makes a request. A route's auth block lists
// authenticators; the first that finds its credential in the request
// decides. An authenticator answers in one of three ways:
//
//   - ErrNoCredentials: the request carries no credential of its kind, so the
//     next authenticator is tried; when none finds one, the request gets 401
//     with every authenticator's WWW-Authenticate challenge;
//   - a *Failure: a credential is present but bad (expired, revoked, forged),
//     so the request gets 401 at once, with the Failure's reason_id in logs
//     and audit and a generic body;
//   - a *gateway.Principal: the credential is good.
package authn

import (
	"context"
	"errors"
	"fmt"

	"github.com/moat-gateway/moat/internal/gateway"
)

// ErrNoCredentials is returned by an authenticator that finds no credential
// of its kind in the request: "not mine", not "denied".
var ErrNoCredentials = errors.New("no credentials")

// Failure is a credential that is present but not acceptable. ReasonID is
// stable and documented (docs/reasons.md); Detail and Err are for logs and
// audit only and never contain the credential itself.
type Failure struct {
	ReasonID string
	Detail   string
	Err      error
	// Identity is the identity the credential claimed (a user name, an API
	// key ID), never a secret: the brute-force lockout also counts failures
	// per identity, so one account is not guessed at from many addresses.
	Identity string
}

// Error returns the reason and detail.
func (f *Failure) Error() string {
	msg := f.ReasonID
	if f.Detail != "" {
		msg += ": " + f.Detail
	}
	if f.Err != nil {
		msg += ": " + f.Err.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (f *Failure) Unwrap() error { return f.Err }

// Fail returns a Failure with a formatted detail.
func Fail(reasonID, format string, args ...any) *Failure {
	return &Failure{ReasonID: reasonID, Detail: fmt.Sprintf(format, args...)}
}

// Authenticator verifies one kind of credential. Implementations are built at
// configuration load, immutable, and safe for concurrent use.
type Authenticator interface {
	// Authenticate returns the principal of ex's credential,
	// ErrNoCredentials, or a *Failure. Any other error is an internal fault
	// (an unreachable key store, say) and fails the request closed.
	Authenticate(ctx context.Context, ex *gateway.Exchange) (*gateway.Principal, error)
	// Challenge returns the WWW-Authenticate challenge sent when no
	// authenticator found a credential, such as `Bearer realm="api"`, or ""
	// for credentials that have none (client certificates).
	Challenge() string
}
