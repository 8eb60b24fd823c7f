package server

import (
	"testing"

	"github.com/ext-authz/ext-authz/internal/servicetest"
)

// TestMain fails the run if any test left a goroutine behind, and removes
// the binary the tests built (servicetest.Main).
func TestMain(m *testing.M) { servicetest.Main(m) }
