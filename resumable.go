package roomstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// Resumable uploads (SPEC 9.6): a file whose bytes arrive in parts, over
// requests that may be cut, kept in the store under its reserved prefix
// (never listed, walked, served, counted as a file nor told by an event)
// until the last byte, then committed to its path at once, with one
// file.updated. The room server's tus endpoint (roomserver.Server.Uploads)
// is built on them; an embedder may use them for any protocol of its own.

// DefaultResumableAge is how long a resumable upload lives after its last
// write before Expire removes it (see WithResumable).
const DefaultResumableAge = 24 * time.Hour

// DefaultResumablePerParticipant is how many unfinished resumable uploads
// one participant may hold in a store at once (see WithResumable).
const DefaultResumablePerParticipant = 16

// MaxResumableMetadata bounds the metadata of one resumable upload, keys
// and values together, in bytes.
const MaxResumableMetadata = 4 << 10

// ResumableLimits bound the resumable uploads of an engine's store (see
// WithResumable).
type ResumableLimits struct {
	// MaxAge is how long an upload lives after its creation or its last
	// write; past it, Expire removes it and its bytes.
	MaxAge time.Duration
	// PerParticipant bounds the unfinished uploads of one participant
	// (WithParticipant; all anonymous callers share one count).
	PerParticipant int
}

// WithResumable sets the limits of resumable uploads (default
// DefaultResumableAge and DefaultResumablePerParticipant). Zero or
// negative values are refused.
func WithResumable(l ResumableLimits) Option {
	return func(c *config) error {
		if l.MaxAge <= 0 || l.PerParticipant <= 0 {
			return badOption("resumable limits must be positive, got %v and %d", l.MaxAge, l.PerParticipant)
		}
		c.resumable = l
		return nil
	}
}

// ResumableOptions describe a resumable upload at its creation.
type ResumableOptions struct {
	// Size is the upload's length in bytes, fixed at creation.
	Size int64
	// Overwrite lets the upload replace a file at its path; without it,
	// an existing file fails the creation, and the commit, with
	// fs.ErrExist.
	Overwrite bool
	// Metadata is kept with the upload and returned by Resumable (the tus
	// Upload-Metadata), at most MaxResumableMetadata bytes.
	Metadata map[string]string
}

// Resumable is the state of a resumable upload.
type Resumable struct {
	// ID names the upload: 22 URL-safe characters, 128 random bits.
	ID string
	// Path is where the commit puts the file (clean).
	Path string
	// Size is the upload's length in bytes, fixed at creation.
	Size int64
	// Offset is how many bytes the store holds so far.
	Offset    int64
	Overwrite bool
	// Participant is who created it (WithParticipant).
	Participant string
	Metadata    map[string]string
	Created     time.Time
	// Expires is when the upload expires, unless written before:
	// ResumableLimits.MaxAge after its creation or its last write, by the
	// engine's clock (WithHistoryClock).
	Expires time.Time
}

// resumableIDLen is the length of an upload's ID: 16 random bytes in
// unpadded base64url, 128 bits that nobody guesses.
const resumableIDLen = 22

