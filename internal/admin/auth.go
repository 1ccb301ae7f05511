package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/tlsx"
)

// maxTokenLen bounds a presented bearer token; longer ones are refused
// before hashing.
const maxTokenLen = 1024

// token is one configured admin token.
type token struct {
	name string
	role string
	hash [sha256.Size]byte
}

func newToken(t config.AdminToken) (token, error) {
	b, err := hex.DecodeString(t.SHA256)
	if err != nil || len(b) != sha256.Size {
		return token{}, fmt.Errorf("admin token %s: sha256 is not 64 hex digits", t.Name)
	}
	tk := token{name: t.Name, role: t.Role}
	copy(tk.hash[:], b)
	return tk, nil
}

// Errors of authenticate, for the audit event's detail.
var (
	errNoCredentials = errors.New("no bearer token and no verified client certificate")
	errUnknownToken  = errors.New("bearer token not configured")
	errUnknownCert   = errors.New("client certificate identity not configured")
	errMalformed     = errors.New("malformed Authorization header")
)

// authenticate returns the identity of the caller: a verified client
// certificate listed in admin.clients wins, else a bearer token whose hash is
// configured. The presented token's hash is compared with every configured
// hash in constant time, so timing tells nothing of which nor how much matched.
func (s *Server) authenticate(r *http.Request) (*gateway.Principal, error) {
	if cert := tlsx.VerifiedClientCert(r.TLS); cert != nil && len(s.clients) > 0 {
		for _, id := range certIdentities(cert.Subject.CommonName, cert.DNSNames, cert.EmailAddresses, cert.URIs) {
			if role, ok := s.clients[id]; ok {
				return &gateway.Principal{Subject: id, Authenticator: "admin", Kind: "client_cert", Roles: []string{role}}, nil
			}
		}
		if r.Header.Get("Authorization") == "" {
			return nil, errUnknownCert
		}
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return nil, errNoCredentials
	}
	scheme, tok, ok := strings.Cut(auth, " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || len(tok) > maxTokenLen {
		return nil, errMalformed
	}
	sum := sha256.Sum256([]byte(tok))
	found := -1
	for i := range s.tokens {
		if subtle.ConstantTimeCompare(sum[:], s.tokens[i].hash[:]) == 1 {
			found = i // no early exit: every hash is compared
		}
	}
	if found < 0 {
		return nil, errUnknownToken
	}
	t := &s.tokens[found]
	return &gateway.Principal{Subject: t.name, Authenticator: "admin", Kind: "admin_token", Roles: []string{t.role}}, nil
}

// certIdentities lists a certificate's identities in the order they are
// matched against admin.clients.
func certIdentities(cn string, dns, emails []string, uris []*url.URL) []string {
	ids := make([]string, 0, 1+len(dns)+len(emails)+len(uris))
	if cn != "" {
		ids = append(ids, cn)
	}
	ids = append(ids, dns...)
	ids = append(ids, emails...)
	for _, u := range uris {
		ids = append(ids, u.String())
	}
	return ids
}

// roleAllows reports whether an identity with role may call an endpoint
// needing need: write includes read.
func roleAllows(role, need string) bool {
	return role == need || role == config.AdminRoleWrite
}

// normalizeHost returns the host part of a Host header or allowed_hosts
// entry, lower case, without port, brackets or a trailing dot.
func normalizeHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// hostAllowed reports whether the Host header names the admin listener: a
// page on attacker.example whose name was rebound to 127.0.0.1 sends Host:
// attacker.example and is refused. Ports are not compared.
func (s *Server) hostAllowed(host string) bool {
	if host == "" {
		return false
	}
	return s.hosts[normalizeHost(host)]
}

// originAllowed reports whether a state-changing request may proceed: a
// browser fetch marked cross-site or same-site by Sec-Fetch-Site is refused,
// and an Origin header, when present, must be the listener's own origin
// (same scheme, same host and port as the Host header) on an allowed host.
// Requests without either header (curl, scripts) pass: browsers send Origin
// on every cross-origin POST and PUT.
func (s *Server) originAllowed(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	origins := r.Header.Values("Origin")
	if len(origins) == 0 {
		return true
	}
	if len(origins) > 1 {
		return false
	}
	u, err := url.Parse(origins[0])
	if err != nil || u.Host == "" || u.Path != "" || u.User != nil || u.RawQuery != "" {
		return false // includes "null"
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if !strings.EqualFold(u.Scheme, scheme) || !s.hostAllowed(u.Host) {
		return false
	}
	return strings.EqualFold(withDefaultPort(u.Host, scheme), withDefaultPort(r.Host, scheme))
}

// withDefaultPort adds the scheme's default port to a host without one.
func withDefaultPort(host, scheme string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), port)
}
