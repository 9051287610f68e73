// Package telemetry is the roomstore engine's instrumentation, kept in one
// place as gocloud.dev/blob keeps its own: the counters that
// roomstore.Engine.Stats reports, which every engine keeps, and the
// OpenTelemetry metrics and spans of an engine given a MeterProvider or a
// TracerProvider. The root package is its one user, but for Off, which
// the benchmarks in package bench set.
//
// Without providers a call costs a few branches and one atomic add per
// counter it moves: Start reads no clock, builds no attribute and calls
// nothing of OpenTelemetry, and nothing allocates.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/roompath"
)

// Off, once set, turns off the instrumentation of every engine: calls,
// bytes, commit and event counters (so Engine.Stats stops counting; its
// OpenHandles and Transport, read from the engine and its transport when
// asked, still report) as well as metrics and spans. It is for benchmarks
// only, which set it to measure the engine uninstrumented; set or clear
// it only while no engine has a call in progress, since a call started
// under one setting ends under it too, and an up-down counter of handles
// left unbalanced by a change in between stays so.
var Off atomic.Bool

// ScopeName is the instrumentation scope of the meters and tracers the
// engine asks its providers for.
const ScopeName = "github.com/roomstore/roomstore"

// Attribute keys.
const (
	AttrOperation   = "roomstore.operation"   // the Op, on call, byte and commit metrics
	AttrOutcome     = "roomstore.outcome"     // the Outcome, on call metrics and spans
	AttrPath        = "roomstore.path"        // the store path of a span's call, as the caller gave it (a handle's: its clean path), through Text
	AttrDestination = "roomstore.destination" // a move's destination, as the caller gave it, through Text
	AttrBytes       = "roomstore.bytes"       // the bytes a span's call wrote or read
	AttrEngine      = "roomstore.engine"      // the engine's ID, on the transport's observable mirrors
)

// Text returns s as it may go into a span, as an attribute, a status or a
// recorded error's message: valid UTF-8 (each invalid byte sequence
// replaced by U+FFFD, as strings.ToValidUTF8 does) and at most
// roompath.MaxPathLen bytes (cut at a rune boundary). Spans carry the
// caller's paths before they are validated, and an OTLP exporter drops a
// whole batch over one string that is not UTF-8. A string already fit is
// returned as it is, without allocating.
func Text(s string) string {
	const limit = roompath.MaxPathLen
	if len(s) <= limit && utf8.ValidString(s) {
		return s
	}
	// Cut first, so that a huge string costs no more than the limit; the
	// replacements may lengthen it again, so cut once more after them.
	return cut(strings.ToValidUTF8(cut(s, limit), string(utf8.RuneError)), limit)
}

// cut returns s cut to at most n bytes, before a rune that would not fit
// whole.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > n-utf8.UTFMax && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// Op is a public operation of the engine.
type Op uint8

// The operations, named in snake case by String.
const (
	Exists Op = iota
	Stat
	List
	Open
	Write
	Close
	Abort
	Download
	DownloadURL
	OpenReader
	Delete
	RemoveAll
	Move
	Upload
	Walk
	ServeFile  // Engine.ServeFile
	ServeURL   // Engine.Handler, serving a signed URL
	FSOpen     // Open of Engine.FS
	FSStat     // Stat of Engine.FS
	FSReadDir  // ReadDir of Engine.FS, and of a folder it opened
	FSReadFile // ReadFile of Engine.FS
	Versions
	OpenVersion
	Restore
	Deleted
	RestoreAll
	Expire
	CreateResumable
	ResumableState // Engine.Resumable
	WriteResumable
	CommitResumable
	AbortResumable
	NumOps // the number of operations
)