// resumableRecord is what the store keeps of an upload beside its bytes
// (backend.Staging's record), as JSON.
type resumableRecord struct {
	Path        string            `json:"path"`
	Size        int64             `json:"size"`
	Overwrite   bool              `json:"overwrite,omitempty"`
	Participant string            `json:"participant,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Created     time.Time         `json:"created"`
	Expires     time.Time         `json:"expires"`
}

func (r resumableRecord) state(id string, offset int64) Resumable {
	return Resumable{
		ID: id, Path: r.Path, Size: r.Size, Offset: offset, Overwrite: r.Overwrite,
		Participant: r.Participant, Metadata: maps.Clone(r.Metadata), Created: r.Created, Expires: r.Expires,
	}
}

// errNoUpload is the answer for an id that names no upload the caller
// may use: unknown, malformed, finished, aborted, expired, or refused by
// the Policy.
var errNoUpload = fmt.Errorf("%w: no such upload", fs.ErrNotExist)

// CreateResumable starts a resumable upload of opts.Size bytes to p and
// returns its state, with a new random ID (22 URL-safe characters). It
// checks what a commit would: p is valid and writable by the caller's
// Policy, no parent of p is a file, p is not a folder, p holds no file
// unless opts.Overwrite, and opts.Size fits the Quota (the bytes of
// unfinished uploads count against it until they finish or expire: see
// Usage.Pending). It publishes no event and changes nothing visible.
// Errors: fs.ErrInvalid (bad path, negative size, metadata past
// MaxResumableMetadata), an *AccessError (fs.ErrPermission), fs.ErrExist,
// ErrIsFolder, ErrNotFolder, ErrQuotaExceeded, ErrTooManyHandles (the
// participant, ParticipantFrom(ctx), holds ResumableLimits.PerParticipant
// unfinished uploads already), fs.ErrClosed after Shutdown, and the
// store's.
func (e *Engine) CreateResumable(ctx context.Context, p string, opts ResumableOptions) (_ Resumable, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.CreateResumable, p)
	defer call.End(&err)
	clean, err := e.enter("create_resumable", p, roompath.TargetFile)
	if err != nil {
		return Resumable{}, err
	}
	defer e.inflight.Done()
	fail := func(err error) (Resumable, error) { return Resumable{}, pathError("create_resumable", p, err) }
	g := gateOf(ctx)
	if err := g.check(Write, clean); err != nil {
		return fail(err)
	}
	if opts.Size < 0 {
		return fail(fmt.Errorf("%w: size %d", fs.ErrInvalid, opts.Size))
	}
	if n := metadataLen(opts.Metadata); n > MaxResumableMetadata {
		return fail(fmt.Errorf("%w: %d bytes of metadata, at most %d", fs.ErrInvalid, n, MaxResumableMetadata))
	}
	info, err := e.b.Stat(ctx, clean)
	switch {
	case err == nil && info.IsFolder:
		return fail(e.masked(g, clean, ErrIsFolder))
	case err == nil && !opts.Overwrite:
		return fail(e.masked(g, clean, fs.ErrExist))
	case errors.Is(err, fs.ErrNotExist):
		if err := e.checkParents(ctx, clean); err != nil {
			return fail(e.masked(g, clean, err))
		}
	case err != nil:
		return fail(err)
	}

	// One creation at a time: the count of the participant's uploads and
	// the pending bytes hold until the new one is staged.
	if err := e.createMu.lock(ctx); err != nil {
		return fail(err)
	}
	defer e.createMu.unlock()
	now := e.cfg.historyClock()
	who := ParticipantFrom(ctx)
	pending := map[string]int64{}
	held := 0
	for st, err := range e.b.ListStaged(ctx) {
		if err != nil {
			return fail(err)
		}
		rec, ok := decodeRecord(st.Record)
		if !ok || now.After(rec.Expires) {
			continue // expired: Expire removes it
		}
		pending[st.ID] = rec.Size
		if rec.Participant == who {
			held++
		}
	}
	if held >= e.cfg.resumable.PerParticipant {
		return fail(fmt.Errorf("%w: %d unfinished resumable uploads, at most %d", ErrTooManyHandles, held, e.cfg.resumable.PerParticipant))
	}
	var idb [16]byte
	_, _ = rand.Read(idb[:])
	id := base64.RawURLEncoding.EncodeToString(idb[:])
	if e.usage != nil {
		if err := e.usage.pend(ctx, e, id, clean, opts.Size, opts.Overwrite, pending); err != nil {
			return fail(err)
		}
	}
	rec := resumableRecord{
		Path: clean, Size: opts.Size, Overwrite: opts.Overwrite, Participant: who,
		Metadata: maps.Clone(opts.Metadata), Created: now, Expires: now.Add(e.cfg.resumable.MaxAge),
	}
	enc := encodeRecord(rec)
	if len(enc) > backend.MaxStagedRecord {
		// Metadata of control characters, escaped, or a long participant.
		if e.usage != nil {
			e.usage.unpend(id)
		}
		return fail(fmt.Errorf("%w: the upload's description takes %d bytes, at most %d", fs.ErrInvalid, len(enc), backend.MaxStagedRecord))
	}
	if err := e.b.Stage(ctx, id, enc); err != nil {
		if e.usage != nil {
			e.usage.unpend(id)
		}
		return fail(err)
	}
	return rec.state(id, 0), nil
}

// metadataLen is the size of m, keys and values together.
func metadataLen(m map[string]string) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}

func encodeRecord(r resumableRecord) []byte {
	b, _ := json.Marshal(r) // strings, numbers and times: never fails
	return b
}

// decodeRecord reads a record, refusing one no engine would have made.
func decodeRecord(b []byte) (resumableRecord, bool) {
	var r resumableRecord
	if b == nil || json.Unmarshal(b, &r) != nil || r.Size < 0 {
		return resumableRecord{}, false
	}
	if _, err := roompath.Clean(r.Path, roompath.TargetFile); err != nil {
		return resumableRecord{}, false
	}
	return r, true
}

// validResumableID reports whether id may name an upload this engine
// made; anything else names none, and never reaches the store.
func validResumableID(id string) bool {
	return len(id) == resumableIDLen && backend.ValidStagedID(id)
}

// loadResumable returns the record and the bytes held of upload id, if
// the caller's Policy may write its path and it has not expired, else
// errNoUpload (or the store's or the policy's failure).
func (e *Engine) loadResumable(ctx context.Context, id string) (resumableRecord, int64, error) {
	if !validResumableID(id) {
		return resumableRecord{}, 0, errNoUpload
	}
	st, err := e.b.Staged(ctx, id)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return resumableRecord{}, 0, errNoUpload
	case err != nil:
		return resumableRecord{}, 0, err
	}
	rec, ok := decodeRecord(st.Record)
	if !ok || e.cfg.historyClock().After(rec.Expires) {
		return resumableRecord{}, 0, errNoUpload
	}
	switch err := gateOf(ctx).check(Write, rec.Path); {
	case errors.As(err, new(*AccessError)):
		return resumableRecord{}, 0, errNoUpload
	case err != nil:
		return resumableRecord{}, 0, err
	}
	return rec, st.Size, nil
}

// resumableCall admits a call on upload id (op names it in errors): the
// engine is open, and the call holds id's lock until done.
func (e *Engine) resumableCall(ctx context.Context, op, id string) (done func(), err error) {
	if err := e.begin(op, id); err != nil {
		return nil, err
	}
	unlock, err := e.resumables.Lock(ctx, id)
	if err != nil {
		e.inflight.Done()
		return nil, pathError(op, id, err)
	}
	return func() { unlock(); e.inflight.Done() }, nil
}

// Resumable returns the state of upload id. An unknown, malformed,
// finished, aborted or expired id fails with fs.ErrNotExist, as does one
// whose path the caller's Policy may no longer write; fs.ErrClosed after
// Shutdown; and the store's errors. Errors name the id, never a path.
func (e *Engine) Resumable(ctx context.Context, id string) (_ Resumable, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.ResumableState, "")
	defer call.End(&err)
	done, err := e.resumableCall(ctx, "resumable", id)
	if err != nil {
		return Resumable{}, err
	}
	defer done()
	rec, size, err := e.loadResumable(ctx, id)
	if err != nil {
		return Resumable{}, pathError("resumable", id, err)
	}
	return rec.state(id, size), nil
}

// WriteResumable appends the bytes of r to upload id at offset, which
// must be its Offset (else ErrConflict, reading nothing), and returns its
// new state, whose Expires is pushed to MaxAge from now. The bytes r
// yields before an error (or before ctx ends, or Shutdown) are kept: a
// cut connection loses nothing it delivered, and the state returned with
// the error says how many were kept (Offset); with a disk store's fsync,
// those bytes are on stable storage. ctx and Shutdown stop the write at
// its next read of r; a read that blocks is not interrupted (as with
// Upload), so give r a deadline of its own where it can block (a request
// body is ended by its server). Bytes past the upload's Size fail
// with fs.ErrInvalid, those that fit being kept. It does not commit (see
// CommitResumable). Errors also as Resumable's (then the state returned
// is zero), r's own (wrapped), and the store's.
func (e *Engine) WriteResumable(ctx context.Context, id string, offset int64, r io.Reader) (_ Resumable, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.WriteResumable, "")
	defer call.End(&err)
	const op = "write_resumable"
	if r == nil {
		return Resumable{}, pathError(op, id, fmt.Errorf("%w: nil reader", fs.ErrInvalid))
	}
	done, err := e.resumableCall(ctx, op, id)
	if err != nil {
		return Resumable{}, err
	}
	defer done()
	ctx, stop := e.lifeBound(ctx)
	defer stop()
	rec, size, err := e.loadResumable(ctx, id)
	if err != nil {
		return Resumable{}, pathError(op, id, err)
	}
	if offset != size {
		return rec.state(id, size), pathError(op, id, fmt.Errorf("%w: the upload holds %d bytes, not %d", ErrConflict, size, offset))
	}
	now := e.cfg.historyClock()
	if rec.Expires.Sub(now) < e.cfg.resumable.MaxAge/2 {
		// Pushed back first too, so that no Expire removes an upload
		// while a long write to it runs.
		rec.Expires = now.Add(e.cfg.resumable.MaxAge)
		if err := e.b.Restage(ctx, id, encodeRecord(rec)); err != nil {
			return rec.state(id, size), pathError(op, id, err)
		}
	}
	lr := &sizedReader{r: r, left: rec.Size - offset}
	n, werr := e.b.AppendStaged(ctx, id, offset, lr)
	call.SetBytes(n)
	if !errors.Is(werr, fs.ErrNotExist) {
		rec.Expires = e.cfg.historyClock().Add(e.cfg.resumable.MaxAge)
		// On the caller's context still if it has ended: the bytes are
		// kept, and so should be the time they buy.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		rerr := e.b.Restage(rctx, id, encodeRecord(rec))
		cancel()
		if werr == nil {
			werr = rerr
		}
	}
	st := rec.state(id, offset+n)
	switch {
	case werr == nil:
		return st, nil
	case lr.excess:
		return st, pathError(op, id, fmt.Errorf("%w: more than the upload's %d bytes", fs.ErrInvalid, rec.Size))
	case lr.err != nil && errors.Is(werr, lr.err):
		return st, pathError(op, id, fmt.Errorf("reading the upload: %w", werr))
	}
	return st, pathError(op, id, werr)
}

// sizedReader yields what r yields up to left bytes, and then fails with
// errTooLong if r has more.
type sizedReader struct {
	r      io.Reader
	left   int64
	excess bool  // r had more than left
	err    error // r's own error, as returned
}

var errTooLong = errors.New("more bytes than the upload's size")

func (s *sizedReader) Read(p []byte) (int, error) {
	if s.left <= 0 {
		// One byte more says whether r has more.
		var b [1]byte
		for {
			n, err := s.r.Read(b[:])
			switch {
			case n > 0:
				s.excess = true
				return 0, errTooLong
			case err == io.EOF:
				return 0, io.EOF
			case err != nil:
				s.err = err
				return 0, err
			}
		}
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	if n < 0 || n > len(p) {
		n, err = 0, fmt.Errorf("the reader returned %d bytes into a buffer of %d", n, len(p))
	}
	s.left -= int64(n)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// lifeBound returns ctx, ended also by Shutdown, so that a write waiting
// for a slow sender does not hold Shutdown up.
func (e *Engine) lifeBound(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(e.life, func() { cancel(fmt.Errorf("%w: engine shut down", fs.ErrClosed)) })
	return ctx, func() { stop(); cancel(nil) }
}

// CommitResumable makes a complete upload (Offset == Size) the file at
// its path, atomically, publishing one file.updated, and forgets the
// upload; it returns the file's Entry. The commit is a Close's: the
// Policy and the Quota are checked again (the upload's pending bytes
// become the file's), the file it replaces is kept in the History, and
// the store moves the bytes into place rather than copying them where it
// can (see docs/backends.md). An incomplete upload fails with
// ErrConflict; a file that appeared at the path of an upload without
// Overwrite with fs.ErrExist, and a folder at the path or a file above it
// with ErrIsFolder or ErrNotFolder: the upload is kept then (and may be
// aborted), as on any failure but that of Resumable's errors. Errors
// also as Resumable's, and the store's.
func (e *Engine) CommitResumable(ctx context.Context, id string) (_ Entry, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.CommitResumable, "")
	defer call.End(&err)
	const op = "commit_resumable"
	done, err := e.resumableCall(ctx, op, id)
	if err != nil {
		return Entry{}, err
	}
	defer done()
	rec, size, err := e.loadResumable(ctx, id)
	if err != nil {
		return Entry{}, pathError(op, id, err)
	}
	if size != rec.Size {
		return Entry{}, pathError(op, id, fmt.Errorf("%w: the upload holds %d of its %d bytes", ErrConflict, size, rec.Size))
	}
	mu := e.stripes[e.stripeIndex(rec.Path)]
	if err := e.lockStripe(ctx, e.stripeIndex(rec.Path)); err != nil {
		return Entry{}, pathError(op, id, err)
	}
	unlocked := false
	defer func() {
		if !unlocked {
			mu.unlock()
		}
	}()
	g := gateOf(ctx)
	if e.usage != nil {
		release, err := e.usage.reservePending(ctx, e, id, rec.Path, rec.Size, rec.Overwrite)
		if err != nil {
			return Entry{}, pathError(op, id, err)
		}
		defer release()
	}
	wopts := backend.WriteOptions{Exclusive: !rec.Overwrite, ContentType: mimeTypeByExt(rec.Path), Keep: e.keep(ctx, backend.ReasonOverwritten)}
	info, err := e.b.CommitStaged(ctx, id, rec.Path, wopts)
	e.tel.Attempt(ctx, telemetry.CommitResumable, errors.Is(err, ErrConflict), false)
	if err != nil {
		if e.usage != nil {
			e.usage.repend(id, rec.Size)
			if ctx.Err() != nil {
				e.usage.unsettle(rec.Path)
			}
		}
		if errors.Is(err, fs.ErrNotExist) {
			err = errNoUpload // removed meanwhile by another engine
		}
		return Entry{}, pathError(op, id, e.masked(g, rec.Path, err))
	}
	call.SetBytes(info.Size)
	e.tel.BytesWritten(ctx, telemetry.CommitResumable, info.Size)
	e.publish(ctx, EventFileUpdated, rec.Path, info.Size, info.ETag)
	mu.unlock()
	unlocked = true
	e.trim(ctx, rec.Path)
	return entry(info), nil
}

// AbortResumable removes upload id and its bytes; its pending bytes stop
// counting against the Quota. Errors as Resumable's, and the store's.
func (e *Engine) AbortResumable(ctx context.Context, id string) (err error) {
	ctx, call := e.tel.Start(ctx, telemetry.AbortResumable, "")
	defer call.End(&err)
	const op = "abort_resumable"
	done, err := e.resumableCall(ctx, op, id)
	if err != nil {
		return err
	}
	defer done()
	if _, _, err := e.loadResumable(ctx, id); err != nil {
		return pathError(op, id, err)
	}
	switch err := e.b.RemoveStaged(ctx, id); {
	case errors.Is(err, fs.ErrNotExist):
		return pathError(op, id, errNoUpload)
	case err != nil:
		return pathError(op, id, err)
	}
	if e.usage != nil {
		e.usage.unpend(id)
	}
	return nil
}

// expireResumables removes the uploads past their Expires as of now, and
// those found half made or half removed once they are older than
// historyGrace, and returns how many it removed.
func (e *Engine) expireResumables(ctx context.Context, now time.Time) (int, error) {
	type dead struct{ id string }
	var gone []dead
	for st, err := range e.b.ListStaged(ctx) {
		if err != nil {
			return 0, err
		}
		rec, ok := decodeRecord(st.Record)
		switch {
		case ok && now.After(rec.Expires):
			gone = append(gone, dead{st.ID})
		case !ok && now.Sub(st.Modified) > historyGrace:
			gone = append(gone, dead{st.ID})
		}
	}
	removed := 0
	var errs []error
	for _, d := range gone {
		unlock, err := e.resumables.Lock(ctx, d.id)
		if err != nil {
			return removed, err
		}
		// Looked at again under its lock: a write may have pushed it back.
		st, err := e.b.Staged(ctx, d.id)
		if err == nil {
			if rec, ok := decodeRecord(st.Record); ok && !now.After(rec.Expires) {
				unlock()
				continue
			}
		}
		err = e.b.RemoveStaged(ctx, d.id)
		unlock()
		switch {
		case err == nil:
			removed++
			if e.usage != nil {
				e.usage.unpend(d.id)
			}
		case !errors.Is(err, fs.ErrNotExist):
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}
