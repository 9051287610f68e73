package roomstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_mem"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// quietLogger swallows the warnings that tests provoke (dropped events).
var quietLogger = slog.New(slog.DiscardHandler)

// sdk is an OpenTelemetry SDK setup whose metrics and spans a test reads:
// a MeterProvider with a ManualReader, a TracerProvider with a
// SpanRecorder, both shut down when the test ends.
type sdk struct {
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
}

func newSDK(t *testing.T) *sdk {
	t.Helper()
	s := &sdk{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	s.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.reader))
	s.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(s.spans))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.mp.Shutdown(ctx)
		_ = s.tp.Shutdown(ctx)
	})
	return s
}

// options are the engine options that send to s.
func (s *sdk) options() []roomstore.Option {
	return []roomstore.Option{roomstore.WithMeterProvider(s.mp), roomstore.WithTracerProvider(s.tp)}
}

// engine returns an engine over b that reports to s, shut down when the
// test ends (before s is).
func (s *sdk) engine(t *testing.T, b backend.Backend, opts ...roomstore.Option) *roomstore.Engine {
	t.Helper()
	return newTestEngine(t, b, append(s.options(), opts...)...)
}

func newTestEngine(t *testing.T, b backend.Backend, opts ...roomstore.Option) *roomstore.Engine {
	t.Helper()
	e, err := roomstore.New(b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return e
}

// metrics is one collection of s's metrics.
type metrics struct {
	t  *testing.T
	rm metricdata.ResourceMetrics
}

func (s *sdk) collect(t *testing.T) metrics {
	t.Helper()
	m := metrics{t: t}
	if err := s.reader.Collect(t.Context(), &m.rm); err != nil {
		t.Fatal(err)
	}
	return m
}

// find returns the metric name of the engine's scope.
func (m metrics) find(name string) (metricdata.Metrics, bool) {
	for _, sm := range m.rm.ScopeMetrics {
		if sm.Scope.Name != telemetry.ScopeName {
			m.t.Errorf("metrics of the scope %q, want only %q", sm.Scope.Name, telemetry.ScopeName)
			continue
		}
		for _, mt := range sm.Metrics {
			if mt.Name == name {
				return mt, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

// aggregation returns the data of the metric name, which must be an A
// (want says what that is), or A's zero value when there is no such
// metric.
func aggregation[A metricdata.Aggregation](m metrics, name, want string) A {
	m.t.Helper()
	var data A
	if mt, ok := m.find(name); ok {
		if data, ok = mt.Data.(A); !ok {
			m.t.Fatalf("%s is a %T, want %s", name, mt.Data, want)
		}
	}
	return data
}

// exactly reports whether set holds exactly attrs.
func exactly(set attribute.Set, attrs []attribute.KeyValue) bool {
	want := attribute.NewSet(attrs...)
	return set.Equals(&want)
}

// sum returns the value of the counter name at exactly attrs, 0 when it
// has none there.
func (m metrics) sum(name string, attrs ...attribute.KeyValue) int64 {
	m.t.Helper()
	for _, dp := range aggregation[metricdata.Sum[int64]](m, name, "an int64 sum").DataPoints {
		if exactly(dp.Attributes, attrs) {
			return dp.Value
		}
	}
	return 0
}

// count returns how many values the histogram name holds at exactly attrs.
func (m metrics) count(name string, attrs ...attribute.KeyValue) uint64 {
	m.t.Helper()
	for _, dp := range aggregation[metricdata.Histogram[float64]](m, name, "a float64 histogram").DataPoints {
		if exactly(dp.Attributes, attrs) {
			return dp.Count
		}
	}
	return 0
}

// calls returns roomstore.calls as Stats.Calls holds it: operation to
// outcome to count, and checks that every count has its duration.
func (m metrics) calls() map[string]map[string]uint64 {
	m.t.Helper()
	out := map[string]map[string]uint64{}
	mt, ok := m.find("roomstore.calls")
	if !ok {
		return out
	}
	for _, dp := range mt.Data.(metricdata.Sum[int64]).DataPoints {
		op, _ := dp.Attributes.Value(telemetry.AttrOperation)
		outcome, _ := dp.Attributes.Value(telemetry.AttrOutcome)
		if dp.Attributes.Len() != 2 || dp.Value <= 0 {
			m.t.Errorf("roomstore.calls point %v = %d", dp.Attributes.ToSlice(), dp.Value)
		}
		if out[op.AsString()] == nil {
			out[op.AsString()] = map[string]uint64{}
		}
		out[op.AsString()][outcome.AsString()] = uint64(dp.Value)
		if n := m.count("roomstore.call.duration", dp.Attributes.ToSlice()...); n != uint64(dp.Value) {
			m.t.Errorf("roomstore.call.duration at %v holds %d values, want %d", dp.Attributes.ToSlice(), n, dp.Value)
		}
	}
	return out
}

func opAttr(op string) attribute.KeyValue { return attribute.String(telemetry.AttrOperation, op) }

type calls = map[string]map[string]uint64

// checkCalls fails the test unless the metrics and the stats both count
// exactly want.
func checkCalls(t *testing.T, m metrics, s roomstore.Stats, want calls) {
	t.Helper()
	equal := func(a, b calls) bool {
		return maps.EqualFunc(a, b, func(x, y map[string]uint64) bool { return maps.Equal(x, y) })
	}
	if got := m.calls(); !equal(got, want) {
		t.Errorf("roomstore.calls = %v, want %v", got, want)
	}
	if !equal(s.Calls, want) {
		t.Errorf("Stats().Calls = %v, want %v", s.Calls, want)
	}
}

// ended returns the last span of each name ended so far, and how many
// spans of each name ended.
func (s *sdk) ended(t *testing.T) (map[string]sdktrace.ReadOnlySpan, map[string]int) {
	t.Helper()
	last, n := map[string]sdktrace.ReadOnlySpan{}, map[string]int{}
	for _, sp := range s.spans.Ended() {
		last[sp.Name()] = sp
		n[sp.Name()]++
	}
	return last, n
}

// spanAttr returns the value of the attribute key of sp, "" when absent.
func spanAttr(sp sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range sp.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// checkSpan fails the test unless sp has the attributes want (key to
// emitted value) and, for a non-nil err, status Error with err's message
// and err recorded as an exception event, unless its outcome is one a
// caller expects (not_exist, closed for an abort), which records none;
// for a nil err, status Unset and no exception event.
func checkSpan(t *testing.T, sp sdktrace.ReadOnlySpan, want map[string]string, err error) {
	t.Helper()
	if sp == nil {
		t.Errorf("no span, want one with %v", want)
		return
	}
	for k, v := range want {
		if got := spanAttr(sp, k); got != v {
			t.Errorf("span %s: %s = %q, want %q", sp.Name(), k, got, v)
		}
	}
	st := sp.Status()
	recorded := false
	for _, ev := range sp.Events() {
		recorded = recorded || ev.Name == "exception"
	}
	if err == nil {
		if st.Code != codes.Unset || recorded {
			t.Errorf("span %s: status %v, exception recorded %v; want unset, none", sp.Name(), st, recorded)
		}
		return
	}
	if st.Code != codes.Error || st.Description != err.Error() {
		t.Errorf("span %s: status %v, want Error %q", sp.Name(), st, err)
	}
	outcome := spanAttr(sp, telemetry.AttrOutcome)
	expected := outcome == "not_exist" || sp.Name() == "roomstore.abort" && outcome == "closed"
	if recorded == expected {
		t.Errorf("span %s with the outcome %s: exception recorded %v, want %v (events %v)", sp.Name(), outcome, recorded, !expected, sp.Events())
	}
}

func TestACommitIsOneOpenWriteAndCloseWithItsBytesAndAttempt(t *testing.T) {
	s := newSDK(t)
	e := s.engine(t, backend_mem.New())
	ctx := t.Context()
	h, err := e.Open(ctx, "docs/a.txt", roomstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := s.collect(t).sum("roomstore.handles.open"); n != 1 || e.Stats().OpenHandles != 1 {
		t.Errorf("with a handle open: roomstore.handles.open = %d, Stats().OpenHandles = %d, want 1", n, e.Stats().OpenHandles)
	}
	if err := e.Write(ctx, h, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(ctx, h); err != nil {
		t.Fatal(err)
	}

	m, st := s.collect(t), e.Stats()
	checkCalls(t, m, st, calls{"open": {"ok": 1}, "write": {"ok": 1}, "close": {"ok": 1}})
	for _, c := range []struct {
		name string
		got  int64
		want int64
	}{
		{"roomstore.bytes.written{close}", m.sum("roomstore.bytes.written", opAttr("close")), 5},
		{"roomstore.bytes.read{close}", m.sum("roomstore.bytes.read", opAttr("close")), 0},
		{"roomstore.handles.open", m.sum("roomstore.handles.open"), 0},
		{"roomstore.commit.attempts{close}", m.sum("roomstore.commit.attempts", opAttr("close")), 1},
		{"roomstore.commit.conflicts{close}", m.sum("roomstore.commit.conflicts", opAttr("close")), 0},
		{"roomstore.commit.retries{close}", m.sum("roomstore.commit.retries", opAttr("close")), 0},
		{"roomstore.events.published", m.sum("roomstore.events.published"), 1},
		{"Stats().BytesWritten", int64(st.BytesWritten), 5},
		{"Stats().BytesRead", int64(st.BytesRead), 0},
		{"Stats().OpenHandles", int64(st.OpenHandles), 0},
		{"Stats().CommitAttempts", int64(st.CommitAttempts), 1},
		{"Stats().CommitConflicts", int64(st.CommitConflicts), 0},
		{"Stats().CommitRetries", int64(st.CommitRetries), 0},
		{"Stats().EventsPublished", int64(st.EventsPublished), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}

	spans, n := s.ended(t)
	if want := map[string]int{"roomstore.open": 1, "roomstore.write": 1, "roomstore.close": 1}; !maps.Equal(n, want) {
		t.Errorf("spans %v, want %v", n, want)
	}
	path := map[string]string{telemetry.AttrPath: "docs/a.txt", telemetry.AttrOutcome: "ok"}
	checkSpan(t, spans["roomstore.open"], path, nil)
	checkSpan(t, spans["roomstore.write"], map[string]string{telemetry.AttrPath: "docs/a.txt", telemetry.AttrBytes: "5"}, nil)
	checkSpan(t, spans["roomstore.close"], map[string]string{telemetry.AttrPath: "docs/a.txt", telemetry.AttrBytes: "5", telemetry.AttrOutcome: "ok"}, nil)
}

func TestAFailedCallIsCountedByItsOutcomeWithAnErrorSpan(t *testing.T) {
	s := newSDK(t)
	e := s.engine(t, backend_mem.New())
	ctx := t.Context()
	put(t, e, "dir/f", "x") // open, write, close
	s.spans.Reset()

	_, statErr := e.Stat(ctx, "nope")
	_, openErr := e.Open(ctx, "dir", roomstore.OpenOptions{})
	_, badErr := e.Open(ctx, "bad\x00name", roomstore.OpenOptions{})
	deleteErr := e.Delete(ctx, "dir/missing")
	_, dlErr := e.Download(ctx, "dir")
	for _, err := range []error{statErr, openErr, badErr, deleteErr, dlErr} {
		if err == nil {
			t.Fatal("a call that should fail succeeded")
		}
	}
	checkCalls(t, s.collect(t), e.Stats(), calls{
		"open":     {"ok": 1, "is_folder": 1, "invalid": 1},
		"write":    {"ok": 1},
		"close":    {"ok": 1},
		"stat":     {"not_exist": 1},
		"delete":   {"not_exist": 1},
		"download": {"is_folder": 1},
	})
	spans := map[string][]sdktrace.ReadOnlySpan{}
	for _, sp := range s.spans.Ended() {
		spans[sp.Name()] = append(spans[sp.Name()], sp)
	}
	checkSpan(t, spans["roomstore.stat"][0], map[string]string{telemetry.AttrPath: "nope", telemetry.AttrOutcome: "not_exist"}, statErr)
	checkSpan(t, spans["roomstore.delete"][0], map[string]string{telemetry.AttrPath: "dir/missing", telemetry.AttrOutcome: "not_exist"}, deleteErr)
	checkSpan(t, spans["roomstore.download"][0], map[string]string{telemetry.AttrPath: "dir", telemetry.AttrOutcome: "is_folder"}, dlErr)
	if opens := spans["roomstore.open"]; len(opens) != 2 {
		t.Errorf("%d open spans, want 2", len(opens))
	} else {
		checkSpan(t, opens[0], map[string]string{telemetry.AttrPath: "dir", telemetry.AttrOutcome: "is_folder"}, openErr)
		checkSpan(t, opens[1], map[string]string{telemetry.AttrOutcome: "invalid"}, badErr)
	}
}

func TestLostRacesCountAsConflictsAndRetries(t *testing.T) {
	conflictOnce := func(op backend_mem.Op) backend_mem.Fault {
		return backend_mem.Fault{Op: op, Err: backend.Errorf(backend.ErrConflict, nil, "another writer won"), Times: 1}
	}
	t.Run("an append retried after one conflict", func(t *testing.T) {
		s := newSDK(t)
		b := backend_mem.New()
		e := s.engine(t, b)
		b.Inject(conflictOnce(backend_mem.OpCommit))
		if _, err := e.Upload(t.Context(), "f", strings.NewReader("abc"), roomstore.OpenOptions{}); err != nil {
			t.Fatal(err)
		}
		m, st := s.collect(t), e.Stats()
		checkCalls(t, m, st, calls{"upload": {"ok": 1}})
		up := opAttr("upload")
		if a, c, r := m.sum("roomstore.commit.attempts", up), m.sum("roomstore.commit.conflicts", up), m.sum("roomstore.commit.retries", up); a != 2 || c != 1 || r != 1 {
			t.Errorf("commit attempts, conflicts, retries of the upload = %d, %d, %d; want 2, 1, 1", a, c, r)
		}
		if st.CommitAttempts != 2 || st.CommitConflicts != 1 || st.CommitRetries != 1 || st.BytesWritten != 3 {
			t.Errorf("Stats() = %+v, want 2 attempts, 1 conflict, 1 retry, 3 bytes written", st)
		}
		if n := m.sum("roomstore.bytes.written", up); n != 3 {
			t.Errorf("roomstore.bytes.written{upload} = %d, want 3", n)
		}
	})
	t.Run("a conflict not retried fails the close", func(t *testing.T) {
		s := newSDK(t)
		b := backend_mem.New()
		e := s.engine(t, b, roomstore.WithCommitAttempts(1))
		b.Inject(conflictOnce(backend_mem.OpCommit))
		h, err := e.Open(t.Context(), "f", roomstore.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Write(t.Context(), h, []byte("abc")); err != nil {
			t.Fatal(err)
		}
		closeErr := e.Close(t.Context(), h)
		if !errors.Is(closeErr, roomstore.ErrConflict) {
			t.Fatalf("Close = %v, want ErrConflict", closeErr)
		}
		m, st := s.collect(t), e.Stats()
		checkCalls(t, m, st, calls{"open": {"ok": 1}, "write": {"ok": 1}, "close": {"conflict": 1}})
		cl := opAttr("close")
		if a, c, r := m.sum("roomstore.commit.attempts", cl), m.sum("roomstore.commit.conflicts", cl), m.sum("roomstore.commit.retries", cl); a != 1 || c != 1 || r != 0 {
			t.Errorf("commit attempts, conflicts, retries of the close = %d, %d, %d; want 1, 1, 0", a, c, r)
		}
		if st.CommitAttempts != 1 || st.CommitConflicts != 1 || st.CommitRetries != 0 || st.BytesWritten != 0 || st.EventsPublished != 0 {
			t.Errorf("Stats() = %+v, want 1 attempt, 1 conflict, no retry, nothing written or published", st)
		}
		if n := m.sum("roomstore.handles.open"); n != 0 || st.OpenHandles != 0 {
			t.Errorf("after the failed close: roomstore.handles.open = %d, Stats().OpenHandles = %d, want 0", n, st.OpenHandles)
		}
		spans, _ := s.ended(t)
		checkSpan(t, spans["roomstore.close"], map[string]string{telemetry.AttrOutcome: "conflict"}, closeErr)
	})
	t.Run("a move retried after one conflict", func(t *testing.T) {
		s := newSDK(t)
		b := backend_mem.New()
		e := s.engine(t, b)
		put(t, e, "src", "abc")
		s.spans.Reset()
		b.Inject(conflictOnce(backend_mem.OpMove))
		if err := e.Move(t.Context(), "src", "dst", roomstore.MoveOptions{}); err != nil {
			t.Fatal(err)
		}
		m, st := s.collect(t), e.Stats()
		checkCalls(t, m, st, calls{"open": {"ok": 1}, "write": {"ok": 1}, "close": {"ok": 1}, "move": {"ok": 1}})
		mv := opAttr("move")
		if a, c, r := m.sum("roomstore.commit.attempts", mv), m.sum("roomstore.commit.conflicts", mv), m.sum("roomstore.commit.retries", mv); a != 2 || c != 1 || r != 1 {
			t.Errorf("commit attempts, conflicts, retries of the move = %d, %d, %d; want 2, 1, 1", a, c, r)
		}
		if st.CommitAttempts != 3 || st.CommitConflicts != 1 || st.CommitRetries != 1 || st.EventsPublished != 2 {
			t.Errorf("Stats() = %+v, want 3 attempts (close, move twice), 1 conflict, 1 retry, 2 events", st)
		}
		spans, _ := s.ended(t)
		checkSpan(t, spans["roomstore.move"], map[string]string{telemetry.AttrPath: "src", telemetry.AttrDestination: "dst", telemetry.AttrOutcome: "ok"}, nil)
	})
}

// receive returns the next event on got, failing the test after 10s.
func receive(t *testing.T, got <-chan roomstore.Event) roomstore.Event {
	t.Helper()
	select {
	case ev := <-got:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
		return roomstore.Event{}
	}
}

func TestEventsDroppedForASlowSubscriberAndThoseDeliveredAreCountedExactly(t *testing.T) {
	s := newSDK(t)
	e := s.engine(t, backend_mem.New(), roomstore.WithEventBuffer(1), roomstore.WithLogger(quietLogger))
	got := make(chan roomstore.Event, 16)
	release := make(chan struct{})
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) }) // runs before the engine's Shutdown
	sub := e.Subscribe(func(ev roomstore.Event) {
		got <- ev
		if ev.Path == "first" {
			select {
			case <-release:
			case <-stop:
			}
		}
	})
	upload := func(p string) {
		t.Helper()
		if _, err := e.Upload(t.Context(), p, strings.NewReader(p), roomstore.OpenOptions{Overwrite: true}); err != nil {
			t.Fatal(err)
		}
	}
	upload("first")
	if ev := receive(t, got); ev.Path != "first" {
		t.Fatalf("first event %+v", ev)
	}
	// The handler holds "first": "second" fills the queue of 1, and the
	// next three are dropped.
	for _, p := range []string{"second", "third", "fourth", "fifth"} {
		upload(p)
	}
	m, st := s.collect(t), e.Stats()
	if n := m.sum("roomstore.events.dropped"); n != 3 || st.EventsDropped != 3 || sub.Dropped() != 3 {
		t.Errorf("while the handler holds: roomstore.events.dropped = %d, Stats().EventsDropped = %d, Dropped() = %d; want 3", n, st.EventsDropped, sub.Dropped())
	}
	if n := m.sum("roomstore.events.delivered"); n != 1 || st.EventsDelivered != 1 {
		t.Errorf("while the handler holds: roomstore.events.delivered = %d, Stats().EventsDelivered = %d; want 1", n, st.EventsDelivered)
	}
	close(release)
	if ev := receive(t, got); ev.Path != "second" {
		t.Fatalf("after the release: %+v, want the event of second", ev)
	}
	if ev := receive(t, got); ev.Type != roomstore.EventOverflow || ev.Dropped != 3 {
		t.Fatalf("after second: %+v, want an overflow of 3", ev)
	}
	m, st = s.collect(t), e.Stats()
	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"roomstore.events.delivered", m.sum("roomstore.events.delivered"), 3},
		{"roomstore.events.dropped", m.sum("roomstore.events.dropped"), 3},
		{"roomstore.events.published", m.sum("roomstore.events.published"), 5},
		{"Stats().EventsDelivered", int64(st.EventsDelivered), 3},
		{"Stats().EventsDropped", int64(st.EventsDropped), 3},
		{"Stats().EventsPublished", int64(st.EventsPublished), 5},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestCompositeCallsCountOnce(t *testing.T) {
	s := newSDK(t)
	e := s.engine(t, backend_mem.New())
	ctx := t.Context()
	for _, p := range []string{"a/1", "a/2"} {
		if _, err := e.Upload(ctx, p, strings.NewReader("12345"), roomstore.OpenOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Download(ctx, "a/1"); err != nil {
		t.Fatal(err)
	}
	if err := e.Move(ctx, "a", "b", roomstore.MoveOptions{}); err != nil {
		t.Fatal(err)
	}
	walked := 0
	for _, err := range e.Walk(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		walked++
	}
	if err := e.RemoveAll(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	m, st := s.collect(t), e.Stats()
	checkCalls(t, m, st, calls{"upload": {"ok": 2}, "download": {"ok": 1}, "move": {"ok": 1}, "walk": {"ok": 1}, "remove_all": {"ok": 1}})
	if walked != 3 {
		t.Errorf("Walk yielded %d entries, want b, b/1, b/2", walked)
	}
	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"roomstore.bytes.written{upload}", m.sum("roomstore.bytes.written", opAttr("upload")), 10},
		{"roomstore.bytes.read{download}", m.sum("roomstore.bytes.read", opAttr("download")), 5},
		{"roomstore.commit.attempts{upload}", m.sum("roomstore.commit.attempts", opAttr("upload")), 2},
		{"roomstore.commit.attempts{move}", m.sum("roomstore.commit.attempts", opAttr("move")), 2},
		{"roomstore.events.published", m.sum("roomstore.events.published"), 6},
		{"Stats().BytesWritten", int64(st.BytesWritten), 10},
		{"Stats().BytesRead", int64(st.BytesRead), 5},
		{"Stats().CommitAttempts", int64(st.CommitAttempts), 4},
		{"Stats().EventsPublished", int64(st.EventsPublished), 6},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	spans, n := s.ended(t) // no inner open, write, close or delete
	want := map[string]int{"roomstore.upload": 2, "roomstore.download": 1, "roomstore.move": 1, "roomstore.walk": 1, "roomstore.remove_all": 1}
	if !maps.Equal(n, want) {
		t.Errorf("spans %v, want %v", n, want)
	}
	checkSpan(t, spans["roomstore.download"], map[string]string{telemetry.AttrPath: "a/1", telemetry.AttrBytes: "5"}, nil)
	checkSpan(t, spans["roomstore.remove_all"], map[string]string{telemetry.AttrPath: "b", telemetry.AttrOutcome: "ok"}, nil)
}

func TestAReaderIsOneCallUntilItsClose(t *testing.T) {
	s := newSDK(t)
	e := s.engine(t, backend_mem.New())
	put(t, e, "big", strings.Repeat("x", 1000))
	r, err := e.OpenReader(t.Context(), "big", 100, -1)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	if err != nil || len(data) != 900 {
		t.Fatalf("read %d bytes, %v", len(data), err)
	}
	if n := e.Stats().Calls["open_reader"]["ok"]; n != 0 {
		t.Errorf("before Close, %d open_reader calls counted", n)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	_ = r.Close() // counted once
	_, missing := e.OpenReader(t.Context(), "gone", 0, -1)
	m, st := s.collect(t), e.Stats()
	checkCalls(t, m, st, calls{"open": {"ok": 1}, "write": {"ok": 1}, "close": {"ok": 1}, "open_reader": {"ok": 1, "not_exist": 1}})
	if n := m.sum("roomstore.bytes.read", opAttr("open_reader")); n != 900 || st.BytesRead != 900 {
		t.Errorf("roomstore.bytes.read{open_reader} = %d, Stats().BytesRead = %d, want 900", n, st.BytesRead)
	}
	var readers []sdktrace.ReadOnlySpan
	for _, sp := range s.spans.Ended() {
		if sp.Name() == "roomstore.open_reader" {
			readers = append(readers, sp)
		}
	}
	if len(readers) != 2 {
		t.Fatalf("%d open_reader spans, want 2", len(readers))
	}
	checkSpan(t, readers[0], map[string]string{telemetry.AttrPath: "big", telemetry.AttrBytes: "900", telemetry.AttrOutcome: "ok"}, nil)
	checkSpan(t, readers[1], map[string]string{telemetry.AttrPath: "gone", telemetry.AttrOutcome: "not_exist"}, missing)
}

func TestServedFilesAndSignedURLsAreCalls(t *testing.T) {
	s := newSDK(t)
	e := s.engine(t, backend_mem.New(), roomstore.WithBaseURL("http://files.test/dl"), roomstore.WithLogger(quietLogger))
	put(t, e, "page.html", "<p>hello</p>")
	serve := func(h http.HandlerFunc, method, target string) int {
		rec := httptest.NewRecorder()
		h(rec, httptest.NewRequestWithContext(t.Context(), method, target, nil))
		return rec.Code
	}
	file := func(p string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { e.ServeFile(w, r, p) }
	}
	u, err := e.DownloadURL(t.Context(), "page.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		h      http.HandlerFunc
		method string
		target string
		code   int
	}{
		{file("page.html"), http.MethodGet, "/x", http.StatusOK},
		{file("page.html"), http.MethodHead, "/x", http.StatusOK},
		{file("missing.html"), http.MethodGet, "/x", http.StatusNotFound},
		{file("page.html"), http.MethodPost, "/x", http.StatusMethodNotAllowed},
		{file("bad\x00"), http.MethodGet, "/x", http.StatusBadRequest},
		{e.Handler().ServeHTTP, http.MethodGet, u, http.StatusOK},
		{e.Handler().ServeHTTP, http.MethodGet, u + "x", http.StatusForbidden},
	} {
		if code := serve(c.h, c.method, c.target); code != c.code {
			t.Errorf("%s %s: %d, want %d", c.method, c.target, code, c.code)
		}
	}
	m, st := s.collect(t), e.Stats()
	checkCalls(t, m, st, calls{
		"open": {"ok": 1}, "write": {"ok": 1}, "close": {"ok": 1}, "download_url": {"ok": 1},
		"serve_file": {"ok": 2, "not_exist": 1, "invalid": 2},
		"serve_url":  {"ok": 1, "permission": 1},
	})
	if f, u := m.sum("roomstore.bytes.read", opAttr("serve_file")), m.sum("roomstore.bytes.read", opAttr("serve_url")); f != 12 || u != 12 || st.BytesRead != 24 {
		t.Errorf("bytes read: serve_file %d, serve_url %d, Stats().BytesRead %d; want 12, 12, 24", f, u, st.BytesRead)
	}
}

func TestTheFSViewsCallsAreCounted(t *testing.T) {
	s := newSDK(t)
	e := s.engine(t, backend_mem.New())
	put(t, e, "d/a.txt", "abc")
	fsys := e.FS(t.Context())
	if data, err := fs.ReadFile(fsys, "d/a.txt"); err != nil || string(data) != "abc" {
		t.Fatalf("ReadFile = %q, %v", data, err)
	}
	if _, err := fs.Stat(fsys, "d/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat = %v", err)
	}
	if _, err := fs.ReadDir(fsys, "d"); err != nil {
		t.Fatal(err)
	}
	f, err := fsys.Open("d/a.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sub, err := fs.Sub(fsys, "d")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat(sub, "a.txt"); err != nil {
		t.Fatal(err)
	}
	m, st := s.collect(t), e.Stats()
	checkCalls(t, m, st, calls{
		"open": {"ok": 1}, "write": {"ok": 1}, "close": {"ok": 1},
		"fs_read_file": {"ok": 1}, "fs_stat": {"not_exist": 1, "ok": 1}, "fs_read_dir": {"ok": 1}, "fs_open": {"ok": 1},
	})
	if r, o := m.sum("roomstore.bytes.read", opAttr("fs_read_file")), m.sum("roomstore.bytes.read", opAttr("fs_open")); r != 3 || o != 3 || st.BytesRead != 6 {
		t.Errorf("bytes read: fs_read_file %d, fs_open %d, Stats().BytesRead %d; want 3, 3, 6", r, o, st.BytesRead)
	}
	var subStat sdktrace.ReadOnlySpan
	for _, sp := range s.spans.Ended() {
		if sp.Name() == "roomstore.fs_stat" && spanAttr(sp, telemetry.AttrOutcome) == "ok" {
			subStat = sp
		}
	}
	checkSpan(t, subStat, map[string]string{telemetry.AttrPath: "d/a.txt"}, nil)
}

func TestACallsSpanIsAChildOfTheCallersSpan(t *testing.T) {
	s := newSDK(t)
	e := s.engine(t, backend_mem.New())
	ctx, parent := s.tp.Tracer("test").Start(t.Context(), "request")
	e.Exists(ctx, "x")
	parent.End()
	spans, _ := s.ended(t)
	sp := spans["roomstore.exists"]
	if sp == nil {
		t.Fatal("no exists span")
	}
	if sp.Parent().SpanID() != parent.SpanContext().SpanID() || sp.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("exists span's parent %v, want %v", sp.Parent(), parent.SpanContext())
	}
}

func TestEnginesSharingAMeterProviderAddUp(t *testing.T) {
	s := newSDK(t)
	a, b := s.engine(t, backend_mem.New()), s.engine(t, backend_mem.New())
	for _, e := range []*roomstore.Engine{a, b, b} {
		e.Stat(t.Context(), "missing")
	}
	if got := s.collect(t).calls(); got["stat"]["not_exist"] != 3 {
		t.Errorf("roomstore.calls = %v, want 3 stat not_exist from the two engines", got)
	}
	if na, nb := a.Stats().Calls["stat"]["not_exist"], b.Stats().Calls["stat"]["not_exist"]; na != 1 || nb != 2 {
		t.Errorf("Stats: %d and %d stats, want 1 and 2: each engine its own", na, nb)
	}
}

// TestWithoutProvidersNothingIsRecordedAndStatsStillCount sets the global
// OpenTelemetry providers (which the engine must never use) to SDK ones,
// and gives none to the engine.
func TestWithoutProvidersNothingIsRecordedAndStatsStillCount(t *testing.T) {
	global := newSDK(t)
	// Restored for the tests that follow (OpenTelemetry's default providers,
	// once they have delegated to others, keep doing so: to global's, shut
	// down and so doing nothing, once the test is over).
	mp, tp := otel.GetMeterProvider(), otel.GetTracerProvider()
	t.Cleanup(func() { // before global's providers shut down
		otel.SetMeterProvider(mp)
		otel.SetTracerProvider(tp)
	})
	otel.SetMeterProvider(global.mp)
	otel.SetTracerProvider(global.tp)
	unused := newSDK(t)
	e := newTestEngine(t, backend_mem.New())
	ctx := t.Context()
	put(t, e, "f", "abc")
	if _, err := e.Download(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	e.Stat(ctx, "missing")
	if err := e.Delete(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*sdk{"global": global, "unused": unused} {
		if n := len(s.spans.Started()); n != 0 {
			t.Errorf("%s providers: %d spans started", name, n)
		}
		var rm metricdata.ResourceMetrics
		if err := s.reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		if len(rm.ScopeMetrics) != 0 {
			t.Errorf("%s providers: metrics recorded: %+v", name, rm.ScopeMetrics)
		}
	}
	st := e.Stats()
	want := calls{"open": {"ok": 1}, "write": {"ok": 1}, "close": {"ok": 1}, "download": {"ok": 1}, "stat": {"not_exist": 1}, "delete": {"ok": 1}}
	if !maps.EqualFunc(st.Calls, want, func(x, y map[string]uint64) bool { return maps.Equal(x, y) }) {
		t.Errorf("Stats().Calls = %v, want %v", st.Calls, want)
	}
	if st.BytesWritten != 3 || st.BytesRead != 3 || st.CommitAttempts != 1 || st.EventsPublished != 2 || st.OpenHandles != 0 {
		t.Errorf("Stats() = %+v", st)
	}
}

func TestNilProvidersAreInvalidOptions(t *testing.T) {
	for name, opt := range map[string]roomstore.Option{
		"WithMeterProvider(nil)":  roomstore.WithMeterProvider(nil),
		"WithTracerProvider(nil)": roomstore.WithTracerProvider(nil),
	} {
		_, err := roomstore.New(backend_mem.New(), opt)
		var pe *fs.PathError
		if !errors.Is(err, fs.ErrInvalid) || !errors.As(err, &pe) || !strings.Contains(err.Error(), name) {
			t.Errorf("New with %s = %v, want an *fs.PathError naming it, wrapping fs.ErrInvalid", name, err)
		}
	}
}

// TestWithoutProvidersTheInstrumentationAllocatesNothing compares a
// small-file cycle's allocations with the instrumentation on (no
// providers) and off.
func TestWithoutProvidersTheInstrumentationAllocatesNothing(t *testing.T) {
	e := newTestEngine(t, backend_mem.New())
	ctx := context.Background()
	data := []byte(strings.Repeat("x", 4096))
	i := 0
	cycle := func() {
		i++
		p := fmt.Sprint("f", i%8)
		h, err := e.Open(ctx, p, roomstore.OpenOptions{Overwrite: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Write(ctx, h, data); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(ctx, h); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Stat(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := e.Delete(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// The cycle's own allocations vary a little: an event's id allocates
	// once its number passes 99, and the store's maps and pools settle.
	// So a warm-up first, then the least of interleaved rounds: one
	// allocation per cycle would show as one more.
	for range 300 {
		cycle()
	}
	t.Cleanup(func() { telemetry.Off.Store(false) })
	least := map[bool]float64{true: math.Inf(1), false: math.Inf(1)}
	for range 4 {
		for _, off := range []bool{true, false} {
			telemetry.Off.Store(off)
			least[off] = min(least[off], testing.AllocsPerRun(200, cycle))
		}
	}
	if on, off := least[false], least[true]; on > off {
		t.Errorf("a cycle allocates %v times instrumented without providers, %v times uninstrumented", on, off)
	}
	if n := e.Stats().Calls["close"]["ok"]; n != 300+4*201 {
		t.Errorf("Stats() counts %d closes, want %d: those of the warm-up and the instrumented rounds alone", n, 300+4*201)
	}
}

// checkText fails the test unless every string that sp carries (its
// attributes, its status message, its events' attributes) is valid UTF-8
// of at most roompath.MaxPathLen bytes.
func checkText(t *testing.T, sp sdktrace.ReadOnlySpan) {
	t.Helper()
	check := func(what, s string) {
		if !utf8.ValidString(s) || len(s) > roompath.MaxPathLen {
			t.Errorf("span %s: %s of %d bytes, valid UTF-8 %v; want valid UTF-8 of at most %d bytes", sp.Name(), what, len(s), utf8.ValidString(s), roompath.MaxPathLen)
		}
	}
	for _, kv := range sp.Attributes() {
		check(string(kv.Key), kv.Value.String())
	}
	check("the status message", sp.Status().Description)
	for _, ev := range sp.Events() {
		for _, kv := range ev.Attributes {
			check(ev.Name+" "+string(kv.Key), kv.Value.String())
		}
	}
}

func TestSpansCarryOnlyValidUTF8OfBoundedLength(t *testing.T) {
	s := newSDK(t)
	e := s.engine(t, backend_mem.New())
	ctx := t.Context()
	fsys := e.FS(ctx)
	huge := strings.Repeat("abcd/", 20<<10) + "f" // 100 KB
	for _, p := range []string{"\xff", "dir/\xffname", huge, strings.Repeat("a\xff", 50<<10)} {
		if _, err := e.Stat(ctx, p); !errors.Is(err, fs.ErrInvalid) {
			t.Fatalf("Stat of %d bytes = %v, want fs.ErrInvalid", len(p), err)
		}
		if _, err := fs.Stat(fsys, p); !errors.Is(err, fs.ErrInvalid) {
			t.Fatalf("FS Stat of %d bytes = %v, want fs.ErrInvalid", len(p), err)
		}
		if err := e.Move(ctx, "src", p, roomstore.MoveOptions{}); !errors.Is(err, fs.ErrInvalid) {
			t.Fatalf("Move to %d bytes = %v, want fs.ErrInvalid", len(p), err)
		}
	}
	ended := s.spans.Ended()
	if len(ended) != 12 {
		t.Fatalf("%d spans, want 12", len(ended))
	}
	for _, sp := range ended {
		checkText(t, sp)
		if sp.Status().Code != codes.Error || sp.Status().Description == "" || len(sp.Events()) != 1 {
			t.Errorf("span %s: status %v, events %v; want Error with a message, and the error recorded", sp.Name(), sp.Status(), sp.Events())
		}
	}
	// A path too long is cut, not garbled; an invalid byte is replaced.
	for i, want := range map[int]string{0: "\uFFFD", 1: "\uFFFD", 6: huge[:roompath.MaxPathLen], 7: huge[:roompath.MaxPathLen]} {
		if got := spanAttr(ended[i], telemetry.AttrPath); got != want {
			t.Errorf("span %d (%s): roomstore.path = %.40q (%d bytes), want %.40q (%d bytes)", i, ended[i].Name(), got, len(got), want, len(want))
		}
	}
	if got := spanAttr(ended[8], telemetry.AttrDestination); got != huge[:roompath.MaxPathLen] {
		t.Errorf("move span: roomstore.destination = %.40q (%d bytes), want the first %d bytes of the path", got, len(got), roompath.MaxPathLen)
	}
}

// recovered runs f and returns what it panicked with, nil if it did not.
func recovered(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}

// errBoom is what user code panics with in these tests.
var errBoom = errors.New("boom")

// panicReader yields "abc" once, then panics.
type panicReader struct{ read bool }

func (r *panicReader) Read(p []byte) (int, error) {
	if r.read {
		panic(errBoom)
	}
	r.read = true
	return copy(p, "abc"), nil
}

// panicWriter is a ResponseWriter whose Write panics, as net/http's
// handlers do with http.ErrAbortHandler to abort a response.
type panicWriter struct{ http.ResponseWriter }

func (panicWriter) Write([]byte) (int, error) { panic(http.ErrAbortHandler) }

// checkPanicked fails the test unless the last span named name ended with
// the status Error, the outcome error and the panic recorded.
func checkPanicked(t *testing.T, s *sdk, name string, p any) {
	t.Helper()
	spans, _ := s.ended(t)
	sp := spans[name]
	if sp == nil {
		t.Fatalf("no %s span ended", name)
	}
	want := fmt.Sprint("panic: ", p)
	if st := sp.Status(); st.Code != codes.Error || st.Description != want || spanAttr(sp, telemetry.AttrOutcome) != "error" {
		t.Errorf("span %s: status %v, outcome %s; want Error %q, error", name, st, spanAttr(sp, telemetry.AttrOutcome), want)
	}
	if evs := sp.Events(); len(evs) != 1 || evs[0].Name != "exception" {
		t.Errorf("span %s: events %v, want the panic recorded", name, evs)
	}
}

func TestACallThatPanicsCountsAsAnErrorAndThePanicGoesOn(t *testing.T) {
	t.Run("an upload whose reader panics aborts its handle", func(t *testing.T) {
		s := newSDK(t)
		e := s.engine(t, backend_mem.New())
		p := recovered(func() { _, _ = e.Upload(t.Context(), "f", &panicReader{}, roomstore.OpenOptions{}) })
		if p != errBoom {
			t.Fatalf("Upload panicked with %v, want %v", p, errBoom)
		}
		m, st := s.collect(t), e.Stats()
		checkCalls(t, m, st, calls{"upload": {"error": 1}})
		if n := m.sum("roomstore.handles.open"); n != 0 || st.OpenHandles != 0 {
			t.Errorf("after the panic: roomstore.handles.open = %d, Stats().OpenHandles = %d, want 0", n, st.OpenHandles)
		}
		checkPanicked(t, s, "roomstore.upload", errBoom)
		if ok, err := e.Exists(t.Context(), "f"); ok || err != nil {
			t.Errorf("Exists(f) = %v, %v after the panicked upload, want false", ok, err)
		}
	})
	t.Run("a walk whose loop body panics", func(t *testing.T) {
		s := newSDK(t)
		e := s.engine(t, backend_mem.New())
		put(t, e, "d/f", "x")
		p := recovered(func() {
			for range e.Walk(t.Context(), "") {
				panic(errBoom)
			}
		})
		if p != errBoom {
			t.Fatalf("the loop panicked with %v, want %v", p, errBoom)
		}
		checkCalls(t, s.collect(t), e.Stats(), calls{"open": {"ok": 1}, "write": {"ok": 1}, "close": {"ok": 1}, "walk": {"error": 1}})
		checkPanicked(t, s, "roomstore.walk", errBoom)
	})
	t.Run("a served file or signed URL whose ResponseWriter panics", func(t *testing.T) {
		s := newSDK(t)
		e := s.engine(t, backend_mem.New(), roomstore.WithBaseURL("http://files.test/dl"))
		put(t, e, "page.html", "<p>hello</p>")
		u, err := e.DownloadURL(t.Context(), "page.html")
		if err != nil {
			t.Fatal(err)
		}
		w := panicWriter{httptest.NewRecorder()}
		if p := recovered(func() { e.ServeFile(w, httptest.NewRequest(http.MethodGet, "/x", nil), "page.html") }); p != http.ErrAbortHandler {
			t.Fatalf("ServeFile panicked with %v, want http.ErrAbortHandler", p)
		}
		checkPanicked(t, s, "roomstore.serve_file", http.ErrAbortHandler)
		if p := recovered(func() { e.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, u, nil)) }); p != http.ErrAbortHandler {
			t.Fatalf("Handler panicked with %v, want http.ErrAbortHandler", p)
		}
		checkPanicked(t, s, "roomstore.serve_url", http.ErrAbortHandler)
		checkCalls(t, s.collect(t), e.Stats(), calls{
			"open": {"ok": 1}, "write": {"ok": 1}, "close": {"ok": 1}, "download_url": {"ok": 1},
			"serve_file": {"error": 1}, "serve_url": {"error": 1},
		})
	})
}

func TestExpectedFailuresRecordNoExceptionGenuineOnesDo(t *testing.T) {
	s := newSDK(t)
	b := backend_mem.New()
	e := s.engine(t, b)
	ctx := t.Context()
	put(t, e, "dir/f", "x")
	h, err := e.Open(ctx, "g", roomstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(ctx, h); err != nil {
		t.Fatal(err)
	}
	s.spans.Reset()
	abortErr := e.Abort(ctx, h) // the deferred Abort after Close
	_, statErr := e.Stat(ctx, "missing")
	_, dlErr := e.Download(ctx, "missing")
	closeErr := e.Close(ctx, h) // a Close of a finished handle is a caller's mistake
	_, folderErr := e.Download(ctx, "dir")
	b.Inject(backend_mem.Fault{Op: backend_mem.OpWrite, Err: errors.New("disk on fire"), Times: 1})
	h, err = e.Open(ctx, "w", roomstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeErr := e.Write(ctx, h, []byte("abc"))
	errs := []error{abortErr, statErr, dlErr, closeErr, folderErr, writeErr}
	for _, err := range errs {
		if err == nil {
			t.Fatal("a call that should fail succeeded")
		}
	}
	ended := s.spans.Ended()
	if len(ended) != 7 {
		t.Fatalf("%d spans, want 7", len(ended))
	}
	ended = slices.Delete(ended, 5, 6) // the open
	for i, want := range []string{"closed", "not_exist", "not_exist", "closed", "is_folder", "error"} {
		checkSpan(t, ended[i], map[string]string{telemetry.AttrOutcome: want}, errs[i])
	}
	if n := spanAttr(ended[5], telemetry.AttrBytes); n != "" {
		t.Errorf("failed write span: roomstore.bytes = %s, want none", n)
	}
}

// ctxBackend keeps the contexts its writers are made with.
type ctxBackend struct {
	backend.Backend
	mu   sync.Mutex
	ctxs []context.Context
}

func (b *ctxBackend) keep(ctx context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ctxs = append(b.ctxs, ctx)
}

func (b *ctxBackend) Create(ctx context.Context, p string, o backend.WriteOptions) (backend.Writer, error) {
	b.keep(ctx)
	return b.Backend.Create(ctx, p, o)
}

func (b *ctxBackend) Append(ctx context.Context, p string, o backend.WriteOptions) (backend.Writer, error) {
	b.keep(ctx)
	return b.Backend.Append(ctx, p, o)
}

func TestAHandlesContextDoesNotCarryTheOpenSpan(t *testing.T) {
	s := newSDK(t)
	b := &ctxBackend{Backend: backend_mem.New()}
	e := s.engine(t, b)
	ctx, request := s.tp.Tracer("test").Start(t.Context(), "request")
	defer request.End()
	h, err := e.Open(ctx, "f", roomstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Upload(ctx, "g", strings.NewReader("x"), roomstore.OpenOptions{}); err != nil {
		t.Fatal(err)
	}
	spans, _ := s.ended(t)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.ctxs) != 2 {
		t.Fatalf("%d writers made, want 2", len(b.ctxs))
	}
	// The open span ends when Open returns: the handle's writer, which may
	// keep its context for the whole write, gets the caller's. An Upload's
	// handle ends within it: its writer works under the upload span.
	for i, want := range []trace.SpanContext{request.SpanContext(), spans["roomstore.upload"].SpanContext()} {
		if got := trace.SpanContextFromContext(b.ctxs[i]); !got.Equal(want) {
			t.Errorf("writer %d's context carries the span %v, want %v (the open span is %v)", i, got.SpanID(), want.SpanID(), spans["roomstore.open"].SpanContext().SpanID())
		}
	}
}

func TestServedBytesAreTheBodysAlone(t *testing.T) {
	s := newSDK(t)
	e := s.engine(t, backend_mem.New())
	put(t, e, "README", strings.Repeat("x", 1000)) // no extension: http.ServeContent sniffs its type
	for _, c := range []struct {
		method string
		header string
		want   int64
	}{
		{http.MethodGet, "", 1000},
		{http.MethodHead, "", 0},
		{http.MethodGet, "Range: bytes=10-19", 10},
		{http.MethodGet, "Range: bytes=5000-", 0}, // 416
	} {
		before := e.Stats().BytesRead
		r := httptest.NewRequestWithContext(t.Context(), c.method, "/x", nil)
		if k, v, ok := strings.Cut(c.header, ": "); ok {
			r.Header.Set(k, v)
		}
		e.ServeFile(httptest.NewRecorder(), r, "README")
		spans, _ := s.ended(t)
		if got, span := int64(e.Stats().BytesRead-before), spanAttr(spans["roomstore.serve_file"], telemetry.AttrBytes); got != c.want || span != fmt.Sprint(c.want) {
			t.Errorf("%s %s: %d bytes read, span's roomstore.bytes %s; want %d", c.method, c.header, got, span, c.want)
		}
	}
}
