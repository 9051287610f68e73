package events_test

import (
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomstore/roomstore/events"
)

// collector records what a handler gets, and lets a test wait, within
// 10s, until it has some number of events.
type collector struct {
	mu      sync.Mutex
	evs     []events.Event
	target  int           // what a waiter waits for
	reached chan struct{} // closed once len(evs) >= target; nil: no waiter
}

func newCollector() *collector { return &collector{} }

func (c *collector) handle(e events.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evs = append(c.evs, e)
	if c.reached != nil && len(c.evs) >= c.target {
		close(c.reached)
		c.reached = nil
	}
}

// wait returns the first n events once there are n, failing t after 10s.
// One goroutine waits at a time.
func (c *collector) wait(t *testing.T, n int) []events.Event {
	t.Helper()
	c.mu.Lock()
	if len(c.evs) < n {
		reached := make(chan struct{})
		c.target, c.reached = n, reached
		c.mu.Unlock()
		select {
		case <-reached:
		case <-time.After(10 * time.Second):
			c.mu.Lock()
			have := len(c.evs)
			c.mu.Unlock()
			t.Fatalf("timed out with %d events, waiting for %d", have, n)
		}
		c.mu.Lock()
	}
	defer c.mu.Unlock()
	return append([]events.Event(nil), c.evs[:n]...)
}

// all returns every event so far.
func (c *collector) all() []events.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]events.Event(nil), c.evs...)
}

// subscribeAfter is SubscribeAfter into a new collector, failing t on an
// error.
func subscribeAfter(t *testing.T, b *events.Bus, position string, topics ...string) (*collector, *events.Subscription) {
	t.Helper()
	c := newCollector()
	sub, err := b.SubscribeAfter(position, c.handle, topics...)
	if err != nil {
		t.Fatalf("SubscribeAfter(%q): %v", position, err)
	}
	return c, sub
}

// positions publishes n events of sizes from, from+1... on topic "t" and
// returns their positions, read from a subscriber of every topic.
func positions(t *testing.T, b *events.Bus, from, n int) []string {
	t.Helper()
	c := newCollector()
	sub := b.Subscribe(c.handle)
	defer sub.Unsubscribe()
	publish(b, seq(int64(from), int64(from+n))...)
	var ps []string
	for _, e := range c.wait(t, n) {
		ps = append(ps, e.Position)
	}
	return ps
}

// sizes are the Sizes of evs, with mark for an overflow event.
func sizes(evs []events.Event) []int64 {
	var s []int64
	for _, e := range evs {
		if e.Type == events.TypeOverflow {
			s = append(s, mark)
			continue
		}
		s = append(s, e.Size)
	}
	return s
}

func TestPublishNumbersEventsAndGivesEachAPosition(t *testing.T) {
	b := quietBus(t)
	defer closeBus(t, b)
	c := newCollector()
	b.Subscribe(c.handle)
	start := b.Position()
	b.Publish("t", events.Event{Type: "t", Seq: 99, Position: "forged.1"})
	publish(b, 1, 2)
	evs := c.wait(t, 3)
	seen := map[string]bool{start: true}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Errorf("event %d has Seq %d, want %d", i, e.Seq, i+1)
		}
		if seen[e.Position] || e.Position == "" || events.CheckPosition(e.Position) != nil {
			t.Errorf("event %d has position %q: want a new, well-formed one", i, e.Position)
		}
		seen[e.Position] = true
	}
	if p := b.Position(); p != evs[2].Position {
		t.Errorf("Position() = %q, want the last event's %q", p, evs[2].Position)
	}
	other := quietBus(t)
	defer closeBus(t, other)
	if other.Position() == start {
		t.Errorf("two buses start at the same position %q: a position must name its bus", start)
	}
}

