package roomclient_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// reconnections returns a logger for a client, and a channel that gets a
// token each time the client logs that it reconnected.
func reconnections() (*slog.Logger, chan struct{}) {
	ch := make(chan struct{}, 64)
	return slog.New(reconnected{ch, quiet().Handler()}), ch
}

// reconnected is a slog handler that signals each "reconnected" record
// and passes every record on.
type reconnected struct {
	ch   chan struct{}
	next slog.Handler
}

func (h reconnected) Enabled(context.Context, slog.Level) bool { return true }
func (h reconnected) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "roomclient: reconnected" {
		h.ch <- struct{}{}
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}
func (h reconnected) WithAttrs(as []slog.Attr) slog.Handler {
	return reconnected{h.ch, h.next.WithAttrs(as)}
}
func (h reconnected) WithGroup(g string) slog.Handler { return reconnected{h.ch, h.next.WithGroup(g)} }

// proxy forwards TCP connections to a server, and lets a test cut them
// all at once and refuse new ones for a while, as a network failure
// would.
type proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	refuse  bool
	conns   map[net.Conn]struct{}
	copiers sync.WaitGroup
}

// newProxy forwards a loopback port to target until t ends.
func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	var accepting sync.WaitGroup
	accepting.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		accepting.Wait()
		p.cut()
		p.copiers.Wait()
	})
	return p
}

// url is the WebSocket URL of room through the proxy.
func (p *proxy) url(room string) string { return "ws://" + p.ln.Addr().String() + "/rooms/" + room }

func (p *proxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.refuse
		p.mu.Unlock()
		if refuse {
			_ = in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		p.copiers.Go(func() { pipe(out, in) })
		p.copiers.Go(func() { pipe(in, out) })
	}
}

// cut closes every connection through the proxy; with refuse, new ones
// are refused (accepted and closed at once) until admit.
func (p *proxy) cut() { p.cutAnd(false) }

func (p *proxy) cutAnd(refuse bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = refuse
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// admit lets connections through again.
func (p *proxy) admit() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = false
}

// resumeEnv is a room server whose rooms are memory stores, each engine
// opened with opts, and a proxy to it.
type resumeEnv struct {
	*env
	p *proxy

	mu      sync.Mutex
	engines map[string]*roomstore.Engine // the latest of each room
}

func newResumeEnv(t *testing.T, opts ...roomstore.Option) *resumeEnv {
	t.Helper()
	r := &resumeEnv{engines: map[string]*roomstore.Engine{}}
	r.env = newEnvWith(t, nil, func(o *roomserver.Options) {
		o.Resolve = func(ctx context.Context, room string, _ bool) (*roomstore.Engine, error) {
			eng, err := roomstore.OpenURL(ctx, "mem://", append([]roomstore.Option{roomstore.WithLogger(quiet())}, opts...)...)
			if err == nil {
				r.mu.Lock()
				r.engines[room] = eng
				r.mu.Unlock()
			}
			return eng, err
		}
	})
	r.p = newProxy(t, strings.TrimPrefix(r.ts.URL, "http://"))
	return r
}

// engine is the engine of room, which a participant has opened.
func (r *resumeEnv) engine(t *testing.T, room string) *roomstore.Engine {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	eng := r.engines[room]
	if eng == nil {
		t.Fatalf("room %s is not open", room)
	}
	return eng
}

