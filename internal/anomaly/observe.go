package anomaly

import (
	"github.com/moat-gateway/moat/internal/gateway"
)

// Reasons and findings of other stages the detectors classify by. They are
// copies, so that this package does not depend on every stage; a test pins
// them to the originals.
const (
	reasonCredentialsMissing = "credentials_missing" // authn.ReasonCredentialsMissing
	reasonLockedOut          = "auth_locked_out"     // authn.ReasonLockedOut
	reasonOwnerMismatch      = "owner_mismatch"      // authz.ReasonOwnerMismatch
	reasonWAFBlocked         = "waf_blocked"         // waf.ReasonBlocked
	findingObjectID          = "object_id"           // authz.FindingObjectID
	findingWAFWouldBlock     = "waf_would_block"     // waf.NoteWouldBlock
)

// ObservationFrom builds the observation of a finished exchange: call it
// when the exchange is done (ex.Status is final). Object IDs are the owner
// rule's refused identifier (finding object_id) and the values of the path
// parameters; the principal key is "authenticator:subject", as
// authz.PrincipalKey makes it.
func ObservationFrom(ex *gateway.Exchange) Observation {
	o := Observation{At: ex.Start, ClientIP: ex.ClientIP, Status: ex.Status, ReasonID: ex.ReasonID}
	if p := ex.Principal; p != nil {
		o.PrincipalKey = p.Authenticator + ":" + p.Subject
	}
	if ex.Route != nil {
		o.RouteName = ex.Route.Name
	}
	n := len(ex.Params)
	id, hasID := ex.Findings[findingObjectID].(string)
	if hasID {
		n++
	}
	if n > 0 {
		o.ObjectIDs = make([]string, 0, n)
		for _, p := range ex.Params {
			o.ObjectIDs = append(o.ObjectIDs, p.Value)
		}
		if hasID {
			o.ObjectIDs = append(o.ObjectIDs, id)
		}
	}
	would, _ := ex.Findings[findingWAFWouldBlock].(bool)
	o.WAFHit = ex.ReasonID == reasonWAFBlocked || would
	return o
}
