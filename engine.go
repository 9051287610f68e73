// Package roomstore is an embeddable storage engine that gives a "room" (a
// shared space of participants in a collaboration server) a file store with
// one small API (Exists, Stat, Open/Write/Close, Upload, Download,
// OpenReader, DownloadURL, ServeFile, List, Walk, Delete, RemoveAll, Move,
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
// file of a RemoveAll and every file of a Move at both its paths) and a
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
// ErrConflict, ErrQuotaExceeded (a commit past the store's Quota) and
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
// and the FS view's Open, Stat, ReadDir and ReadFile (fs_open, fs_stat,
// fs_read_dir, fs_read_file); operations are named in snake case
// (download_url, open_reader, remove_all). A composite call (Upload,
// RemoveAll, a folder's Move) counts once, its steps not at all. Its
// outcome comes from its error: ok, not_exist, exist, invalid, is_folder,
// not_folder, conflict, permission, closed, too_many_handles, unavailable,
// canceled, deadline_exceeded, or error for any other. Its span,
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

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"iter"
	mrand "math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/roomstore/roomstore/backend"
	_ "github.com/roomstore/roomstore/backend_disk" // registers file://
	_ "github.com/roomstore/roomstore/backend_mem"  // registers mem://
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// Event topics.
const (
	// EventFileUpdated is published after every successful Close.
	EventFileUpdated = "file.updated"
	// EventFileDeleted is published after every file Delete or RemoveAll
	// actually removed.
	EventFileDeleted = "file.deleted"
	// EventFileMoved is published after every file Move moved, with
	// Event.Path the destination and Event.SourcePath the source.
	EventFileMoved = "file.moved"
	// EventOverflow is the Type of the event that tells a subscriber its
	// queue was full and it lost Event.Dropped events at that point of its
	// stream, so that it re-reads what it mirrors (List, Walk). It is no
	// topic: every handler that takes an Event gets it, whatever its
	// topics; handlers that take paths never do. See package events.
	EventOverflow = events.TypeOverflow
)

// OpenOptions say how Open treats an existing file.
type OpenOptions struct {
	// Overwrite replaces the file's content at Close. Without it, Close
	// appends the written bytes to the file as it is then (creating it
	// when missing).
	Overwrite bool
	// Exclusive fails with fs.ErrExist if the file exists at Open or
	// appears before Close; of several racing exclusive creators, also
	// across engines sharing a store, exactly one wins.
	Exclusive bool
	// Size, when positive, is the number of bytes the caller means to
	// write: with a Quota, Open refuses with ErrQuotaExceeded a size the
	// quota cannot hold, before the first byte. It bounds nothing else.
	Size int64
}

// Entry describes a file or folder.
type Entry struct {
	Name     string    // base name, no trailing slash ("" for the root)
	Path     string    // full clean path ("" for the root)
	IsFolder bool      // an implicit folder
	Size     int64     // 0 for folders
	ModTime  time.Time // time of the last commit; zero for folders
	// ETag identifies the version of the file's content: it changes with
	// every commit, and a move may change it. It is opaque and unquoted;
	// "" for folders, and in the entries of List and Walk on S3, whose
	// listings do not carry it (Stat and OpenReader always set it).
	ETag string
}

// File is a whole downloaded file.
type File struct {
	Name string // base name
	Path string // full clean path
	// MimeType comes from the extension, else from the content
	// (http.DetectContentType).
	MimeType string
	Data     []byte    // the whole content, the caller's to keep
	Size     int64     // len(Data)
	ModTime  time.Time // time of the last commit
}

// Engine is a room's file store. It is safe for concurrent use; several
// Engines (in one process or many) may share one store.
type Engine struct {
	b        backend.Backend
	cfg      config
	bus      *events.Bus
	id       string      // the engine's origin in its events
	storeID  string      // "" unless a transport needed it
	link     events.Link // nil without WithEventTransport
	tel      *telemetry.Recorder
	evSeq    atomic.Uint64
	owned    bool // Shutdown closes b: OpenURL built it
	seed     maphash.Seed
	stripes  [64]*semaphore.Weighted // order commit+publish per path within this engine
	inflight sync.WaitGroup
	cleanups sync.WaitGroup // aborts of writers that go on after their call
	usage    *usage         // nil without a Quota

	mu       sync.Mutex
	closed   bool
	handles  map[string]*Handle
	reserved int // handles being opened, counted against the limit

	stopOnce sync.Once
	stopped  chan struct{} // closed when Shutdown's work is all done
	stopErr  error
}

