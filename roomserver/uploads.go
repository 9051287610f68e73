package roomserver

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	xslog "golang.org/x/exp/slog"

	"github.com/roomstore/roomstore"
)

// The tus 1.0 protocol of resumable uploads (SPEC 9.6), as Uploads serves
// it: the extensions it offers, its version, and the bounds of the
// headers it reads.
const (
	// TusExtensions are the tus extensions Uploads offers (Tus-Extension):
	// concatenation and creation-defer-length are not among them.
	TusExtensions = "creation,creation-with-upload,termination,expiration"
	// TusVersion is the one version of tus Uploads speaks.
	TusVersion = "1.0.0"
	// MaxTusMetadataHeader bounds a request's Upload-Metadata header in
	// bytes (the metadata itself is bounded by
	// roomstore.MaxResumableMetadata, base64 makes it a third longer), and
	// MaxTusAuthorization its Authorization header: a request with a
	// longer one gets 431 and opens nothing.
	MaxTusMetadataHeader = roomstore.MaxResumableMetadata*4/3 + 1024
	MaxTusAuthorization  = 16 << 10
)

// tusUploads serves the tus endpoint of a Server (see Uploads).
type tusUploads struct {
	s      *Server
	prefix string
	key    []byte // signs the uploads' URLs to their identity (see uploadID)
	h      *handler.UnroutedHandler
	routed http.Handler // h's middleware around routing by method
}

// Uploads returns the handler of the rooms' resumable uploads over the
// tus 1.0 protocol, mounted at prefix (such as "/tus/"): an upload is
// created by POST prefix+room+"/" and lives at the URL its Location names,
// prefix+room+"/"+id, where HEAD tells its offset, PATCH appends bytes
// from that offset and DELETE abandons it. The room path comes from the
// Upload-Metadata key "path", and "overwrite" set to "true" lets the
// upload replace a file there. The upload's bytes are kept by the room's
// engine (roomstore.Engine.CreateResumable and the calls beside it), and
// its last byte commits it at once, with one file.updated; before that no
// participant sees it. Extensions: TusExtensions (Upload-Expires on the
// answers to POST, PATCH and HEAD says when an unfinished upload is
// removed); no concatenation, no deferred length, no downloads, and no
// CORS: a request from a browser page of another origin than the server's
// (and Options.OriginPatterns) gets 403.
//
// Every request but OPTIONS carries a room token (Authorization: Bearer),
// verified with Options.Verify for the room of its URL: none, or not a
// Bearer one, gets 401 with WWW-Authenticate: Bearer, a bad or expired one
// 403, and nothing is opened for either. The identity's Policy decides
// the path (a path it may not write is refused at POST with 403), and an
// upload is the identity's own: another identity, or another room, finds
// no such upload (404). A room whose store does not exist gets 404 for an
// identity that may not create it, creating nothing.
//
// Budgets: each request takes a call from the identity's CallRate and
// counts as one of its connections (MaxConnectionsPerIdentity,
// MaxConnections) while it runs; a request that sends bytes (PATCH, or a
// POST with some) counts as one of its streams (MaxStreamsPerIdentity,
// MaxOpenStreams), its body must keep coming (each read within
// MessageTimeout) and is cut when the identity expires; the declared
// Upload-Length is at most MaxUploadLength (Tus-Max-Size) and the room's
// Quota; an identity holds at most roomstore.ResumableLimits.PerParticipant
// unfinished uploads in a room. Shutdown waits for the bodies under way as
// for streams, then cuts them (503).
//
// Statuses: 400 invalid path, metadata or header; 401 no token; 403 bad
// or expired token, a path the policy does not let the identity write, a
// foreign origin; 404 unknown, expired, finished or foreign upload, or no
// such room; 409 an existing file without overwrite, a folder at the path
// or a file above it, an offset that is not the upload's; 413 over
// MaxUploadLength, the quota or the upload's length; 429 a budget of the
// identity; 431 an oversized header; 503 the server's budget, shutting
// down, or the store unavailable. Every refusal's body is one line that
// names no host path. A prefix that is not a URL path makes a handler
// that answers every request with 500 (and logs why).
func (s *Server) Uploads(prefix string) http.Handler {
	u := &tusUploads{s: s, prefix: prefix, key: s.o.SigningKey}
	if len(u.key) == 0 {
		// The uploads' URLs then live as long as this server.
		u.key = make([]byte, 32)
		_, _ = rand.Read(u.key)
	}
	composer := handler.NewStoreComposer()
	store := tusStore{u}
	composer.UseCore(store)
	composer.UseTerminater(store)
	composer.UseLocker(&tusLocker{held: map[string]*tusLock{}})
	h, err := handler.NewUnroutedHandler(handler.Config{
		StoreComposer:        composer,
		BasePath:             prefix,
		MaxSize:              s.o.MaxUploadLength,
		DisableDownload:      true,
		DisableConcatenation: true,
		Cors:                 &handler.CorsConfig{Disable: true},
		// The handler's own log says what every request did: the
		// server logs its refusals itself.
		Logger:         xslog.New(xslog.NewTextHandler(io.Discard, nil)),
		NetworkTimeout: s.o.MessageTimeout,
		// The store's calls take the server's context, not the
		// handler's: this delay only lets the handler's context of a
		// request end soon after the request.
		GracefulRequestCompletionTimeout: time.Millisecond,
		AcquireLockTimeout:               s.o.MessageTimeout,
	})
	if err != nil {
		// A prefix that is no URL path: every request is refused.
		s.log.Error("tus endpoint unavailable", "prefix", prefix, "err", err)
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			refuseHTTP(w, "tus endpoint unavailable", http.StatusInternalServerError)
		})
	}
	u.h = h
	u.routed = h.Middleware(http.HandlerFunc(u.route))
	return u
}

