package scan

import (
	"io"
	"log"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/moat-gateway/moat/examples/vulnapi"
)

// The scanner's tests run against examples/vulnapi, the deliberately
// vulnerable sample API (one planted flaw per probe) and its hardened
// variant: alice (id 1) has a Bearer JWT, bob (id 2) an X-API-Key.

const bobKey = vulnapi.BobKey

func newTestAPI(hardened bool) *vulnapi.API {
	return vulnapi.New(vulnapi.Options{Hardened: hardened})
}

// testCert is vulnapi's self-signed certificate, generated once per test
// binary (RSA key generation is slow).
var testCert = sync.OnceValues(vulnapi.SelfSignedCert)

// newTLSServer serves api over HTTPS with the TLS configuration of the
// variant (vulnapi.TLSConfig: the vulnerable one accepts TLS 1.0, 1.1 and
// a 3DES suite) until the test ends. Scan it with Options.Insecure.
func newTLSServer(t *testing.T, api *vulnapi.API, hardened bool) *httptest.Server {
	t.Helper()
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(api)
	srv.TLS = vulnapi.TLSConfig(hardened, cert)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused weak handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}
