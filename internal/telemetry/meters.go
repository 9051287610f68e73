package telemetry

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/roomstore/roomstore/events"
)

// durationBuckets are the bounds, in seconds, of the duration and lag
// histograms: from 100 µs (a small file in memory) to a minute (a large
// upload), where OpenTelemetry's default bounds (0 to 10,000) suit
// milliseconds.
var durationBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
}

// meters holds an engine's synchronous instruments and, built once so
// that recording allocates nothing of its own, the measurement options
// of every operation and outcome.
type meters struct {
	meter                         metric.Meter
	calls                         metric.Int64Counter
	duration                      metric.Float64Histogram
	written, read                 metric.Int64Counter
	handles                       metric.Int64UpDownCounter
	attempts, conflicts, retries  metric.Int64Counter
	published, delivered, dropped metric.Int64Counter
	lag                           metric.Float64Histogram

	callAdd    [NumOps][NumOutcomes][]metric.AddOption
	callRecord [NumOps][NumOutcomes][]metric.RecordOption
	opAdd      [NumOps][]metric.AddOption
}

func newMeters(mt metric.Meter) (*meters, error) {
	m := &meters{meter: mt}
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := mt.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string) metric.Float64Histogram {
		h, err := mt.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(durationBuckets...))
		errs = append(errs, err)
		return h
	}
	m.calls = counter("roomstore.calls", "{call}", "Completed calls of the engine's public operations, by operation and outcome.")
	m.duration = histogram("roomstore.call.duration", "Duration of the engine's public calls, by operation and outcome.")
	m.written = counter("roomstore.bytes.written", "By", "Bytes committed through handles and uploads, by operation.")
	m.read = counter("roomstore.bytes.read", "By", "Bytes returned to callers by downloads, readers, the io/fs view and served files, by operation.")
	var err error
	m.handles, err = mt.Int64UpDownCounter("roomstore.handles.open", metric.WithUnit("{handle}"), metric.WithDescription("Write handles open now."))
	errs = append(errs, err)
	m.attempts = counter("roomstore.commit.attempts", "{attempt}", "Commit attempts (a Close's or an Upload's commit, one file's move), by operation.")
	m.conflicts = counter("roomstore.commit.conflicts", "{attempt}", "Commit attempts that lost a race with another writer, by operation.")
	m.retries = counter("roomstore.commit.retries", "{attempt}", "Commit attempts repeated after a conflict, by operation.")
	m.published = counter("roomstore.events.published", "{event}", "Events the engine published on its bus.")
	m.delivered = counter("roomstore.events.delivered", "{event}", "Events the engine's bus delivered to its subscribers, once per subscriber, overflow events included.")
	m.dropped = counter("roomstore.events.dropped", "{event}", "Events lost to a full subscriber queue, once per subscriber.")
	m.lag = histogram("roomstore.events.remote_lag", "Time from another engine's change to its event's delivery to this engine's bus, through the event transport.")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for op := range NumOps {
		opAttr := attribute.String(AttrOperation, op.String())
		m.opAdd[op] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(opAttr))}
		for o := range NumOutcomes {
			set := metric.WithAttributeSet(attribute.NewSet(opAttr, attribute.String(AttrOutcome, o.String())))
			m.callAdd[op][o] = []metric.AddOption{set}
			m.callRecord[op][o] = []metric.RecordOption{set}
		}
	}
	return m, nil
}

