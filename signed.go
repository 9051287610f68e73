package roomstore

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// URLOption tunes one DownloadURL.
type URLOption func(*urlOptions) error

type urlOptions struct {
	attachment bool
	filename   string
	notAfter   time.Time
}

// NotAfter bounds the URL's life: it expires at t at the latest, before
// its usual expiry (WithURLExpiry) if t comes first; a room server passes
// the end of the participant's token, so that no URL outlives it. A t
// less than a second away makes DownloadURL fail with fs.ErrInvalid.
func NotAfter(t time.Time) URLOption {
	return func(o *urlOptions) error {
		if !o.notAfter.IsZero() && o.notAfter.Before(t) {
			return nil // the earlier bound holds
		}
		o.notAfter = t
		return nil
	}
}

// Attachment asks for a URL whose response carries Content-Disposition:
// attachment, so that a browser saves the file rather than show it, under
// filename (the file's base name when filename is ""). A filename that is
// not valid UTF-8, holds a control or format character (such as U+202E)
// or a slash, or is longer than 255 bytes makes DownloadURL fail with
// fs.ErrInvalid.
func Attachment(filename string) URLOption {
	return func(o *urlOptions) error {
		if filename != "" && !validFilename(filename) {
			return fmt.Errorf("%w: attachment filename %q", fs.ErrInvalid, filename)
		}
		o.attachment, o.filename = true, filename
		return nil
	}
}

func validFilename(name string) bool {
	if len(name) > roompath.MaxElementLen || !utf8.ValidString(name) || strings.Contains(name, "/") {
		return false
	}
	// Format characters (Cf) such as a right-to-left override could make a
	// save dialog show another extension than the file gets.
	return !strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) })
}

// DownloadURL returns a URL that a plain HTTP GET can fetch the file at
// path with until it expires (WithURLExpiry, or NotAfter); with
// Attachment, its response asks the browser to save the file. S3 and GCS
// sign it natively (an attachment through their signed response-header
// override) unless WithPresign(false); otherwise the engine signs it
// itself (HMAC-SHA256 over method, path, version, expiry and
// disposition) below WithBaseURL, to be served by Handler. Without a base
// URL such a backend yields errors.ErrUnsupported.
//
// A URL the engine signs is bound to the version of the file it was
// issued for (its ETag is signed in): once the file is overwritten,
// appended to, moved or deleted, the URL no longer serves it (Handler
// answers 410 Gone, or 404 for a file that is no longer there), so a
// link someone shared never hands out content written after it was
// made. A URL the store presigns names the path only (S3 cannot pin a
// version in a presigned URL without bucket versioning): it serves what
// is at the path when fetched.
//
// Read must be granted on path by the Policy of ctx (WithPolicy), else
// DownloadURL fails with an *AccessError. A missing file yields
// fs.ErrNotExist, a folder ErrIsFolder, and a bad option fs.ErrInvalid.
func (e *Engine) DownloadURL(ctx context.Context, p string, opts ...URLOption) (_ string, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.DownloadURL, p)
	defer call.End(&err)
	var o urlOptions
	for _, opt := range opts {
		if opt == nil {
			return "", &fs.PathError{Op: opDownloadURL, Path: p, Err: fmt.Errorf("%w: nil URLOption", fs.ErrInvalid)}
		}
		if err := opt(&o); err != nil {
			return "", &fs.PathError{Op: opDownloadURL, Path: p, Err: err}
		}
	}
	clean, err := e.enter(opDownloadURL, p, roompath.TargetFile)
	if err != nil {
		return "", err
	}
	defer e.inflight.Done()
	if err := gateOf(ctx).check(Read, clean); err != nil {
		return "", pathError(opDownloadURL, p, err)
	}
	info, err := e.b.Stat(ctx, clean)
	switch {
	case err != nil:
		return "", pathError(opDownloadURL, p, err)
	case info.IsFolder:
		return "", &fs.PathError{Op: opDownloadURL, Path: p, Err: ErrIsFolder}
	}
	filename := ""
	if o.attachment {
		filename = o.filename
		if filename == "" {
			filename = info.Name()
		}
	}
	now := time.Now()
	expiry := e.cfg.urlExpiry
	if !o.notAfter.IsZero() {
		left := o.notAfter.Sub(now).Truncate(time.Second)
		if left < time.Second {
			return "", &fs.PathError{Op: opDownloadURL, Path: p, Err: fmt.Errorf("%w: NotAfter leaves the URL less than a second", fs.ErrInvalid)}
		}
		expiry = min(expiry, left)
	}
	if !e.cfg.selfSign {
		u, err := e.b.Presign(ctx, clean, backend.PresignOptions{Expiry: expiry, ContentDisposition: disposition(filename)})
		switch {
		case err == nil:
			return u, nil
		case !errors.Is(err, errors.ErrUnsupported):
			return "", pathError(opDownloadURL, p, err)
		case e.cfg.baseURL.load() == nil:
			return "", &fs.PathError{Op: opDownloadURL, Path: p, Err: fmt.Errorf("%w: the backend cannot presign and no WithBaseURL is set", errors.ErrUnsupported)}
		}
	}
	// Whole seconds, rounded up, so a URL lives at least the expiry; but a
	// URL is valid through the second it names, so one bound by NotAfter
	// names the second before it.
	expires := now.Unix() + int64((expiry+time.Second-1)/time.Second)
	if !o.notAfter.IsZero() {
		expires = min(expires, o.notAfter.Unix()-1)
	}
	return e.signURL(http.MethodGet, clean, expires, filename, info.ETag), nil
}

// disposition is the Content-Disposition of an attachment named filename
// ("" for none), with RFC 2231 encoding for names beyond ASCII.
func disposition(filename string) string {
	if filename == "" {
		return ""
	}
	if d := mime.FormatMediaType("attachment", map[string]string{"filename": filename}); d != "" {
		return d
	}
	return "attachment"
}