// TestResumingIsExactWhilePublishersRace resumes subscribers, at
// positions behind the bus, while four goroutines publish: each gets
// every event after its position exactly once, in the bus's order, as a
// subscriber of the whole stream does.
func TestResumingIsExactWhilePublishersRace(t *testing.T) {
	const publishers, each, resumers = 4, 1000, 16
	const total = publishers * each
	b := quietBus(t, events.WithBuffer(2*total), events.WithHistory(2*total))
	defer closeBus(t, b)
	ref := newCollector()
	b.Subscribe(ref.handle)

	var wg sync.WaitGroup
	var published atomic.Int64
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				b.Publish("t", events.Event{Type: "t", Path: fmt.Sprint(p, "/", i), Size: int64(p*each + i)})
				published.Add(1)
			}
		})
	}
	type resumed struct {
		after int // events of ref before its position
		c     *collector
	}
	var rs []resumed
	racing := 0
	for r := range resumers {
		after := 1 + r*(total-1)/resumers // a position reached so far, while the publishers go on
		evs := ref.wait(t, after)
		c, _ := subscribeAfter(t, b, evs[after-1].Position)
		if published.Load() < total {
			racing++
		}
		rs = append(rs, resumed{after, c})
	}
	wg.Wait()
	t.Logf("%d of %d subscribers resumed while the publishers went on", racing, resumers)
	want := ref.wait(t, total)
	for i, e := range want {
		if e.Seq != uint64(i+1) {
			t.Fatalf("the whole stream's event %d has Seq %d", i, e.Seq)
		}
	}
	for _, r := range rs {
		got := r.c.wait(t, total-r.after)
		for i, e := range got {
			w := want[r.after+i]
			if e.Type != "t" || e.Seq != w.Seq || e.Path != w.Path || e.Position != w.Position {
				t.Fatalf("resumed after event %d: event %d is %+v, want %+v", r.after, i, e, w)
			}
		}
	}
	closeBus(t, b) // every handler has returned: nothing more can come
	for _, r := range rs {
		if n := len(r.c.all()); n != total-r.after {
			t.Fatalf("resumed after event %d: %d events, want %d", r.after, n, total-r.after)
		}
	}
}

func TestAForeignPositionStartsTheStreamWithOneOverflow(t *testing.T) {
	b := quietBus(t)
	defer closeBus(t, b)
	publish(b, 1, 2)
	other := quietBus(t)
	defer closeBus(t, other)
	foreign := positions(t, other, 1, 3)
	for _, p := range []string{foreign[1], other.Position(), "elsewhere.0", "1.1"} {
		t.Run(p, func(t *testing.T) {
			c, sub := subscribeAfter(t, b, p)
			defer sub.Unsubscribe()
			live := b.Position()
			publish(b, 100)
			evs := c.wait(t, 2)
			o := evs[0]
			if o.Type != events.TypeOverflow || o.Dropped != 0 || o.Seq != 0 || o.Position != live || o.Time.IsZero() {
				t.Fatalf("first event %+v, want one overflow with Dropped 0 (unknown) and Position %q", o, live)
			}
			if e := evs[1]; e.Type != "t" || e.Size != 100 {
				t.Fatalf("then %+v, want the live event", e)
			}
			if d := sub.Dropped(); d != 0 {
				t.Errorf("Dropped() = %d: the subscriber's queue lost nothing", d)
			}
		})
	}
}

func TestAPositionThisBusNeverIssuedIsTreatedAsForeign(t *testing.T) {
	b := quietBus(t)
	defer closeBus(t, b)
	ps := positions(t, b, 1, 2)
	ahead := strings.TrimSuffix(ps[1], "2") + "3"
	evs, err := b.EventsAfter(ahead)
	if err != nil || len(evs) != 1 || evs[0].Type != events.TypeOverflow || evs[0].Dropped != 0 {
		t.Fatalf("EventsAfter a position ahead of the bus: %+v, %v; want one overflow", evs, err)
	}
}

func TestAPositionOlderThanTheHistoryStartsWithOneOverflow(t *testing.T) {
	b := quietBus(t, events.WithHistory(4))
	defer closeBus(t, b)
	ps := positions(t, b, 1, 10) // the history holds 7 to 10

	c, sub := subscribeAfter(t, b, ps[5]) // after 6: 7 to 10, all held
	if got := sizes(c.wait(t, 4)); fmt.Sprint(got) != fmt.Sprint(seq(7, 11)) {
		t.Fatalf("resumed after 6: %v, want 7 to 10", got)
	}
	sub.Unsubscribe()

	for _, topics := range [][]string{nil, {"t"}} {
		t.Run(fmt.Sprint("topics ", topics), func(t *testing.T) {
			c, sub := subscribeAfter(t, b, ps[4], topics...) // after 5: 6 is gone
			defer sub.Unsubscribe()
			live := b.Position()
			publish(b, 11)
			evs := c.wait(t, 2)
			want := uint64(5) // 6 to 10, known for a subscriber of every topic
			if topics != nil {
				want = 0 // how many of them were its topics' is not known
			}
			if o := evs[0]; o.Type != events.TypeOverflow || o.Dropped != want || o.Position != live {
				t.Fatalf("first event %+v, want one overflow with Dropped %d at %q", o, want, live)
			}
			if e := evs[1]; e.Size != 11 {
				t.Fatalf("then %+v, want the live event 11", e)
			}
		})
	}
}

