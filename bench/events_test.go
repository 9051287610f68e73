package bench

import (
	"context"
	"log/slog"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	evbus "github.com/asaskevich/EventBus"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
)

// pacedRate is the commit rate of the latency cases.
const pacedRate = 10_000

// BenchmarkEvents measures roomstore's events:
//
//   - close-to-handler: Open, Write 64 bytes, Close on backend_mem as fast
//     as one goroutine can, with one subscriber counting file.updated;
//     events/s is events delivered per second from the first Close to the
//     last handler call.
//   - bus-publish: events.Bus.Publish to one Subscribe handler, the bus
//     alone (what Close adds to a commit).
//   - eventbus-publish: EventBus's raw Publish to one synchronous handler,
//     the transport roomstore wraps.
//   - *-latency-10k: the same at a paced 10,000 per second, with the time
//     from Close (or Publish) returning to the handler starting; a handler
//     that starts before the call returns counts as 0. EventBus runs its
//     handler inside Publish, so its baseline is SubscribeAsync, which
//     starts a goroutine per event.
func BenchmarkEvents(b *testing.B) {
	payload := randomBytes(64)
	names := smallNames()
	closeLoop := func(b *testing.B, e *roomstore.Engine, i int) {
		ctx := context.Background()
		h, err := e.Open(ctx, names[i%len(names)], roomstore.OpenOptions{Overwrite: true})
		check(b, err)
		check(b, e.Write(ctx, h, payload))
		check(b, e.Close(ctx, h))
	}
	runCases(b, []benchCase{
		{"roomstore-close-to-handler", func(b *testing.B) {
			e := memEngine(b)
			var seen atomic.Int64
			sub := e.Subscribe(func(events.Event) { seen.Add(1) }, roomstore.EventFileUpdated)
			b.ReportAllocs()
			start := time.Now()
			i := 0
			for b.Loop() {
				closeLoop(b, e, i)
				i++
			}
			reportThroughput(b, start, int64(i), &seen, sub.Dropped)
		}},
		{"roomstore-bus-publish", func(b *testing.B) {
			// Its subscriber falls behind and drops events; each drop is
			// counted, and the log would only flood the output.
			bus, err := events.New(events.WithLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = bus.Close(context.Background()) })
			var seen atomic.Int64
			sub := bus.Subscribe(func(events.Event) { seen.Add(1) }, roomstore.EventFileUpdated)
			ev := events.Event{Type: roomstore.EventFileUpdated, Path: "doc-0001.txt", Size: 64}
			b.ReportAllocs()
			start := time.Now()
			n := int64(0)
			for b.Loop() {
				ev.Time = time.Now()
				bus.Publish(roomstore.EventFileUpdated, ev)
				n++
			}
			reportThroughput(b, start, n, &seen, sub.Dropped)
		}},
		{"eventbus-publish", func(b *testing.B) {
			bus := evbus.New()
			var seen atomic.Int64
			check(b, bus.Subscribe(roomstore.EventFileUpdated, func(events.Event) { seen.Add(1) }))
			ev := events.Event{Type: roomstore.EventFileUpdated, Path: "doc-0001.txt", Size: 64}
			b.ReportAllocs()
			start := time.Now()
			n := int64(0)
			for b.Loop() {
				ev.Time = time.Now()
				bus.Publish(roomstore.EventFileUpdated, ev)
				n++
			}
			reportThroughput(b, start, n, &seen, func() uint64 { return 0 })
		}},
		{"roomstore-close-latency-10k", func(b *testing.B) {
			e := memEngine(b)
			lat := newLatencies()
			sub := e.Subscribe(func(events.Event) { lat.handled() }, roomstore.EventFileUpdated)
			i := 0
			pace := newPacer(pacedRate)
			for b.Loop() {
				pace.wait()
				closeLoop(b, e, i)
				lat.returned()
				i++
			}
			lat.report(b, pace, sub.Dropped())
		}},
		{"roomstore-bus-latency-10k", func(b *testing.B) {
			bus, err := events.New()
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = bus.Close(context.Background()) })
			lat := newLatencies()
			sub := bus.Subscribe(func(events.Event) { lat.handled() }, roomstore.EventFileUpdated)
			ev := events.Event{Type: roomstore.EventFileUpdated, Path: "doc-0001.txt", Size: 64}
			pace := newPacer(pacedRate)
			for b.Loop() {
				pace.wait()
				ev.Time = time.Now()
				bus.Publish(roomstore.EventFileUpdated, ev)
				lat.returned()
			}
			lat.report(b, pace, sub.Dropped())
		}},
		{"eventbus-async-latency-10k", func(b *testing.B) {
			bus := evbus.New()
			lat := newLatencies()
			check(b, bus.SubscribeAsync(roomstore.EventFileUpdated, func(events.Event) { lat.handled() }, true))
			ev := events.Event{Type: roomstore.EventFileUpdated, Path: "doc-0001.txt", Size: 64}
			pace := newPacer(pacedRate)
			for b.Loop() {
				pace.wait()
				ev.Time = time.Now()
				bus.Publish(roomstore.EventFileUpdated, ev)
				lat.returned()
			}
			bus.WaitAsync()
			lat.report(b, pace, 0)
		}},
	})
}

