package events_test

import (
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/roomstore/roomstore/events"
)

// The first line of runtime.Stack, which goid parses: "goroutine N [" (or,
// with GOTRACEBACK=system and above, "goroutine N gp=...").
var tracebackHeader = regexp.MustCompile(`^goroutine ([1-9][0-9]*) (\[|gp=)`)

// stackID reads the current goroutine's id with the regexp, independently
// of goid.
func stackID(t *testing.T) uint64 {
	buf := make([]byte, 256)
	buf = buf[:runtime.Stack(buf, false)]
	m := tracebackHeader.FindSubmatch(buf)
	if m == nil {
		t.Errorf("runtime.Stack starts %q: not the format goid parses", buf)
		return 0
	}
	id, err := strconv.ParseUint(string(m[1]), 10, 64)
	if err != nil {
		t.Errorf("goroutine id %q: %v", m[1], err)
	}
	return id
}

func TestGoidReadsTheRuntimesTracebackHeader(t *testing.T) {
	mine := events.Goid()
	if want := stackID(t); mine != want || mine == 0 {
		t.Fatalf("goid() = %d, the traceback says %d", mine, want)
	}
	theirs := make(chan [2]uint64, 1)
	go func() { theirs <- [2]uint64{events.Goid(), stackID(t)} }()
	var other [2]uint64
	select {
	case other = <-theirs:
	case <-time.After(10 * time.Second):
		t.Fatal("the other goroutine never answered")
	}
	if other[0] == 0 || other[0] != other[1] || other[0] == mine {
		t.Fatalf("goid() = %d on another goroutine (traceback: %d), %d on this one: want two different non-zero ids",
			other[0], other[1], mine)
	}
}

func TestParseGoidRefusesWhatIsNotAGoroutineHeader(t *testing.T) {
	for in, want := range map[string]uint64{
		"goroutine 4707 [running]:\nmain.main()":                 4707,
		"goroutine 7 gp=0xc000002380 m=0 mp=0x5a1e40 [running]:": 7,
		"goroutine 18446744073709551615 [running]:":              1<<64 - 1,
		"":                        0,
		"goroutine":               0,
		"goroutine ":              0,
		"goroutine 12":            0, // cut short: the id may be too
		"goroutine  [running]:":   0,
		"goroutine x1 [running]:": 0,
		"goroutine -1 [running]:": 0,
		"goroutine 18446744073709551616 [running]:": 0,
		"Goroutine 1 [running]:":                    0,
		"thread 1 [running]:":                       0,
	} {
		if got := events.ParseGoid([]byte(in)); got != want {
			t.Errorf("parseGoid(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestAnUnreadableGoroutineIDCountsAsInsideAHandler(t *testing.T) {
	b := quietBus(t)
	defer closeBus(t, b)
	if !b.Delivers(0) {
		t.Fatal("id 0 (unreadable) does not count as a delivery goroutine: Unsubscribe and Close would wait, maybe for themselves")
	}
	if b.Delivers(events.Goid()) {
		t.Fatal("the test goroutine counts as a delivery goroutine")
	}
}

func TestInHandlerIsTrueOnlyInsideThisBussHandlers(t *testing.T) {
	b, other := quietBus(t), quietBus(t)
	defer closeBus(t, other)
	defer closeBus(t, b)
	seen := make(chan [2]bool, 1)
	b.Subscribe(func(events.Event) { seen <- [2]bool{b.InHandler(), other.InHandler()} }, "t")
	if b.InHandler() || other.InHandler() {
		t.Fatal("InHandler is true on the test goroutine")
	}
	b.Publish("t", events.Event{})
	select {
	case got := <-seen:
		if got != [2]bool{true, false} {
			t.Fatalf("inside a handler of b: b.InHandler() = %v, other.InHandler() = %v; want true, false", got[0], got[1])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never ran")
	}
}