// tusRequest is one tus request the server is serving: what the store's
// calls need (the room, the identity's context for the engine, the
// response's headers) and, for one that sends bytes, how to cut its body.
type tusRequest struct {
	rm    *room
	eng   *roomstore.Engine
	ectx  context.Context // the identity and its policy, for the engine
	ident Identity
	abort bool // a DELETE: the upload goes, complete or not
	w     http.ResponseWriter
	rc    *http.ResponseController
	body  bool          // it sends bytes: Shutdown waits for it
	ended chan struct{} // closed once it has been answered

	mu   sync.Mutex
	cut  error // why its body was cut, nil while it is not
	done bool  // its handler is returning: its connection may serve another request
}

// cutBody ends the request's body with err, which the request is then
// answered with: the body's next read fails at once. Once the request is
// done it does nothing, so that a cut that comes late (a timer, a lock)
// never reaches the next request of its connection.
func (q *tusRequest) cutBody(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.done {
		return
	}
	if q.cut == nil {
		q.cut = err
	}
	_ = q.rc.SetReadDeadline(time.Now())
}

// finish marks the request done (see cutBody).
func (q *tusRequest) finish() {
	q.mu.Lock()
	q.done = true
	q.mu.Unlock()
}

func (q *tusRequest) cutErr() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cut
}

// guardedBody reads a tus request's body until it is cut (cutBody): then
// it fails with the reason, which the handler answers with. The handler
// reads it on the request's goroutine, through the store's WriteChunk.
type guardedBody struct {
	io.ReadCloser
	q *tusRequest
}

// Read reads the body. A body that ends short (cut, timed out, dropped)
// closes the connection after the answer: the server then does not wait
// to read what is left of it before answering.
func (b guardedBody) Read(p []byte) (int, error) {
	if err := b.q.cutErr(); err != nil {
		b.q.w.Header().Set("Connection", "close")
		return 0, err
	}
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.q.w.Header().Set("Connection", "close")
		if cut := b.q.cutErr(); cut != nil {
			return n, cut
		}
	}
	return n, err
}

// tusKey finds a tus request in its context.
type tusKey struct{}

