package pool

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a Run goroutine outlives its last Release.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
