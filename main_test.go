package roomstore_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives its tests: handles,
// timers and event subscribers must all be gone after Shutdown.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
