package events_nats_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/natstest"
)

// meterProvider returns a meter provider that reader reads, shut down
// when t ends: after the sides' shutdowns, which t registered later.
func meterProvider(t *testing.T) (*sdkmetric.ManualReader, *sdkmetric.MeterProvider) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return reader, mp
}

// TestAnotherEnginesEventsRecordTheirLagHere: B, with a MeterProvider,
// gets A's three events through NATS; B records the lag of each in
// roomstore.events.remote_lag, mirrors its transport's counters (under
// its ID), and counts none of them as its own published events.
//
// B delivers exactly three events: no overflow event can come with them.
// Its subscriber's queue (events.DefaultBuffer) cannot fill with three,
// and its link calls Gap only for a stream re-created (the server here
// never restarts), for messages expired (retention is an hour) or for
// events A gave up on, which would never reach B, so that the wait for
// all three would fail first.
func TestAnotherEnginesEventsRecordTheirLagHere(t *testing.T) {
	srv := natstest.Start(t)
	reader, mp := meterProvider(t)
	store := fileStore(t)
	a := newSide(t, store, srv.URL())
	b := newSideWith(t, store, srv.URL(), []roomstore.Option{roomstore.WithMeterProvider(mp)})
	before := time.Now()
	for i := range 3 {
		a.write(t, "alice", fmt.Sprint("f", i), "x")
	}
	b.rec.waitUntil(t, "A's three events at B", func(evs []events.Event) bool { return countFrom(evs, a.eng.ID()) == 3 })
	elapsed := time.Since(before)

	found := collect(t, reader)
	lag, ok := found["roomstore.events.remote_lag"].(metricdata.Histogram[float64])
	if !ok || len(lag.DataPoints) != 1 {
		t.Fatalf("roomstore.events.remote_lag = %#v, want one histogram point", found["roomstore.events.remote_lag"])
	}
	if p := lag.DataPoints[0]; p.Count != 3 || p.Sum < 0 || p.Sum > 3*elapsed.Seconds() || p.Attributes.Len() != 0 {
		t.Errorf("remote lag: %d values summing to %.6fs (attributes %v); want 3, each at most the %v the test waited", p.Count, p.Sum, p.Attributes.ToSlice(), elapsed)
	}
	sum := func(name string, attrs ...attribute.KeyValue) int64 { return sumAt(t, found, name, attrs...) }
	ofB := attribute.String("roomstore.engine", b.eng.ID())
	for _, name := range transportMirrors {
		if n := points(found, name); n != 1 {
			t.Errorf("%s has %d points, want 1 (B's)", name, n)
		}
	}
	st := b.eng.Stats()
	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"roomstore.events.transport.received", sum("roomstore.events.transport.received", ofB), 3},
		{"roomstore.events.transport.published", sum("roomstore.events.transport.published", ofB), 0},
		{"roomstore.events.transport.gaps", sum("roomstore.events.transport.gaps", ofB), 0},
		{"roomstore.events.transport.foreign", sum("roomstore.events.transport.foreign", ofB), 0},
		{"roomstore.events.transport.queued", sum("roomstore.events.transport.queued", ofB), 0},
		{"roomstore.events.published", sum("roomstore.events.published"), 0},
		{"roomstore.events.delivered", sum("roomstore.events.delivered"), 3},
		{"Stats().Transport.Received", int64(st.Transport.Received), 3},
		{"Stats().Transport.LagCount", int64(st.Transport.LagCount), 3},
		{"Stats().EventsPublished", int64(st.EventsPublished), 0},
		{"Stats().EventsDelivered", int64(st.EventsDelivered), 3},
		{"A's Stats().EventsPublished", int64(a.eng.Stats().EventsPublished), 3},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

// transportMirrors are the observable mirrors of TransportStats.
var transportMirrors = []string{
	"roomstore.events.transport.published", "roomstore.events.transport.retries",
	"roomstore.events.transport.gave_up", "roomstore.events.transport.throttled",
	"roomstore.events.transport.received", "roomstore.events.transport.held",
	"roomstore.events.transport.duplicates", "roomstore.events.transport.lost",
	"roomstore.events.transport.gaps", "roomstore.events.transport.malformed",
	"roomstore.events.transport.foreign", "roomstore.events.transport.reconnects",
	"roomstore.events.transport.queued",
}

// collect returns one collection of reader's metrics by name.
func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	found := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			found[m.Name] = m.Data
		}
	}
	return found
}

// sumAt returns the value of the int64 sum name at exactly attrs, 0 when
// it has none there.
func sumAt(t *testing.T, found map[string]metricdata.Aggregation, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	if found[name] == nil {
		return 0
	}
	s, ok := found[name].(metricdata.Sum[int64])
	if !ok {
		t.Errorf("%s = %#v, want an int64 sum", name, found[name])
		return -1
	}
	set := attribute.NewSet(attrs...)
	for _, dp := range s.DataPoints {
		if dp.Attributes.Equals(&set) {
			return dp.Value
		}
	}
	return 0
}

// points returns how many points the int64 sum name has.
func points(found map[string]metricdata.Aggregation, name string) int {
	s, _ := found[name].(metricdata.Sum[int64])
	return len(s.DataPoints)
}

// TestEachEnginesTransportMirrorsAreItsOwnSeries: A and B share a
// MeterProvider and both get C's events. Each mirrors its transport's
// counters under its own roomstore.engine; when B shuts down, its series
// end and A's go on unchanged, where a sum over both would have shrunk.
func TestEachEnginesTransportMirrorsAreItsOwnSeries(t *testing.T) {
	srv := natstest.Start(t)
	reader, mp := meterProvider(t)
	store := fileStore(t)
	metered := []roomstore.Option{roomstore.WithMeterProvider(mp)}
	a, b := newSideWith(t, store, srv.URL(), metered), newSideWith(t, store, srv.URL(), metered)
	c := newSide(t, store, srv.URL())
	for i := range 2 {
		c.write(t, "carol", fmt.Sprint("f", i), "x")
	}
	for _, s := range []*side{a, b} {
		s.rec.waitUntil(t, "C's two events", func(evs []events.Event) bool { return countFrom(evs, c.eng.ID()) == 2 })
	}
	const received = "roomstore.events.transport.received"
	ofA, ofB := attribute.String("roomstore.engine", a.eng.ID()), attribute.String("roomstore.engine", b.eng.ID())
	found := collect(t, reader)
	if na, nb, n := sumAt(t, found, received, ofA), sumAt(t, found, received, ofB), points(found, received); na != 2 || nb != 2 || n != 2 {
		t.Errorf("%s: A's %d, B's %d, in %d points; want 2, 2, in 2", received, na, nb, n)
	}
	b.shutdown(t)
	found = collect(t, reader)
	for _, name := range transportMirrors {
		if n := points(found, name); n != 1 {
			t.Errorf("after B's Shutdown, %s has %d points, want 1 (A's)", name, n)
		}
	}
	if na, nb := sumAt(t, found, received, ofA), sumAt(t, found, received, ofB); na != 2 || nb != 0 {
		t.Errorf("after B's Shutdown, %s: A's %d, B's %d; want 2 and none", received, na, nb)
	}
}