var opNames = [NumOps]string{
	Exists: "exists", Stat: "stat", List: "list", Open: "open", Write: "write",
	Close: "close", Abort: "abort", Download: "download", DownloadURL: "download_url",
	OpenReader: "open_reader", Delete: "delete", RemoveAll: "remove_all", Move: "move",
	Upload: "upload", Walk: "walk", ServeFile: "serve_file", ServeURL: "serve_url",
	FSOpen: "fs_open", FSStat: "fs_stat", FSReadDir: "fs_read_dir", FSReadFile: "fs_read_file",
	Versions: "versions", OpenVersion: "open_version", Restore: "restore", Deleted: "deleted",
	RestoreAll: "restore_all", Expire: "expire",
	CreateResumable: "create_resumable", ResumableState: "resumable", WriteResumable: "write_resumable",
	CommitResumable: "commit_resumable", AbortResumable: "abort_resumable",
}

var spanNames = func() (s [NumOps]string) {
	for i, n := range opNames {
		s[i] = "roomstore." + n
	}
	return s
}()

// String returns the operation's name, such as "download_url".
func (o Op) String() string { return opNames[o] }

// Outcome is how a call ended, derived from its error by OutcomeOf.
type Outcome uint8

// The outcomes, named by String.
const (
	OK Outcome = iota
	NotExist
	Exist
	Invalid
	IsFolder
	NotFolder
	Conflict
	Permission
	Closed
	TooManyHandles
	Unavailable
	Canceled
	DeadlineExceeded
	Precondition // a change refused for its precondition (ErrPrecondition)
	Error        // any other error, errors.ErrUnsupported included
	NumOutcomes  // the number of outcomes
)

var outcomeNames = [NumOutcomes]string{
	OK: "ok", NotExist: "not_exist", Exist: "exist", Invalid: "invalid", IsFolder: "is_folder",
	NotFolder: "not_folder", Conflict: "conflict", Permission: "permission", Closed: "closed",
	TooManyHandles: "too_many_handles", Unavailable: "unavailable", Canceled: "canceled",
	DeadlineExceeded: "deadline_exceeded", Precondition: "precondition", Error: "error",
}

// String returns the outcome's name, such as "not_exist".
func (o Outcome) String() string { return outcomeNames[o] }

// kinds maps the engine's sentinels to outcomes, in the order of
// backend.Kinds, so an error that carries two (a conflict wrapped around
// a missing file) reads as the backend reads it.
var kinds = [...]struct {
	err     error
	outcome Outcome
}{
	{backend.ErrConflict, Conflict},
	{backend.ErrPrecondition, Precondition},
	{backend.ErrStoreUnavailable, Unavailable},
	{backend.ErrTooManyHandles, TooManyHandles},
	{backend.ErrIsFolder, IsFolder},
	{backend.ErrNotFolder, NotFolder},
	{fs.ErrNotExist, NotExist},
	{fs.ErrExist, Exist},
	{fs.ErrPermission, Permission},
	{fs.ErrInvalid, Invalid},
	{fs.ErrClosed, Closed},
}

// OutcomeOf is the one mapping from a call's error to its outcome: OK for
// nil, Canceled and DeadlineExceeded for a context's end (first, since a
// call cut short may carry other sentinels too), then the engine's
// sentinels, and Error for anything else.
func OutcomeOf(err error) Outcome {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, context.Canceled):
		return Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return DeadlineExceeded
	}
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return k.outcome
		}
	}
	return Error
}

// Recorder is one engine's instrumentation. Its methods are safe for
// concurrent use.
type Recorder struct {
	calls                                          [NumOps][NumOutcomes]atomic.Uint64
	bytesWritten, bytesRead                        atomic.Uint64
	commitAttempts, commitConflicts, commitRetries atomic.Uint64
	published, delivered, dropped                  atomic.Uint64

	origin   string       // the engine's id: its own events carry it
	m        *meters      // nil without a MeterProvider
	tracer   trace.Tracer // nil without a TracerProvider
	reg      metric.Registration
	usageReg metric.Registration
}

