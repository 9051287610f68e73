package roomclient_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives its tests: every
// client's reader, pinger and supervisor, and every server goroutine,
// must end with Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
