package roomserver_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives its tests: every
// connection's reader, writer, pinger, calls and streams must end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
