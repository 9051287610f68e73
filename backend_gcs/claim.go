package backend_gcs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"sync"
	"time"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/roompath"
)

// The claim protocol keeps two writers from composing onto one version of
// a file at once, which the emulator (fake-gcs-server) would let both do,
// losing an append: it ignores the preconditions of compose, copy and
// delete, and composes without holding its lock. The protocol rests only
// on the create-only upload (DoesNotExist), which every server enforces.
//
// A claim is the object .roomstore/claim/<hash of the key>.<generation>;
// an append claims the generation it composes onto (0: it creates the
// file), a Move the generation it copies and 0. These invariants hold:
//
//  1. At most one writer holds the claim on a generation of a file: a
//     claim exists only as the object that one create-only upload made.
//  2. A writer composes onto, or moves, generation g of a file only while
//     it holds the claim on g and has checked, after taking it, that the
//     file is still at g (another writer may have composed onto g and
//     given the claim back between its first read and its claim).
//  3. A claim names the writer that took it (markerKey): a create retried
//     by the SDK after its answer was lost finds its own claim and holds
//     it, instead of losing to itself.
//  4. A writer gives its claim back by deleting that claim's generation
//     only, so that it never removes a claim taken after its own.
//  5. A writer that finds a claim held reports backend.ErrConflict and
//     the engine tries again; it deletes the claim (that generation only)
//     when the claim is older than the lease, its holder being presumed
//     dead, and still reports the conflict, the retry taking the claim.
//  6. A claim's age is measured in the server's time: its creation
//     timestamp against the server's present, which serverClock derives
//     from the server timestamps of objects this Backend wrote. The local
//     wall clock, which may be off or jump, plays no part, so that a live
//     claim is not broken by a clock running ahead, nor a dead one kept
//     by a clock running behind.
//  7. The lease (defaultClaimLease) is far longer than a claim is held by
//     a live writer (two metadata calls and a compose), so invariant 5
//     breaks only claims whose holders are gone.

// defaultClaimLease bounds how long a crashed appender can block appends to
// its file; see invariant 7 above.
const defaultClaimLease = time.Minute

// claimName names the claim on generation gen of the object key. Hashing
// keeps the name short whatever the path length (object names are capped
// at 1024 bytes).
func (b *Backend) claimName(key string, gen int64) string {
	sum := sha256.Sum256([]byte(key))
	return b.key(roompath.ReservedPrefix + "/claim/" + hex.EncodeToString(sum[:20]) + "." + strconv.FormatInt(gen, 10))
}

// claim takes the exclusive right to compose onto generation gen of the
// object key (gen 0: to create it) and returns the function that gives it
// back; see the invariants above. A claim held by someone else yields an
// error wrapping backend.ErrConflict.
func (b *Backend) claim(ctx context.Context, path, key string, gen int64) (release func(), err error) {
	tok := b.bucket.Object(b.claimName(key, gen))
	nonce := newID()
	a, err := b.createTiny(ctx, tok, key, nonce)
	if err == nil {
		return b.releaser(ctx, tok, a.Generation), nil
	}
	if !isPrecondition(err) {
		return nil, classify(err)
	}
	held, aerr := tok.Attrs(ctx)
	switch {
	case aerr != nil:
		// Released since; the engine's retry will find it free.
	case held.Metadata[markerKey] == nonce:
		// Our own create, retried by the SDK after a lost response
		// (invariant 3).
		return b.releaser(ctx, tok, held.Generation), nil
	default:
		if now, err := b.clock.now(ctx, b); err == nil && now.Sub(held.Created) > b.claimLease {
			// Its holder is presumed dead (invariant 5). Deleting that
			// exact generation cannot remove a claim taken after this
			// check (invariant 4).
			_ = tok.Generation(held.Generation).Delete(ctx)
		}
	}
	return nil, conflict("another writer is appending to or moving the file", err)
}

// createTiny creates the object o, holding body, only if it does not
// exist, tagged with the marker nonce, and notes its server timestamp.
func (b *Backend) createTiny(ctx context.Context, o *storage.ObjectHandle, body, nonce string) (*storage.ObjectAttrs, error) {
	w := o.If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
	w.ChunkSize = 0 // a few bytes: one request, no buffer
	w.ContentType = "text/plain; charset=utf-8"
	w.Metadata = map[string]string{markerKey: nonce}
	_, err := w.Write([]byte(body))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	a := w.Attrs()
	b.clock.observe(a.Created)
	return a, nil
}

func (b *Backend) releaser(ctx context.Context, tok *storage.ObjectHandle, gen int64) func() {
	return func() {
		cctx, cancel := cleanup.Once(ctx)
		defer cancel()
		_ = tok.Generation(gen).Delete(cctx)
	}
}

// serverClock tells the server's present time from the server timestamp
// of an object this Backend created and the time elapsed since the answer
// that carried it arrived, measured on the local monotonic clock, which
// neither a wrong nor a stepped wall clock affects. The stamp was made
// before the answer arrived, so the estimate never runs ahead of the
// server: a claim looks at most as old as it is.
type serverClock struct {
	mu    sync.Mutex
	stamp time.Time // a server timestamp
	at    time.Time // when it arrived, with its monotonic reading
}

// observe notes a server timestamp that has just arrived.
func (c *serverClock) observe(stamp time.Time) {
	if stamp.IsZero() {
		return
	}
	at := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stamp, c.at = stamp, at
}

// now returns the server's present time. Before any timestamp has arrived
// it creates, and deletes, an object of its own under .roomstore/clock/
// to get one.
func (c *serverClock) now(ctx context.Context, b *Backend) (time.Time, error) {
	c.mu.Lock()
	stamp, at := c.stamp, c.at
	c.mu.Unlock()
	if !stamp.IsZero() {
		return stamp.Add(time.Since(at)), nil
	}
	id := newID()
	probe := b.bucket.Object(b.key(roompath.ReservedPrefix + "/clock/" + id))
	a, err := b.createTiny(ctx, probe, "", id)
	if err != nil {
		return time.Time{}, err
	}
	cctx, cancel := cleanup.Once(ctx)
	defer cancel()
	_ = probe.Generation(a.Generation).Delete(cctx)
	return a.Created, nil
}
