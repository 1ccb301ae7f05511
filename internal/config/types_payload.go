package config

import (
	"errors"
	"strings"
)

// PayloadLimits bounds the shape of every request: the request target, the
// header count, compressed bodies, and the structure of JSON, XML, multipart
// and form bodies. The limits apply to every route, with or without a
// schema; a route's own payload_limits block overrides single fields of the
// global one (see Merge).
//
// Every field is a pointer: nil means "not set here". ApplyDefaults fills
// unset fields with the secure defaults below (the DefaultPayload*
// constants); a few sizes stay nil on purpose and then default to the
// route's max_body, as their descriptions say.
type PayloadLimits struct {
	MaxURLLength   *Size `yaml:"max_url_length" jsonschema:"description=Longest request target (path and query as sent); longer requests get 414 url_too_long. Default 8KiB."`
	MaxQueryLength *Size `yaml:"max_query_length" jsonschema:"description=Longest query string (after ?); longer requests get 414 query_too_long. Default 4KiB."`
	MaxHeaders     *int  `yaml:"max_headers" jsonschema:"description=Most request header fields (each repeated line counts); more get 431 too_many_headers. Default 100.,minimum=1"`

	JSON          PayloadJSON          `yaml:"json" jsonschema:"description=Limits on JSON bodies: application/json and text/json and any +json type."`
	XML           PayloadXML           `yaml:"xml" jsonschema:"description=Limits on XML bodies: application/xml and text/xml and any +xml type. DTDs are always refused."`
	Multipart     PayloadMultipart     `yaml:"multipart" jsonschema:"description=Limits on multipart bodies (multipart/form-data and every other multipart type)."`
	Form          PayloadForm          `yaml:"form" jsonschema:"description=Limits on application/x-www-form-urlencoded bodies."`
	Decompression PayloadDecompression `yaml:"decompression" jsonschema:"description=How compressed request bodies (Content-Encoding gzip or deflate) are decoded and bounded."`
}

// PayloadJSON bounds JSON documents.
type PayloadJSON struct {
	MaxDepth        *int  `yaml:"max_depth" jsonschema:"description=Deepest nesting of objects and arrays. Default 64; at most 10000.,minimum=1,maximum=10000"`
	MaxObjectKeys   *int  `yaml:"max_object_keys" jsonschema:"description=Most members in one object. Default 1000.,minimum=1"`
	MaxArrayLength  *int  `yaml:"max_array_length" jsonschema:"description=Most elements in one array. Default 10000.,minimum=1"`
	MaxStringLength *Size `yaml:"max_string_length" jsonschema:"description=Longest string (keys included) in bytes as sent with escapes counted as written. Default 64KiB."`
	MaxNumberLength *int  `yaml:"max_number_length" jsonschema:"description=Longest number literal in characters: sign and digits and point and exponent. Default 100.,minimum=1"`
}

// PayloadXML bounds XML documents. A DTD (DOCTYPE, ENTITY or any other
// markup declaration) and XInclude elements are always refused.
type PayloadXML struct {
	MaxDepth      *int `yaml:"max_depth" jsonschema:"description=Deepest element nesting. Default 64; at most 10000.,minimum=1,maximum=10000"`
	MaxTokens     *int `yaml:"max_tokens" jsonschema:"description=Most tokens in one document: start tags and end tags and text runs and comments and processing instructions. Default 100000.,minimum=1"`
	MaxAttributes *int `yaml:"max_attributes" jsonschema:"description=Most attributes (namespace declarations included) on one element. Default 100.,minimum=1"`
}

// PayloadMultipart bounds multipart bodies.
type PayloadMultipart struct {
	MaxParts       *int  `yaml:"max_parts" jsonschema:"description=Most parts in one body. Default 100.,minimum=1"`
	MaxPartSize    *Size `yaml:"max_part_size" jsonschema:"description=Largest part content in bytes. Default: the route's max_body."`
	MaxPartHeaders *int  `yaml:"max_part_headers" jsonschema:"description=Most header fields in one part. Default 16.,minimum=1"`
}

// PayloadForm bounds application/x-www-form-urlencoded bodies.
type PayloadForm struct {
	MaxFields      *int  `yaml:"max_fields" jsonschema:"description=Most '&'-separated pairs (empty ones included). Default 1000; at most 10000 (what net/url parses).,minimum=1,maximum=10000"`
	MaxFieldLength *Size `yaml:"max_field_length" jsonschema:"description=Longest name=value pair as sent (percent-encoded). Default 64KiB."`
}

