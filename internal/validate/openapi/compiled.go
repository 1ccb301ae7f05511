package openapi

import "github.com/santhosh-tekuri/jsonschema/v6"

// Compiled returns the compiled JSON Schema that Validate checks values
// against, for a validator that checks JSON text without decoding it
// (response filtering's fast path, internal/exposure/schema). The schema is
// shared: the caller must not modify it.
func (s *Schema) Compiled() *jsonschema.Schema { return s.s }