func TestMalformedPositionsAreRefused(t *testing.T) {
	b := quietBus(t)
	defer closeBus(t, b)
	for _, p := range []string{
		"x", ".1", "abc.", "abc.-1", "abc.+1", "abc.1x", "abc.1.", "a b.1", "ab/c.1", "é.1",
		strings.Repeat("a", 65) + ".1", "abc.18446744073709551616", "abc." + strings.Repeat("1", 100),
	} {
		if err := events.CheckPosition(p); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("CheckPosition(%q) = %v, want fs.ErrInvalid", p, err)
		}
		sub, err := b.SubscribeAfter(p, func(events.Event) { t.Error("a refused subscription got an event") })
		if !errors.Is(err, fs.ErrInvalid) || sub != nil {
			t.Errorf("SubscribeAfter(%q) = %v, %v; want nil and fs.ErrInvalid", p, sub, err)
		}
		if evs, err := b.EventsAfter(p); !errors.Is(err, fs.ErrInvalid) || evs != nil {
			t.Errorf("EventsAfter(%q) = %v, %v; want nil and fs.ErrInvalid", p, evs, err)
		}
	}
	for _, p := range []string{"", "a.0", "A-z_9.18446744073709551615", b.Position()} {
		if err := events.CheckPosition(p); err != nil {
			t.Errorf("CheckPosition(%q) = %v, want nil", p, err)
		}
	}
}

