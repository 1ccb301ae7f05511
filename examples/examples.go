// Package examples embeds the sample configuration and API description that
// moat demo serves, so the binary needs no files beside it.
package examples

import _ "embed"

// Quickstart is examples/quickstart.yaml.
//
//go:embed quickstart.yaml
var Quickstart []byte

// BookstoreOpenAPI is examples/bookstore.openapi.yaml, the OpenAPI 3.1
// document of the sample bookstore API.
//
//go:embed bookstore.openapi.yaml
var BookstoreOpenAPI []byte
