// Package openapi is moat's positive security model: an upstream's OpenAPI
// 3.0 or 3.1 document, compiled once at configuration load, drives both
// routing (each operation can become a route, with x-moat-* extensions for
// authentication, rate limits and ownership) and request validation (path,
// query, header and cookie parameters, the content-type allowlist and the
// JSON body against its schema).
//
// Load parses and checks a document and compiles what validation needs: a
// Document is immutable afterwards and safe for concurrent use.
// Document.Operations lists the operations, with router templates, for the
// pipeline to generate routes; Document.Validator builds the request stage
// of one operation, Document.Dispatcher the stage of a hand-written route
// that finds the operation per request; ShadowReport records the traffic
// to operations the document does not have.
//
// The document is parsed by github.com/pb33f/libopenapi and checked against
// the OpenAPI 3.0 or 3.1 meta-schema by github.com/pb33f/libopenapi-validator
// (problems with line and column); moat resolves its references (within the
// document only) and compiles every schema with
// github.com/santhosh-tekuri/jsonschema (JSON Schema 2020-12, the dialect of
// OpenAPI 3.1; 3.0 schemas are translated) into validators that run without
// compiling or rendering anything per request. docs/openapi.md explains the
// choice with figures.
package openapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/pb33f/libopenapi"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel"

	"github.com/moat-gateway/moat/internal/router"
)

// MaxDocumentSize is the largest OpenAPI document Load accepts, in bytes.
const MaxDocumentSize = 16 << 20

// maxLoadProblems bounds how many problems one load error lists.
const maxLoadProblems = 20

// Document is a loaded, checked and compiled OpenAPI document. It is built
// by Load or LoadBytes, immutable afterwards (CompileSchema only adds to an
// internal cache, under a lock), and safe for concurrent use.
type Document struct {
	name     string // file name, for messages
	version  string // the openapi field: 3.0.3, 3.1.0...
	v30      bool   // an OpenAPI 3.0 document: its schemas are translated to 2020-12
	basePath string // the path prefix of every operation's template
	ops      []*Operation
	router   *router.Router[*Operation] // the operations by method and template
	pos      map[string]position        // JSON pointer -> position, for messages
	json     []byte                     // the document as JSON (OpenAPI 3.0 schemas translated)

	mu      sync.Mutex              // guards schemas
	schemas [numVariants]*schemaSet // compilers, one per variant, built on first use
}

// position is a line and column in the document, 1-based.
type position struct{ line, col int }

// LoadOption changes how Load builds a Document.
type LoadOption func(*loadOptions)

type loadOptions struct {
	basePath *string
}

// WithBasePath serves every operation under prefix instead of the path of
// the document's server URL: "" for the document's paths as they are,
// "/v2" to put them under /v2. The caller checks the prefix (see
// config.OpenAPI.BasePath).
func WithBasePath(prefix string) LoadOption {
	return func(o *loadOptions) { o.basePath = &prefix }
}

// Load reads the OpenAPI document at path (YAML or JSON, at most
// MaxDocumentSize bytes) and returns it parsed, checked and compiled; see
// LoadBytes.
func Load(path string, opts ...LoadOption) (*Document, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("loading openapi document: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("loading openapi document %s: %w", path, err)
	}
	return LoadBytes(path, b, opts...)
}

// LoadBytes parses the OpenAPI 3.0 or 3.1 document b, named name in
// messages, checks it and compiles what request validation needs.
//
// It returns an error, listing up to 20 problems each with name:line:col,
// when b is larger than MaxDocumentSize, is not YAML or JSON, is not OpenAPI
// 3.0.x or 3.1.x (Swagger 2.0 included), does not conform to the OpenAPI
// meta-schema, holds a reference that does not resolve or points outside
// the document (external files and URLs are never fetched), a schema that
// does not compile (a pattern that is not RE2 syntax, say), an x-moat-*
// extension that is unknown or malformed, or a path that cannot become a
// route template.
func LoadBytes(name string, b []byte, opts ...LoadOption) (*Document, error) {
	var o loadOptions
	for _, opt := range opts {
		opt(&o)
	}
	if len(b) > MaxDocumentSize {
		return nil, fmt.Errorf("%s: openapi document larger than %d bytes", name, MaxDocumentSize)
	}
	info, version, err := parse(name, b)
	if err != nil {
		return nil, err
	}
	d := &Document{name: name, version: version, v30: strings.HasPrefix(version, "3.0.")}
	conv := &converter{name: name, pos: make(map[string]position, 256)}
	tree, err := conv.value(info.RootNode, "#", 0, true)
	if err != nil {
		return nil, err
	}
	d.pos = conv.pos
	if d.json, err = json.Marshal(tree); err != nil {
		return nil, fmt.Errorf("%s: encoding the document as JSON: %w", name, err)
	}

	b2 := newBuilder(d, o)
	if err := b2.build(); err != nil {
		return nil, err
	}
	return d, nil
}

