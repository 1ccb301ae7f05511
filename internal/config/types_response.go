package config

import "fmt"

// ResponseFiltering configures the response positive model: JSON responses
// checked against the response schema an OpenAPI document declares, with
// undeclared properties logged, stripped or refused, writeOnly properties
// always removed, and a deny-list of member names removed at any depth
// (with or without a document). docs/response-filtering.md describes it.
type ResponseFiltering struct {
	Mode       string   `yaml:"mode" jsonschema:"description=strip (default): properties the response schema does not declare are removed\\, then the body is validated and violations are logged. log: the body is passed unchanged (but writeOnly properties and deny_fields are removed) and undeclared properties and violations are logged. block: a body with undeclared properties or that fails its schema is refused with 502 response_schema_violation.,enum=strip,enum=log,enum=block"`
	MaxBody    Size     `yaml:"max_body" jsonschema:"description=Largest response body that is checked. Larger bodies are handled as oversize says. Default 1MiB; at most 64MiB."`
	Oversize   string   `yaml:"oversize" jsonschema:"description=What happens to a JSON body larger than max_body (or compressed by the upstream): pass (default; sent unchecked and recorded as a response_unchecked finding) or block (502 response_unscannable).,enum=pass,enum=block"`
	DenyFields []string `yaml:"deny_fields" jsonschema:"description=JSON member names removed from every JSON response wherever they occur\\, in every mode\\, with or without a schema (password_hash\\, internal_id). Compared ignoring case\\, underscores and hyphens: password_hash also matches passwordHash."`
}

// Response filtering modes and oversize policies.
const (
	ResponseModeStrip = "strip"
	ResponseModeLog   = "log"
	ResponseModeBlock = "block"

	ResponseOversizePass  = "pass"
	ResponseOversizeBlock = "block"

	DefaultResponseMaxBody = Size(1 << 20)
	MaxResponseMaxBody     = Size(64 << 20)
	maxResponseDenyFields  = 256
)

// ApplyDefaults fills unset fields: mode strip, max_body 1MiB, oversize
// pass. It changes nothing when r is nil.
func (r *ResponseFiltering) ApplyDefaults() {
	if r == nil {
		return
	}
	if r.Mode == "" {
		r.Mode = ResponseModeStrip
	}
	if r.MaxBody == 0 {
		r.MaxBody = DefaultResponseMaxBody
	}
	if r.Oversize == "" {
		r.Oversize = ResponseOversizePass
	}
}

// Validate checks a defaulted ResponseFiltering block and returns every
// problem, each with its field path below path (such as
// routes[2].response_filtering). A nil block has no problems. Validate
// changes nothing.
func (r *ResponseFiltering) Validate(path string) []Problem {
	if r == nil {
		return nil
	}
	var out []Problem
	add := func(field, format string, args ...any) {
		out = append(out, Problem{Path: join(path, field), Msg: fmt.Sprintf(format, args...)})
	}
	switch r.Mode {
	case ResponseModeStrip, ResponseModeLog, ResponseModeBlock:
	default:
		add("mode", "must be strip, log or block, not %q", r.Mode)
	}
	if r.MaxBody < 1 || r.MaxBody > MaxResponseMaxBody {
		add("max_body", "must be between 1 byte and 64MiB")
	}
	if r.Oversize != ResponseOversizePass && r.Oversize != ResponseOversizeBlock {
		add("oversize", "must be pass or block, not %q", r.Oversize)
	}
	if len(r.DenyFields) > maxResponseDenyFields {
		add("deny_fields", "at most %d names", maxResponseDenyFields)
	}
	seen := map[string]int{}
	for i, f := range r.DenyFields {
		p := fmt.Sprintf("deny_fields[%d]", i)
		n := NormalizeMaskingField(f)
		switch {
		case n == "":
			add(p, "a field name is required")
		case len(n) > 64:
			add(p, "%q is longer than 64 characters", f)
		default:
			if j, dup := seen[n]; dup {
				add(p, "%q is the same name as deny_fields[%d] (names compare ignoring case, _ and -)", f, j)
			} else {
				seen[n] = i
			}
		}
	}
	return out
}