// New returns an Engine over b. b stays the caller's: Shutdown does not
// close it. New fails only on a nil backend or a bad Option, with an
// *fs.PathError wrapping fs.ErrInvalid.
func New(b backend.Backend, opts ...Option) (*Engine, error) {
	if b == nil {
		return nil, &fs.PathError{Op: "new", Path: "", Err: fmt.Errorf("%w: nil backend", fs.ErrInvalid)}
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, &fs.PathError{Op: "new", Path: "", Err: err}
		}
	}
	if cfg.selfSign && cfg.baseURL == nil {
		return nil, &fs.PathError{Op: "new", Path: "", Err: badOption("WithPresign(false) needs WithBaseURL: the URLs the engine signs are served below it")}
	}
	if cfg.signingKey == nil {
		cfg.signingKey = make([]byte, MinSigningKeyLen)
		_, _ = rand.Read(cfg.signingKey)
	}
	id := newEngineID()
	tel, err := telemetry.New(id, cfg.meters, cfg.tracers)
	if err != nil {
		return nil, &fs.PathError{Op: "new", Path: "", Err: badOption("WithMeterProvider: %v", err)}
	}
	var obs events.Observer = tel
	var u *usage
	if cfg.quota != (Quota{}) {
		u = &usage{q: cfg.quota}
		obs = observer{Recorder: tel, u: u}
	}
	bus, err := events.New(events.WithBuffer(cfg.eventBuffer), events.WithLogger(cfg.logger), events.WithObserver(obs))
	if err != nil {
		return nil, &fs.PathError{Op: "new", Path: "", Err: err}
	}
	e := &Engine{
		b:       b,
		cfg:     cfg,
		bus:     bus,
		id:      id,
		tel:     tel,
		seed:    maphash.MakeSeed(),
		handles: map[string]*Handle{},
		stopped: make(chan struct{}),
		usage:   u,
	}
	if u != nil {
		if err := tel.ObserveUsage(u.snapshot, u.q.Bytes, u.q.Files); err != nil {
			_ = bus.Close(context.Background())
			return nil, &fs.PathError{Op: "new", Path: "", Err: badOption("WithMeterProvider: %v", err)}
		}
	}
	for i := range e.stripes {
		e.stripes[i] = semaphore.NewWeighted(1)
	}
	if cfg.transport != nil {
		if err := e.attach(); err != nil {
			_ = tel.Close()
			_ = bus.Close(context.Background())
			return nil, &fs.PathError{Op: "new", Path: "", Err: err}
		}
		if err := tel.ObserveTransport(e.link.Stats); err != nil {
			_ = tel.Close()
			_ = e.link.Close(context.Background())
			_ = bus.Close(context.Background())
			return nil, &fs.PathError{Op: "new", Path: "", Err: badOption("WithMeterProvider: %v", err)}
		}
	}
	return e, nil
}

// newEngineID returns 16 random hex digits: engines, even in different
// processes, never share an id.
func newEngineID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// attach connects the engine to its transport under the store's name.
func (e *Engine) attach() error {
	store := e.cfg.storeID
	if store == "" {
		if id, ok := e.b.(backend.Identifier); ok {
			store = id.StoreID()
		}
	}
	if store == "" {
		return badOption("WithEventTransport: the backend cannot name its store; name it with WithStoreID")
	}
	link, err := e.cfg.transport.Attach(store, e.id, e.bus)
	if err != nil {
		return fmt.Errorf("attach the event transport: %w", err)
	}
	e.storeID, e.link = store, link
	return nil
}

// ID returns the engine's id: 16 hex digits, unique among engines, which
// its events carry as Event.Origin.
func (e *Engine) ID() string { return e.id }

// StoreID returns the name under which the engine's transport exchanges
// events (see WithStoreID), or "" without WithEventTransport.
func (e *Engine) StoreID() string { return e.storeID }

// TransportStats returns the counters of the engine's event transport
// (published, received, given up, lag...; see events.TransportStats), all
// zero without WithEventTransport.
func (e *Engine) TransportStats() events.TransportStats {
	if e.link == nil {
		return events.TransportStats{}
	}
	return e.link.Stats()
}