// PayloadDecompression configures compressed request bodies.
type PayloadDecompression struct {
	Disabled *bool `yaml:"disabled" jsonschema:"description=Refuse compressed request bodies (415 unsupported_content_encoding) instead of decoding them. Default false: gzip and deflate bodies are decoded so that every stage and the upstream see identity content."`
	MaxRatio *int  `yaml:"max_ratio" jsonschema:"description=Largest decoded size as a multiple of the compressed size; beyond it 413 decompression_ratio_exceeded. Default 100.,minimum=1,maximum=100000"`
	MaxSize  *Size `yaml:"max_size" jsonschema:"description=Largest decoded body; beyond it 413 decompressed_too_large. Default: the route's max_body."`
}

// Secure defaults of PayloadLimits. docs/payload-limits.md lists the same
// values.
const (
	DefaultPayloadMaxURLLength      = Size(8 << 10)
	DefaultPayloadMaxQueryLength    = Size(4 << 10)
	DefaultPayloadMaxHeaders        = 100
	DefaultPayloadJSONMaxDepth      = 64
	DefaultPayloadJSONMaxObjectKeys = 1000
	DefaultPayloadJSONMaxArray      = 10000
	DefaultPayloadJSONMaxString     = Size(64 << 10)
	DefaultPayloadJSONMaxNumber     = 100
	DefaultPayloadXMLMaxDepth       = 64
	DefaultPayloadXMLMaxTokens      = 100000
	DefaultPayloadXMLMaxAttributes  = 100
	DefaultPayloadMaxParts          = 100
	DefaultPayloadMaxPartHeaders    = 16
	DefaultPayloadFormMaxFields     = 1000
	DefaultPayloadFormMaxField      = Size(64 << 10)
	DefaultPayloadMaxRatio          = 100

	// MaxPayloadDepth bounds json.max_depth and xml.max_depth: deeper
	// documents are refused by encoding/json and encoding/xml themselves
	// when a later stage decodes them.
	MaxPayloadDepth = 10000
	// MaxPayloadFormFields bounds form.max_fields: net/url.ParseQuery
	// refuses more pairs.
	MaxPayloadFormFields = 10000
	// MaxPayloadRatio bounds decompression.max_ratio (deflate cannot exceed
	// about 1032:1; larger values only matter for gzip members in series).
	MaxPayloadRatio = 100000
)

// ApplyDefaults fills every unset field with its secure default.
// Multipart.MaxPartSize and Decompression.MaxSize stay nil when unset: they
// then default to the route's max_body, which the stage reads per request.
// ApplyDefaults only sets nil fields, so calling it on a value copy never
// changes the original.
func (p *PayloadLimits) ApplyDefaults() {
	setPayload(&p.MaxURLLength, DefaultPayloadMaxURLLength)
	setPayload(&p.MaxQueryLength, DefaultPayloadMaxQueryLength)
	setPayload(&p.MaxHeaders, DefaultPayloadMaxHeaders)

	j := &p.JSON
	setPayload(&j.MaxDepth, DefaultPayloadJSONMaxDepth)
	setPayload(&j.MaxObjectKeys, DefaultPayloadJSONMaxObjectKeys)
	setPayload(&j.MaxArrayLength, DefaultPayloadJSONMaxArray)
	setPayload(&j.MaxStringLength, DefaultPayloadJSONMaxString)
	setPayload(&j.MaxNumberLength, DefaultPayloadJSONMaxNumber)

	x := &p.XML
	setPayload(&x.MaxDepth, DefaultPayloadXMLMaxDepth)
	setPayload(&x.MaxTokens, DefaultPayloadXMLMaxTokens)
	setPayload(&x.MaxAttributes, DefaultPayloadXMLMaxAttributes)

	setPayload(&p.Multipart.MaxParts, DefaultPayloadMaxParts)
	setPayload(&p.Multipart.MaxPartHeaders, DefaultPayloadMaxPartHeaders)

	setPayload(&p.Form.MaxFields, DefaultPayloadFormMaxFields)
	setPayload(&p.Form.MaxFieldLength, DefaultPayloadFormMaxField)

	setPayload(&p.Decompression.Disabled, false)
	setPayload(&p.Decompression.MaxRatio, DefaultPayloadMaxRatio)
}

