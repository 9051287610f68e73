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
	info, err := e.b.Stat(ctx, clean)
	if err != nil || info.IsFolder {
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			http.Error(w, "not found", http.StatusNotFound)
		} else {
			e.cfg.logger.Error("roomstore: serving a file", "path", clean, "err", err)
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		}
		return
	}
	content := &versionReader{ctx: ctx, b: e.b, path: clean, info: info}
	defer content.Close()
	h := w.Header()
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
// ranged backend reads. It opens a read at the position of the first Read
// after a Seek, so a range request costs one read, and refuses to mix
// versions: a read of another version than the one whose headers were sent
// fails.
type versionReader struct {
	ctx  context.Context
	b    backend.Backend
	path string
	info backend.Info
	pos  int64
	r    io.ReadCloser
}

// errChanged reports a file that changed while a versionReader read it.
var errChanged = fmt.Errorf("%w: the file changed while being read", ErrConflict)

func (v *versionReader) Read(p []byte) (int, error) {
	if v.r == nil {
		if v.pos >= v.info.Size {
			return 0, io.EOF
		}
		r, info, err := v.b.Read(v.ctx, v.path, v.pos, -1)
		if err != nil {
			return 0, err
		}
		if info.ETag != v.info.ETag {
			r.Close()
			return 0, errChanged
		}
		v.r = r
	}
	n, err := v.r.Read(p)
	v.pos += int64(n)
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
		return 0, fmt.Errorf("roomstore: bad whence %d", whence)
	}
	if pos < 0 {
		return 0, fmt.Errorf("roomstore: negative position %d", pos)
	}
	if pos != v.pos {
		v.Close()
		v.pos = pos
	}
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
