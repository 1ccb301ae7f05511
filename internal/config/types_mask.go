package config

import (
	"fmt"
	"slices"
	"strings"
)

// Masking configures response-body masking on a route: detectors for
// personal data (payment cards, IBANs, US SSNs, e-mail addresses, phone
// numbers) and secrets (JWTs, API keys, private keys) in JSON and text
// responses, with an action per detector, and rules per JSON field name.
// docs/masking.md describes exactly what each detector matches.
type Masking struct {
	Detectors []string          `yaml:"detectors" jsonschema:"description=Detectors to run: names from card\\, iban\\, ssn\\, email\\, phone\\, jwt\\, private_key\\, moat_api_key\\, aws_access_key\\, github_token\\, slack_token\\, stripe_key\\, google_api_key\\, azure_storage_key\\, or the groups all\\, pii\\, secrets. Default: all. An empty list ([]) runs none (field rules only)."`
	Actions   map[string]string `yaml:"actions" jsonschema:"description=Action per detector name (or group pii\\, secrets\\, all; a detector name wins over its group): mask (default) rewrites the match\\, block refuses the whole response with 502 sensitive_data_blocked\\, log records a finding and passes the match unchanged."`
	Style     string            `yaml:"style" jsonschema:"description=How masked personal data looks: partial (default; cards and SSNs keep their last 4 digits\\, IBANs their country and last 4\\, phones their last 2 digits\\, e-mails their first letter and domain) or full ([REDACTED:<detector>]). Secrets are always replaced in full.,enum=partial,enum=full"`
	Fields    []MaskingField    `yaml:"fields" jsonschema:"description=Rules by JSON member name\\, applied wherever the name occurs in a JSON response\\, before the detectors."`
	MaxBody   Size              `yaml:"max_body" jsonschema:"description=Largest response body that is scanned. Larger bodies are handled as oversize says. Default 1MiB; at most 64MiB."`
	Oversize  string            `yaml:"oversize" jsonschema:"description=What happens to a body larger than max_body: pass (default; sent unscanned and recorded as an oversize finding) or block (502 response_unscannable).,enum=pass,enum=block"`
}

// MaskingField is a rule for the values of JSON object members with a given
// name.
type MaskingField struct {
	Name   string `yaml:"name" jsonschema:"description=Member name. Compared ignoring case\\, underscores and hyphens: card_number also matches cardNumber and Card-Number."`
	Action string `yaml:"action" jsonschema:"description=mask (default): the value (any type but null) becomes the string [REDACTED]. remove: the member is dropped. block: the response is refused with 502 sensitive_data_blocked. log: a finding is recorded and the detectors still run. skip: the detectors do not run inside the value (to silence false positives).,enum=mask,enum=remove,enum=block,enum=log,enum=skip"`
}

// Masking detector names, groups, actions and limits.
const (
	MaskingActionMask   = "mask"
	MaskingActionBlock  = "block"
	MaskingActionLog    = "log"
	MaskingActionRemove = "remove" // field rules only
	MaskingActionSkip   = "skip"   // field rules only

	MaskingStylePartial = "partial"
	MaskingStyleFull    = "full"

	MaskingOversizePass  = "pass"
	MaskingOversizeBlock = "block"

	MaskingGroupAll     = "all"
	MaskingGroupPII     = "pii"
	MaskingGroupSecrets = "secrets"

	DefaultMaskingMaxBody = Size(1 << 20)
	MaxMaskingMaxBody     = Size(64 << 20)
)

// MaskingPIIDetectors are the personal-data detectors (group "pii").
var MaskingPIIDetectors = []string{"card", "iban", "ssn", "email", "phone"}

// MaskingSecretDetectors are the secret detectors (group "secrets").
var MaskingSecretDetectors = []string{"jwt", "private_key", "moat_api_key", "aws_access_key", "github_token", "slack_token", "stripe_key", "google_api_key", "azure_storage_key"}

