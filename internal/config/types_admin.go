package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// Admin configures the admin listener: the admin API, Prometheus metrics and
// the health endpoints (see docs/admin.md). It is its own HTTP server on its
// own socket, never reachable through a traffic listener. A nil *Admin means
// no admin listener.
type Admin struct {
	Address          string          `yaml:"address" jsonschema:"description=host:port the admin listener binds. Default 127.0.0.1:9901. A non-loopback address needs tls (or insecure: true)."`
	Tokens           []AdminToken    `yaml:"tokens" jsonschema:"description=Bearer tokens accepted by the admin API, stored as SHA-256 hashes. Generate each token with openssl rand -base64 32 and hash it with printf %s \"$TOKEN\" | sha256sum."`
	Clients          []AdminClient   `yaml:"clients" jsonschema:"description=With tls.client_auth: client certificates accepted by the admin API and their roles\\, matched by identity (the certificate's common name or a DNS\\, URI or e-mail subject alternative name)."`
	AllowedHosts     []string        `yaml:"allowed_hosts" jsonschema:"description=Host header values (host names or IP literals\\, without port) the admin listener answers; anything else is refused with 403 (DNS rebinding). Default: the address's host\\, localhost\\, 127.0.0.1 and ::1."`
	TLS              *ListenerTLS    `yaml:"tls,omitempty" jsonschema:"description=Serve the admin listener over HTTPS; client_auth turns on mutual TLS for the clients list."`
	Insecure         bool            `yaml:"insecure" jsonschema:"description=Allow a non-loopback address without tls: tokens then cross the network in clear text. Default false."`
	PublicMetrics    bool            `yaml:"public_metrics" jsonschema:"description=Serve /metrics without authentication (for scrapers that cannot send a token). Default false: a read token is needed."`
	EventsBuffer     int             `yaml:"events_buffer" jsonschema:"description=Recent denials kept in memory for GET /api/v1/events. Default 1000.,minimum=1,maximum=1000000"`
	ReadinessTimeout Duration        `yaml:"readiness_timeout" jsonschema:"description=Time each readiness check (a Redis PING) may take in /readyz. Default 2s."`
	MaxConfigSize    Size            `yaml:"max_config_size" jsonschema:"description=Largest configuration accepted by PUT /api/v1/config. Default 4MiB."`
	LoginLimit       AdminLoginLimit `yaml:"login_limit" jsonschema:"description=Lock a client address out of the admin API after repeated failed authentications."`
}

// AdminLoginLimit locks a client address (IPv6 per /64) out of the admin
// API after repeated failed authentications: an address may fail Failures
// times at once and regains one attempt every Per/Failures; the failure
// that uses up the last one locks the address out for Cooldown, during
// which every authenticated endpoint answers 429, whatever credential it
// sends. Requests without any credential do not count.
type AdminLoginLimit struct {
	Disabled bool     `yaml:"disabled" jsonschema:"description=Turn the lockout off (not recommended). Default false."`
	Failures int64    `yaml:"failures" jsonschema:"description=Failed authentications a client address may make at once before it is locked out. Default 10.,minimum=1,maximum=10000"`
	Per      Duration `yaml:"per" jsonschema:"description=The failures are counted over this window: a client address regains one attempt every per/failures. Default 1m."`
	Cooldown Duration `yaml:"cooldown" jsonschema:"description=How long a locked-out client address gets 429 admin_locked_out on every authenticated endpoint\\, even with a valid token. Default 5m."`
}

// AdminToken is one admin API bearer token.
type AdminToken struct {
	Name   string `yaml:"name" jsonschema:"description=Unique name of the token's holder (letters\\, digits\\, ., - and _); it is the actor of the audit events of what the token does."`
	SHA256 string `yaml:"sha256" jsonschema:"description=Hex SHA-256 of the token (64 hex digits): printf %s \"$TOKEN\" | sha256sum. The token itself is never configured."`
	Role   string `yaml:"role" jsonschema:"description=read: GET endpoints and /metrics. write: everything\\, including configuration and API key changes.,enum=read,enum=write"`
}

