// Package migrations holds the numbered SQL migrations of kycbatch, embedded so
// that every binary and test applies exactly the files of its own build.
package migrations

import "embed"

// FS holds the migration files, applied in order by goose.
//
//go:embed *.sql
var FS embed.FS