// observeTransport registers the observable mirrors of a transport's
// counters, observed with the attribute AttrEngine set to origin.
func (m *meters) observeTransport(origin string, stats func() events.TransportStats) (metric.Registration, error) {
	type mirror struct {
		inst metric.Int64Observable
		get  func(events.TransportStats) uint64
	}
	var (
		mirrors []mirror
		errs    []error
	)
	counterOf := func(name, unit, desc string, get func(events.TransportStats) uint64) {
		c, err := m.meter.Int64ObservableCounter("roomstore.events.transport."+name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		mirrors = append(mirrors, mirror{c, get})
	}
	counter := func(name, desc string, get func(events.TransportStats) uint64) { counterOf(name, "{event}", desc, get) }
	counter("published", "The engine's events the transport's server acknowledged.", func(s events.TransportStats) uint64 { return s.Published })
	counter("retries", "Publish attempts repeated after a failure or timeout.", func(s events.TransportStats) uint64 { return s.Retries })
	counter("gave_up", "The engine's events the transport dropped unpublished.", func(s events.TransportStats) uint64 { return s.GaveUp })
	counter("throttled", "Commits held until the transport's queue had room.", func(s events.TransportStats) uint64 { return s.Throttled })
	counter("received", "Other engines' events delivered to the engine's bus.", func(s events.TransportStats) uint64 { return s.Received })
	counter("held", "Times delivery of other engines' events waited for a subscriber's queue.", func(s events.TransportStats) uint64 { return s.Held })
	counter("duplicates", "Events recognised as repeated and not delivered again.", func(s events.TransportStats) uint64 { return s.Duplicates })
	counter("lost", "Other engines' events known lost (signalled to subscribers).", func(s events.TransportStats) uint64 { return s.Lost })
	counterOf("gaps", "{gap}", "Times the transport told the engine's subscribers of lost events, some of unknown number.", func(s events.TransportStats) uint64 { return s.Gaps })
	counter("malformed", "Messages that could not be decoded.", func(s events.TransportStats) uint64 { return s.Malformed })
	counter("foreign", "Messages of another store on this store's subject, not delivered.", func(s events.TransportStats) uint64 { return s.Foreign })
	counter("reconnects", "Resumptions of delivery after the subscription broke.", func(s events.TransportStats) uint64 { return s.Reconnects })
	queued, err := m.meter.Int64ObservableUpDownCounter("roomstore.events.transport.queued", metric.WithUnit("{event}"),
		metric.WithDescription("The engine's events waiting to be published now."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	insts := []metric.Observable{queued}
	for _, mr := range mirrors {
		insts = append(insts, mr.inst)
	}
	engine := metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrEngine, origin)))
	return m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := stats()
		for _, mr := range mirrors {
			o.ObserveInt64(mr.inst, int64(mr.get(s)), engine)
		}
		o.ObserveInt64(queued, int64(s.Queued), engine)
		return nil
	}, insts...)
}

// observeUsage reports what the store holds and its quota, as the engine
// knows them (usage: ok false while unknown), with the attribute
// AttrEngine.
func (m *meters) observeUsage(origin string, usage func() (bytes, files, kept int64, ok bool), quotaBytes, quotaFiles int64) (metric.Registration, error) {
	gauge := func(name, unit, desc string) (metric.Int64ObservableGauge, error) {
		return m.meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
	}
	ub, err1 := gauge("roomstore.usage.bytes", "By", "The sizes of the store's files together, as the engine knows them.")
	uf, err2 := gauge("roomstore.usage.files", "{file}", "The number of the store's files, as the engine knows it.")
	qb, err3 := gauge("roomstore.quota.bytes", "By", "The store's byte quota (absent: unbounded).")
	qf, err4 := gauge("roomstore.quota.files", "{file}", "The store's file quota (absent: unbounded).")
	uk, err5 := gauge("roomstore.usage.kept_bytes", "By", "The sizes of the past versions the store keeps together, as the engine knows them.")
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return nil, err
	}
	engine := metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrEngine, origin)))
	return m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if bytes, files, kept, ok := usage(); ok {
			o.ObserveInt64(ub, bytes, engine)
			o.ObserveInt64(uf, files, engine)
			o.ObserveInt64(uk, kept, engine)
		}
		if quotaBytes > 0 {
			o.ObserveInt64(qb, quotaBytes, engine)
		}
		if quotaFiles > 0 {
			o.ObserveInt64(qf, quotaFiles, engine)
		}
		return nil
	}, ub, uf, uk, qb, qf)
}
