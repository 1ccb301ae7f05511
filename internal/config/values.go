package config

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/invopop/jsonschema"
)

// Duration is a time.Duration written as a Go duration string ("250ms",
// "30s", "1h30m") with an extra "d" unit for days ("365d").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ParseDuration parses a duration string; see Duration.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if strings.HasSuffix(s, "d") && !strings.ContainsAny(s[:len(s)-1], "hmsuµn") {
		n, err := strconv.ParseFloat(s[:len(s)-1], 64)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("invalid duration %q: want a number of days like 365d", s)
		}
		return Duration(n * float64(24*time.Hour)), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a value like 500ms, 30s, 5m, 1h or 7d", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	return Duration(v), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).String()), nil
}

// JSONSchema describes Duration for moat schema.
func (Duration) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Pattern: `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^[0-9]+(\.[0-9]+)?d$`,
		Description: "Duration such as 500ms, 30s, 5m, 1h or 7d."}
}

// Size is a byte count written as a number with an optional unit: B, KB, MB,
// GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).
type Size int64

// ParseSize parses a size string; see Size.
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9') {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q: want a value like 512, 64KiB or 1MiB", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %v", s, err)
	}
	mult := map[string]int64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
	m, ok := mult[strings.ToUpper(strings.TrimSpace(s[i:]))]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, KB, MB, GB, KiB, MiB or GiB)", s, strings.TrimSpace(s[i:]))
	}
	if n > (1<<62)/m {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return Size(n * m), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (z *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*z = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (z Size) MarshalText() ([]byte, error) {
	switch {
	case z > 0 && z%(1<<30) == 0:
		return []byte(fmt.Sprintf("%dGiB", z>>30)), nil
	case z > 0 && z%(1<<20) == 0:
		return []byte(fmt.Sprintf("%dMiB", z>>20)), nil
	case z > 0 && z%(1<<10) == 0:
		return []byte(fmt.Sprintf("%dKiB", z>>10)), nil
	}
	return []byte(strconv.FormatInt(int64(z), 10)), nil
}

// JSONSchema describes Size for moat schema.
func (Size) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
		{Type: "integer", Minimum: json.Number("0")},
		{Type: "string", Pattern: `^[0-9]+ *([kKmMgG]i?[bB]?|[bB])?$`},
	}, Description: "Byte size such as 512, 64KiB or 1MiB."}
}

// URL is an absolute http or https URL.
type URL struct{ *url.URL }

// UnmarshalText implements encoding.TextUnmarshaler.
func (u *URL) UnmarshalText(b []byte) error {
	s := string(b)
	v, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL %q", s)
	}
	if v.Scheme != "http" && v.Scheme != "https" {
		return fmt.Errorf("invalid URL %q: scheme must be http or https", s)
	}
	if v.Host == "" {
		return fmt.Errorf("invalid URL %q: missing host", s)
	}
	if v.User != nil {
		return fmt.Errorf("invalid URL %q: credentials in URLs are not allowed", redactURL(v))
	}
	if v.RawQuery != "" || v.Fragment != "" {
		return fmt.Errorf("invalid URL %q: query and fragment are not allowed", s)
	}
	u.URL = v
	return nil
}

func redactURL(v *url.URL) string {
	c := *v
	c.User = url.User("REDACTED")
	return c.String()
}

// MarshalText implements encoding.TextMarshaler.
func (u URL) MarshalText() ([]byte, error) {
	if u.URL == nil {
		return nil, nil
	}
	return []byte(u.URL.String()), nil
}

// JSONSchema describes URL for moat schema.
func (URL) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Format: "uri", Pattern: "^https?://", Description: "Absolute http or https URL."}
}

// Prefix is an IP prefix (10.0.0.0/8, ::1/128) or a single address.
type Prefix struct{ netip.Prefix }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Prefix) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if strings.Contains(s, "/") {
		v, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("invalid prefix %q: want an address or CIDR like 10.0.0.0/8", s)
		}
		p.Prefix = v.Masked()
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("invalid address %q: want an address or CIDR like 10.0.0.0/8", s)
	}
	a = a.Unmap()
	p.Prefix = netip.PrefixFrom(a, a.BitLen())
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (p Prefix) MarshalText() ([]byte, error) { return []byte(p.Prefix.String()), nil }

// JSONSchema describes Prefix for moat schema.
func (Prefix) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Description: "IP address or CIDR prefix."}
}