// AdminClient maps a verified client certificate to a role.
type AdminClient struct {
	Identity string `yaml:"identity" jsonschema:"description=The certificate's subject common name\\, or one of its DNS\\, URI or e-mail subject alternative names\\, compared exactly."`
	Role     string `yaml:"role" jsonschema:"description=read or write\\, as for tokens.,enum=read,enum=write"`
}

// Admin defaults; docs/admin.md lists the same values.
const (
	DefaultAdminAddress          = "127.0.0.1:9901"
	DefaultAdminEventsBuffer     = 1000
	MaxAdminEventsBuffer         = 1000000
	DefaultAdminReadinessTimeout = Duration(2 * time.Second)
	DefaultAdminMaxConfigSize    = Size(4 << 20)
	DefaultAdminLoginFailures    = 10
	MaxAdminLoginFailures        = 10000
	DefaultAdminLoginPer         = Duration(time.Minute)
	DefaultAdminLoginCooldown    = Duration(5 * time.Minute)
	// AdminRoleRead may call the GET endpoints and /metrics.
	AdminRoleRead = "read"
	// AdminRoleWrite may call every endpoint.
	AdminRoleWrite = "write"
)

var adminTokenName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// HashAdminToken returns the value to configure as a token's sha256: the hex
// SHA-256 of the token, as printf %s "$TOKEN" | sha256sum prints it.
func HashAdminToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ApplyDefaults fills every unset admin field with its default. It changes
// nothing when a is nil and is idempotent.
func (a *Admin) ApplyDefaults() {
	if a == nil {
		return
	}
	setStr(&a.Address, DefaultAdminAddress)
	if a.EventsBuffer == 0 {
		a.EventsBuffer = DefaultAdminEventsBuffer
	}
	setDur(&a.ReadinessTimeout, DefaultAdminReadinessTimeout)
	if a.MaxConfigSize == 0 {
		a.MaxConfigSize = DefaultAdminMaxConfigSize
	}
	if a.LoginLimit.Failures == 0 {
		a.LoginLimit.Failures = DefaultAdminLoginFailures
	}
	setDur(&a.LoginLimit.Per, DefaultAdminLoginPer)
	setDur(&a.LoginLimit.Cooldown, DefaultAdminLoginCooldown)
	if a.TLS != nil {
		setStr(&a.TLS.MinVersion, "1.2")
		if a.TLS.ClientAuth != nil {
			setStr(&a.TLS.ClientAuth.Mode, "optional")
		}
	}
	for i := range a.Tokens {
		a.Tokens[i].SHA256 = strings.ToLower(strings.TrimSpace(a.Tokens[i].SHA256))
	}
	if a.AllowedHosts == nil {
		a.AllowedHosts = DefaultAdminAllowedHosts(a.Address)
	}
}

// DefaultAdminAllowedHosts returns the Host values an admin listener on
// address answers by default: its host (unless it is a wildcard), localhost,
// 127.0.0.1 and ::1.
func DefaultAdminAllowedHosts(address string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, _, err := net.SplitHostPort(address); err == nil && h != "" {
		if ip, err := netip.ParseAddr(h); err != nil || !ip.IsUnspecified() {
			h = strings.ToLower(h)
			found := false
			for _, x := range hosts {
				found = found || x == h
			}
			if !found {
				hosts = append(hosts, h)
			}
		}
	}
	return hosts
}