func tusRequestOf(ctx context.Context) *tusRequest {
	q, _ := ctx.Value(tusKey{}).(*tusRequest)
	return q
}

// tusError is a refusal with its status and a one-line text.
func tusError(status int, text string) handler.Error {
	code := "ERR_" + strings.ToUpper(strings.ReplaceAll(http.StatusText(status), " ", "_"))
	return handler.NewError(code, text, status)
}

// The refusals the server makes itself.
var (
	errTusShutdown = tusError(http.StatusServiceUnavailable, "server shutting down")
	errTusExpired  = tusError(http.StatusForbidden, "token expired")
	errTusNoUpload = tusError(http.StatusNotFound, "no such upload")
	// errTusInterrupted cuts the body of a request that holds an upload
	// another request of its identity asks for: most often one whose
	// client went away unseen, and came back to resume.
	errTusInterrupted = tusError(http.StatusBadRequest, "interrupted by another request for the upload")
)

// tusLocker holds each upload for one request at a time (the handler's
// Locker). A request that finds its upload held cuts the body of the one
// that holds it (a PATCH whose client is gone, as far as the server can
// tell) and waits for it to end. It cuts the body itself rather than
// have the handler cancel the request (memorylocker's way), whose
// goroutine then reads the request's state unsynchronised.
type tusLocker struct {
	mu   sync.Mutex
	held map[string]*tusLock
}

// tusLock is one upload held by a request.
type tusLock struct {
	l        *tusLocker
	id       string
	holder   *tusRequest   // nil for a request the server does not track
	released chan struct{} // closed by Unlock
}

// NewLock implements handler.Locker.
func (l *tusLocker) NewLock(id string) (handler.Lock, error) {
	return &tusLock{l: l, id: id}, nil
}

// Lock takes the upload for the request of ctx, cutting the body of the
// request that holds it, if any, and waiting until it lets go or ctx
// ends (the handler bounds it by its AcquireLockTimeout).
func (k *tusLock) Lock(ctx context.Context, _ func()) error {
	q := tusRequestOf(ctx)
	for {
		k.l.mu.Lock()
		cur := k.l.held[k.id]
		if cur == nil {
			k.holder, k.released = q, make(chan struct{})
			k.l.held[k.id] = k
			k.l.mu.Unlock()
			return nil
		}
		k.l.mu.Unlock()
		if cur.holder != nil && cur.holder.body {
			cur.holder.cutBody(errTusInterrupted)
		}
		select {
		case <-cur.released:
		case <-ctx.Done():
			return handler.ErrLockTimeout
		}
	}
}

// Unlock implements handler.Lock.
func (k *tusLock) Unlock() error {
	k.l.mu.Lock()
	if k.l.held[k.id] == k {
		delete(k.l.held, k.id)
	}
	k.l.mu.Unlock()
	close(k.released)
	return nil
}

