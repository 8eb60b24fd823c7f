package revocation

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when any goroutine outlives it (Run loops must
// stop with their context).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