// Validate checks a defaulted admin configuration and returns every problem
// with a field path relative to the admin block (such as tokens[1].sha256).
// It reads the TLS files named and changes nothing.
func (a *Admin) Validate() []Problem {
	var ps []Problem
	add := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	host, port, err := net.SplitHostPort(a.Address)
	switch {
	case err != nil || port == "":
		add("address", "%q is not host:port", a.Address)
	case a.TLS == nil && !a.Insecure && !loopbackHost(host):
		add("address", "%q is not a loopback address: set tls (or insecure: true to send tokens in clear text)", a.Address)
	}
	names, hashes := map[string]bool{}, map[string]bool{}
	for i, t := range a.Tokens {
		path := fmt.Sprintf("tokens[%d]", i)
		if !adminTokenName.MatchString(t.Name) {
			add(path+".name", "%q must be 1 to 64 letters, digits, ., - or _", t.Name)
		} else if names[t.Name] {
			add(path+".name", "%q is used by another token", t.Name)
		}
		names[t.Name] = true
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
			add(path+".sha256", "must be 64 hex digits: the SHA-256 of the token, not the token")
		} else if hashes[t.SHA256] {
			add(path+".sha256", "the same token is configured twice")
		} else if t.SHA256 == emptySHA256 {
			add(path+".sha256", "is the hash of an empty token")
		}
		hashes[t.SHA256] = true
		if t.Role != AdminRoleRead && t.Role != AdminRoleWrite {
			add(path+".role", "must be read or write")
		}
	}
	idents := map[string]bool{}
	for i, c := range a.Clients {
		path := fmt.Sprintf("clients[%d]", i)
		if c.Identity == "" {
			add(path+".identity", "required")
		} else if idents[c.Identity] {
			add(path+".identity", "%q is listed twice", c.Identity)
		}
		idents[c.Identity] = true
		if c.Role != AdminRoleRead && c.Role != AdminRoleWrite {
			add(path+".role", "must be read or write")
		}
	}
	if len(a.Clients) > 0 && (a.TLS == nil || a.TLS.ClientAuth == nil) {
		add("clients", "needs tls.client_auth to verify client certificates")
	}
	for i, h := range a.AllowedHosts {
		if !validAdminHost(h) {
			add(fmt.Sprintf("allowed_hosts[%d]", i), "%q is not a host name or IP address (no port, scheme or wildcard)", h)
		}
	}
	if a.EventsBuffer < 1 || a.EventsBuffer > MaxAdminEventsBuffer {
		add("events_buffer", "must be between 1 and %d", MaxAdminEventsBuffer)
	}
	if a.ReadinessTimeout <= 0 || a.ReadinessTimeout.D() > time.Minute {
		add("readiness_timeout", "must be greater than zero and at most 1m")
	}
	if a.MaxConfigSize < 1024 || a.MaxConfigSize > 64<<20 {
		add("max_config_size", "must be between 1KiB and 64MiB")
	}
	if l := a.LoginLimit; !l.Disabled {
		if l.Failures < 1 || l.Failures > MaxAdminLoginFailures {
			add("login_limit.failures", "must be between 1 and %d", MaxAdminLoginFailures)
		}
		if l.Per.D() < time.Second || l.Per.D() > 24*time.Hour {
			add("login_limit.per", "must be between 1s and 24h")
		}
		if l.Cooldown.D() < time.Second || l.Cooldown.D() > 24*time.Hour {
			add("login_limit.cooldown", "must be between 1s and 24h")
		}
	}
	if t := a.TLS; t != nil {
		if t.CertFile == "" || t.KeyFile == "" {
			add("tls", "cert_file and key_file are required")
		}
		for _, f := range []struct{ name, file string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
			if f.file != "" {
				if err := readable(f.file); err != nil {
					add("tls."+f.name, "cannot read %s: %v", f.file, errText(err))
				}
			}
		}
		if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
			add("tls.min_version", "must be 1.2 or 1.3")
		}
		if ca := t.ClientAuth; ca != nil {
			if ca.Mode != "require" && ca.Mode != "optional" {
				add("tls.client_auth.mode", "must be require or optional")
			}
			if ca.CAFile == "" {
				add("tls.client_auth.ca_file", "required")
			} else if err := readable(ca.CAFile); err != nil {
				add("tls.client_auth.ca_file", "cannot read %s: %v", ca.CAFile, errText(err))
			}
			if len(a.Clients) == 0 {
				add("clients", "tls.client_auth is set but no client is given a role")
			}
		}
	}
	return ps
}

// emptySHA256 is the hash of the empty string, a token nobody means to
// configure.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// loopbackHost reports whether host is a loopback IP literal or localhost.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

var adminHostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62})?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62})?)*\.?$`)

// validAdminHost reports whether h is a host name or an IP literal (an IPv6
// address without brackets).
func validAdminHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return len(h) <= 253 && adminHostName.MatchString(h)
}
