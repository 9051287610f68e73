package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/events_nats"
	"github.com/roomstore/roomstore/internal/testserver"
)

// natsRate is the paced commit rate of the cross-process latency case.
const natsRate = 1000

var natsStores atomic.Int64

// natsPair starts a nats-server child process (JetStream, its data on
// disk) and opens two engines on one new mem:// store through
// roomstore.OpenURL, each with its own NATS connection and transport, as
// two replicas of a server have: every event of A reaches B through the
// nats-server process.
func natsPair(b *testing.B) (a, c *roomstore.Engine) {
	srv := testserver.StartNATS(b)
	store := fmt.Sprintf("mem://nats-bench-%d", natsStores.Add(1))
	open := func() *roomstore.Engine {
		nc, err := nats.Connect(srv.URL, events_nats.ConnOptions()...)
		check(b, err)
		b.Cleanup(nc.Close)
		tr, err := events_nats.New(nc, events_nats.WithLogger(slog.New(slog.DiscardHandler)))
		check(b, err)
		b.Cleanup(func() { _ = tr.Close(context.Background()) }) // after the engine's Shutdown
		return openURLEngine(b, store, roomstore.WithEventTransport(tr))
	}
	return open(), open()
}

// indexOf returns i from a path "n/i".
func indexOf(p string) int {
	i, _ := strconv.Atoi(p[strings.LastIndexByte(p, '/')+1:])
	return i
}

