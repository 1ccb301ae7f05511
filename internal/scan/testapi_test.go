package scan

import (
	"github.com/moat-gateway/moat/examples/vulnapi"
)

// The scanner's tests run against examples/vulnapi, the deliberately
// vulnerable sample API (one planted flaw per probe) and its hardened
// variant: alice (id 1) has a Bearer JWT, bob (id 2) an X-API-Key.

const bobKey = vulnapi.BobKey

func newTestAPI(hardened bool) *vulnapi.API {
	return vulnapi.New(vulnapi.Options{Hardened: hardened})
}
