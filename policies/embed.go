// Package policies carries the shipped policy files (the YAML beside this
// file, which the compliance team edits) inside the sentinel binary, for
// `sentinel -demo`, which must run from any directory. The daemon itself
// always reads its policies from -policies.
package policies

import "embed"

// Files are the shipped *.yaml files, as they were at build time.
//
//go:embed *.yaml
var Files embed.FS