func (u *tusUploads) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := u.s
	rest, ok := strings.CutPrefix(r.URL.Path, u.prefix)
	name, id, found := strings.Cut(rest, "/")
	if !ok || !found || !ValidRoom(name) || strings.Contains(id, "/") {
		http.NotFound(w, r)
		return
	}
	if !u.sameOrigin(r) {
		s.logRefusal(Budget(""), "tus request refused", "room", name, "reason", "foreign origin")
		refuseHTTP(w, "origin not allowed", http.StatusForbidden)
		return
	}
	// A method override is taken here, before the checks its method
	// needs, not later by the handler.
	if m := r.Header.Get("X-HTTP-Method-Override"); r.Method == http.MethodPost && m != "" {
		r.Method = m
	}
	r.Header.Del("X-HTTP-Method-Override")
	allow := "POST, OPTIONS"
	if id != "" {
		allow = "HEAD, PATCH, DELETE, OPTIONS"
	}
	switch {
	case r.Method == http.MethodOptions:
		u.options(w)
		return
	case id == "" && r.Method == http.MethodPost:
	case id != "" && (r.Method == http.MethodHead || r.Method == http.MethodPatch || r.Method == http.MethodDelete):
	default:
		w.Header().Set("Allow", allow)
		refuseHTTP(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if len(r.Header.Get("Upload-Metadata")) > MaxTusMetadataHeader || len(r.Header.Get("Authorization")) > MaxTusAuthorization {
		refuseHTTP(w, "request header too large", http.StatusRequestHeaderFieldsTooLarge)
		return
	}
	ident, ok := u.authenticate(w, r, name)
	if !ok {
		return
	}
	idst, code, err := s.lim.admit(ident.Name)
	if err != nil {
		s.logRefusal(Budget(""), "tus request refused", "room", name, "name", ident.Name, "reason", err)
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		refuseHTTP(w, err.Error(), code)
		return
	}
	defer s.lim.leave(idst)
	if id != "" {
		// Before the handler locks the upload, which interrupts a
		// request holding it: only its own identity may, and the
		// engine, which holds an upload's calls while one writes, is
		// not asked, nor the room opened.
		if _, ok := u.engineID(name, id, ident.Name); !ok {
			u.refuse(w, r, errTusNoUpload)
			return
		}
	}
	sends := r.Method == http.MethodPatch || (r.Method == http.MethodPost && r.Header.Get("Content-Type") == "application/offset+octet-stream")
	q := &tusRequest{ident: ident, abort: r.Method == http.MethodDelete, w: w, rc: http.NewResponseController(w), body: sends, ended: make(chan struct{})}
	if !s.trackUpload(q) {
		refuseHTTP(w, errShuttingDown.Error(), http.StatusServiceUnavailable)
		return
	}
	defer s.untrackUpload(q)
	defer q.finish()
	create, err := mayWrite(r.Context(), ident)
	if err != nil {
		s.log.Warn("tus request refused: the access policy failed", "room", name, "err", err)
		refuseHTTP(w, "room unavailable", http.StatusServiceUnavailable)
		return
	}
	rm, ok := s.enterRoom(w, r, name, create, "tus request refused")
	if !ok {
		return
	}
	defer s.release(rm)
	q.rm, q.eng = rm, rm.eng
	// The engine's calls outlive a client that goes away mid-call: a
	// cut body ends in EOF, and what it delivered is kept.
	q.ectx = roomstore.WithParticipant(context.WithoutCancel(r.Context()), ident.Name)
	if ident.Policy != nil || !ident.Expires.IsZero() {
		q.ectx = roomstore.WithPolicy(q.ectx, connPolicy{p: ident.Policy, expires: ident.Expires})
	}
	if sends {
		if code, text := s.lim.openStream(idst); code != 0 {
			s.logRefusal(Budget(""), "tus request refused", "room", name, "name", ident.Name, "reason", text)
			if code == CodeTooMany {
				w.Header().Set("Retry-After", "1")
			}
			refuseHTTP(w, text, code)
			return
		}
		defer s.lim.closeStream(idst)
		if r.Body != nil {
			r.Body = guardedBody{r.Body, q}
		}
		if !ident.Expires.IsZero() {
			t := time.AfterFunc(time.Until(ident.Expires), func() { q.cutBody(errTusExpired) })
			defer t.Stop()
		}
		if s.draining() { // Shutdown began as the request came in
			q.cutBody(errTusShutdown)
		}
	}
	// The handler takes the rest of the path, room/id, for the upload's
	// id, and makes its URL of the prefix and that.
	r = r.WithContext(context.WithValue(r.Context(), tusKey{}, q))
	r.URL = &url.URL{Path: rest, RawQuery: r.URL.RawQuery}
	u.routed.ServeHTTP(relativeLocation{w}, r)
}

// relativeLocation makes the handler's Location (the URL of an upload,
// which it builds of the request's Host and its TLS) a path: the client
// resolves it against the URL it reached the server at, which behind a
// proxy (TLS ended there, another host) is not the one the server saw.
type relativeLocation struct{ http.ResponseWriter }

func (w relativeLocation) WriteHeader(code int) {
	if loc := w.Header().Get("Location"); loc != "" {
		if u, err := url.Parse(loc); err == nil && u.IsAbs() {
			w.Header().Set("Location", (&url.URL{Path: u.Path, RawPath: u.RawPath}).String())
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap is the ResponseWriter it wraps, for http.ResponseController.
func (w relativeLocation) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// route hands a request the middleware let through to its method's
// handler; ServeHTTP checked the methods.
func (u *tusUploads) route(w http.ResponseWriter, r *http.Request) {
	if q := tusRequestOf(r.Context()); q != nil && q.cutErr() != nil {
		// Cut before it began (Shutdown): refused whole, its body unread.
		w.Header().Set("Connection", "close")
		u.refuse(w, r, q.cutErr())
		return
	}
	switch r.Method {
	case http.MethodPost:
		u.h.PostFile(w, r)
	case http.MethodHead:
		u.h.HeadFile(w, r)
	case http.MethodPatch:
		u.h.PatchFile(w, r)
	case http.MethodDelete:
		u.h.DelFile(w, r)
	}
}

// options answers OPTIONS with what the server speaks. It needs no token
// and opens nothing.
func (u *tusUploads) options(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Tus-Resumable", TusVersion)
	h.Set("Tus-Version", TusVersion)
	h.Set("Tus-Extension", TusExtensions)
	h.Set("Tus-Max-Size", strconv.FormatInt(u.s.o.MaxUploadLength, 10))
	w.WriteHeader(http.StatusNoContent)
}

// sameOrigin reports whether a request comes from no browser page, or one
// of the server's origin or of Options.OriginPatterns.
func (u *tusUploads) sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	o, err := url.Parse(origin)
	if err != nil || o.Host == "" {
		return false
	}
	if strings.EqualFold(o.Host, r.Host) {
		return true
	}
	for _, p := range u.s.o.OriginPatterns {
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(o.Host)); ok {
			return true
		}
	}
	return false
}

// authenticate verifies a request's token for room, or answers it: 401
// without a Bearer token, 403 with a bad or expired one.
func (u *tusUploads) authenticate(w http.ResponseWriter, r *http.Request, room string) (Identity, bool) {
	s := u.s
	ident := Identity{Name: "anonymous", Attributes: map[string]any{"name": "anonymous"}}
	auth := r.Header.Get("Authorization")
	token, bearer := strings.CutPrefix(auth, "Bearer ")
	token = strings.TrimSpace(token)
	switch {
	case auth == "" && s.o.Insecure:
		return ident, true
	case !bearer || token == "":
		s.logRefusal(RefusedUnauthorized, "tus request refused", "room", room, "reason", "no bearer token")
		w.Header().Set("WWW-Authenticate", `Bearer realm="roomstore"`)
		refuseHTTP(w, "unauthorized: a Bearer token is required", http.StatusUnauthorized)
		return Identity{}, false
	case s.o.Verify == nil: // Insecure, and nothing to verify with
		return ident, true
	}
	id, err := s.o.Verify(r.Context(), room, token)
	if err == nil && ended(id.Expires) {
		err = errors.New("the identity has expired")
	}
	if err != nil {
		s.logRefusal(RefusedUnauthorized, "tus request refused", "room", room, "reason", err)
		refuseHTTP(w, "forbidden", http.StatusForbidden)
		return Identity{}, false
	}
	return id, true
}

// refuse answers a request with err, as the handler answers the store's
// errors.
func (u *tusUploads) refuse(w http.ResponseWriter, r *http.Request, err error) {
	e := u.tusErr(err)
	w.Header().Set("Tus-Resumable", TusVersion)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(e.HTTPResponse.StatusCode)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, e.HTTPResponse.Body)
	}
}