// signURL builds base/escaped/path?exp=UNIX[&att=NAME][&v=ETAG]&sig=MAC.
func (e *Engine) signURL(method, clean string, expires int64, attachment, version string) string {
	exp := strconv.FormatInt(expires, 10)
	u := *e.cfg.baseURL.load()
	segs := strings.Split(clean, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	u.RawPath = u.Path + "/" + strings.Join(segs, "/")
	u.Path = u.Path + "/" + clean
	u.RawQuery = "exp=" + exp
	if attachment != "" {
		u.RawQuery += "&att=" + url.QueryEscape(attachment)
	}
	if version != "" {
		u.RawQuery += "&v=" + url.QueryEscape(version)
	}
	u.RawQuery += "&sig=" + e.signature(method, clean, exp, attachment, version)
	return u.String()
}

func (e *Engine) signature(method, clean, exp, attachment, version string) string {
	return signature(e.cfg.signingKey, e.basePath(), method, clean, exp, attachment, version)
}

func signature(key []byte, basePath, method, clean, exp, attachment, version string) string {
	m := hmac.New(sha256.New, key)
	// The base path is signed too, so that engines sharing a key but
	// mounted at different places (one room each) never accept each
	// other's URLs. Newlines cannot occur in a clean path, a parsed URL
	// path or a valid attachment name, so no field can be shifted into
	// another; a URL without attachment signs what the first URLs did.
	fmt.Fprintf(m, "roomstore-url-v1\n%s\n%s\n%s\n%s", method, basePath, clean, exp)
	if attachment != "" {
		fmt.Fprintf(m, "\nattachment\n%s", attachment)
	}
	// An ETag is opaque: its length goes first, so that no ETag can be
	// read as another with something after it.
	if version != "" {
		fmt.Fprintf(m, "\nversion\n%d\n%s", len(version), version)
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Handler serves the URLs that DownloadURL signs itself: GET and HEAD, with
// Range, ETag, Last-Modified and Content-Type, through http.ServeContent.
// Mount it where WithBaseURL points (its path prefix is expected in the
// request path). A URL that is tampered with, expired, signed for another
// path, or signed by an engine mounted at another base path (even with the
// same key) gets 403 with no detail; a validly signed URL of a file
// deleted since gets 404, and of a file changed since (another version
// than the one the URL was issued for) 410 Gone. HEAD is accepted on URLs
// signed for GET. Each
// request is one call of the operation "serve_url" in Stats, metrics and
// spans (see ServeFile), a refused signature with the outcome
// "permission" and no path.
func (e *Engine) Handler() http.Handler { return http.HandlerFunc(e.serveSigned) }

// errForbidden is the outcome of a request whose URL Handler refuses.
var errForbidden = fmt.Errorf("%w: the URL's signature is invalid, expired or for another path", fs.ErrPermission)

func (e *Engine) serveSigned(w http.ResponseWriter, r *http.Request) {
	clean, disposition, version, ok := e.verify(r) // clean is "" unless ok
	ctx, call := e.tel.Start(r.Context(), telemetry.ServeURL, clean)
	var err error
	defer call.End(&err) // deferred, so that a panic of w (http.ErrAbortHandler) ends the call too
	n := int64(-1)
	switch {
	case !allowGet(w, r):
		err = errMethod
	case !ok:
		http.Error(w, "forbidden", http.StatusForbidden)
		err = errForbidden
	default:
		n, err = e.serve(ctx, telemetry.ServeURL, w, r, clean, disposition, version)
	}
	call.SetBytes(n)
}

// verify checks the URL's signature and expiry and returns the clean path
// it was signed for, the Content-Disposition it asks for ("" for none)
// and the version it is bound to ("" for a URL signed before URLs named
// one, which names the path).
func (e *Engine) verify(r *http.Request) (clean, disp, version string, ok bool) {
	return verify(r, e.cfg.signingKey, e.basePath())
}

// VerifyURL reports whether r asks for a URL that an engine signed with
// key (WithSigningKey) below a base URL whose path is basePath
// (WithBaseURL, such as "/files/room-1"), and that has not expired. It
// opens nothing and reads no store, so that a server mounting the
// Handlers of many engines can refuse a forged or expired URL before it
// opens the engine the URL names. A URL that passes may still answer 404
// or 410 (its file deleted or changed since).
func VerifyURL(r *http.Request, key []byte, basePath string) bool {
	if len(key) < MinSigningKeyLen {
		return false
	}
	_, _, _, ok := verify(r, key, strings.TrimSuffix(basePath, "/"))
	return ok
}

func verify(r *http.Request, key []byte, basePath string) (clean, disp, version string, ok bool) {
	prefix := basePath + "/"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		return "", "", "", false
	}
	clean, err := roompath.Clean(r.URL.Path[len(prefix):], roompath.TargetFile)
	if err != nil {
		return "", "", "", false
	}
	q := r.URL.Query()
	exp, sig, att, v := q.Get("exp"), q.Get("sig"), q.Get("att"), q.Get("v")
	if len(q["exp"]) != 1 || len(q["sig"]) != 1 || len(q["att"]) > 1 || len(q["att"]) == 1 && att == "" ||
		len(q["v"]) > 1 || len(q["v"]) == 1 && v == "" {
		return "", "", "", false
	}
	want := signature(key, basePath, http.MethodGet, clean, exp, att, v)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return "", "", "", false
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || time.Now().Unix() > unix {
		return "", "", "", false
	}
	return clean, disposition(att), v, true
}

func (e *Engine) basePath() string {
	u := e.cfg.baseURL.load()
	if u == nil {
		return ""
	}
	return u.Path
}
