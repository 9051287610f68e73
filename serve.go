package roomstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// ServeFile serves the file at path to an HTTP GET or HEAD, for servers
// that authorise downloads themselves rather than hand out signed URLs:
// Range, If-None-Match, If-Range and If-Modified-Since on the file's ETag
// and ModTime, Content-Type (from the extension, else sniffed), all through
// http.ServeContent, with every byte from the one version whose headers
// were sent. The request's context bounds the reads. It answers 400 for an
// invalid path, 403 when the Policy of the request's context (WithPolicy)
// refuses Read, 404 when no file is there (a folder included), 405 for
// other methods, 503 after Shutdown or when the store or the policy fails
// (logged); the response never tells why beyond that. Stored files are user content, so
// the response also carries X-Content-Type-Options: nosniff and
// Content-Security-Policy: sandbox.
//
// Each request is one call of the operation "serve_file" in Stats, metrics
// and spans, until the response is written, with the body's bytes as
// bytes read; its outcome is "invalid" for a 400 or 405, "not_exist" or
// "is_folder" for a 404, that of the failure for a 503 ("closed" after
// Shutdown), that of a read that failed while the body was sent, and
// "ok" for any response http.ServeContent chose (a 304 or 416 too).
func (e *Engine) ServeFile(w http.ResponseWriter, r *http.Request, p string) {
	ctx, call := e.tel.Start(r.Context(), telemetry.ServeFile, p)
	var err error
	defer call.End(&err) // deferred, so that a panic of w (http.ErrAbortHandler) ends the call too
	var n int64
	n, err = e.serveFile(ctx, w, r, p)
	call.SetBytes(n)
}

func (e *Engine) serveFile(ctx context.Context, w http.ResponseWriter, r *http.Request, p string) (int64, error) {
	if !allowGet(w, r) {
		return -1, errMethod
	}
	clean, err := roompath.Clean(p, roompath.TargetFile)
	if err != nil {
		http.Error(w, "bad path", http.StatusBadRequest)
		return -1, err
	}
	if err := gateOf(ctx).check(Read, clean); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			http.Error(w, "forbidden", http.StatusForbidden)
		} else {
			e.logServeFailure(ctx, clean, err)
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		}
		return -1, err
	}
	return e.serve(ctx, telemetry.ServeFile, w, r, clean, "", "")
}

// logServeFailure logs a request for the file at clean that failed with
// err: at ERROR, unless the request's context ended first (the client
// gave up waiting, on a stalled store, or went away), an ordinary event
// logged at INFO.
func (e *Engine) logServeFailure(ctx context.Context, clean string, err error) {
	if ctx.Err() != nil {
		e.cfg.logger.Info("roomstore: a request for a file ended before the store answered: the client gave up or went away", "path", clean, "err", err)
		return
	}
	e.cfg.logger.Error("roomstore: serving a file", "path", clean, "err", err)
}

// errMethod is the outcome of a request that allowGet refuses.
var errMethod = fmt.Errorf("%w: method not allowed", fs.ErrInvalid)

// allowGet answers 405 to anything but GET and HEAD.
func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// serve serves the file at clean for the call op, whose context is ctx,
// with a Content-Disposition header when disposition is set, and only
// the version whose ETag is version when that is set (410 Gone for any
// other). It returns
// the bytes of the body sent and the failure, if any: -1 when it failed
// before http.ServeContent ran, and 0 for a response that ServeContent
// sent without the file's bytes (HEAD, 304, 416).
func (e *Engine) serve(ctx context.Context, op telemetry.Op, w http.ResponseWriter, r *http.Request, clean, disposition, version string) (int64, error) {
	if err := e.begin("serve", clean); err != nil {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return -1, err
	}
	defer e.inflight.Done()
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
			e.logServeFailure(ctx, clean, err)
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		}
		return -1, err
	}
	if version != "" && info.ETag != version {
		if stream != nil {
			stream.Close()
		}
		http.Error(w, "gone: the file has changed since this URL was issued", http.StatusGone)
		return -1, fmt.Errorf("%w: the URL's version has been replaced", fs.ErrNotExist)
	}
	// http.ServeContent sniffs the type of a file without an extension with
	// a read before it first seeks (to learn the size), and reads the body
	// only after: those sniffed bytes are not the body's.
	content := &versionReader{ctx: ctx, b: e.b, path: clean, info: info, r: stream, bodyOnly: true}
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
	boundRanges(r.Header, info.Size)
	http.ServeContent(w, r, info.Name(), info.ModTime, content)
	e.tel.BytesRead(ctx, op, content.n)
	return content.n, content.err
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
	n    int64         // bytes Read returned, in all (with bodyOnly, since the first Seek)
	err  error         // the first error of Read other than io.EOF

	bodyOnly bool // n counts no Read before the first Seek (see serve)
	seeked   bool // Seek was called
}