// tusErr turns an engine's error into the handler's: its status and a
// one-line text naming room paths, never a host's. An error the engine
// does not classify is logged and answered as internal.
func (u *tusUploads) tusErr(err error) handler.Error {
	var e handler.Error
	if errors.As(err, &e) {
		return e
	}
	status := errorStatus(err)
	text := errorContent(err).Text
	if status == http.StatusInternalServerError {
		u.s.log.Warn("tus upload failed", "err", err)
		text = "internal error"
	}
	return tusError(status, text)
}

// errorStatus is the status of an engine's error (see Uploads).
func errorStatus(err error) int {
	var re *requestError
	if errors.As(err, &re) {
		return re.code
	}
	switch {
	case errors.Is(err, roomstore.ErrQuotaExceeded):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, roomstore.ErrTooManyHandles):
		return http.StatusTooManyRequests
	}
	if c := errorContent(err).Code; c != CodeInternal {
		return c
	}
	return http.StatusInternalServerError
}

// uploadID is the id of engine upload eid of room in its URL: eid, a dot
// and a MAC of the room, eid and the identity that made it, so that a
// request of any other identity, or under another room, is told there is
// no such upload before anything is asked of the engine or locked.
func (u *tusUploads) uploadID(room, eid, identity string) string {
	return eid + "." + u.mac(room, eid, identity)
}