// BenchmarkEventsNATS measures events between two engines on one store
// through NATS JetStream (package events_nats, default options):
//
//   - latency-1k: A commits a 64-byte file (Engine.Upload) at a paced
//     1,000 per second; the time from Upload returning on A to the
//     handler of B's subscriber running (remote-*), and, for the same
//     commits, to A's own subscriber's handler (local-*, the baseline: the
//     in-process delivery every engine has).
//   - throughput: A commits as fast as one goroutine can (Open, Write 64
//     bytes, Close, as in BenchmarkEvents); remote-events/s
//     is the events B's subscriber got per second from the first commit to
//     the last delivery, local-events/s the same for A's own subscriber
//     (both held to the transport's pace once A's queue fills:
//     throttled/op is the share of commits that waited for room); the run
//     fails if B lost any (given up, dropped or a gap); local-dropped
//     counts what A's own subscriber's bounded queue dropped, if anything.
func BenchmarkEventsNATS(b *testing.B) {
	payload := randomBytes(64)
	upload := func(b *testing.B, e *roomstore.Engine, i int) {
		_, err := e.Upload(context.Background(), "n/"+strconv.Itoa(i), bytes.NewReader(payload), roomstore.OpenOptions{Overwrite: true})
		check(b, err)
	}
	b.Run("latency-1k", func(b *testing.B) {
		a, c := natsPair(b)
		var mu sync.Mutex
		var ret []time.Time                                           // by index: when Upload returned
		remoteAt, localAt := map[int]time.Time{}, map[int]time.Time{} // when a handler ran
		arrived := func(into map[int]time.Time) func(events.Event) {
			return func(ev events.Event) {
				now := time.Now()
				if i := indexOf(ev.Path); i >= 0 {
					mu.Lock()
					into[i] = now
					mu.Unlock()
				}
			}
		}
		c.Subscribe(arrived(remoteAt), roomstore.EventFileUpdated)
		a.Subscribe(arrived(localAt), roomstore.EventFileUpdated)
		for i := range 100 { // untimed: stream, consumer and connections warm
			upload(b, a, -1-i)
		}
		// (their paths have negative indexes, which the handlers skip)
		// Paced by sleeping, not by the spinning pacer of the in-process
		// cases: at 1 ms apart a sleep's overshoot is small, and a spin
		// would take one of two cores from nats-server and the engines.
		start, interval := time.Now(), time.Second/natsRate
		i := 0
		for b.Loop() {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
			upload(b, a, i)
			ret = append(ret, time.Now())
			i++
		}
		rate := float64(i) / time.Since(start).Seconds()
		deadline := time.Now().Add(time.Minute)
		for {
			mu.Lock()
			nr, nl := len(remoteAt), len(localAt)
			mu.Unlock()
			if nr >= i && nl >= i {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("after a minute B has %d and A %d of %d events", nr, nl, i)
			}
			time.Sleep(time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		// A handler that ran before Upload returned counts as 0.
		since := func(at map[int]time.Time) []time.Duration {
			d := make([]time.Duration, len(ret))
			for k, r := range ret {
				d[k] = max(at[k].Sub(r), 0)
			}
			return d
		}
		remote, local := since(remoteAt), since(localAt)
		reportPercentiles(b, "remote", remote)
		reportPercentiles(b, "local", local)
		b.ReportMetric(rate, "commits/s")
		if st := c.TransportStats(); st.Lost != 0 || st.Gaps != 0 {
			b.Fatalf("B lost events: %+v", st)
		}
	})
	b.Run("throughput", func(b *testing.B) {
		a, c := natsPair(b)
		var remote, local atomic.Int64
		var remoteLast, localLast atomic.Int64 // unix nanos of the latest delivery
		var remoteGaps, localGaps atomic.Int64
		count := func(n, last, gaps *atomic.Int64) func(events.Event) {
			return func(ev events.Event) {
				if ev.Type == events.TypeOverflow {
					gaps.Add(1)
					return
				}
				n.Add(1)
				last.Store(time.Now().UnixNano())
			}
		}
		subR := c.Subscribe(count(&remote, &remoteLast, &remoteGaps), roomstore.EventFileUpdated)
		subL := a.Subscribe(count(&local, &localLast, &localGaps), roomstore.EventFileUpdated)
		for i := range 100 {
			upload(b, a, -1-i)
		}
		deadline := time.Now().Add(time.Minute)
		for remote.Load() < 100 || local.Load() < 100 {
			if time.Now().After(deadline) {
				b.Fatal("the warm-up events did not arrive")
			}
			time.Sleep(time.Millisecond)
		}
		remote.Store(0)
		local.Store(0)
		b.ReportAllocs()
		start := time.Now()
		n := int64(0)
		ctx := context.Background()
		for b.Loop() { // the commit of the in-process events case (section 4)
			h, err := a.Open(ctx, "n/"+strconv.Itoa(int(n)&1023), roomstore.OpenOptions{Overwrite: true})
			check(b, err)
			check(b, a.Write(ctx, h, payload))
			check(b, a.Close(ctx, h))
			n++
		}
		deadline = time.Now().Add(time.Minute)
		// A's own subscriber, the baseline, may drop events when the
		// committer starves it of a core (an in-process subscriber's queue
		// is bounded; section 4 counts its drops too): those count as
		// arrived for the wait, and are reported.
		for remote.Load() < n || local.Load()+int64(subL.Dropped()) < n {
			if time.Now().After(deadline) || remoteGaps.Load() > 0 || subR.Dropped() > 0 {
				b.Fatalf("B got %d of %d events (%d gaps, %d dropped; B %+v; A %+v)", remote.Load(), n, remoteGaps.Load(), subR.Dropped(), c.TransportStats(), a.TransportStats())
			}
			time.Sleep(time.Millisecond)
		}
		b.ReportMetric(float64(n)/time.Unix(0, remoteLast.Load()).Sub(start).Seconds(), "remote-events/s")
		b.ReportMetric(float64(local.Load())/time.Unix(0, localLast.Load()).Sub(start).Seconds(), "local-events/s")
		b.ReportMetric(float64(subL.Dropped()), "local-dropped")
		st := a.TransportStats()
		if st.GaveUp != 0 {
			b.Fatalf("A gave up events: %+v", st)
		}
		b.ReportMetric(float64(st.Throttled)/float64(n), "throttled/op")
		if testing.Verbose() {
			b.Logf("A %+v\nB %+v", a.TransportStats(), c.TransportStats())
		}
	})
}