// OpenURL opens the backend named by rawURL (see package backend for the
// registry; mem:// and file:// are built in, s3:// and gs:// register when
// their packages are imported) and returns an Engine over it. The Engine
// owns that backend: Shutdown closes it. Errors are *fs.PathError values
// on the URL (its password, if any, redacted): fs.ErrInvalid for a bad
// URL or option, and whatever the backend's opener reports (a missing
// bucket is ErrStoreUnavailable).
func OpenURL(ctx context.Context, rawURL string, opts ...Option) (*Engine, error) {
	return openURL(ctx, rawURL, backend.Open, opts)
}

// OpenExistingURL is OpenURL for a store that already exists: where
// opening would create the store (file:// makes its directory, mem://name
// its named store) and there is none, it fails with an error wrapping
// fs.ErrNotExist and creates nothing. An s3:// or gs:// store is a prefix
// of a bucket that must exist: it opens as with OpenURL. A server opens a
// room with it for callers that may only read, so that a read never
// creates a store.
func OpenExistingURL(ctx context.Context, rawURL string, opts ...Option) (*Engine, error) {
	return openURL(ctx, rawURL, backend.OpenExisting, opts)
}

func openURL(ctx context.Context, rawURL string, open func(context.Context, string) (backend.Backend, error), opts []Option) (*Engine, error) {
	b, err := open(ctx, rawURL)
	if err != nil {
		return nil, &fs.PathError{Op: "openurl", Path: redact(rawURL), Err: err}
	}
	e, err := New(b, opts...)
	if err != nil {
		b.Close()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &fs.PathError{Op: "openurl", Path: redact(rawURL), Err: err}
	}
	e.owned = true
	return e, nil
}

// redact hides a password in a store URL.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	switch {
	case err != nil:
		return "(malformed URL)"
	case u.User != nil:
		return u.Redacted()
	}
	return rawURL
}

type participantKey struct{}

// WithParticipant returns a context that carries the participant id; the
// engine records it as the owner of handles opened with it and in the
// events of changes made with it.
func WithParticipant(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, participantKey{}, id)
}

// ParticipantFrom returns the participant id in ctx, or "".
func ParticipantFrom(ctx context.Context) string {
	id, _ := ctx.Value(participantKey{}).(string)
	return id
}

// begin admits an operation unless the engine is shut down; the caller
// must call e.inflight.Done when it ends.
func (e *Engine) begin(op, p string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return &fs.PathError{Op: op, Path: p, Err: fs.ErrClosed}
	}
	e.inflight.Add(1)
	return nil
}

// enter validates the path and admits the operation.
func (e *Engine) enter(op, p string, t roompath.Target) (string, error) {
	clean, err := roompath.Clean(p, t)
	if err != nil {
		return "", &fs.PathError{Op: op, Path: p, Err: err}
	}
	if err := e.begin(op, p); err != nil {
		return "", err
	}
	return clean, nil
}

// Exists reports whether a file or folder is at path. A path through a
// file reports false. A path the Policy of ctx does not let be read
// yields an *AccessError (see Access in the package documentation).
func (e *Engine) Exists(ctx context.Context, p string) (_ bool, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Exists, p)
	defer call.End(&err)
	clean, err := e.enter("exists", p, roompath.TargetAny)
	if err != nil {
		return false, err
	}
	defer e.inflight.Done()
	info, err := e.b.Stat(ctx, clean)
	if g := gateOf(ctx); !g.open() {
		if absent, err := e.seeing(g, "exists", p, clean, info, err); absent || err != nil {
			return false, err
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, pathError("exists", p, err)
	}
	return info.IsFolder || !folderMeant(p, clean), nil
}

// folderMeant reports a path written with a trailing slash, which names a
// folder and so never a file.
func folderMeant(p, clean string) bool { return clean != "" && strings.HasSuffix(p, "/") }