// errChanged reports a file that changed while a versionReader read it.
var errChanged = fmt.Errorf("%w: the file changed while being read", ErrConflict)

func (v *versionReader) Read(p []byte) (int, error) {
	n, err := v.read(p)
	if v.seeked || !v.bodyOnly {
		v.n += int64(n)
	}
	if err != nil && err != io.EOF && v.err == nil {
		v.err = err
	}
	return n, err
}

func (v *versionReader) read(p []byte) (int, error) {
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
	v.pos, v.seeked = pos, true
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

// maxRanges bounds the ranges of one response: each costs a read of its
// own (and on disk an open), so that a request for thousands of ranges
// would cost that many for a body no bigger than the file.
const maxRanges = 16

// boundRanges rewrites a Range header of more than maxRanges ranges:
// overlapping and adjacent ranges are merged, and if more than maxRanges
// remain, or the header cannot be read, it is dropped, so that the whole
// file is served (RFC 9110 lets a server ignore Range).
func boundRanges(h http.Header, size int64) {
	v := h.Get("Range")
	if strings.Count(v, ",") < maxRanges {
		return
	}
	spec, ok := strings.CutPrefix(v, "bytes=")
	if !ok {
		h.Del("Range") // not bytes: served whole, as ServeContent would
		return
	}
	type span struct{ start, end int64 } // inclusive
	var spans []span
	for part := range strings.SplitSeq(spec, ",") {
		// Read as ServeContent reads it: blanks around each side, empty
		// elements skipped.
		part = textproto.TrimString(part)
		if part == "" {
			continue
		}
		a, b, ok := strings.Cut(part, "-")
		if !ok {
			h.Del("Range") // too many to pass on, and not to be read: ignored
			return
		}
		a, b = textproto.TrimString(a), textproto.TrimString(b)
		var s span
		switch {
		case a == "": // the last b bytes
			n, err := strconv.ParseInt(b, 10, 64)
			if err != nil || n < 0 {
				h.Del("Range")
				return
			}
			s = span{max(size-n, 0), size - 1}
		default:
			start, err := strconv.ParseInt(a, 10, 64)
			if err != nil || start < 0 {
				h.Del("Range")
				return
			}
			end := size - 1
			if b != "" {
				if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
					h.Del("Range")
					return
				}
			}
			s = span{start, min(end, size-1)}
		}
		if s.start <= s.end { // one past the end is left out, as ServeContent does
			spans = append(spans, s)
		}
	}
	slices.SortFunc(spans, func(x, y span) int { return cmp.Compare(x.start, y.start) })
	merged := spans[:0]
	for _, s := range spans {
		if n := len(merged); n > 0 && s.start <= merged[n-1].end+1 {
			merged[n-1].end = max(merged[n-1].end, s.end)
			continue
		}
		merged = append(merged, s)
	}
	switch {
	case len(merged) == 0:
		return // none satisfiable: ServeContent answers 416, reading nothing
	case len(merged) > maxRanges:
		h.Del("Range")
		return
	}
	parts := make([]string, len(merged))
	for i, s := range merged {
		parts[i] = strconv.FormatInt(s.start, 10) + "-" + strconv.FormatInt(s.end, 10)
	}
	h.Set("Range", "bytes="+strings.Join(parts, ","))
}
