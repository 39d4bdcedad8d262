// Package schema holds the JSON schema of doppel configuration files,
// generated from helper/config by ./gen (`make schema`) and committed, so
// that editors can fetch it and `doppel ide` can serve it.
package schema

import _ "embed"

// JSON is doppel.schema.json.
//
//go:embed doppel.schema.json
var JSON []byte