// reportThroughput waits until every one of n events was handled or
// dropped and reports events handled per second since start.
func reportThroughput(b *testing.B, start time.Time, n int64, seen *atomic.Int64, dropped func() uint64) {
	for seen.Load()+int64(dropped()) < n {
		time.Sleep(10 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(seen.Load())/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(dropped()), "dropped")
}

// pacer spaces calls at a fixed rate, open loop: a late call is not
// followed by a longer pause, so the average rate holds. It waits by
// yielding (runtime.Gosched) rather than sleeping: a sleep under a
// millisecond overshoots on Linux, the pacer then catches up with calls
// back to back, and the latency measured would be the pacer's bursts, not
// the delivery's. Yielding also lets a ready handler run on the caller's
// processor at once, as it would on a busy server.
type pacer struct {
	start    time.Time
	interval time.Duration
	n        int64
}

func newPacer(perSecond int) *pacer {
	return &pacer{start: time.Now(), interval: time.Second / time.Duration(perSecond)}
}

func (p *pacer) wait() {
	due := p.start.Add(time.Duration(p.n) * p.interval)
	p.n++
	for time.Now().Before(due) {
		runtime.Gosched()
	}
}

// rate is the achieved calls per second so far.
func (p *pacer) rate() float64 { return float64(p.n) / time.Since(p.start).Seconds() }

// latencies pairs the k-th call returning with the k-th handler call: one
// publisher and one subscriber see events in the same order.
type latencies struct {
	ret   []time.Time // appended by the publishing goroutine
	start []time.Time // appended by the handler's goroutine
	n     atomic.Int64
}

func newLatencies() *latencies {
	return &latencies{ret: make([]time.Time, 0, 1<<16), start: make([]time.Time, 0, 1<<16)}
}

func (l *latencies) returned() { l.ret = append(l.ret, time.Now()) }

func (l *latencies) handled() {
	l.start = append(l.start, time.Now())
	l.n.Add(1)
}

// report waits for the handler to catch up (less the dropped events) and
// reports the 50th and 99th percentile in microseconds and the rate.
func (l *latencies) report(b *testing.B, p *pacer, dropped uint64) {
	rate := p.rate()
	for l.n.Load()+int64(dropped) < int64(len(l.ret)) {
		time.Sleep(10 * time.Microsecond)
	}
	if dropped > 0 {
		b.Fatalf("%d events dropped: the latency pairing no longer holds", dropped)
	}
	d := make([]time.Duration, len(l.ret))
	for i := range d {
		d[i] = max(l.start[i].Sub(l.ret[i]), 0)
	}
	slices.Sort(d)
	pct := func(q float64) float64 {
		return float64(d[min(int(q*float64(len(d))), len(d)-1)]) / float64(time.Microsecond)
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(d[len(d)-1])/float64(time.Microsecond), "max-µs")
	b.ReportMetric(rate, "calls/s")
}