// Merge returns p with every field that override sets replacing p's. It is
// how a route's payload_limits block applies over the global one: only the
// fields the route names change. A nil override returns p unchanged. Neither
// p nor override is modified; the result shares their pointers, which are
// read-only after loading.
func (p PayloadLimits) Merge(override *PayloadLimits) PayloadLimits {
	if override == nil {
		return p
	}
	o := override
	p.MaxURLLength = pickPayload(p.MaxURLLength, o.MaxURLLength)
	p.MaxQueryLength = pickPayload(p.MaxQueryLength, o.MaxQueryLength)
	p.MaxHeaders = pickPayload(p.MaxHeaders, o.MaxHeaders)

	p.JSON.MaxDepth = pickPayload(p.JSON.MaxDepth, o.JSON.MaxDepth)
	p.JSON.MaxObjectKeys = pickPayload(p.JSON.MaxObjectKeys, o.JSON.MaxObjectKeys)
	p.JSON.MaxArrayLength = pickPayload(p.JSON.MaxArrayLength, o.JSON.MaxArrayLength)
	p.JSON.MaxStringLength = pickPayload(p.JSON.MaxStringLength, o.JSON.MaxStringLength)
	p.JSON.MaxNumberLength = pickPayload(p.JSON.MaxNumberLength, o.JSON.MaxNumberLength)

	p.XML.MaxDepth = pickPayload(p.XML.MaxDepth, o.XML.MaxDepth)
	p.XML.MaxTokens = pickPayload(p.XML.MaxTokens, o.XML.MaxTokens)
	p.XML.MaxAttributes = pickPayload(p.XML.MaxAttributes, o.XML.MaxAttributes)

	p.Multipart.MaxParts = pickPayload(p.Multipart.MaxParts, o.Multipart.MaxParts)
	p.Multipart.MaxPartSize = pickPayload(p.Multipart.MaxPartSize, o.Multipart.MaxPartSize)
	p.Multipart.MaxPartHeaders = pickPayload(p.Multipart.MaxPartHeaders, o.Multipart.MaxPartHeaders)

	p.Form.MaxFields = pickPayload(p.Form.MaxFields, o.Form.MaxFields)
	p.Form.MaxFieldLength = pickPayload(p.Form.MaxFieldLength, o.Form.MaxFieldLength)

	p.Decompression.Disabled = pickPayload(p.Decompression.Disabled, o.Decompression.Disabled)
	p.Decompression.MaxRatio = pickPayload(p.Decompression.MaxRatio, o.Decompression.MaxRatio)
	p.Decompression.MaxSize = pickPayload(p.Decompression.MaxSize, o.Decompression.MaxSize)
	return p
}

// validate records a problem under path (such as "payload_limits" or
// "routes[3].payload_limits") for every set field that is out of range. It
// checks only fields that are set, so it serves both the global block
// (after ApplyDefaults) and a route's partial override. It changes nothing.
func (p *PayloadLimits) validate(path string, probs *problems) {
	if p == nil {
		return
	}
	atLeast := func(field string, v *int, min, max int) {
		switch {
		case v == nil:
		case *v < min:
			probs.add(path+"."+field, "must be at least %d", min)
		case max > 0 && *v > max:
			probs.add(path+"."+field, "must be at most %d", max)
		}
	}
	size := func(field string, v *Size) {
		if v != nil && *v < 1 {
			probs.add(path+"."+field, "must be at least 1 byte")
		}
	}
	size("max_url_length", p.MaxURLLength)
	size("max_query_length", p.MaxQueryLength)
	atLeast("max_headers", p.MaxHeaders, 1, 0)

	atLeast("json.max_depth", p.JSON.MaxDepth, 1, MaxPayloadDepth)
	atLeast("json.max_object_keys", p.JSON.MaxObjectKeys, 1, 0)
	atLeast("json.max_array_length", p.JSON.MaxArrayLength, 1, 0)
	size("json.max_string_length", p.JSON.MaxStringLength)
	atLeast("json.max_number_length", p.JSON.MaxNumberLength, 1, 0)

	atLeast("xml.max_depth", p.XML.MaxDepth, 1, MaxPayloadDepth)
	atLeast("xml.max_tokens", p.XML.MaxTokens, 1, 0)
	atLeast("xml.max_attributes", p.XML.MaxAttributes, 1, 0)

	atLeast("multipart.max_parts", p.Multipart.MaxParts, 1, 0)
	size("multipart.max_part_size", p.Multipart.MaxPartSize)
	atLeast("multipart.max_part_headers", p.Multipart.MaxPartHeaders, 1, 0)

	atLeast("form.max_fields", p.Form.MaxFields, 1, MaxPayloadFormFields)
	size("form.max_field_length", p.Form.MaxFieldLength)

	atLeast("decompression.max_ratio", p.Decompression.MaxRatio, 1, MaxPayloadRatio)
	size("decompression.max_size", p.Decompression.MaxSize)
}

// Validate checks every set field (see validate) and returns one error
// naming each problem, or nil. Stage constructors call it so that a
// PayloadLimits built outside Load is checked too.
func (p *PayloadLimits) Validate() error {
	var probs problems
	p.validate("payload_limits", &probs)
	if len(probs.list) == 0 {
		return nil
	}
	msgs := make([]string, len(probs.list))
	for i, pr := range probs.list {
		msgs[i] = pr.Path + ": " + pr.Msg
	}
	return errors.New(strings.Join(msgs, "; "))
}

func setPayload[T any](p **T, def T) {
	if *p == nil {
		*p = ptr(def)
	}
}

func pickPayload[T any](base, override *T) *T {
	if override != nil {
		return override
	}
	return base
}
