// Package heappeak measures the highest live heap of a stretch of a test,
// for the tests that check that a writer streams in constant memory.
package heappeak

import (
	"runtime/metrics"
	"sync"
	"time"
)

// sampleName is the runtime metric of the bytes held by live heap objects.
const sampleName = "/memory/classes/heap/objects:bytes"

// Live returns the bytes held by live heap objects now.
func Live() uint64 {
	sample := []metrics.Sample{{Name: sampleName}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

// Start samples the live heap every millisecond until stop is called,
// which returns the highest sample, one taken at the call included.
func Start() (stop func() uint64) {
	var (
		wg   sync.WaitGroup
		done = make(chan struct{})
		peak uint64
	)
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, Live())
			select {
			case <-done:
				peak = max(peak, Live())
				return
			case <-tick.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}
