package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// roomSecret signs the participant tokens of the room cases.
var roomSecret = []byte("roomstore-bench-secret-0123456789abcdef")

// quietLog discards the logs of the room servers, clients and engines.
var quietLog = slog.New(slog.DiscardHandler)

// roomEnv is a room server on a loopback httptest server (127.0.0.1:0),
// as users run it: HS256 tokens, default options. Resolve hands out the
// engines the case made, so that the case can also call them directly.
type roomEnv struct {
	ts  *httptest.Server
	srv *roomserver.Server
}

// newRoomEnv starts a room server whose rooms are the given engines; it
// is shut down when b ends (which shuts the engines down too). tweaks,
// if any, change its options before it starts.
func newRoomEnv(b testing.TB, rooms map[string]*roomstore.Engine, tweaks ...func(*roomserver.Options)) *roomEnv {
	b.Helper()
	o := roomserver.Options{
		Resolve: func(_ context.Context, room string, _ bool) (*roomstore.Engine, error) {
			if e := rooms[room]; e != nil {
				return e, nil
			}
			return nil, fmt.Errorf("no room %q", room)
		},
		Verify: roomserver.HS256(roomSecret),
		Logger: quietLog,
	}
	for _, t := range tweaks {
		t(&o)
	}
	srv, err := roomserver.New(o)
	check(b, err)
	ts := httptest.NewServer(srv)
	env := &roomEnv{ts: ts, srv: srv}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = srv.Shutdown(ctx)
		ts.Close()
	})
	return env
}

// dial connects one participant to room with the client's default
// options, its token made by roomserver.NewToken with opts (none: access
// to every path); it is closed when b ends, before the server.
func (env *roomEnv) dial(b testing.TB, room, name string, opts ...roomserver.TokenOption) *roomclient.Client {
	token, err := roomserver.NewToken(roomSecret, name, room, 0, opts...)
	check(b, err)
	url := "ws" + strings.TrimPrefix(env.ts.URL, "http") + "/rooms/" + room
	c, err := roomclient.Dial(context.Background(), url, roomclient.Options{Token: token, Logger: quietLog})
	check(b, err)
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// openURLEngine returns the engine roomstore.OpenURL gives for rawURL
// with default options, shut down when b ends.
func openURLEngine(b testing.TB, rawURL string, opts ...roomstore.Option) *roomstore.Engine {
	e, err := roomstore.OpenURL(context.Background(), rawURL, append([]roomstore.Option{roomstore.WithLogger(quietLog)}, opts...)...)
	check(b, err)
	b.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}

// BenchmarkRoomServer64MiB measures a 64 MiB file going up and back down
// through the room server, from roomclient (one participant, default
// options: chunks of 4 MiB less 64 KiB each way) over a loopback WebSocket to
// roomserver in the same process, against the same engine called
// directly: Engine.Upload from a reader, then Engine.OpenReader read to
// the end with a 1 MiB buffer. The engine is the one roomstore.OpenURL
// returns with default options, on a file:// temp folder (fsync on) and
// on mem://; the server's room resolves to that very engine. Each
// iteration runs one direct and one server cycle (which goes first
// alternates), each overwriting its own file, after one untimed cycle of
// each; direct-write-ms, direct-read-ms, server-write-ms and
// server-read-ms are the means per 64 MiB. For scale, each iteration also
// sends the 64 MiB once over a bare loopback TCP connection in 1 MiB
// Writes to a reader with a 1 MiB buffer (tcp-ms): what any protocol over
// a socket pays at least, one way.
func BenchmarkRoomServer64MiB(b *testing.B) {
	data := randomBytes(largeSize)
	ctx := context.Background()
	store := func(url func(b *testing.B) string) func(b *testing.B) {
		return func(b *testing.B) {
			e := openURLEngine(b, url(b))
			env := newRoomEnv(b, map[string]*roomstore.Engine{"bench": e})
			c := env.dial(b, "bench", "bench")
			buf := make([]byte, largeChunk)
			direct := func(ph *phases) {
				ph.start()
				_, err := e.Upload(ctx, "direct.bin", bytes.NewReader(data), roomstore.OpenOptions{Overwrite: true})
				check(b, err)
				ph.written()
				r, err := e.OpenReader(ctx, "direct.bin", 0, -1)
				check(b, err)
				check(b, verify(ph.readBack(b, r, buf)))
			}
			server := func(ph *phases) {
				ph.start()
				_, err := c.Upload(ctx, "server.bin", bytes.NewReader(data), roomstore.OpenOptions{Overwrite: true, Size: largeSize})
				check(b, err)
				ph.written()
				r, err := c.OpenReader(ctx, "server.bin", 0, -1)
				check(b, err)
				check(b, verify(ph.readBack(b, r, buf)))
			}
			tcp := loopbackTCP(b, data)
			var warm, pd, ps phases
			direct(&warm)
			server(&warm)
			tcp()
			var ttcp time.Duration
			i := 0
			for b.Loop() {
				if i%2 == 0 {
					direct(&pd)
					server(&ps)
				} else {
					server(&ps)
					direct(&pd)
				}
				ttcp += tcp()
				i++
			}
			n := float64(i)
			b.ReportMetric(float64(ttcp)/1e6/n, "tcp-ms")
			b.ReportMetric(float64(pd.write)/1e6/n, "direct-write-ms")
			b.ReportMetric(float64(pd.reading)/1e6/n, "direct-read-ms")
			b.ReportMetric(float64(ps.write)/1e6/n, "server-write-ms")
			b.ReportMetric(float64(ps.reading)/1e6/n, "server-read-ms")
		}
	}
	runCases(b, []benchCase{
		{"file", store(func(b *testing.B) string {
			dir := filepath.Join(b.TempDir(), "room")
			check(b, os.Mkdir(dir, 0o755))
			return "file://" + dir
		})},
		{"mem", store(func(*testing.B) string { return "mem://" })},
	})
}

// loopbackTCP connects a pair of TCP sockets on 127.0.0.1 and returns a
// function that sends data over it in Writes of largeChunk, to a reader
// draining it with a buffer of largeChunk, and returns the time until the
// reader has it all.
func loopbackTCP(b *testing.B, data []byte) func() time.Duration {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(b, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	w, err := net.Dial("tcp", ln.Addr().String())
	check(b, err)
	r, ok := <-accepted
	if !ok {
		b.Fatal("loopback accept failed")
	}
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, largeChunk)
		for {
			var n int
			for n < len(data) {
				k, err := r.Read(buf[:min(len(buf), len(data)-n)])
				n += k
				if err != nil {
					got <- err
					return
				}
			}
			got <- nil
		}
	}()
	b.Cleanup(func() { w.Close(); r.Close() })
	return func() time.Duration {
		t0 := time.Now()
		for p := data; len(p) > 0; p = p[min(len(p), largeChunk):] {
			_, err := w.Write(p[:min(len(p), largeChunk)])
			check(b, err)
		}
		check(b, <-got)
		return time.Since(t0)
	}
}