// Stat describes the file or folder at path (fs.ErrNotExist when there is
// neither). A path the Policy of ctx does not let be read yields an
// *AccessError.
func (e *Engine) Stat(ctx context.Context, p string) (_ Entry, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Stat, p)
	defer call.End(&err)
	clean, err := e.enter("stat", p, roompath.TargetAny)
	if err != nil {
		return Entry{}, err
	}
	defer e.inflight.Done()
	info, err := e.b.Stat(ctx, clean)
	if g := gateOf(ctx); !g.open() {
		absent, err := e.seeing(g, "stat", p, clean, info, err)
		if absent {
			err = pathError("stat", p, fs.ErrNotExist)
		}
		if err != nil {
			return Entry{}, err
		}
	}
	if err != nil {
		return Entry{}, pathError("stat", p, err)
	}
	if !info.IsFolder && folderMeant(p, clean) {
		return Entry{}, &fs.PathError{Op: "stat", Path: p, Err: ErrNotFolder}
	}
	return entry(info), nil
}

func entry(i backend.Info) Entry {
	return Entry{Name: i.Name(), Path: i.Path, IsFolder: i.IsFolder, Size: i.Size, ModTime: i.ModTime, ETag: i.ETag}
}

// checkParents fails with ErrNotFolder when an ancestor of p is a file. It
// walks up from the parent and stops at the first folder, since a folder's
// own ancestors are folders.
func (e *Engine) checkParents(ctx context.Context, p string) error {
	for dir := roompath.Parent(p); dir != ""; dir = roompath.Parent(dir) {
		info, err := e.b.Stat(ctx, dir)
		switch {
		case err == nil && info.IsFolder:
			return nil
		case err == nil:
			return ErrNotFolder
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	return nil
}

// Download returns the whole file at path. Use OpenReader for files too big
// to hold in memory. A file the Policy of ctx does not let be read yields
// an *AccessError.
func (e *Engine) Download(ctx context.Context, p string) (_ *File, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Download, p)
	defer call.End(&err)
	clean, err := e.enter("download", p, roompath.TargetFile)
	if err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	if err := gateOf(ctx).check(Read, clean); err != nil {
		return nil, pathError("download", p, err)
	}
	r, info, err := e.b.Read(ctx, clean, 0, -1)
	if err != nil {
		return nil, pathError("download", p, err)
	}
	defer r.Close()
	data, err := readWhole(r, info.Size)
	if err != nil {
		return nil, pathError("download", p, err)
	}
	n := int64(len(data))
	call.SetBytes(n)
	e.tel.BytesRead(ctx, telemetry.Download, n)
	return &File{
		Name:     info.Name(),
		Path:     clean,
		MimeType: mimeType(clean, data),
		Data:     data,
		Size:     int64(len(data)),
		ModTime:  info.ModTime,
	}, nil
}

// readWhole reads r to its end into one buffer sized for a file of size
// bytes.
func readWhole(r io.Reader, size int64) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

func mimeType(p string, head []byte) string {
	if t := mime.TypeByExtension(path.Ext(p)); t != "" {
		return t
	}
	return http.DetectContentType(head)
}

// List returns the direct children of the folder at path ("" or "/" for
// the root), ordered bytewise by name with a folder's name taken as ending
// in "/". The root of an empty store lists empty; a missing folder yields
// fs.ErrNotExist and a file ErrNotFolder. With a Policy in ctx, List
// returns only the entries it lets be read (a folder while a readable
// file lies beneath it), and a folder it shows nothing of yields an
// *AccessError.
func (e *Engine) List(ctx context.Context, p string) (_ []Entry, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.List, p)
	defer call.End(&err)
	clean, err := e.enter("list", p, roompath.TargetAny)
	if err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	out, err := e.listSeen(gateOf(ctx), clean, 0)
	if err != nil {
		return nil, pathError("list", p, err)
	}
	return out, nil
}

// ListMax is List for a caller that takes at most max entries (max >= 1):
// a folder that holds more (counted before the Policy of ctx leaves any
// out) fails with ErrTooManyEntries once max+1 have been read, so that
// the work and memory of one listing stay bounded whatever the folder
// holds. It fails otherwise as List does, and with fs.ErrInvalid for a max
// below 1.
func (e *Engine) ListMax(ctx context.Context, p string, max int) (_ []Entry, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.List, p)
	defer call.End(&err)
	if max < 1 {
		return nil, &fs.PathError{Op: "list", Path: p, Err: fmt.Errorf("%w: max %d entries", fs.ErrInvalid, max)}
	}
	clean, err := e.enter("list", p, roompath.TargetAny)
	if err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	out, err := e.listSeen(gateOf(ctx), clean, max)
	if err != nil {
		return nil, pathError("list", p, err)
	}
	return out, nil
}

