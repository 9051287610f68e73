package heappeak_test

import (
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roomstore/roomstore/internal/heappeak"
)

// TestMain fails the package if any goroutine outlives its tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var sink []byte

func TestPeakSeesAnAllocationStillLive(t *testing.T) {
	const n = 64 << 20
	runtime.GC()
	s := heappeak.Start(time.Millisecond)
	sink = make([]byte, n)
	peak := s.Stop()
	if peak < n {
		t.Errorf("peak %d bytes with %d bytes live", peak, n)
	}
	sink = nil
}
