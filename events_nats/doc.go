// Package events_nats is an events.Transport over NATS JetStream: the
// engines of one store, in any number of processes, deliver each other's
// file events to their subscribers, as if every change had been made
// through each of them. It also has S3Feed, a backend.Watcher over the S3
// bucket notifications a server publishes to core NATS (see S3 bucket
// notifications below).
//
//	nc, err := nats.Connect("nats://127.0.0.1:4222", events_nats.ConnOptions()...)
//	t, err := events_nats.New(nc)
//	eng, err := roomstore.OpenURL(ctx, "s3://bucket/rooms/r1", roomstore.WithEventTransport(t))
//
// # How events travel
//
// Each store has a subject, PREFIX.HASH (see Transport.Subject: HASH comes
// from the store's id, so ids, which may be host paths, never travel), and
// a stream of its own that captures it (Transport.Stream), created by the
// first engine that publishes (an engine that only reads a store makes
// nothing on the server; its receiver waits for the stream, told of its
// creation by JetStream's advisory, and delivers from the engine's
// start): file storage, messages kept for the retention
// (WithRetention), a de-duplication window of twice the publish timeout
// (at least two minutes, at most the retention). Two stores never share a
// subject or a stream, so their events never mix; a message that names
// another store all the same is counted (TransportStats.Foreign) and
// dropped.
//
// An engine's events are published in the order it committed them, one
// message at a time: a message carries every event waiting (up to 1,024), so
// a busy engine sends batches and an idle one single events, and each
// waits for the server's acknowledgement before the next goes. A message's
// Nats-Msg-Id header is the id of its first event, so a message that is
// retried after a lost acknowledgement is recognised by the server and
// stored once. Each event carries its number among its engine's events.
//
// Each engine reads the stream through a consumer of its own (an ephemeral
// one, held in the server's memory), from the moment it attached: its
// first subscription delivers what was published since then, even if
// NATS was unreachable at first (from a second before, in fact, so that a
// server clock up to a second behind this host's loses nothing; events of
// that second may arrive too). When the subscription breaks (a network
// blip, a NATS restart, the consumer lost, a message lost in flight, which
// a jump in the consumer's sequence shows), the engine subscribes again
// from the stream sequence after the last message it delivered, so events
// published meanwhile arrive once, late rather than never. Messages it
// has delivered, or its own, are never delivered again; the numbers of each
// engine's events drop whatever repeats nonetheless (counted as
// Duplicates).
//
// # Guarantees and their limits
//
//   - Every event that an engine's publisher got acknowledged reaches every
//     other engine of the store attached at the time and still attached,
//     once, in that engine's commit order, within the retention. Events of
//     different engines interleave as the stream received them, which for
//     two engines changing one path at once need not be the order of their
//     commits, nor the order that each engine's own subscribers saw (they
//     get their engine's events at commit, the others' when they arrive).
//   - The publisher retries a message with backoff until the publish
//     timeout (WithPublishTimeout) of its oldest event has passed since
//     that event was queued, and holds up to WithQueue events meanwhile; what
//     it gives up on is counted (GaveUp) and logged, and each other engine
//     tells its subscribers where events are missing with an overflow event
//     (events.TypeOverflow, with Dropped the number) when the next event of
//     that engine arrives. Its subscribers should then re-list.
//     A receiver learns where an engine's numbering starts from the first
//     of its events it gets, so events an engine gave up on before any of
//     its events reached that receiver go unsignalled there.
//   - Publishing holds a fast engine to NATS's pace rather than lose its
//     events: when WithQueue events wait already and the publisher's last
//     attempt succeeded, a commit waits for room before it returns
//     (counted, TransportStats.Throttled), no longer than the commit's
//     context. While the publisher is failing, a full queue gives the event
//     up at once instead, so a NATS outage holds a commit up for one
//     failing attempt (two seconds) at most.
//   - The receiver holds the other engines' events in the stream while a
//     subscriber's queue has no room for them (counted, Held), so a
//     subscriber that falls behind for a moment loses none. A subscriber
//     that has kept the receiver waiting for WithHold in all since its
//     queue last drained is not waited for again until it drains, and
//     meanwhile drops what its full queue cannot take, with an overflow
//     event, as it does local events.
//   - Overflow events are also what subscribers get when the stream held
//     messages that expired before this engine could read them, or when the
//     stream was deleted (the next publish creates it again, and what it
//     held is gone).
//   - An event committed by a process that dies before publishing it is
//     lost to the other engines, with no gap to tell: the change is in the
//     store, its event is not. Closing (the engine's Shutdown) publishes what
//     is queued, within the flush timeout. Engines with roomstore.WithWatch
//     tell such a change as an outside event (no participant) once their
//     scan finds it, or once the next engine of the store starts from the
//     state saved through this transport (see Coordinating the engines of
//     a store); without it, making that loss impossible would take an
//     outbox in the store, written in the commit, which this package does
//     not have.
//   - Lag is measured from the event's time on the publishing engine to its
//     delivery here; across hosts it includes their clocks' difference.
//
// # Coordinating the engines of a store
//
// Transport is also an events.Coordinator, through which the engines of a
// store with roomstore.WithWatch take turns at the periodic scan and keep
// what they know of the store across restarts (see roomstore.WithWatch):
//
//   - Leases (Lease, Release) are keys of a JetStream key-value bucket,
//     LeaseBucket, one for every store: HASH.NAME, HASH as in Subject, so
//     that store ids never reach NATS here either. A key holds its
//     holder's origin and the lease's expiry, and every change of it is a
//     compare-and-swap on its revision: created when absent, updated from
//     the revision read when the lease expired or is the caller's, deleted
//     by its holder's Release. Two origins never both hold a lease that
//     has not expired; expiry is judged by the clocks of the hosts
//     involved, so hosts whose clocks differ may see it apart by that much.
//   - States (SaveState, LoadState) are kept in a JetStream stream,
//     StateStream, one for every store, on subjects named the same way
//     (PREFIX.states.HASH.NAME): a state is chunks of 256 KiB at most,
//     so that it may be far larger than a message, and a manifest that
//     names them, published only if no other save got in since the
//     manifest it replaces was read; a state is replaced whole, and read
//     back only whole (its size and SHA-256 are checked), and what it
//     replaced is purged.
//
// The bucket and the stream have file storage on WithReplicas servers and
// keep what they hold until it is replaced: the lease (a hundred bytes)
// and the state (some 20 bytes a file) of a store that is gone stay until
// an operator removes them. The lease bucket is created by the first
// Lease, the state stream by the first SaveState; LoadState creates
// nothing. Every call honours its context, and fails at once, or when its
// context ends, while NATS is unreachable.
//
// # Errors and faults
//
// New and Attach fail only on bad arguments (fs.ErrInvalid) or after Close
// (fs.ErrClosed); nothing waits for the server. While it is unreachable
// the engine's own subscribers still get its events, the publisher queues
// and retries, and the receiver resubscribes with backoff, logging once
// when it starts failing and once when it recovers. A malformed message on
// the subject is counted (Malformed), logged (the first, second, fourth...)
// and skipped. TransportStats, through the engine's TransportStats, counts
// it all.
//
// # S3 bucket notifications
//
// An S3 server may publish a notification of each object it changes to
// core NATS, such as versitygw with --event-nats-url and
// --event-nats-topic: changes made by anyone, other S3 clients included.
// NewS3Feed turns those of one store (a bucket and a key prefix, as the S3
// backend opens it) into backend.Change values, for the engine to compare
// with what it knows:
//
//	nc, err := nats.Connect("nats://127.0.0.1:4222", events_nats.ConnOptions()...)
//	feed, err := events_nats.NewS3Feed(nc, "s3.events", "bucket", "rooms/r1")
//	err = feed.Watch(ctx, ready, changed) // until ctx ends
//
// A record of an object under the prefix (ObjectCreated, ObjectRemoved or
// any other event that names an object) is reported as Change{Path}, the
// key without the prefix; a folder marker (a key ending in '/') as
// Change{Path, Folder}. Another bucket's records, keys outside the prefix,
// and keys under it that no path of the store names (roompath's reserved
// names, such as the S3 backend's .roomstore/ objects, keys that are no
// clean path, the prefix's own folder marker) are counted and skipped, as
// are test events (s3:TestEvent). AWS URL-encodes keys as form values (a
// space as '+'); versitygw sends them as they are. A key with a '%' or a
// '+' is reported under each spelling it may stand for, the key as it is
// and its decodings, so that neither server's change is missed; the others
// name paths that did not change, which a Watcher may report.
//
// What the feed gets is at most once, in no order, and gateway-wide:
//
//   - Core NATS keeps nothing: a notification published while the feed's
//     subscription is away is gone. After the connection comes back the
//     feed reports Change{Lost: true} once its subscription is live again.
//     It reports Lost too for a message that is no S3 notification, or
//     whose record names no bucket, or no object of this bucket (versitygw
//     v1.8.0 sends its browser-form uploads, ObjectCreated:Post, with no
//     key), and when NATS dropped notifications because they came faster
//     than changed took them (WithS3FeedBuffer).
//   - A server sends a notification at most once, after the change, and
//     may fail to send it (versitygw v1.8.0 gives up on NATS for good after
//     two minutes without it, and under load may name another request's
//     bucket or key in a notification): nobody then knows that a change
//     went unreported.
//   - Notifications come in no particular order, so the last one of a path
//     need not tell its last change: each says only that the path may have
//     changed, and the engine reads the store to know how.
//   - Every notification of the server, any bucket's, reaches every feed
//     on the subject; each keeps its store's.
//
// So the feed is never trusted alone: it makes the store's changes show up
// soon, and the engine's reconciling scan, which compares the store with
// what it last knew, is what catches what the feed missed. S3Feed counts
// what it does (S3FeedStats).
package events_nats
