package events

import (
	"context"
	"time"
)

// Transport carries events between the buses of the engines that share one
// store, in this process or in others, so that each engine's subscribers see
// every engine's changes. Package events_nats implements it over NATS
// JetStream; a Transport may serve any number of engines and stores at once.
//
// An engine keeps delivering its own events to its own subscribers directly;
// the transport adds the others'. Its contract, which every implementation
// states how it meets:
//
//   - Attach connects one engine (origin) of one store to the transport and
//     returns the Link through which the engine publishes. From then on the
//     transport hands the bus every event that other engines of the same
//     store publish, with Bus.Publish, each once, in the order each engine
//     published them, and never the engine's own, nor another store's.
//   - Where it knows it lost events for the bus (they were given up on by
//     their publisher, expired, or the transport's own state was lost), it
//     calls Bus.Gap, so that subscribers re-read what they mirror.
//   - It may hold back delivery while a subscriber's queue has no room, with
//     Bus.WaitRoom, if the events wait meanwhile somewhere durable.
//   - Attach does not wait for the transport's server: a transport that is
//     unreachable at first connects in the background, and the engine serves
//     its local events meanwhile.
type Transport interface {
	// Attach connects the engine origin of the store store to the transport
	// and delivers the other engines' events of that store to bus until the
	// Link is closed. store and origin are non-empty; an Attach for an
	// origin that is attached already fails. Errors wrap fs.ErrInvalid for
	// unusable arguments and fs.ErrClosed for a closed transport.
	Attach(store, origin string, bus *Bus) (Link, error)
}

// Link is one engine's attachment to a Transport.
type Link interface {
	// Publish hands e, an event of the engine, to the transport for the
	// other engines. It does not wait for the network, except to hold an
	// engine that commits faster than the transport carries its events to
	// the transport's pace (a full queue while the transport keeps up); it
	// waits no longer than ctx, the context of the commit, allows, and
	// gives e up (counted, and a gap to the others) rather than wait on a
	// failing transport. Events published through one Link reach the
	// others in the order of the Publish calls. e.ID (unique among all
	// engines' events) and e.Origin (the engine's origin) are set.
	Publish(ctx context.Context, e Event)
	// Stats returns the link's counters so far.
	Stats() TransportStats
	// Close publishes what is still queued, for as long as ctx allows (the
	// rest is given up on and counted), stops delivery to the bus, and
	// returns ctx's error if it ended first. Once it returns, the bus gets
	// no more events from the link. It is idempotent.
	Close(ctx context.Context) error
}

// TransportStats are a Link's counters, each since Attach.
type TransportStats struct {
	// Published counts the engine's events the transport's server has
	// acknowledged.
	Published uint64
	// Queued is how many of the engine's events wait to be published now.
	Queued uint64
	// Retries counts publish attempts repeated after a failure or timeout.
	Retries uint64
	// GaveUp counts the engine's events that could not be published within
	// the transport's bound (or found its queue full) and were dropped; the
	// other engines learn of the gap from the next event that gets through.
	GaveUp uint64
	// Throttled counts Publish calls that waited for room in a full queue
	// while the transport kept up: commits held to the transport's pace.
	Throttled uint64
	// Received counts other engines' events delivered to the bus.
	Received uint64
	// Held counts the times delivery of other engines' events waited for
	// a subscriber's queue to have room for them (Bus.WaitRoom).
	Held uint64
	// Duplicates counts events the transport recognised as already
	// published or delivered and did not deliver again (a publish retried
	// after a lost acknowledgement, a redelivery after a reconnection).
	Duplicates uint64
	// Lost counts other engines' events the link knows it could not
	// deliver (reported to the bus with Bus.Gap); Gaps counts the Gap calls,
	// some of which (a lost stream, say) cannot say how many were lost.
	Lost, Gaps uint64
	// Malformed counts messages that could not be decoded, and Foreign
	// those that named another store; neither is delivered.
	Malformed, Foreign uint64
	// Reconnects counts how often the link resumed delivery after its
	// subscription to the server broke.
	Reconnects uint64
	// LagCount, LagTotal and LagMax describe the delivered events' lag,
	// from their Time (when the change became visible on the publishing
	// engine) to their delivery to the bus here: the mean is
	// LagTotal/LagCount. Across hosts it includes their clocks' skew.
	LagCount uint64
	LagTotal time.Duration
	LagMax   time.Duration
}

// Coordinator is implemented by a Transport that also coordinates the
// engines of a store: leases, each held by one engine at a time, and
// states, which outlive every engine. store and origin are as in Attach; a
// name is one or more letters, digits, '_' and '-'. Leases and states are
// kept apart per store, so that engines of different stores never see
// each other's.
//
// Every method honours ctx, and fails (at the latest when ctx ends) while
// the transport's server is unreachable. Errors wrap fs.ErrInvalid for
// unusable arguments and fs.ErrClosed for a closed transport; any other
// error is the transport's, and says nothing of the lease or the state.
type Coordinator interface {
	// Lease reports whether origin holds the lease name of store until
	// at least ttl after the call began: it takes the lease when nobody
	// holds it or its holder let it expire, and extends it when origin
	// holds it already. It reports false while another origin holds it.
	// Of the origins that call Lease for one lease at once, at most one
	// gets true until the lease it got expires. Expiry is judged by each
	// host's clock, so hosts whose clocks differ by d may see a lease
	// expire d apart.
	Lease(ctx context.Context, store, name, origin string, ttl time.Duration) (bool, error)
	// Release gives up the lease name of store if origin holds it, so that
	// another origin may take it at once; otherwise it changes nothing.
	Release(ctx context.Context, store, name, origin string) error
	// SaveState replaces the state name of store with data, which may
	// be megabytes. A LoadState returns the whole of one saved state,
	// never part of one nor a mix of two: it fails instead.
	SaveState(ctx context.Context, store, name string, data []byte) error
	// LoadState returns the data last saved as the state name of store,
	// or an error wrapping fs.ErrNotExist if none was.
	LoadState(ctx context.Context, store, name string) ([]byte, error)
}

// Flusher is implemented by a Link that can wait for the events it was
// given.
type Flusher interface {
	// Flush waits until every event that Publish was given before Flush
	// was called has been either acknowledged by the transport's server or
	// given up on (TransportStats.GaveUp), and returns ctx's error if ctx
	// ends first. After Close it returns at once.
	Flush(ctx context.Context) error
}