// listSeen is list through a gate: what the participant may see of the
// folder clean, a folder it sees nothing in being, for it, not there
// (see Engine.see): fs.ErrNotExist or an *AccessError.
func (e *Engine) listSeen(g gate, clean string, max int) ([]Entry, error) {
	if g.open() {
		return e.listMax(g.ctx, clean, max)
	}
	g = g.memoized()
	s, err := g.beneath(Read, clean)
	switch {
	case err != nil:
		return nil, err
	case s.Empty():
		// Nothing beneath may be seen, so nothing is listed.
		v, err := g.hidden(clean)
		if v == seenAbsent && clean != "" {
			return nil, fs.ErrNotExist
		}
		return nil, refused(Read, err)
	}
	out, err := e.listMax(g.ctx, clean, max)
	switch {
	case err != nil && errors.Is(err, ErrTooManyEntries):
		return nil, err
	case err != nil && errors.Is(err, ErrNotFolder):
		// A file: said so only to a participant that may read it.
		ok, aerr := g.allowed(Read, clean)
		switch {
		case aerr != nil:
			return nil, aerr
		case ok:
			return nil, err
		case s.All:
			return nil, fs.ErrNotExist
		}
		return nil, &AccessError{Right: Read}
	case err != nil:
		// Nothing there, or the store failed: said only to a participant
		// that may read what would be there.
		if ok, aerr := g.allowed(Read, clean); aerr != nil || !(ok || s.All) {
			return nil, refused(Read, aerr)
		}
		return nil, err
	case s.All:
		return out, nil
	}
	if out, err = e.filter(g, out); err != nil {
		return nil, err
	}
	if len(out) == 0 && clean != "" {
		v, err := g.hidden(clean)
		if v == seenAbsent {
			return nil, fs.ErrNotExist
		}
		return nil, refused(Read, err)
	}
	return out, nil
}

// list is List of a clean path inside an admitted operation, with the
// backend's error.
func (e *Engine) list(ctx context.Context, clean string) ([]Entry, error) {
	return e.listMax(ctx, clean, 0)
}

// listMax is list that fails with ErrTooManyEntries past max entries (0:
// no bound), having read max+1.
func (e *Engine) listMax(ctx context.Context, clean string, max int) ([]Entry, error) {
	out, err := collect(e.b.List(ctx, clean), max)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 && clean != "" {
		info, err := e.b.Stat(ctx, clean)
		switch {
		case err != nil:
			return nil, err
		case !info.IsFolder:
			return nil, ErrNotFolder
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(sortKey(a), sortKey(b)) })
	return out, nil
}

func collect(seq iter.Seq2[backend.Info, error], max int) ([]Entry, error) {
	var out []Entry
	for info, err := range seq {
		if err != nil {
			return nil, err
		}
		if max > 0 && len(out) == max {
			return nil, fmt.Errorf("%w: more than %d", ErrTooManyEntries, max)
		}
		out = append(out, entry(info))
	}
	return out, nil
}

func sortKey(e Entry) string {
	if e.IsFolder {
		return e.Name + "/"
	}
	return e.Name
}

// Delete removes the file at path and publishes EventFileDeleted. A missing
// file yields fs.ErrNotExist and no event; a folder yields ErrIsFolder (see
// RemoveAll); a file the Policy of ctx does not let be written, an
// *AccessError.
func (e *Engine) Delete(ctx context.Context, p string) (err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Delete, p)
	defer call.End(&err)
	clean, err := e.enter("delete", p, roompath.TargetFile)
	if err != nil {
		return err
	}
	defer e.inflight.Done()
	if err := gateOf(ctx).check(Write, clean); err != nil {
		return pathError("delete", p, err)
	}
	if err := e.remove(ctx, clean); err != nil {
		return pathError("delete", p, err)
	}
	return nil
}

func (e *Engine) remove(ctx context.Context, clean string) error {
	mu := e.stripe(clean)
	if err := mu.Acquire(ctx, 1); err != nil {
		return err
	}
	defer mu.Release(1)
	if err := e.b.Remove(ctx, clean); err != nil {
		return err
	}
	e.publish(ctx, EventFileDeleted, clean, 0)
	return nil
}

