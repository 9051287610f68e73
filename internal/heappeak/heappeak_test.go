package heappeak_test

import (
	"runtime"
	"testing"

	"go.uber.org/goleak"

	"github.com/roomstore/roomstore/internal/heappeak"
)

// TestMain fails the package if any goroutine outlives its tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var sink []byte

func TestPeakSeesAnAllocationStillLive(t *testing.T) {
	const n = 64 << 20
	runtime.GC()
	stop := heappeak.Start()
	sink = make([]byte, n)
	peak := stop()
	if peak < n {
		t.Errorf("peak %d bytes with %d bytes live", peak, n)
	}
	sink = nil
}
