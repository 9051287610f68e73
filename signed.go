package roomstore

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/roomstore/roomstore/backend"
)

// DownloadURL returns a URL that a plain HTTP GET can fetch the file at
// path with until it expires (WithURLExpiry). S3 and GCS sign it natively;
// for other backends the engine signs it itself (HMAC-SHA256 over method,
// path and expiry) below WithBaseURL, to be served by Handler. Without a
// base URL such a backend yields errors.ErrUnsupported. A missing file
// yields fs.ErrNotExist and a folder ErrIsFolder.
func (e *Engine) DownloadURL(ctx context.Context, p string) (string, error) {
	clean, err := e.enter("downloadurl", p, backend.TargetFile)
	if err != nil {
		return "", err
	}
	defer e.inflight.Done()
	info, err := e.b.Stat(ctx, clean)
	switch {
	case err != nil:
		return "", pathError("downloadurl", p, err)
	case info.IsFolder:
		return "", &fs.PathError{Op: "downloadurl", Path: p, Err: ErrIsFolder}
	}
	u, err := e.b.Presign(ctx, clean, e.cfg.urlExpiry)
	switch {
	case err == nil:
		return u, nil
	case !errors.Is(err, errors.ErrUnsupported):
		return "", pathError("downloadurl", p, err)
	case e.cfg.baseURL == nil:
		return "", &fs.PathError{Op: "downloadurl", Path: p, Err: fmt.Errorf("%w: the backend cannot presign and no WithBaseURL is set", errors.ErrUnsupported)}
	}
	// Whole seconds, rounded up, so a URL lives at least the expiry.
	expires := time.Now().Unix() + int64((e.cfg.urlExpiry+time.Second-1)/time.Second)
	return e.signURL(http.MethodGet, clean, expires), nil
}

// signURL builds base/escaped/path?exp=UNIX&sig=MAC.
func (e *Engine) signURL(method, clean string, expires int64) string {
	exp := strconv.FormatInt(expires, 10)
	u := *e.cfg.baseURL
	segs := strings.Split(clean, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	u.RawPath = u.Path + "/" + strings.Join(segs, "/")
	u.Path = u.Path + "/" + clean
	u.RawQuery = "exp=" + exp + "&sig=" + e.signature(method, clean, exp)
	return u.String()
}

func (e *Engine) signature(method, clean, exp string) string {
	m := hmac.New(sha256.New, e.cfg.signingKey)
	// The base path is signed too, so that engines sharing a key but
	// mounted at different places (one room each) never accept each
	// other's URLs. Newlines cannot occur in a clean path or a parsed URL
	// path, so no field can be shifted into another.
	fmt.Fprintf(m, "roomstore-url-v1\n%s\n%s\n%s\n%s", method, e.basePath(), clean, exp)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Handler serves the URLs that DownloadURL signs itself: GET and HEAD, with
// Range, ETag, Last-Modified and Content-Type, through http.ServeContent.
// Mount it where WithBaseURL points (its path prefix is expected in the
// request path). A URL that is tampered with, expired, signed for another
// path, or signed by an engine mounted at another base path (even with the
// same key) gets 403 with no detail; a validly signed URL of a file
// deleted since gets 404. HEAD is accepted on URLs signed for GET.
func (e *Engine) Handler() http.Handler { return http.HandlerFunc(e.serveSigned) }

func (e *Engine) serveSigned(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	clean, ok := e.verify(r)
	if !ok {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
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
			e.cfg.logger.Error("roomstore: serving a signed URL", "path", clean, "err", err)
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
	h.Set("Cache-Control", "private")
	// Stored files are user content: never let a browser run them as part
	// of the origin that serves them.
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox")
	http.ServeContent(w, r, info.Name(), info.ModTime, content)
}

// verify checks the URL's signature and expiry and returns the clean path
// it was signed for.
func (e *Engine) verify(r *http.Request) (string, bool) {
	prefix := e.basePath() + "/"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		return "", false
	}
	clean, err := backend.Clean(r.URL.Path[len(prefix):], backend.TargetFile)
	if err != nil {
		return "", false
	}
	q := r.URL.Query()
	exp, sig := q.Get("exp"), q.Get("sig")
	if len(q["exp"]) != 1 || len(q["sig"]) != 1 {
		return "", false
	}
	want := e.signature(http.MethodGet, clean, exp)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return "", false
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || time.Now().Unix() > unix {
		return "", false
	}
	return clean, true
}

func (e *Engine) basePath() string {
	if e.cfg.baseURL == nil {
		return ""
	}
	return e.cfg.baseURL.Path
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
			return 0, fmt.Errorf("roomstore: %s changed while being served", v.path)
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
