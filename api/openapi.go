// Package api holds the OpenAPI description of the HTTP contract, embedded so
// that the server serves and the tests check the very file in the repository.
package api

import _ "embed"

// OpenAPI is api/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
