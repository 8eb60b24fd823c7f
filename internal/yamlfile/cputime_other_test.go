//go:build !unix

package yamlfile

import "testing"

// reportCPU: no process CPU clock here; ns/op only.
func reportCPU(*testing.B) {}
