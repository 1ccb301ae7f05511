package config

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/invopop/jsonschema"
)

// Secret is a configuration value that must never be printed: a password or a
// token. It is written either literally or as env:NAME, read from the
// environment at load. Its String, LogValue and MarshalText print REDACTED.
type Secret struct {
	value string
	set   bool
}

// Value returns the secret itself, for the one place that uses it.
func (s Secret) Value() string { return s.value }

// IsSet reports whether the configuration gave a value.
func (s Secret) IsSet() bool { return s.set }

// UnmarshalText implements encoding.TextUnmarshaler; env:NAME reads the
// environment variable NAME, which must be set.
func (s *Secret) UnmarshalText(b []byte) error {
	v := string(b)
	if name, ok := strings.CutPrefix(v, "env:"); ok {
		ev, found := os.LookupEnv(name)
		if !found {
			return fmt.Errorf("environment variable %s is not set", name)
		}
		v = ev
	}
	s.value, s.set = v, true
	return nil
}

// MarshalText implements encoding.TextMarshaler without revealing the value.
func (s Secret) MarshalText() ([]byte, error) {
	if !s.set {
		return nil, nil
	}
	return []byte("REDACTED"), nil
}

// String implements fmt.Stringer without revealing the value.
func (s Secret) String() string { return "REDACTED" }

// LogValue implements slog.LogValuer without revealing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// JSONSchema describes Secret for moat schema.
func (Secret) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Description: "A secret, literally or as env:NAME."}
}
