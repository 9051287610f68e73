package roomstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"

	"github.com/roomstore/roomstore/backend"
)

// ServeFile serves the file at path to an HTTP GET or HEAD, for servers
// that authorise downloads themselves rather than hand out signed URLs:
// Range, If-None-Match, If-Range and If-Modified-Since on the file's ETag
// and ModTime, Content-Type (from the extension, else sniffed), all through
// http.ServeContent, with every byte from the one version whose headers
// were sent. The request's context bounds the reads. It answers 400 for an
// invalid path, 404 when no file is there (a folder included), 405 for
// other methods, 503 after Shutdown or when the store fails (logged); the
// response never tells why beyond that. Stored files are user content, so
// the response also carries X-Content-Type-Options: nosniff and
// Content-Security-Policy: sandbox.
func (e *Engine) ServeFile(w http.ResponseWriter, r *http.Request, p string) {
	if !allowGet(w, r) {
		return
	}
	clean, err := backend.Clean(p, backend.TargetFile)
	if err != nil {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	e.serve(w, r, clean, "")
}

// allowGet answers 405 to anything but GET and HEAD.
func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// serve serves the file at clean, with a Content-Disposition header when
// disposition is set.
func (e *Engine) serve(w http.ResponseWriter, r *http.Request, clean, disposition string) {
	if err := e.begin("serve", clean); err != nil {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	defer e.inflight.Done()
	ctx := r.Context()
	// A plain GET of the whole file, the common request, takes its headers
	// from the read itself, so that they describe the bytes sent whatever
	// commits meanwhile. Requests that may need no body (HEAD, conditional
	// ones) or another part of it ask Stat first.
	var (
		stream io.ReadCloser
		info   backend.Info
		err    error
	)
	h := r.Header
	if r.Method == http.MethodGet && h.Get("Range") == "" && h.Get("If-None-Match") == "" && h.Get("If-Modified-Since") == "" {
		stream, info, err = e.b.Read(ctx, clean, 0, -1)
	} else if info, err = e.b.Stat(ctx, clean); err == nil && info.IsFolder {
		err = ErrIsFolder
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrIsFolder) {
			http.Error(w, "not found", http.StatusNotFound)
		} else {
			e.cfg.logger.Error("roomstore: serving a file", "path", clean, "err", err)
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		}
		return
	}
	content := &versionReader{ctx: ctx, b: e.b, path: clean, info: info, r: stream}
	defer content.Close()
	h = w.Header()
	h.Set("ETag", `"`+info.ETag+`"`)
	if t := mimeTypeByExt(clean); t != "" {
		h.Set("Content-Type", t)
	}
	if disposition != "" {
		h.Set("Content-Disposition", disposition)
	}
	h.Set("Cache-Control", "private")
	// Stored files are user content: never let a browser run them as part
	// of the origin that serves them.
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox")
	http.ServeContent(w, r, info.Name(), info.ModTime, content)
}

// versionReader is the io.ReadSeeker that http.ServeContent needs, over
// ranged backend reads. Its stream stays open across Seeks that come back
// to where it stands (ServeContent's Seek to the end and back to learn the
// size), and a Read elsewhere opens a read at that position, so a range
// request costs one read. It refuses to mix versions: a read of another
// version than the one whose headers were sent, or of a file gone or
// shrunk since, fails with errChanged.
type versionReader struct {
	ctx  context.Context
	b    backend.Backend
	path string
	info backend.Info
	pos  int64         // where the next Read reads
	r    io.ReadCloser // the open stream, if any
	at   int64         // where r stands
}

// errChanged reports a file that changed while a versionReader read it.
var errChanged = fmt.Errorf("%w: the file changed while being read", ErrConflict)

func (v *versionReader) Read(p []byte) (int, error) {
	if v.r != nil && v.at != v.pos {
		v.Close()
	}
	if v.r == nil {
		if v.pos >= v.info.Size {
			return 0, io.EOF
		}
		r, info, err := v.b.Read(v.ctx, v.path, v.pos, -1)
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrInvalid), errors.Is(err, ErrIsFolder):
			return 0, errChanged // gone, shrunk below pos, or replaced by a folder
		case err != nil:
			return 0, err
		case info.ETag != v.info.ETag:
			r.Close()
			return 0, errChanged
		}
		v.r, v.at = r, v.pos
	}
	n, err := v.r.Read(p)
	v.pos += int64(n)
	v.at = v.pos
	return n, err
}

func (v *versionReader) Seek(offset int64, whence int) (int64, error) {
	var pos int64
	switch whence {
	case io.SeekStart:
		pos = offset
	case io.SeekCurrent:
		pos = v.pos + offset
	case io.SeekEnd:
		pos = v.info.Size + offset
	default:
		return 0, fmt.Errorf("%w: whence %d", fs.ErrInvalid, whence)
	}
	if pos < 0 {
		return 0, fmt.Errorf("%w: negative position %d", fs.ErrInvalid, pos)
	}
	v.pos = pos
	return pos, nil
}

func (v *versionReader) Close() error {
	if v.r == nil {
		return nil
	}
	err := v.r.Close()
	v.r = nil
	return err
}