// New returns the recorder of the engine origin, with metrics from mp and
// spans from tp when they are not nil. It fails only if mp refuses an
// instrument.
func New(origin string, mp metric.MeterProvider, tp trace.TracerProvider) (*Recorder, error) {
	r := &Recorder{origin: origin}
	if mp != nil {
		m, err := newMeters(mp.Meter(ScopeName))
		if err != nil {
			return nil, err
		}
		r.m = m
	}
	if tp != nil {
		r.tracer = tp.Tracer(ScopeName)
	}
	return r, nil
}

// Call is one public call being recorded, from Start to End (or Finish).
// The zero Call records nothing.
//
// It is small: every public call makes one on its stack and defers its
// End, so that without providers a call costs a few words and one atomic
// add. What only a provider needs lives in a record of its own.
type Call struct {
	r    *Recorder
	x    *record // nil unless metered or traced
	op   Op
	goOn bool // Continue was called: End ends only a failed or panicking call
}

// record is what a call keeps for its providers.
type record struct {
	ctx   context.Context
	span  trace.Span // nil unless traced
	start time.Time  // zero unless metered
	n     int64      // the bytes moved, if bytes is set
	bytes bool       // SetBytes was called with n >= 0
}

// Start begins a call of op on path (a store path as the caller gave
// it, which goes on the span through Text), returning the context for the call's work: ctx, or with a tracer a
// child of it that carries the call's span.
func (r *Recorder) Start(ctx context.Context, op Op, path string) (context.Context, Call) {
	if Off.Load() {
		return ctx, Call{}
	}
	c := Call{r: r, op: op}
	if r.m == nil && r.tracer == nil {
		return ctx, c
	}
	c.x = &record{}
	if r.tracer != nil {
		ctx, c.x.span = r.tracer.Start(ctx, spanNames[op], trace.WithAttributes(attribute.String(AttrPath, Text(path))))
	}
	c.x.ctx = ctx
	if r.m != nil {
		c.x.start = time.Now()
	}
	return ctx, c
}

// Tracing reports whether Start records spans, for callers that would
// build a path only for one.
func (r *Recorder) Tracing() bool { return r.tracer != nil && !Off.Load() }

// StartMove is Start for a move from src to dst.
func (r *Recorder) StartMove(ctx context.Context, src, dst string) (context.Context, Call) {
	ctx, c := r.Start(ctx, Move, src)
	if c.x != nil && c.x.span != nil {
		c.x.span.SetAttributes(attribute.String(AttrDestination, Text(dst)))
	}
	return ctx, c
}

// SetBytes sets the bytes the call wrote or read, n, for the span's
// roomstore.bytes attribute; a negative n (nothing moved) sets none. The
// byte counters are moved by BytesWritten and BytesRead.
func (c *Call) SetBytes(n int64) {
	if n >= 0 && c.x != nil {
		c.x.n, c.x.bytes = n, true
	}
}

// Continue marks a call that goes on after the function that started it
// has returned (OpenReader's, until its Reader's Close): End then ends it
// only if it failed or panicked, and its new owner ends it with Finish.
func (c *Call) Continue() { c.goOn = true }

// End ends the call with *err, the error the call returns. Every
// instrumented function defers it directly, right after Start, with its
// named error result:
//
//	ctx, call := e.tel.Start(ctx, telemetry.Stat, p)
//	defer call.End(&err)
//
// so that it also sees a panic that goes through the call (from a
// reader, a range loop's body, an http.ResponseWriter): the call is then
// recorded with the outcome Error, its span with the panic as its error,
// and the panic goes on with the same value. Only as a directly deferred
// call can End see a panic (recover works nowhere else).
func (c *Call) End(err *error) {
	if p := recover(); p != nil {
		c.finish(panicError{p}, true)
		panic(p)
	}
	if c.goOn && *err == nil {
		return
	}
	c.finish(*err, false)
}

// Finish ends a call that went on past its function (see Continue) with
// err, and the bytes set by SetBytes.
func (c Call) Finish(err error) { c.finish(err, false) }

