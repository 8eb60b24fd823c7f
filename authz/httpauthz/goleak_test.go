package httpauthz_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's test run when any goroutine outlives it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