// RemoveAll removes the file at path, or every file in the folder at path
// and below (the whole store for the root), publishing EventFileDeleted for
// each file removed. A missing path is not an error, as with os.RemoveAll.
// With a Policy in ctx, every file must be writable: if one is not,
// nothing is removed and the *AccessError names that file when the policy
// lets it be read (a file that appears meanwhile where the policy refuses
// Write is left); a missing path outside what the policy lets be written
// yields an *AccessError too.
func (e *Engine) RemoveAll(ctx context.Context, p string) (err error) {
	ctx, call := e.tel.Start(ctx, telemetry.RemoveAll, p)
	defer call.End(&err)
	clean, err := e.enter("removeall", p, roompath.TargetAny)
	if err != nil {
		return err
	}
	defer e.inflight.Done()
	if err := e.removeTree(ctx, gateOf(ctx), clean, folderMeant(p, clean)); err != nil {
		return pathError("removeall", p, err)
	}
	return nil
}

// removeTree removes clean: a file (unless folderOnly) or a folder tree,
// each file only if the gate lets it be written. When one may not be,
// nothing is removed (see treeWritable); a file that a policy refuses
// once the removal is under way (one added meanwhile) is left.
func (e *Engine) removeTree(ctx context.Context, g gate, clean string, folderOnly bool) error {
	if clean != "" {
		info, err := e.b.Stat(ctx, clean)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return unnamed(g.reaches(Write, clean, true), clean)
		case err != nil:
			if werr := unnamed(g.reaches(Write, clean, true), clean); werr != nil {
				return werr
			}
			return err
		case !info.IsFolder:
			if err := g.check(Write, clean); err != nil {
				if v, _ := e.see(g.memoized(), clean, info, nil); v == seenAbsent {
					return nil // for this participant nothing is there
				}
				return err
			}
			if folderOnly {
				return ErrNotFolder
			}
			return ignoreNotExist(e.remove(ctx, clean))
		}
	}
	perFile, err := e.treeWritable(g, clean, "")
	if err != nil {
		return err
	}
	for c, err := range e.walkClean(ctx, clean) {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil // removed meanwhile
		case err != nil:
			return err
		case c.IsFolder:
			continue
		case perFile:
			ok, err := g.treeFileWritable(c.Path, clean, "")
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		if err := ignoreNotExist(e.remove(ctx, c.Path)); err != nil {
			return err
		}
	}
	return nil
}

// ignoreNotExist treats a file that vanished meanwhile as removed.
func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (e *Engine) stripe(p string) *semaphore.Weighted { return e.stripes[e.stripeIndex(p)] }

func (e *Engine) stripeIndex(p string) int {
	return int(maphash.String(e.seed, p) % uint64(len(e.stripes)))
}

func (e *Engine) publish(ctx context.Context, topic, p string, size int64) {
	e.publishEvent(ctx, events.Event{Type: topic, Path: p, Size: size})
}

// publishEvent stamps ev with the participant of ctx and the time, and
// publishes it on its topic.
func (e *Engine) publishEvent(ctx context.Context, ev events.Event) {
	ev.ParticipantID = ParticipantFrom(ctx)
	ev.Time = time.Now()
	ev.Origin = e.id
	ev.ID = e.id + "-" + strconv.FormatUint(e.evSeq.Add(1), 10)
	if e.link != nil {
		e.link.Publish(ctx, ev)
	}
	e.bus.Publish(ev.Type, ev)
}

// On subscribes handler to event (EventFileUpdated, EventFileDeleted or
// EventFileMoved). handler is func(path, participantID string),
// func(path string) or func(events.Event); the path of a move is its
// destination, and only a func(events.Event) also gets EventOverflow. Any
// other type, or another event name, fails with fs.ErrInvalid and
// subscribes nothing; after Shutdown On fails with fs.ErrClosed. Keep the
// Subscription to unsubscribe closures.
func (e *Engine) On(event string, handler any) (*events.Subscription, error) {
	if err := e.checkTopic("on", event); err != nil {
		return nil, err
	}
	sub, err := e.bus.On(event, handler)
	if err != nil {
		return nil, &fs.PathError{Op: "on", Path: event, Err: fmt.Errorf("%w: %w", fs.ErrInvalid, err)}
	}
	return sub, nil
}

