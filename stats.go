package roomstore

import (
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/telemetry"
)

// Stats are an engine's counters since New, the numbers its OpenTelemetry
// metrics carry (see Observability in the package documentation), for
// servers that do not use OpenTelemetry. Every engine keeps them, with
// or without WithMeterProvider. It marshals to JSON as it is.
type Stats struct {
	// Calls counts the completed public calls by operation, then by
	// outcome: Calls["stat"]["not_exist"] is the number of Stat calls
	// that found nothing. Operations and outcomes are named as the
	// metrics' roomstore.operation and roomstore.outcome attributes;
	// those with no call are absent.
	Calls map[string]map[string]uint64
	// BytesWritten counts the bytes that Close, Upload and
	// CommitResumable committed (the handle's or the upload's own bytes,
	// not the file's earlier content).
	BytesWritten uint64
	// BytesRead counts the bytes returned to callers: by Download,
	// OpenReader's Readers (counted at their Close), the FS view
	// (ReadFile, and opened files at their Close), ServeFile and Handler
	// (the bodies sent).
	BytesRead uint64
	// OpenHandles is the number of write handles open now.
	OpenHandles int
	// CommitAttempts counts the backend commits tried: each attempt of a
	// Close's or an Upload's commit and of one file's move.
	CommitAttempts uint64
	// CommitConflicts counts the attempts that lost a race with another
	// writer (the backend's ErrConflict).
	CommitConflicts uint64
	// CommitRetries counts the conflicts after which the commit was to be
	// tried again (WithCommitAttempts allowed another attempt). Each of
	// the other CommitConflicts - CommitRetries ended its call with
	// ErrConflict; a retried one may still end its call, with the
	// context's error, when the context ends in the wait before the next
	// attempt.
	CommitRetries uint64
	// EventsPublished counts the engine's own events (one per file
	// updated, deleted or moved) published on its bus.
	EventsPublished uint64
	// EventsDelivered counts the events delivered to the engine's
	// subscribers, once per subscriber, for its own events and, with a
	// transport, others'. Overflow events count too, also those delivered
	// to an On handler that takes paths, which is not called for them.
	EventsDelivered uint64
	// EventsDropped counts the events lost to a full subscriber queue,
	// once per subscriber that lost one (the sum of the subscriptions'
	// Dropped).
	EventsDropped uint64
	// Transport is the event transport's counters (see
	// Engine.TransportStats), all zero without WithEventTransport.
	Transport events.TransportStats
	// Watch is what WithWatch did: scans, outside events, the scan lease
	// and saved states (see WatchStats); all zero without WithWatch.
	Watch WatchStats
	// Usage is, with a Quota (WithQuota), what the store holds as the
	// engine knows it, and the quota: its Bytes and Files are 0 until the
	// first call that needed them scanned the store (see Engine.Usage).
	// It is all zero without a Quota.
	Usage Usage
}

// Stats returns the engine's counters (see Stats), also after Shutdown.
// Each counter is read atomically, though not all at one instant. It
// costs what it builds (the maps of Calls, a few hundred atomic loads) and
// a moment under the engine's lock to count its handles: cheap enough to
// serve on every scrape, not on every call. Keeping the counters costs
// each call an atomic add or a few.
func (e *Engine) Stats() Stats {
	snap := e.tel.Snapshot()
	s := Stats{
		Calls:           map[string]map[string]uint64{},
		BytesWritten:    snap.BytesWritten,
		BytesRead:       snap.BytesRead,
		CommitAttempts:  snap.CommitAttempts,
		CommitConflicts: snap.CommitConflicts,
		CommitRetries:   snap.CommitRetries,
		EventsPublished: snap.EventsPublished,
		EventsDelivered: snap.EventsDelivered,
		EventsDropped:   snap.EventsDropped,
		Transport:       e.TransportStats(),
	}
	if e.watch != nil {
		s.Watch = e.watch.stats()
	}
	if u := e.usage; u != nil {
		bytes, files, kept, _ := u.snapshot()
		s.Usage = Usage{Bytes: bytes, Files: files, Kept: kept, Quota: u.q}
	}
	for op := range telemetry.NumOps {
		for o := range telemetry.NumOutcomes {
			n := snap.Calls[op][o]
			if n == 0 {
				continue
			}
			byOutcome := s.Calls[op.String()]
			if byOutcome == nil {
				byOutcome = map[string]uint64{}
				s.Calls[op.String()] = byOutcome
			}
			byOutcome[o.String()] = n
		}
	}
	e.mu.Lock()
	s.OpenHandles = len(e.handles)
	e.mu.Unlock()
	return s
}