// fanoutParticipants is the size of the fan-out room.
const fanoutParticipants = 100

// fanoutWait bounds the wait for one event to reach every participant.
const fanoutWait = 10 * time.Second

// arrivals collects, for one write at a time, when each of n receivers
// got its event.
type arrivals struct {
	mu    sync.Mutex
	path  string // the path of the write awaited
	times []time.Time
	left  int
	done  chan struct{}
}

func newArrivals(n int) *arrivals { return &arrivals{times: make([]time.Time, n)} }

// expect arms a for a write of p.
func (a *arrivals) expect(p string) {
	a.mu.Lock()
	a.path, a.left, a.done = p, len(a.times), make(chan struct{})
	clear(a.times)
	a.mu.Unlock()
}

// got records receiver i's event for p, taking the time first.
func (a *arrivals) got(i int, p string) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if p != a.path || !a.times[i].IsZero() {
		return // an event of another write, or a repeat
	}
	a.times[i] = now
	if a.left--; a.left == 0 {
		close(a.done)
	}
}

// wait waits for every receiver and returns the first and last arrival.
func (a *arrivals) wait(b *testing.B) (first, last time.Time) {
	a.mu.Lock()
	done := a.done
	a.mu.Unlock()
	t := time.NewTimer(fanoutWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		a.mu.Lock()
		left := a.left
		a.mu.Unlock()
		b.Fatalf("%d of %d receivers did not get the event of %s within %v", left, len(a.times), a.path, fanoutWait)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	first, last = a.times[0], a.times[0]
	for _, t := range a.times[1:] {
		if t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	return first, last
}

// BenchmarkRoomFanout100 measures how long a file.updated event takes to
// reach every participant of a room: 100 roomclient connections (default
// options) to one room of a loopback room server, each subscribed to
// file.updated. Each iteration uploads a 64-byte file with Engine.Upload
// on the room's engine (mem://, from roomstore.OpenURL) and times, from
// Upload (its Close) returning, until the last of the 100 participants'
// handlers has the event (last-*), the first one (first-*), and the
// engine's own Subscribe handler in the same process (engine-*). For
// scale, each iteration also writes to a second room of the same server
// with one participant (solo-*); which room goes first alternates. A
// handler that ran before Upload returned counts as 0. Writes are closed
// loop: the next one starts once every participant has the last.
func BenchmarkRoomFanout100(b *testing.B) {
	ctx := context.Background()
	payload := randomBytes(64)
	crowd, solo := openURLEngine(b, "mem://"), openURLEngine(b, "mem://")
	env := newRoomEnv(b, map[string]*roomstore.Engine{"crowd": crowd, "solo": solo})

	crowdIn, soloIn, engineIn := newArrivals(fanoutParticipants), newArrivals(1), newArrivals(1)
	crowdSub := crowd.Subscribe(func(ev events.Event) { engineIn.got(0, ev.Path) }, roomstore.EventFileUpdated)
	b.Cleanup(crowdSub.Unsubscribe)
	var dropped []func() uint64
	for i := range fanoutParticipants {
		c := env.dial(b, "crowd", fmt.Sprintf("p%03d", i))
		sub := c.Subscribe(func(ev events.Event) { crowdIn.got(i, ev.Path) }, roomstore.EventFileUpdated)
		dropped = append(dropped, sub.Dropped)
	}
	c := env.dial(b, "solo", "alone")
	sub := c.Subscribe(func(ev events.Event) { soloIn.got(0, ev.Path) }, roomstore.EventFileUpdated)
	dropped = append(dropped, sub.Dropped)

	var last, first, eng, alone []time.Duration
	since := func(t, ret time.Time) time.Duration { return max(t.Sub(ret), 0) }
	write := func(e *roomstore.Engine, p string, in ...*arrivals) time.Time {
		for _, a := range in {
			a.expect(p)
		}
		_, err := e.Upload(ctx, p, bytes.NewReader(payload), roomstore.OpenOptions{Overwrite: true})
		check(b, err)
		return time.Now()
	}
	crowdCycle := func(p string, record bool) {
		ret := write(crowd, p, crowdIn, engineIn)
		f, l := crowdIn.wait(b)
		e, _ := engineIn.wait(b)
		if record {
			last, first, eng = append(last, since(l, ret)), append(first, since(f, ret)), append(eng, since(e, ret))
		}
	}
	soloCycle := func(p string, record bool) {
		ret := write(solo, p, soloIn)
		_, l := soloIn.wait(b)
		if record {
			alone = append(alone, since(l, ret))
		}
	}
	names := smallNames()
	// Untimed: connections and buffers warm, every participant seen once.
	for i := range 10 {
		crowdCycle(names[i], false)
		soloCycle(names[i], false)
	}
	i := 0
	for b.Loop() {
		p := names[i%len(names)]
		if i%2 == 0 {
			crowdCycle(p, true)
			soloCycle(p, true)
		} else {
			soloCycle(p, true)
			crowdCycle(p, true)
		}
		i++
	}
	var lost uint64
	for _, d := range dropped {
		lost += d()
	}
	if lost > 0 {
		b.Fatalf("%d events dropped by the participants' queues", lost)
	}
	reportPercentiles(b, "last", last)
	reportPercentiles(b, "first", first)
	reportPercentiles(b, "engine", eng)
	reportPercentiles(b, "solo", alone)
}

// reportPercentiles sorts d and reports its 50th and 99th percentile and
// its maximum in microseconds, as PREFIX-p50-µs, PREFIX-p99-µs and
// PREFIX-max-µs.
func reportPercentiles(b *testing.B, prefix string, d []time.Duration) {
	slices.Sort(d)
	pct := func(q float64) float64 {
		return float64(d[min(int(q*float64(len(d))), len(d)-1)]) / float64(time.Microsecond)
	}
	b.ReportMetric(pct(0.50), prefix+"-p50-µs")
	b.ReportMetric(pct(0.99), prefix+"-p99-µs")
	b.ReportMetric(float64(d[len(d)-1])/float64(time.Microsecond), prefix+"-max-µs")
}
