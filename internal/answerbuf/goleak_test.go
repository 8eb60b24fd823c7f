package answerbuf

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's test run when any goroutine outlives it:
// every goroutine the tests start (servers, clients, Run loops) must have
// been stopped and waited for.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
