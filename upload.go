package roomstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"

	"github.com/roomstore/roomstore/internal/telemetry"
)

// uploadChunk is how much of the reader Upload hands to a Write at a time.
// Backends stage bigger units themselves (an S3 part, a GCS chunk), so
// this only bounds Upload's own buffer.
const uploadChunk = 256 << 10

var uploadBuffers = sync.Pool{New: func() any { b := make([]byte, uploadChunk); return &b }}

// Upload writes everything r yields to the file at path through a handle
// (Open with opts, Write in chunks, Close), so memory stays bounded
// whatever the size, and returns the Entry of the committed file. If r
// fails or panics (the panic goes on), or ctx ends, the handle is aborted
// and the file keeps its old content; a read that blocks is not interrupted by ctx (as with io.Copy),
// so give r a deadline of its own where it can block. Errors are those of
// Open, Write and Close under the operation "upload", r's error wrapped
// (also for a reader that breaks the io.Reader contract); a nil r yields
// fs.ErrInvalid. It is one call in Stats and metrics, and one span, under
// the operation "upload": its Open, Writes and Close are not recorded apart.
func (e *Engine) Upload(ctx context.Context, p string, r io.Reader, opts OpenOptions) (_ Entry, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Upload, p)
	defer call.End(&err)
	if r == nil {
		return Entry{}, &fs.PathError{Op: "upload", Path: p, Err: fmt.Errorf("%w: nil reader", fs.ErrInvalid)}
	}
	en, written, err := e.upload(ctx, telemetry.Upload, p, r, opts)
	if err != nil {
		return Entry{}, err
	}
	call.SetBytes(written)
	return en, nil
}

// upload is Upload, unrecorded but for its commit attempts and bytes
// written, under the name of top (Upload or Restore): it returns the
// committed Entry and how many bytes that was.
func (e *Engine) upload(ctx context.Context, top telemetry.Op, p string, r io.Reader, opts OpenOptions) (Entry, int64, error) {
	op := top.String()
	h, err := e.open(ctx, ctx, p, opts)
	if err != nil {
		return Entry{}, 0, reop(op, err)
	}
	// Whatever ends the upload before its Close (r fails, a Write fails and
	// has discarded h already, r panics), h is discarded on the way out, on
	// the caller's context: what the abort has left to do once ctx has
	// ended goes on in the background (Shutdown waits).
	closed := false
	defer func() {
		if !closed {
			_, _ = h.discard(ctx, errUploadFailed, "")
		}
	}()
	bp := uploadBuffers.Get().(*[]byte)
	defer uploadBuffers.Put(bp)
	buf := *bp
	for {
		n, rerr := r.Read(buf)
		if n < 0 || n > len(buf) {
			n, rerr = 0, fmt.Errorf("the reader returned %d bytes into a buffer of %d", n, len(buf))
		}
		if n > 0 {
			if err := e.write(ctx, h, buf[:n]); err != nil {
				return Entry{}, 0, reop(op, err) // a failed Write discarded h
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr == nil {
			rerr = ctx.Err()
		}
		if rerr != nil {
			return Entry{}, 0, &fs.PathError{Op: op, Path: p, Err: fmt.Errorf("reading the %s: %w", op, rerr)}
		}
	}
	info, written, err := e.close(ctx, top, h)
	closed = true // Close has finished h, or Shutdown will
	if err != nil {
		return Entry{}, 0, err
	}
	return entry(info), written, nil
}

// errUploadFailed is why the handle of a failed Upload is finished.
var errUploadFailed = fmt.Errorf("%w: handle discarded after a failed upload", fs.ErrClosed)

// reop renames the operation of the engine's *fs.PathError.
func reop(op string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: op, Path: pe.Path, Err: pe.Err}
	}
	return err
}