// MaskingGroup returns the detector names a group or detector name stands
// for, or nil when name is neither.
func MaskingGroup(name string) []string {
	switch name {
	case MaskingGroupAll:
		return slices.Concat(MaskingPIIDetectors, MaskingSecretDetectors)
	case MaskingGroupPII:
		return slices.Clone(MaskingPIIDetectors)
	case MaskingGroupSecrets:
		return slices.Clone(MaskingSecretDetectors)
	}
	if slices.Contains(MaskingPIIDetectors, name) || slices.Contains(MaskingSecretDetectors, name) {
		return []string{name}
	}
	return nil
}

// NormalizeMaskingField returns the form in which field names are compared:
// lower case with underscores and hyphens removed.
func NormalizeMaskingField(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_' || c == '-':
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ApplyDefaults fills unset fields: every detector, style partial, max_body
// 1MiB, oversize pass, field action mask. A nil Detectors means all; an
// empty non-nil list is kept (no detectors). It changes nothing when m is nil.
func (m *Masking) ApplyDefaults() {
	if m == nil {
		return
	}
	if m.Detectors == nil {
		m.Detectors = []string{MaskingGroupAll}
	}
	if m.Style == "" {
		m.Style = MaskingStylePartial
	}
	if m.MaxBody == 0 {
		m.MaxBody = DefaultMaskingMaxBody
	}
	if m.Oversize == "" {
		m.Oversize = MaskingOversizePass
	}
	for i := range m.Fields {
		if m.Fields[i].Action == "" {
			m.Fields[i].Action = MaskingActionMask
		}
	}
}

// Validate checks a defaulted Masking block and returns every problem, each
// with its field path below path (such as routes[2].masking). A nil block has
// no problems. Validate changes nothing.
func (m *Masking) Validate(path string) []Problem {
	if m == nil {
		return nil
	}
	var out []Problem
	add := func(field, format string, args ...any) {
		out = append(out, Problem{Path: join(path, field), Msg: fmt.Sprintf(format, args...)})
	}
	for i, d := range m.Detectors {
		if MaskingGroup(d) == nil {
			add(fmt.Sprintf("detectors[%d]", i), "unknown detector %q (want one of %s, or all, pii, secrets)", d, strings.Join(MaskingGroup(MaskingGroupAll), ", "))
		}
	}
	keys := make([]string, 0, len(m.Actions))
	for k := range m.Actions {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if MaskingGroup(k) == nil {
			add("actions."+k, "unknown detector %q", k)
		}
		switch v := m.Actions[k]; v {
		case MaskingActionMask, MaskingActionBlock, MaskingActionLog:
		default:
			add("actions."+k, "must be mask, block or log, not %q", v)
		}
	}
	if m.Style != MaskingStylePartial && m.Style != MaskingStyleFull {
		add("style", "must be partial or full, not %q", m.Style)
	}
	seen := map[string]int{}
	for i, f := range m.Fields {
		p := fmt.Sprintf("fields[%d]", i)
		n := NormalizeMaskingField(f.Name)
		switch {
		case n == "":
			add(p+".name", "a field name is required")
		case len(n) > 64:
			add(p+".name", "%q is longer than 64 characters", f.Name)
		default:
			if j, dup := seen[n]; dup {
				add(p+".name", "%q is the same name as fields[%d] (names compare ignoring case, _ and -)", f.Name, j)
			} else {
				seen[n] = i
			}
		}
		switch f.Action {
		case MaskingActionMask, MaskingActionRemove, MaskingActionBlock, MaskingActionLog, MaskingActionSkip:
		default:
			add(p+".action", "must be mask, remove, block, log or skip, not %q", f.Action)
		}
	}
	if m.MaxBody < 1 || m.MaxBody > MaxMaskingMaxBody {
		add("max_body", "must be between 1 byte and 64MiB")
	}
	if m.Oversize != MaskingOversizePass && m.Oversize != MaskingOversizeBlock {
		add("oversize", "must be pass or block, not %q", m.Oversize)
	}
	return out
}
