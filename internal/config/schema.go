package config

import (
	"encoding/json"

	"github.com/invopop/jsonschema"
)

// SchemaID is the $id of the configuration's JSON Schema.
const SchemaID = "https://github.com/moat-gateway/moat/schema/moat.schema.json"

// JSONSchema returns the JSON Schema (draft 2020-12) of the configuration
// file, generated from the same types the decoder fills, so the two cannot
// drift. Editors use it for completion and checking; moat validate remains
// the authority (it also checks cross-references and files).
func JSONSchema() ([]byte, error) {
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true,
		ExpandedStruct:             true,
	}
	s := r.Reflect(&Config{})
	s.ID = SchemaID
	s.Title = "moat gateway configuration"
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	// The decoder ignores keys starting with x- in every mapping it reads
	// into a struct; say so wherever the schema closes an object.
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	allowExtensions(doc)
	return json.MarshalIndent(doc, "", "  ")
}

func allowExtensions(v any) {
	switch x := v.(type) {
	case map[string]any:
		if x["additionalProperties"] == false {
			x["patternProperties"] = map[string]any{"^x-": map[string]any{}}
		}
		for _, e := range x {
			allowExtensions(e)
		}
	case []any:
		for _, e := range x {
			allowExtensions(e)
		}
	}
}
