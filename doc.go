// Package roomstore is an embeddable storage engine that gives a "room" (a
// shared space of participants in a collaboration server) a file store with
// one small API (Exists, Stat, Open/Write/Close, Upload, Download,
// OpenReader, DownloadURL, ServeFile, List, Walk, Delete, RemoveAll, Move,
// resumable uploads (CreateResumable, WriteResumable, CommitResumable),
// and the io/fs view FS) and file events, over interchangeable backends:
// local disk (package backend_disk), S3, GCS, or memory. OpenURL picks the backend from a URL:
// "mem://", "file:///var/lib/rooms/r1", "s3://bucket/prefix",
// "gs://bucket/prefix".
//
// # Paths and folders
//
// Paths are slash-separated and case-sensitive; a leading slash is ignored
// and "", "/" and "." name the root. See roompath.Clean for what is
// rejected. Folders are implicit: a folder exists while a file lies beneath
// it. List returns a folder's direct children ordered bytewise by name, a
// folder comparing as its name followed by "/" (the order of object-store
// listings, so "t-/" sorts before "t/").
//
// # Handles
//
// Open returns a Handle; Write stages bytes; Close makes them visible
// atomically (readers see the old content or the new, never a part); Abort
// discards them. Without Overwrite, Close appends to the file as it is at
// Close; concurrent appends, even from other processes on the same store,
// each appear exactly once. A handle belongs to the participant that opened
// it (WithParticipant). A Write that fails, a Write or Close whose context
// is cancelled, an idle timeout and Shutdown all discard the handle.
//
// # Events
//
// After every successful Close the engine publishes EventFileUpdated,
// after every file it removes EventFileDeleted, and after every file it
// moves EventFileMoved (Event.Path the destination, Event.SourcePath the
// source), with the participant of the call. Handlers (On, Subscribe) run
// asynchronously, one goroutine per subscriber, in publish order; they may
// call the engine. A subscriber whose bounded queue overflowed gets an
// EventOverflow event where the gap is, with the number lost, so that it
// re-reads what it mirrors. See package events.
//
// With WithEventTransport the subscribers also get the events of every
// other engine on the same store, in this process or others (package
// events_nats carries them over NATS JetStream); Event.Origin tells which
// engine (ID) made the change, and an EventOverflow also marks events the
// transport knows it lost. A transport may hold a commit that outpaces it
// (Close, Delete, Move return once its event has room in the transport's
// queue, within the call's context): see the transport's package.
//
// # Moves
//
// Move renames a file atomically on disk and in memory. On S3 and GCS it
// copies on the server, pinned to the source's version, then removes the
// source guarded by that version, so an append to the source that commits
// meanwhile is moved too or makes Move fail with ErrConflict, losing
// nothing. A folder moves file by file: on object stores not atomically.
//
// # Access
//
// A context may carry a Policy (WithPolicy): what one participant may
// read and write. Every call made with it asks the policy first (Read for
// Exists, Stat, List, Walk, FS, Download, OpenReader, ServeFile and
// DownloadURL; Write for Open and again at Close, Upload, Delete, every
// file of a RemoveAll and every file of a Move at both its paths, and
// every call on a resumable upload, of its path) and a
// refusal is an *AccessError that changes nothing: a RemoveAll or a
// folder's Move that would touch one file the policy refuses touches
// none. List, Walk and FS show only what the policy lets be read, a folder
// while something readable lies beneath it. What a participant may not
// see tells it nothing: a call about it answers the same whether or not
// anything is there (refused, or "not there" where the participant may
// read whatever would be there), and a write that something it may not
// see stands in the way of is refused with an *AccessError rather than
// told why. A context without a policy is not restricted, and policies
// nest (WithPolicy). Events are not filtered: a server that tells
// participants of events (package roomserver does) asks each one's
// policy.
//
// # Errors
//
// Every error is an *fs.PathError (or wraps one) naming the operation and
// the caller's path, and matches with errors.Is one of fs.ErrNotExist,
// fs.ErrExist, fs.ErrInvalid (bad paths, offsets, handles, options),
// fs.ErrClosed (finished handles, a shut-down engine), fs.ErrPermission
// (another participant's handle, a right the context's Policy does not
// grant (an *AccessError), a store that refuses access),
// errors.ErrUnsupported, ErrIsFolder, ErrNotFolder, ErrTooManyHandles,
// ErrConflict, ErrPrecondition (a change whose IfMatch or IfNoneMatch did
// not hold), ErrQuotaExceeded (a commit past the store's Quota) and
// ErrStoreUnavailable (a missing bucket or directory, a broken staging
// area: never a missing file). A context's error is
// returned as is inside the PathError, and so is the error of a Policy
// that fails (never taken for a grant). Messages name the operation, the
// caller's path and the reason; they never show a host path or a system
// call, while the provider's error (an S3 or GCS API error, a
// syscall.Errno) stays reachable with errors.As.
//
// # Observability
//
// Every engine counts its calls, bytes, commits and events, and
// Engine.Stats returns the counters. WithMeterProvider adds them as
// OpenTelemetry metrics and WithTracerProvider a span per call; without
// either the engine never calls OpenTelemetry. A call is one public call:
// Exists, Stat, List, Open, Write, Close, Abort, Download, DownloadURL,
// OpenReader (until the Reader's Close), Delete, RemoveAll, Move, Upload,
// Walk (one range over it), ServeFile, a request to Handler (serve_url),
// the FS view's Open, Stat, ReadDir and ReadFile (fs_open, fs_stat,
// fs_read_dir, fs_read_file), and the history's Versions, OpenVersion
// (until the Reader's Close), Restore, Deleted, RestoreAll and Expire,
// and the resumable uploads' CreateResumable, Resumable (resumable),
// WriteResumable, CommitResumable and AbortResumable; operations are named in snake case
// (download_url, open_reader, remove_all). A composite call (Upload,
// RemoveAll, a folder's Move) counts once, its steps not at all. Its
// outcome comes from its error: ok, not_exist, exist, invalid, is_folder,
// not_folder, conflict, permission, closed, too_many_handles, unavailable,
// canceled, deadline_exceeded, precondition, or error for any other. Its span,
// "roomstore.<operation>", is a child of the span in the call's context,
// with the attributes roomstore.path (the store path as given; for a
// Write, Close or Abort, the handle's clean path),
// roomstore.destination (Move), roomstore.outcome and roomstore.bytes
// (where bytes move; a failed Write has none). Paths and messages go into
// spans as valid UTF-8 (invalid bytes replaced by U+FFFD) of at most
// roompath.MaxPathLen bytes, cut beyond that. A failed call's span has the
// status Error with the error's message, and the error recorded as an
// exception event, but for the outcomes that callers meet in the normal
// course of things: not_exist (a Stat that finds nothing), and closed for
// an Abort (the harmless deferred Abort after Close). A call that panics
// (in the caller's code: Upload's reader, the body of a loop over Walk,
// the http.ResponseWriter of ServeFile or Handler) counts with the outcome
// error, its span records the panic, and the panic goes on. The metrics,
// of the instrumentation scope "github.com/roomstore/roomstore", all
// synchronous but the transport's:
//
//   - roomstore.calls ({call}) and roomstore.call.duration (s, a
//     histogram), by roomstore.operation and roomstore.outcome;
//   - roomstore.bytes.written and roomstore.bytes.read (By), by
//     roomstore.operation;
//   - roomstore.handles.open ({handle}), an up-down counter;
//   - roomstore.commit.attempts, roomstore.commit.conflicts and
//     roomstore.commit.retries, by roomstore.operation (close, upload,
//     move);
//   - roomstore.events.published, roomstore.events.delivered and
//     roomstore.events.dropped ({event});
//   - with WithEventTransport, roomstore.events.remote_lag (s, a
//     histogram of the time from another engine's change to its event's
//     delivery here), and observable mirrors of TransportStats:
//     roomstore.events.transport.published, .retries, .gave_up,
//     .throttled, .received, .held, .duplicates, .lost, .gaps ({gap}),
//     .malformed, .foreign, .reconnects, and .queued (up-down), each with
//     the attribute roomstore.engine, the engine's ID: engines that share
//     a MeterProvider each have their own series, which ends when the
//     engine shuts down, where a sum over them would shrink and read as a
//     counter reset.
//
// # Deadlines
//
// Every call returns promptly once its context ends, waits for locks
// included (another commit to the same path, another call on the same
// handle). The io.WriteCloser methods of a Handle, which take no context,
// are bounded by WithHandleTimeout. Cleanup that must follow a failed or
// aborted write (removing staged bytes on a remote store) goes on in the
// background once the caller's context has ended, and Shutdown waits for
// it.
package roomstore
