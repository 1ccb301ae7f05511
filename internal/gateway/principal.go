package gateway

import "time"

// Principal is who made a request, as an authenticator established it. An
// authenticator returns a new Principal per request; stages after
// authentication read it and must not change it.
type Principal struct {
	Subject       string         // who: a user ID, a key owner, a certificate identity
	Authenticator string         // name of the authenticator (its configuration key) that verified the credential
	Kind          string         // api_key, basic, jwt, introspection or client_cert
	Roles         []string       // roles granted to the subject
	Scopes        []string       // OAuth scopes or key scopes
	Claims        map[string]any // selected token claims (JWT, introspection); nil otherwise
	KeyID         string         // API key ID or JWT kid; never the secret
	Plan          string         // rate plan name, when the credential names one
	ExpiresAt     time.Time      // when the credential expires; zero if it does not
}

// HasScope reports whether p holds scope.
func (p *Principal) HasScope(scope string) bool {
	for _, s := range p.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}
