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

// TestAnotherEnginesEventsRecordTheirLagHere: B, with a MeterProvider,
// gets A's three events through NATS; B records the lag of each in
// roomstore.events.remote_lag, mirrors its transport's counters, and
// counts none of them as its own published events.
func TestAnotherEnginesEventsRecordTheirLagHere(t *testing.T) {
	srv := natstest.Start(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) }) // after the sides' shutdowns
	store := fileStore(t)
	a := newSide(t, store, srv.URL())
	b := newSideWith(t, store, srv.URL(), []roomstore.Option{roomstore.WithMeterProvider(mp)})
	before := time.Now()
	for i := range 3 {
		a.write(t, "alice", fmt.Sprint("f", i), "x")
	}
	b.rec.waitUntil(t, "A's three events at B", func(evs []events.Event) bool { return countFrom(evs, a.eng.ID()) == 3 })
	elapsed := time.Since(before)

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
	lag, ok := found["roomstore.events.remote_lag"].(metricdata.Histogram[float64])
	if !ok || len(lag.DataPoints) != 1 {
		t.Fatalf("roomstore.events.remote_lag = %#v, want one histogram point", found["roomstore.events.remote_lag"])
	}
	if p := lag.DataPoints[0]; p.Count != 3 || p.Sum < 0 || p.Sum > 3*elapsed.Seconds() || p.Attributes.Len() != 0 {
		t.Errorf("remote lag: %d values summing to %.6fs (attributes %v); want 3, each at most the %v the test waited", p.Count, p.Sum, p.Attributes.ToSlice(), elapsed)
	}
	sum := func(name string) int64 { // 0 for a counter never added to
		if found[name] == nil {
			return 0
		}
		s, ok := found[name].(metricdata.Sum[int64])
		if !ok {
			t.Errorf("%s = %#v, want an int64 sum", name, found[name])
			return -1
		}
		empty := attribute.NewSet()
		for _, dp := range s.DataPoints {
			if dp.Attributes.Equals(&empty) {
				return dp.Value
			}
		}
		return 0
	}
	st := b.eng.Stats()
	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"roomstore.events.transport.received", sum("roomstore.events.transport.received"), 3},
		{"roomstore.events.transport.published", sum("roomstore.events.transport.published"), 0},
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