// Off removes a handler that On subscribed to event. It matches functions
// by code, which is exact for top-level functions; for closures and method
// values call Unsubscribe on the Subscription that On returned. A handler
// that is not subscribed yields fs.ErrNotExist (and events.ErrNotSubscribed).
func (e *Engine) Off(event string, handler any) error {
	if err := e.checkTopic("off", event); err != nil {
		return err
	}
	if err := e.bus.Off(event, handler); err != nil {
		if errors.Is(err, events.ErrNotSubscribed) {
			return &fs.PathError{Op: "off", Path: event, Err: fmt.Errorf("%w: %w", fs.ErrNotExist, err)}
		}
		return &fs.PathError{Op: "off", Path: event, Err: fmt.Errorf("%w: %w", fs.ErrInvalid, err)}
	}
	return nil
}

// Subscribe calls handler for each event of the given topics (all three
// when none is given), and with EventOverflow when its queue lost events.
// After Shutdown the subscription receives nothing.
func (e *Engine) Subscribe(handler func(events.Event), topics ...string) *events.Subscription {
	if len(topics) == 0 {
		topics = []string{EventFileUpdated, EventFileDeleted, EventFileMoved}
	}
	return e.bus.Subscribe(handler, topics...)
}

func (e *Engine) checkTopic(op, event string) error {
	if event != EventFileUpdated && event != EventFileDeleted && event != EventFileMoved {
		return &fs.PathError{Op: op, Path: event, Err: fmt.Errorf("%w: unknown event (want %q, %q or %q)", fs.ErrInvalid, EventFileUpdated, EventFileDeleted, EventFileMoved)}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return &fs.PathError{Op: op, Path: event, Err: fs.ErrClosed}
	}
	return nil
}

// Shutdown stops the engine: later calls fail with fs.ErrClosed, open
// handles are aborted (their bytes discarded, files left as they were),
// running operations and the cleanups of aborted writes are awaited (a
// Close that is committing finishes), queued events are delivered, and a
// backend built by OpenURL is closed.
// If ctx ends first, Shutdown returns its error and the rest still
// finishes in the background; a later Shutdown waits for it again. Called
// from an event handler, Shutdown does not wait for event delivery.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.stopOnce.Do(func() { go e.stop() })
	if e.bus.InHandler() {
		return nil // the rest waits for this very handler to return
	}
	select {
	case <-e.stopped:
		if e.stopErr != nil {
			return &fs.PathError{Op: "shutdown", Path: "", Err: e.stopErr}
		}
		return nil
	case <-ctx.Done():
		return &fs.PathError{Op: "shutdown", Path: "", Err: ctx.Err()}
	}
}

// stop does Shutdown's work once, whatever the callers' contexts.
func (e *Engine) stop() {
	defer close(e.stopped)
	e.mu.Lock()
	open := make([]*Handle, 0, len(e.handles))
	for _, h := range e.handles {
		open = append(open, h)
	}
	e.mu.Unlock()
	for _, h := range open {
		_, _ = h.discard(context.Background(), fmt.Errorf("%w: engine shut down", fs.ErrClosed), "engine shut down")
	}
	e.inflight.Wait()
	e.cleanups.Wait()
	var err error
	if e.link != nil {
		// Published what is queued (within the transport's own bound), and
		// stops delivering others' events before the bus closes.
		err = e.link.Close(context.Background())
	}
	err = errors.Join(err, e.bus.Close(context.Background()), e.tel.Close())
	if e.owned {
		err = errors.Join(err, e.b.Close())
	}
	e.stopErr = err
}

// backoff sleeps before commit attempt n (n >= 1) with full jitter, so
// writers that lost a race do not collide again in step.
func backoff(ctx context.Context, n int) error {
	ceiling := min(time.Millisecond<<min(n, 10), 200*time.Millisecond)
	t := time.NewTimer(mrand.N(ceiling) + time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func mimeTypeByExt(p string) string { return mime.TypeByExtension(path.Ext(p)) }

// Event is an event delivered to subscribers (see package events).
type Event = events.Event

// Subscription is a subscriber's registration (see package events).
type Subscription = events.Subscription