// dialThrough connects participant name to room through the proxy, with
// Reconnect, and returns the client and the channel of its reconnections.
func (r *resumeEnv) dialThrough(t *testing.T, name, room string) (*roomclient.Client, chan struct{}) {
	t.Helper()
	logger, back := reconnections()
	c, err := roomclient.Dial(deadline(t), r.p.url(room), roomclient.Options{
		Token: r.token(t, name, room), Reconnect: true, MaxBackoff: 100 * time.Millisecond, Logger: logger,
	})
	if err != nil {
		t.Fatalf("Dial %s through the proxy: %v", room, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, back
}

// tally records a subscription's events and lets goroutines wait, within
// the tests' bound, until it has some number of them.
type tally struct {
	mu      sync.Mutex
	evs     []events.Event
	changed chan struct{} // closed and replaced at each event
}

func newTally(c *roomclient.Client) *tally {
	tl := &tally{changed: make(chan struct{})}
	c.Subscribe(tl.add)
	return tl
}

func (tl *tally) add(ev events.Event) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.evs = append(tl.evs, ev)
	close(tl.changed)
	tl.changed = make(chan struct{})
}

// reached waits until there are n events or ctx ends, and reports which.
func (tl *tally) reached(ctx context.Context, n int) bool {
	for {
		tl.mu.Lock()
		have, changed := len(tl.evs), tl.changed
		tl.mu.Unlock()
		if have >= n {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// wait waits, within the tests' bound, until there are n events, and
// returns them all.
func (tl *tally) wait(t *testing.T, n int) []events.Event {
	t.Helper()
	if !tl.reached(deadline(t), n) {
		tl.mu.Lock()
		have := len(tl.evs)
		tl.mu.Unlock()
		t.Fatalf("%d events within %v, want %d", have, wait, n)
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return append([]events.Event(nil), tl.evs...)
}

// upload writes path through c, failing t on an error.
func upload(t *testing.T, c *roomclient.Client, path string) {
	t.Helper()
	if _, err := c.Upload(deadline(t), path, strings.NewReader(path), roomstore.OpenOptions{Overwrite: true}); err != nil {
		t.Fatalf("Upload %s: %v", path, err)
	}
}

// TestACutParticipantGetsEveryChangeOnceInOrder cuts a participant's
// connection while the room's engine commits 1,000 files, keeps it away
// for 400 of them (more than the server's queue for it holds: what it
// missed waits for room rather than being dropped), and lets it back
// while the commits go on: its subscribers get every one of the 1,000
// events, once, in commit order, and no overflow. The writer keeps at
// most lead events ahead of the reader while it is connected, so that the
// live events never overflow the reader's queue on the server, whatever
// the machine's speed: a loss there would be the queue's, not the
// reconnection's.
func TestACutParticipantGetsEveryChangeOnceInOrder(t *testing.T) {
	const files, cutAt, backAt, lead = 1000, 300, 700, 100
	r := newResumeEnv(t)
	reader, back := r.dialThrough(t, "reader", "r1")
	got := newTally(reader)
	before := reader.ParticipantID()
	eng := r.engine(t, "r1")

	ctx, cancel := context.WithTimeout(t.Context(), 2*wait)
	defer cancel()
	cut, let := make(chan struct{}), make(chan struct{})
	var written atomic.Int64
	werr := make(chan error, 1)
	go func() {
		werr <- func() error {
			for i := range files {
				switch {
				case i == cutAt+lead: // away: the writer goes on alone
					select {
					case <-cut:
					case <-ctx.Done():
						return ctx.Err()
					}
				case i == backAt:
					close(let)
				}
				if (i < cutAt+lead || i >= backAt) && !got.reached(ctx, i-lead) {
					return fmt.Errorf("the reader had not got %d events: %w", i-lead, ctx.Err())
				}
				if _, err := eng.Upload(ctx, fmt.Sprintf("f%04d", i), strings.NewReader("x"), roomstore.OpenOptions{Overwrite: true}); err != nil {
					return err
				}
				written.Add(1)
			}
			return nil
		}()
	}()

	got.wait(t, cutAt)
	r.p.cutAnd(true) // the connection dies, and redials are refused
	close(cut)
	select {
	case <-let:
	case err := <-werr:
		t.Fatalf("the writer stopped before %d files: %v", backAt, err)
	case <-time.After(wait):
		t.Fatalf("the writer did not reach %d files", backAt)
	}
	if n := len(got.wait(t, 0)); n >= backAt-lead {
		t.Fatalf("the reader got %d events while away", n)
	}
	r.p.admit()
	select {
	case <-back:
	case <-time.After(wait):
		t.Fatal("the reader did not reconnect")
	}
	select {
	case err := <-werr:
		if err != nil {
			t.Fatalf("the writer: %v", err)
		}
	case <-time.After(2 * wait):
		t.Fatal("the writer did not finish")
	}
	evs := got.wait(t, files)
	for i, ev := range evs {
		want := fmt.Sprintf("f%04d", i)
		if i >= files || ev.Type != roomstore.EventFileUpdated || ev.Path != want {
			t.Fatalf("event %d of %d: %s %q (Dropped %d), want %s %q once each, in order", i, len(evs), ev.Type, ev.Path, ev.Dropped, roomstore.EventFileUpdated, want)
		}
	}
	if reader.ParticipantID() == before {
		t.Fatal("the reader kept its participant id: it never reconnected")
	}
	// Nothing after the 1,000th: one more change is the next event.
	if _, err := eng.Upload(deadline(t), "last", strings.NewReader("x"), roomstore.OpenOptions{}); err != nil {
		t.Fatal(err)
	}
	if evs := got.wait(t, files+1); len(evs) != files+1 || evs[files].Path != "last" {
		t.Fatalf("after the 1,000 events: %d events, the last %+v", len(evs), evs[len(evs)-1])
	}
}

// TestAParticipantAwayLongerThanTheHistoryGetsOneOverflow keeps a
// participant away while more changes are made than the room's engine
// keeps: once back, its subscribers get exactly one EventOverflow,
// counting them, and then the live events.
func TestAParticipantAwayLongerThanTheHistoryGetsOneOverflow(t *testing.T) {
	const history, missed = 10, 50
	r := newResumeEnv(t, roomstore.WithEventHistory(history))
	p := r.p
	reader, back := r.dialThrough(t, "reader", "r1")
	writer := r.dial(t, "writer", "r1", roomclient.Options{})
	got := newTally(reader)
	upload(t, writer, "before")
	got.wait(t, 1)

	p.cutAnd(true)
	for i := range missed {
		upload(t, writer, fmt.Sprint("gone", i))
	}
	p.admit()
	select {
	case <-back:
	case <-time.After(wait):
		t.Fatal("the reader did not reconnect")
	}
	upload(t, writer, "live")
	evs := got.wait(t, 3)
	var lines []string
	for _, ev := range evs {
		lines = append(lines, fmt.Sprintf("%s %q %d", ev.Type, ev.Path, ev.Dropped))
	}
	want := []string{
		fmt.Sprintf("%s %q 0", roomstore.EventFileUpdated, "before"),
		fmt.Sprintf("%s %q %d", roomstore.EventOverflow, "", missed),
		fmt.Sprintf("%s %q 0", roomstore.EventFileUpdated, "live"),
	}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Fatalf("the reader got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	// And it resumes from there: away again, briefly, it misses nothing.
	p.cutAnd(true)
	upload(t, writer, "while away")
	p.admit()
	select {
	case <-back:
	case <-time.After(wait):
		t.Fatal("the reader did not reconnect a second time")
	}
	upload(t, writer, "back")
	evs = got.wait(t, 5)
	if len(evs) != 5 || evs[3].Path != "while away" || evs[4].Path != "back" {
		t.Fatalf("after a short absence: %+v, want the change made while away, then the live one", evs[3:])
	}
}

// TestAFreshDialResumesFromWhereItsStreamStarted: a participant that has
// had no event yet still resumes, from the position room_ready gave it.
func TestAFreshDialResumesFromWhereItsStreamStarted(t *testing.T) {
	r := newResumeEnv(t)
	p := r.p
	reader, back := r.dialThrough(t, "reader", "r1")
	writer := r.dial(t, "writer", "r1", roomclient.Options{})
	got := newTally(reader)
	p.cutAnd(true)
	upload(t, writer, "while away")
	p.admit()
	select {
	case <-back:
	case <-time.After(wait):
		t.Fatal("the reader did not reconnect")
	}
	upload(t, writer, "back")
	evs := got.wait(t, 2)
	if len(evs) != 2 || evs[0].Path != "while away" || evs[1].Path != "back" {
		t.Fatalf("got %+v, want the change made while away, then the live one", evs)
	}
	_, err := reader.Exists(deadline(t), "back")
	if errors.Is(err, roomclient.ErrDisconnected) {
		t.Fatal("the reader is not connected")
	}
}