// panicError is the error of a call that panicked, for its span.
type panicError struct{ value any }

func (p panicError) Error() string { return fmt.Sprint("panic: ", p.value) }

// finish records the call's end: its outcome (Error for a panic), and on
// its span the outcome, the bytes, and for a failure the status Error
// with the error's message and, unless the outcome is expected (see
// expected), the error recorded as an exception event.
func (c *Call) finish(err error, panicked bool) {
	if c.r == nil {
		return
	}
	o := OutcomeOf(err)
	if panicked {
		o = Error
	}
	c.r.calls[c.op][o].Add(1)
	x := c.x
	if x == nil {
		return
	}
	if m := c.r.m; m != nil {
		m.calls.Add(x.ctx, 1, m.callAdd[c.op][o]...)
		m.duration.Record(x.ctx, time.Since(x.start).Seconds(), m.callRecord[c.op][o]...)
	}
	if s := x.span; s != nil {
		if x.bytes {
			s.SetAttributes(attribute.String(AttrOutcome, o.String()), attribute.Int64(AttrBytes, x.n))
		} else {
			s.SetAttributes(attribute.String(AttrOutcome, o.String()))
		}
		if err != nil {
			msg := err.Error()
			if safe := Text(msg); safe != msg {
				msg, err = safe, textError(safe)
			}
			if !expected(c.op, o) {
				s.RecordError(err)
			}
			s.SetStatus(codes.Error, msg)
		}
		s.End()
	}
}

// expected reports the failures that a caller meets in the normal course
// of things, whose spans get the status Error and their outcome but no
// exception event (see Observability in the package roomstore
// documentation, where the rule is stated): a missing path (a Stat that
// answers "no such file"), and an Abort of a finished handle (the
// harmless deferred Abort after Close).
func expected(op Op, o Outcome) bool {
	return o == NotExist || op == Abort && o == Closed
}

// textError is an error whose message Text had to change, recorded on a
// span in place of the call's error.
type textError string

func (e textError) Error() string { return string(e) }

// BytesWritten counts n bytes that op committed.
func (r *Recorder) BytesWritten(ctx context.Context, op Op, n int64) {
	if n <= 0 || Off.Load() {
		return
	}
	r.bytesWritten.Add(uint64(n))
	if m := r.m; m != nil {
		m.written.Add(ctx, n, m.opAdd[op]...)
	}
}

// BytesRead counts n bytes that op returned to its caller.
func (r *Recorder) BytesRead(ctx context.Context, op Op, n int64) {
	if n <= 0 || Off.Load() {
		return
	}
	r.bytesRead.Add(uint64(n))
	if m := r.m; m != nil {
		m.read.Add(ctx, n, m.opAdd[op]...)
	}
}

// Attempt counts one commit attempt of op (a Close's or an Upload's
// commit, one file's move): conflict when it lost to another writer,
// retry when it is tried again.
func (r *Recorder) Attempt(ctx context.Context, op Op, conflict, retry bool) {
	if Off.Load() {
		return
	}
	r.commitAttempts.Add(1)
	if conflict {
		r.commitConflicts.Add(1)
	}
	if retry {
		r.commitRetries.Add(1)
	}
	m := r.m
	if m == nil {
		return
	}
	m.attempts.Add(ctx, 1, m.opAdd[op]...)
	if conflict {
		m.conflicts.Add(ctx, 1, m.opAdd[op]...)
	}
	if retry {
		m.retries.Add(ctx, 1, m.opAdd[op]...)
	}
}

// HandleOpened and HandleClosed move the open-handles metric (Stats
// counts the engine's handles itself).
func (r *Recorder) HandleOpened(ctx context.Context) { r.handles(ctx, 1) }

// HandleClosed: see HandleOpened.
func (r *Recorder) HandleClosed(ctx context.Context) { r.handles(ctx, -1) }

func (r *Recorder) handles(ctx context.Context, d int64) {
	if m := r.m; m != nil && !Off.Load() {
		m.handles.Add(ctx, d)
	}
}