// engineID returns the engine's id of upload id of room, if identity
// made it.
func (u *tusUploads) engineID(room, id, identity string) (string, bool) {
	eid, sum, ok := strings.Cut(id, ".")
	if !ok || eid == "" || !hmac.Equal([]byte(sum), []byte(u.mac(room, eid, identity))) {
		return "", false
	}
	return eid, true
}

func (u *tusUploads) mac(room, eid, identity string) string {
	m := hmac.New(sha256.New, u.key)
	for _, part := range []string{"roomstore tus upload", room, eid, identity} {
		m.Write([]byte(part))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// tusStore is the handler's store: the engine of each request's room.
type tusStore struct{ u *tusUploads }

// tusUpload is one upload of a request's room.
type tusUpload struct {
	u  *tusUploads
	q  *tusRequest
	st roomstore.Resumable
}

// NewUpload creates an upload of the metadata's path in the request's room.
func (s tusStore) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	q := tusRequestOf(ctx)
	if q == nil || info.SizeIsDeferred {
		return nil, handler.ErrNotImplemented
	}
	p, ok := info.MetaData["path"]
	if !ok || p == "" {
		return nil, tusError(http.StatusBadRequest, `Upload-Metadata needs a "path"`)
	}
	overwrite := false
	switch info.MetaData["overwrite"] {
	case "", "false":
	case "true":
		overwrite = true
	default:
		return nil, tusError(http.StatusBadRequest, `Upload-Metadata "overwrite" must be "true" or "false"`)
	}
	st, err := q.eng.CreateResumable(q.ectx, p, roomstore.ResumableOptions{Size: info.Size, Overwrite: overwrite, Metadata: info.MetaData})
	if err != nil {
		if errors.Is(err, roomstore.ErrTooManyHandles) {
			return nil, tusError(http.StatusTooManyRequests, "too many unfinished uploads: finish or abandon one first")
		}
		return nil, s.u.tusErr(err)
	}
	up := &tusUpload{u: s.u, q: q, st: st}
	up.expires()
	return up, nil
}

// GetUpload finds upload id ("room/upload") of the request's room, made
// by the request's identity.
func (s tusStore) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	q := tusRequestOf(ctx)
	if q == nil {
		return nil, errTusNoUpload
	}
	room, uid, ok := strings.Cut(id, "/")
	if !ok || room != q.rm.name {
		return nil, errTusNoUpload
	}
	uid, ok = s.u.engineID(room, uid, q.ident.Name)
	if !ok {
		return nil, errTusNoUpload
	}
	st, err := q.eng.Resumable(q.ectx, uid)
	if err != nil {
		return nil, s.u.tusErr(err)
	}
	if st.Participant != q.ident.Name {
		return nil, errTusNoUpload
	}
	up := &tusUpload{u: s.u, q: q, st: st}
	if st.Offset == st.Size && !q.abort {
		// Complete, but its commit failed (a file appeared at its path,
		// the quota, the policy): tried again, so that the handler never
		// answers for a complete upload as if its file were there.
		if err := up.FinishUpload(ctx); err != nil {
			return nil, err
		}
		return up, nil
	}
	up.expires()
	return up, nil
}

