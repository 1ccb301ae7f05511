package config

import (
	"errors"
	"strings"
)

// OpenAPI attaches an OpenAPI 3.0 or 3.1 document to an upstream or a route.
// On an upstream, the document's operations become routes forwarding to it
// (their validation is strict by default); on a route, requests to the route
// are validated against the operation of the document they match.
type OpenAPI struct {
	Spec              string             `yaml:"spec" jsonschema:"description=Path of the OpenAPI 3.0 or 3.1 document (YAML or JSON); relative paths are relative to the configuration file. Parsed and compiled once per configuration load."`
	BasePath          *string            `yaml:"base_path,omitempty" jsonschema:"description=Path prefix the document's operations are served under. Default: the path of the document's first server URL (servers[0].url; variables take their default values). Set \"\" to serve them at the document's paths."`
	Mode              string             `yaml:"mode" jsonschema:"description=enforce (default): requests that do not match the document are refused. log: violations are recorded in the access log and audit event and the request passes.,enum=enforce,enum=log"`
	Strict            *bool              `yaml:"strict,omitempty" jsonschema:"description=Refuse query parameters and JSON body properties the document does not declare and a body on an operation without requestBody. Default: true for routes generated from the document and false for a route that names a document."`
	ResponseFiltering *ResponseFiltering `yaml:"response_filtering,omitempty" jsonschema:"description=How the generated routes check JSON responses against the document: strip (default) or log or block; writeOnly properties never leave (docs/response-filtering.md)."`
	UnknownOperations string             `yaml:"unknown_operations" jsonschema:"description=Requests that match no operation of the document: deny (default) answers 404 operation_not_documented; shadow lets them through and records them in the shadow API report.,enum=deny,enum=shadow"`
}

// OpenAPI modes and unknown-operation policies.
const (
	OpenAPIModeEnforce   = "enforce"
	OpenAPIModeLog       = "log"
	OpenAPIUnknownDeny   = "deny"
	OpenAPIUnknownShadow = "shadow"
)

// ApplyDefaults fills the unset fields of o with their defaults. Strict stays
// nil when unset: its default depends on where the block is (see
// StrictDefault).
func (o *OpenAPI) ApplyDefaults() {
	if o == nil {
		return
	}
	if o.Mode == "" {
		o.Mode = OpenAPIModeEnforce
	}
	if o.UnknownOperations == "" {
		o.UnknownOperations = OpenAPIUnknownDeny
	}
}

// StrictDefault reports whether validation is strict: the configured value,
// or else generated (true for routes generated from the document).
func (o *OpenAPI) StrictDefault(generated bool) bool {
	if o == nil || o.Strict == nil {
		return generated
	}
	return *o.Strict
}

// validate records a problem under path (such as "upstreams.books.openapi"
// or "routes[2].openapi") for every invalid field of o, after ApplyDefaults.
// It checks the fields only: whether the document loads is the pipeline's
// question (openapi.Load), answered with the document's own file and line.
// It changes nothing.
func (o *OpenAPI) validate(path string, probs *problems) {
	if o == nil {
		return
	}
	if strings.TrimSpace(o.Spec) == "" {
		probs.add(path+".spec", "the path of the OpenAPI document is required")
	}
	if b := o.BasePath; b != nil && *b != "" {
		switch {
		case !strings.HasPrefix(*b, "/"):
			probs.add(path+".base_path", "must start with / (or be \"\")")
		case strings.ContainsAny(*b, "{}?#"):
			probs.add(path+".base_path", "must be a plain path without {, }, ? or #")
		case strings.HasSuffix(*b, "/"):
			probs.add(path+".base_path", "must not end with / (write \"\" for none)")
		}
	}
	switch o.Mode {
	case OpenAPIModeEnforce, OpenAPIModeLog:
	default:
		probs.add(path+".mode", "%q is not a mode: use enforce or log", o.Mode)
	}
	switch o.UnknownOperations {
	case OpenAPIUnknownDeny, OpenAPIUnknownShadow:
	default:
		probs.add(path+".unknown_operations", "%q is not a policy: use deny or shadow", o.UnknownOperations)
	}
}

// Validate checks o (see validate) and returns one error naming each
// problem, or nil. Stage constructors call it so that an OpenAPI block built
// outside Load is checked too.
func (o *OpenAPI) Validate() error {
	var probs problems
	o.validate("openapi", &probs)
	if len(probs.list) == 0 {
		return nil
	}
	msgs := make([]string, len(probs.list))
	for i, pr := range probs.list {
		msgs[i] = pr.Path + ": " + pr.Msg
	}
	return errors.New(strings.Join(msgs, "; "))
}