// Published implements events.Observer: an event of this engine counts as
// published, one of another engine (through the transport) records its
// remote lag.
func (r *Recorder) Published(_ string, e events.Event) {
	if Off.Load() {
		return
	}
	if e.Origin == r.origin {
		r.published.Add(1)
		if m := r.m; m != nil {
			m.published.Add(context.Background(), 1)
		}
		return
	}
	if m := r.m; m != nil && e.Origin != "" {
		m.lag.Record(context.Background(), max(time.Since(e.Time), 0).Seconds())
	}
}

// Delivered implements events.Observer.
func (r *Recorder) Delivered(events.Event) {
	if Off.Load() {
		return
	}
	r.delivered.Add(1)
	if m := r.m; m != nil {
		m.delivered.Add(context.Background(), 1)
	}
}

// Dropped implements events.Observer.
func (r *Recorder) Dropped(events.Event) {
	if Off.Load() {
		return
	}
	r.dropped.Add(1)
	if m := r.m; m != nil {
		m.dropped.Add(context.Background(), 1)
	}
}

var _ events.Observer = (*Recorder)(nil)

// ObserveTransport reports stats, the counters of the engine's event
// transport, as observable instruments, read at each collection, with
// the attribute AttrEngine (the engine's ID): engines that share a
// MeterProvider each have their own series, which ends when the engine
// shuts down (Close), rather than a sum that would shrink then and read
// as a counter reset. Without a MeterProvider it does nothing; it fails
// only if the MeterProvider refuses an instrument or the callback.
func (r *Recorder) ObserveTransport(stats func() events.TransportStats) error {
	if r.m == nil {
		return nil
	}
	reg, err := r.m.observeTransport(r.origin, stats)
	if err != nil {
		return err
	}
	r.reg = reg
	return nil
}

// ObserveUsage reports what the store holds (usage; ok false while the
// engine does not know) and its quota as observable gauges, with the
// attribute AttrEngine. Without a MeterProvider it does nothing; it
// fails only if the MeterProvider refuses an instrument or the callback.
func (r *Recorder) ObserveUsage(usage func() (bytes, files, kept int64, ok bool), quotaBytes, quotaFiles int64) error {
	if r.m == nil {
		return nil
	}
	reg, err := r.m.observeUsage(r.origin, usage, quotaBytes, quotaFiles)
	if err != nil {
		return err
	}
	r.usageReg = reg
	return nil
}

// Close stops the observation of the transport and the usage, so that
// their series end. It is idempotent; its error is the MeterProvider's,
// should it fail to unregister a callback.
func (r *Recorder) Close() error {
	var errs []error
	for _, reg := range []*metric.Registration{&r.reg, &r.usageReg} {
		if *reg != nil {
			errs = append(errs, (*reg).Unregister())
			*reg = nil
		}
	}
	return errors.Join(errs...)
}

// Snapshot is the recorder's counters at one moment (each read
// atomically, not all at once).
type Snapshot struct {
	Calls                                           [NumOps][NumOutcomes]uint64
	BytesWritten, BytesRead                         uint64
	CommitAttempts, CommitConflicts, CommitRetries  uint64
	EventsPublished, EventsDelivered, EventsDropped uint64
}

// Snapshot reads the counters.
func (r *Recorder) Snapshot() Snapshot {
	var s Snapshot
	for op := range r.calls {
		for o := range r.calls[op] {
			s.Calls[op][o] = r.calls[op][o].Load()
		}
	}
	s.BytesWritten, s.BytesRead = r.bytesWritten.Load(), r.bytesRead.Load()
	s.CommitAttempts, s.CommitConflicts, s.CommitRetries = r.commitAttempts.Load(), r.commitConflicts.Load(), r.commitRetries.Load()
	s.EventsPublished, s.EventsDelivered, s.EventsDropped = r.published.Load(), r.delivered.Load(), r.dropped.Load()
	return s
}