// AsTerminatableUpload implements handler.TerminaterDataStore.
func (tusStore) AsTerminatableUpload(up handler.Upload) handler.TerminatableUpload {
	return up.(*tusUpload)
}

// expires tells the client when the upload is removed unless written
// (the expiration extension).
func (up *tusUpload) expires() {
	if !up.st.Expires.IsZero() {
		up.q.w.Header().Set("Upload-Expires", up.st.Expires.UTC().Format(http.TimeFormat))
	}
}

// GetInfo implements handler.Upload.
func (up *tusUpload) GetInfo(context.Context) (handler.FileInfo, error) {
	return handler.FileInfo{
		ID:       up.q.rm.name + "/" + up.u.uploadID(up.q.rm.name, up.st.ID, up.q.ident.Name),
		Size:     up.st.Size,
		Offset:   up.st.Offset,
		MetaData: up.st.Metadata,
	}, nil
}

// WriteChunk appends src to the upload at offset; what src delivered
// before it was cut is kept.
func (up *tusUpload) WriteChunk(_ context.Context, offset int64, src io.Reader) (int64, error) {
	st, err := up.q.eng.WriteResumable(up.q.ectx, up.st.ID, offset, src)
	if err != nil {
		// The bytes kept before the error count.
		if now, err2 := up.q.eng.Resumable(up.q.ectx, up.st.ID); err2 == nil && now.Offset >= offset {
			up.st = now
			up.expires()
			return now.Offset - offset, up.u.tusErr(err)
		}
		return 0, up.u.tusErr(err)
	}
	n := st.Offset - offset
	up.st = st
	up.expires()
	return n, nil
}

// GetReader implements handler.Upload: downloads are disabled.
func (up *tusUpload) GetReader(context.Context) (io.ReadCloser, error) {
	return nil, handler.ErrNotImplemented
}

// FinishUpload commits the upload to its path: the handler calls it when
// the last byte has arrived.
func (up *tusUpload) FinishUpload(context.Context) error {
	if _, err := up.q.eng.CommitResumable(up.q.ectx, up.st.ID); err != nil {
		return up.u.tusErr(err)
	}
	up.q.w.Header().Del("Upload-Expires") // nothing is left to expire
	return nil
}

// Terminate abandons the upload and its bytes.
func (up *tusUpload) Terminate(context.Context) error {
	if err := up.q.eng.AbortResumable(up.q.ectx, up.st.ID); err != nil {
		return up.u.tusErr(err)
	}
	return nil
}

// trackUpload counts a tus request until untrackUpload, unless Shutdown
// has begun.
func (s *Server) trackUpload(q *tusRequest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.tus == nil {
		s.tus = map[*tusRequest]struct{}{}
	}
	s.tus[q] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrackUpload(q *tusRequest) {
	s.mu.Lock()
	delete(s.tus, q)
	s.mu.Unlock()
	close(q.ended)
	s.wg.Done()
}

// drainUploads waits until no tus request sends bytes, or ctx ends.
func (s *Server) drainUploads(ctx context.Context) {
	for {
		var ended chan struct{}
		s.mu.Lock()
		for q := range s.tus {
			if q.body {
				ended = q.ended
				break
			}
		}
		s.mu.Unlock()
		if ended == nil {
			return
		}
		select {
		case <-ended:
		case <-ctx.Done():
			return
		}
	}
}

// cutUploads cuts the bodies of the tus requests still running.
func (s *Server) cutUploads() {
	s.mu.Lock()
	qs := make([]*tusRequest, 0, len(s.tus))
	for q := range s.tus {
		qs = append(qs, q)
	}
	s.mu.Unlock()
	for _, q := range qs {
		if q.body {
			q.cutBody(errTusShutdown)
		}
	}
}
