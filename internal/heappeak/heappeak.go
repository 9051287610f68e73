// Package heappeak measures the live heap, and its highest value over a
// stretch of work, for the tests that check that a writer streams in
// constant memory and for the benchmarks that report memory beside time.
package heappeak

import (
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// heapObjects is the runtime/metrics name of the bytes held by heap
// objects, live or not yet swept: the figure that peaks while a workload
// runs and drops after a collection.
const heapObjects = "/memory/classes/heap/objects:bytes"

// Live returns the bytes currently held by heap objects.
func Live() uint64 {
	s := []metrics.Sample{{Name: heapObjects}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Sampler samples Live on its own goroutine and keeps the largest value.
// Sampling steals a little CPU, so benchmarks run it beside an untimed
// pass of the workload, never beside the timed loop.
type Sampler struct {
	peak atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

// Start starts sampling every interval (and once right away).
func Start(interval time.Duration) *Sampler {
	s := &Sampler{stop: make(chan struct{})}
	s.observe()
	s.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.observe()
			}
		}
	})
	return s
}

func (s *Sampler) observe() {
	v := Live()
	for {
		old := s.peak.Load()
		if v <= old || s.peak.CompareAndSwap(old, v) {
			return
		}
	}
}

// Stop ends the sampling, takes a last sample and returns the peak in
// bytes. It must be called once.
func (s *Sampler) Stop() uint64 {
	close(s.stop)
	s.wg.Wait()
	s.observe()
	return s.peak.Load()
}