// parse parses b with libopenapi and checks it against the OpenAPI
// meta-schema of its version. It returns the parsed document's root and
// version, or an error listing the problems. libopenapi is third-party code
// reading operator input: a panic in it fails the load, not the process.
func parse(name string, b []byte) (info *datamodel.SpecInfo, version string, err error) {
	defer func() {
		if r := recover(); r != nil {
			info, err = nil, fmt.Errorf("%s: parsing the openapi document failed: %v", name, r)
		}
	}()
	cfg := &datamodel.DocumentConfiguration{
		AllowFileReferences:   false,
		AllowRemoteReferences: false,
		Logger:                slog.New(slog.DiscardHandler),
	}
	ld, err := libopenapi.NewDocumentWithConfiguration(b, cfg)
	if err != nil {
		return nil, "", fmt.Errorf("%s: parsing the openapi document: %w", name, err)
	}
	info = ld.GetSpecInfo()
	if info == nil || info.RootNode == nil {
		return nil, "", fmt.Errorf("%s: parsing the openapi document: empty document", name)
	}
	version = info.Version
	switch {
	case info.SpecType != "openapi":
		return nil, "", fmt.Errorf("%s: not an OpenAPI 3 document (Swagger 2.0 is not supported; convert it to OpenAPI 3)", name)
	case strings.HasPrefix(version, "3.0."), strings.HasPrefix(version, "3.1."):
	default:
		return nil, "", fmt.Errorf("%s: openapi version %q is not supported: use 3.0.x or 3.1.x", name, version)
	}
	var problems []string
	if ok, verrs := schema_validation.ValidateOpenAPIDocument(ld); !ok {
		for _, ve := range verrs {
			if len(ve.SchemaValidationErrors) == 0 {
				problems = append(problems, fmt.Sprintf("%s:%d:%d: %s: %s", name, ve.SpecLine, ve.SpecCol, ve.Message, ve.Reason))
			}
			for _, se := range ve.SchemaValidationErrors {
				at := se.FieldPath
				if at == "" {
					at = "$"
				}
				problems = append(problems, fmt.Sprintf("%s:%d:%d: %s does not conform to the OpenAPI %s schema", name, se.Line, se.Column, at, version))
			}
		}
	}
	if len(problems) > 0 {
		return nil, "", loadError(problems)
	}
	return info, version, nil
}

// loadError joins problems into one error, at most maxLoadProblems of them.
func loadError(problems []string) error {
	sort.Strings(problems)
	problems = dedupe(problems)
	if n := len(problems); n > maxLoadProblems {
		problems = append(problems[:maxLoadProblems], fmt.Sprintf("... and %d more problems", n-maxLoadProblems))
	}
	return errors.New(strings.Join(problems, "\n"))
}

func dedupe(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// where formats the position of the JSON pointer ptr (or of its nearest
// ancestor the index knows) as name:line:col.
func (d *Document) where(ptr string) string {
	for p := ptr; ; {
		if at, ok := d.pos[p]; ok {
			return fmt.Sprintf("%s:%d:%d", d.name, at.line, at.col)
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return d.name
		}
		p = p[:i]
	}
}

// Name returns the file name the document was loaded from.
func (d *Document) Name() string { return d.name }

// Version returns the document's openapi field, such as "3.1.0".
func (d *Document) Version() string { return d.version }

// BasePath returns the path prefix of every operation's template: the path
// of the first server URL, or the WithBasePath prefix. "" means none.
func (d *Document) BasePath() string { return d.basePath }

// Operations returns the document's operations in document order. The
// slice and the operations are shared: the caller must not modify them.
func (d *Document) Operations() []*Operation { return d.ops }

// OperationByID returns the operation whose operationId is id, or nil.
func (d *Document) OperationByID(id string) *Operation {
	for _, op := range d.ops {
		if op.ID == id && id != "" {
			return op
		}
	}
	return nil
}

// Match finds the operation for a request method and path (the decoded
// path, as the gateway routes it), with its path parameters keyed by router
// name. A HEAD request matches a GET operation. ok is false when the
// document has no such operation.
func (d *Document) Match(method, path string, dst []router.Param) (op *Operation, params []router.Param, ok bool) {
	op, params, _, ok = d.router.Match("", method, path, dst)
	return op, params, ok
}