func TestAnEmptyPositionSubscribesFromNow(t *testing.T) {
	b := quietBus(t)
	publish(b, 1, 2)
	c, _ := subscribeAfter(t, b, "")
	publish(b, 3)
	if got := sizes(c.wait(t, 1)); fmt.Sprint(got) != "[3]" {
		t.Fatalf("got %v, want only the live event 3", got)
	}
	if evs, err := b.EventsAfter(""); evs != nil || err != nil {
		t.Errorf(`EventsAfter("") = %v, %v; want nothing`, evs, err)
	}
	closeBus(t, b)
	if n := len(c.all()); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

func TestResumingReplaysOnlyItsTopics(t *testing.T) {
	b := quietBus(t)
	start := b.Position()
	for i, topic := range []string{"a", "b", "c", "a", "b", "c"} {
		b.Publish(topic, events.Event{Type: topic, Size: int64(i)})
	}
	c, _ := subscribeAfter(t, b, start, "c", "a", "a")
	b.Publish("b", events.Event{Type: "b", Size: 6})
	b.Publish("c", events.Event{Type: "c", Size: 7})
	evs := c.wait(t, 5)
	if got := fmt.Sprint(sizes(evs)); got != "[0 2 3 5 7]" {
		t.Fatalf("a subscriber of a and c got %v, want [0 2 3 5 7]", got)
	}
	got, err := b.EventsAfter(start, "b")
	if err != nil || fmt.Sprint(sizes(got)) != "[1 4 6]" {
		t.Fatalf("EventsAfter of b: %v, %v; want [1 4 6]", sizes(got), err)
	}
	closeBus(t, b)
	if n := len(c.all()); n != 5 {
		t.Fatalf("%d events, want 5", n)
	}
}

func TestAReplayLongerThanTheQueueOverflowsAsLiveEventsDo(t *testing.T) {
	b := quietBus(t, events.WithBuffer(3))
	start := b.Position()
	publish(b, seq(1, 11)...)
	held, err := b.EventsAfter(start)
	if err != nil || len(held) != 10 {
		t.Fatalf("EventsAfter the start: %v, %v", sizes(held), err)
	}
	c, sub := subscribeAfter(t, b, start) // 10 events into a queue of 3
	c.wait(t, 4)                          // the queue has drained: 11 finds room
	publish(b, 11)
	evs := c.wait(t, 5)
	if got := fmt.Sprint(sizes(evs)); got != fmt.Sprint([]int64{1, 2, 3, mark, 11}) {
		t.Fatalf("got %v, want 1 2 3, an overflow, 11", got)
	}
	if o := evs[3]; o.Dropped != 7 || o.Position != held[9].Position {
		t.Fatalf("overflow %+v, want Dropped 7 and the position of the last one lost, %q", o, held[9].Position)
	}
	expectDropped(t, sub, 7)
	closeBus(t, b)
}

func TestAGapEndsWhatTheHistoryCanReplay(t *testing.T) {
	b := quietBus(t)
	defer closeBus(t, b)
	ps := positions(t, b, 1, 3)
	b.Gap(2)
	after := positions(t, b, 4, 1)
	for _, p := range []string{ps[0], ps[2]} { // before the gap, the last one included
		evs, err := b.EventsAfter(p)
		if err != nil || len(evs) != 1 || evs[0].Type != events.TypeOverflow || evs[0].Dropped != 0 || evs[0].Position != after[0] {
			t.Fatalf("EventsAfter(%q) across a gap: %+v, %v; want one overflow at %q", p, evs, err, after[0])
		}
	}
	c, sub := subscribeAfter(t, b, ps[2])
	defer sub.Unsubscribe()
	if o := c.wait(t, 1)[0]; o.Type != events.TypeOverflow {
		t.Fatalf("SubscribeAfter across a gap: %+v, want an overflow", o)
	}
	if evs, err := b.EventsAfter(after[0]); err != nil || len(evs) != 0 {
		t.Fatalf("EventsAfter a position after the gap: %+v, %v; want nothing", evs, err)
	}
}

func TestWithoutHistoryOnlyASubscriberThatMissedNothingResumes(t *testing.T) {
	b := quietBus(t, events.WithHistory(0))
	ps := positions(t, b, 1, 3)
	if n, c := b.HistoryFootprint(); n != 0 || c != 0 {
		t.Fatalf("a bus without history holds %d events in %d slots", n, c)
	}
	now, _ := subscribeAfter(t, b, ps[2])
	old, _ := subscribeAfter(t, b, ps[0])
	publish(b, 4)
	if got := fmt.Sprint(sizes(now.wait(t, 1))); got != "[4]" {
		t.Fatalf("resumed at the latest position: %v, want only 4", got)
	}
	evs := old.wait(t, 2)
	if evs[0].Type != events.TypeOverflow || evs[0].Dropped != 2 || evs[1].Size != 4 {
		t.Fatalf("resumed two events back: %v (%+v), want an overflow of 2, then 4", sizes(evs), evs[0])
	}
	closeBus(t, b)
	if len(now.all()) != 1 || len(old.all()) != 2 {
		t.Fatalf("more events than expected: %v, %v", sizes(now.all()), sizes(old.all()))
	}
}

func TestTheHistoryHoldsOnlyWhatWasPublishedUpToItsBound(t *testing.T) {
	const bound = 100
	b := quietBus(t, events.WithHistory(bound))
	defer closeBus(t, b)
	if n, c := b.HistoryFootprint(); n != 0 || c != 0 {
		t.Fatalf("an idle bus holds %d events in %d slots, want nothing", n, c)
	}
	publish(b, 1, 2, 3)
	if n, c := b.HistoryFootprint(); n != 3 || c > 8 {
		t.Fatalf("after 3 events: %d in %d slots, want 3 in at most 8", n, c)
	}
	start := b.Position()
	publish(b, seq(4, 4+3*bound)...)
	if n, c := b.HistoryFootprint(); n != bound || c != bound {
		t.Fatalf("after %d events: %d in %d slots, want %d in %d", 3+3*bound, n, c, bound, bound)
	}
	evs, err := b.EventsAfter(start)
	if err != nil || len(evs) != 1 || evs[0].Type != events.TypeOverflow || evs[0].Dropped != 3*bound {
		t.Fatalf("EventsAfter a position past the bound: %+v, %v", evs, err)
	}
	all := b.Position()
	publish(b, 1000)
	evs, err = b.EventsAfter(all)
	if err != nil || fmt.Sprint(sizes(evs)) != "[1000]" {
		t.Fatalf("EventsAfter the latest but one: %v, %v", sizes(evs), err)
	}
	if _, err := events.New(events.WithHistory(-1)); !errors.Is(err, fs.ErrInvalid) {
		t.Fatalf("WithHistory(-1): %v, want fs.ErrInvalid", err)
	}
}

// TestWhatAFullHistoryCosts measures what
// WithHistory documents: the default history, full of events with
// 40-byte paths, ids and ETags of their own, as an engine publishes them.
func TestWhatAFullHistoryCosts(t *testing.T) {
	const limit = 450
	b := quietBus(t)
	defer closeBus(t, b)
	origin := "0123456789abcdefghijklmnopqrstuv"
	heap0, _ := memory()
	for i := range events.DefaultHistory {
		b.Publish("file.updated", events.Event{Type: "file.updated", Path: fmt.Sprintf("docs/reports/2025/quarterly-%011d.txt", i),
			ParticipantID: "participant", Origin: origin, ID: fmt.Sprint(origin, "-", i), ETag: fmt.Sprintf("%q", fmt.Sprintf("%032x", i)),
			Size: 1, Time: time.Now()})
	}
	heap1, _ := memory()
	runtime.KeepAlive(b)
	per := (heap1 - heap0) / events.DefaultHistory
	t.Logf("a full history of %d events: %s, %d bytes an event", events.DefaultHistory, mib(heap1-heap0), per)
	if per > limit {
		t.Fatalf("%d bytes an event held, want at most %d", per, limit)
	}
}

func TestSubscribeAfterCloseReceivesNothing(t *testing.T) {
	b := quietBus(t)
	ps := positions(t, b, 1, 2)
	closeBus(t, b)
	c, sub := subscribeAfter(t, b, ps[0])
	sub.Unsubscribe()
	if n := len(c.all()); n != 0 {
		t.Fatalf("a subscription after Close got %d events", n)
	}
	if evs, err := b.EventsAfter(ps[0]); err != nil || fmt.Sprint(sizes(evs)) != "[2]" {
		t.Fatalf("EventsAfter after Close: %v, %v; want the history's [2]", sizes(evs), err)
	}
}
