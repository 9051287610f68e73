package roomserver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/internal/tusclient"
	"github.com/roomstore/roomstore/internal/wire"
	"github.com/roomstore/roomstore/roomserver"
)

// tusFixture is a server with its rooms at /rooms/ and its tus endpoint
// at /tus/, whose rooms' engines take eopts. A room that was never
// opened does not exist for a reader (Resolver's create false).
type tusFixture struct {
	*fixture
	opened map[string]int // Resolve calls, by room
}

func newTusFixture(t *testing.T, tweak func(*roomserver.Options), eopts ...roomstore.Option) *tusFixture {
	t.Helper()
	tf := &tusFixture{opened: map[string]int{}}
	f, srv := newServer(t, func(o *roomserver.Options) {
		o.Resolve = func(ctx context.Context, room string, create bool) (*roomstore.Engine, error) {
			tf.mu.Lock()
			tf.opened[room]++
			existed := len(tf.rooms[room]) > 0
			tf.mu.Unlock()
			if !create && !existed {
				return nil, fmt.Errorf("room %s: %w", room, fs.ErrNotExist)
			}
			e, err := roomstore.OpenURL(ctx, "mem://", eopts...)
			if err == nil {
				tf.mu.Lock()
				tf.rooms[room] = append(tf.rooms[room], e)
				tf.mu.Unlock()
			}
			return e, err
		}
		if tweak != nil {
			tweak(o)
		}
	})
	tf.fixture = f
	mux := http.NewServeMux()
	mux.Handle("/rooms/", srv)
	mux.Handle("/tus/", srv.Uploads("/tus/"))
	f.http = httptest.NewServer(mux)
	f.base = f.http.URL
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		f.http.CloseClientConnections()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		f.http.Close()
	})
	return tf
}

// resolved is how often the room's engine was asked for.
func (tf *tusFixture) resolved(room string) int {
	tf.mu.Lock()
	defer tf.mu.Unlock()
	return tf.opened[room]
}

func (tf *tusFixture) endpoint(room string) string { return tf.base + "/tus/" + room + "/" }

func (tf *tusFixture) client(tok string) *tusclient.Client {
	return &tusclient.Client{HTTP: tf.http.Client(), Token: tok, Retries: 3, Backoff: time.Millisecond}
}

// do sends one request with the headers hdr (key, value pairs) and
// returns its answer, its body read.
func (tf *tusFixture) do(method, url, tok string, body io.Reader, hdr ...string) (*http.Response, string) {
	tf.t.Helper()
	ctx, cancel := context.WithTimeout(tf.t.Context(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		tf.t.Fatal(err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := tf.http.Client().Do(req)
	if err != nil {
		tf.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// create POSTs an upload of size bytes to p and returns its URL.
func (tf *tusFixture) create(room, tok, p string, size int64, meta ...string) string {
	tf.t.Helper()
	m := map[string]string{"path": p}
	for i := 0; i+1 < len(meta); i += 2 {
		m[meta[i]] = meta[i+1]
	}
	resp, body := tf.do(http.MethodPost, tf.endpoint(room), tok, nil,
		"Upload-Length", strconv.FormatInt(size, 10), "Upload-Metadata", tusclient.EncodeMetadata(m))
	if resp.StatusCode != http.StatusCreated {
		tf.t.Fatalf("POST %s: %d %s", p, resp.StatusCode, body)
	}
	if exp, err := http.ParseTime(resp.Header.Get("Upload-Expires")); err != nil || !exp.After(time.Now()) {
		tf.t.Fatalf("POST %s: Upload-Expires %q (%v), want a date ahead", p, resp.Header.Get("Upload-Expires"), err)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "/tus/"+room+"/") || strings.Contains(strings.TrimPrefix(loc, "/tus/"+room+"/"), "/") {
		tf.t.Fatalf("POST %s: Location %q, want a path below /tus/%s/", p, loc, room)
	}
	return tf.base + loc // a path: the client resolves it
}

func (tf *tusFixture) patch(loc, tok string, offset int64, data []byte) (*http.Response, string) {
	tf.t.Helper()
	return tf.do(http.MethodPatch, loc, tok, bytes.NewReader(data),
		"Upload-Offset", strconv.FormatInt(offset, 10), "Content-Type", "application/offset+octet-stream")
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func wantStatus(t *testing.T, what string, resp *http.Response, body string, status int, contains string) {
	t.Helper()
	if resp.StatusCode != status || !strings.Contains(body, contains) {
		t.Fatalf("%s: %d %q, want %d with %q", what, resp.StatusCode, body, status, contains)
	}
	if strings.Count(strings.TrimSpace(body), "\n") > 0 {
		t.Fatalf("%s: a body of more than one line: %q", what, body)
	}
}

// updatesOf counts the file.updated events of p that participant r hears
// before that of marker, which the test writes after everything else.
func updatesOf(t *testing.T, r *raw, e *roomstore.Engine, p, marker string) int {
	t.Helper()
	if _, err := e.Upload(t.Context(), marker, strings.NewReader("m"), roomstore.OpenOptions{Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		m := r.until(func(m *wire.Message) bool { return m.Type == wire.TypeFileUpdated })
		body, _, _ := m.Split()
		switch {
		case strings.Contains(string(body), `"`+marker+`"`):
			return n
		case strings.Contains(string(body), `"`+p+`"`):
			n++
		}
	}
}

func TestTusUploadIsInvisibleUntilItsLastByteCommitsIt(t *testing.T) {
	tf := newTusFixture(t, nil)
	watcher := tf.dial("r1", "bob") // opens the room, and hears its events
	tok := token(t, "alice", "r1", time.Hour)
	data := randomBytes(t, 3<<20+17)

	loc := tf.create("r1", tok, "docs/big.bin", int64(len(data)))
	resp, body := tf.patch(loc, tok, 0, data[:1<<20])
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Upload-Offset") != strconv.Itoa(1<<20) {
		t.Fatalf("first PATCH: %d %s, offset %q", resp.StatusCode, body, resp.Header.Get("Upload-Offset"))
	}
	exp, err := http.ParseTime(resp.Header.Get("Upload-Expires"))
	if err != nil || !exp.After(time.Now()) {
		t.Fatalf("Upload-Expires %q after a PATCH: %v", resp.Header.Get("Upload-Expires"), err)
	}
	e := tf.engine("r1")
	if _, err := e.Stat(t.Context(), "docs/big.bin"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat of an unfinished upload: %v, want not exist", err)
	}
	if ls, err := e.List(t.Context(), ""); err != nil || len(ls) != 0 {
		t.Fatalf("list of the root during an upload: %v %v, want nothing", ls, err)
	}
	if c := watcher.call("exists", map[string]any{"path": "docs/big.bin"}); !strings.Contains(string(c.JSON), "false") {
		t.Fatalf("exists through the room during an upload: %+v", c)
	}
	resp, _ = tf.do(http.MethodHead, loc, tok, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Upload-Offset") != strconv.Itoa(1<<20) ||
		resp.Header.Get("Upload-Length") != strconv.Itoa(len(data)) || resp.Header.Get("Upload-Expires") == "" ||
		resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("HEAD: %d %v", resp.StatusCode, resp.Header)
	}
	resp, body = tf.patch(loc, tok, 1<<20, data[1<<20:])
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
		t.Fatalf("last PATCH: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	if resp.Header.Get("Upload-Expires") != "" {
		t.Fatalf("a finished upload still expires: %v", resp.Header)
	}
	rd, err := e.OpenReader(t.Context(), "docs/big.bin", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rd)
	rd.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the committed file: %d bytes (%v), want the %d sent", len(got), err, len(data))
	}
	if n := updatesOf(t, watcher, e, "docs/big.bin", "marker"); n != 1 {
		t.Fatalf("%d file.updated events of the upload, want 1", n)
	}
	resp, _ = tf.do(http.MethodHead, loc, tok, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD of a committed upload: %d, want 404", resp.StatusCode)
	}
}

// cutReader yields its bytes up to cut, then fails: the client gives up
// its request mid-body, as a dropped connection would.
type cutReader struct {
	r   io.Reader
	cut int
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.cut <= 0 {
		return 0, errors.New("connection dropped")
	}
	if len(p) > c.cut {
		p = p[:c.cut]
	}
	n, err := c.r.Read(p)
	c.cut -= n
	return n, err
}

func TestTusUploadCutMidBodyResumesFromWhatTheServerKept(t *testing.T) {
	tf := newTusFixture(t, nil)
	watcher := tf.dial("r1", "bob")
	tok := token(t, "alice", "r1", time.Hour)
	data := randomBytes(t, 4<<20)
	loc := tf.create("r1", tok, "v.bin", int64(len(data)))

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, loc, &cutReader{r: bytes.NewReader(data), cut: 1<<20 + 12345})
	req.ContentLength = int64(len(data))
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	if resp, err := tf.http.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a PATCH cut mid-body: %d, want the client's error", resp.StatusCode)
	}
	// The server keeps what reached it, once it has seen the body end.
	waitStreams(t, tf.srv, 0)
	c := tf.client(tok)
	off, err := c.Offset(ctx, loc)
	if err != nil || off <= 0 || off > 1<<20+12345 {
		t.Fatalf("offset after the cut: %d %v, want some of the bytes sent", off, err)
	}
	if err := c.Resume(ctx, loc, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	rd, err := tf.engine("r1").OpenReader(ctx, "v.bin", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rd)
	rd.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("resumed file: %d bytes, not the %d sent", len(got), len(data))
	}
	if n := updatesOf(t, watcher, tf.engine("r1"), "v.bin", "marker"); n != 1 {
		t.Fatalf("%d file.updated events, want 1", n)
	}
}

func TestTusCreationWithUploadAndTermination(t *testing.T) {
	tf := newTusFixture(t, nil)
	tok := token(t, "alice", "r1", time.Hour)
	meta := tusclient.EncodeMetadata(map[string]string{"path": "small.txt"})
	resp, body := tf.do(http.MethodPost, tf.endpoint("r1"), tok, strings.NewReader("hello"),
		"Upload-Length", "5", "Upload-Metadata", meta, "Content-Type", "application/offset+octet-stream")
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Upload-Offset") != "5" {
		t.Fatalf("POST with the bytes: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	if e, err := tf.engine("r1").Stat(t.Context(), "small.txt"); err != nil || e.Size != 5 {
		t.Fatalf("stat after a creation with the whole upload: %+v %v", e, err)
	}
	loc := tf.create("r1", tok, "gone.txt", 10)
	resp, body = tf.do(http.MethodPost, tf.endpoint("r1"), tok, nil, "Upload-Length", "0", "Upload-Metadata", tusclient.EncodeMetadata(map[string]string{"path": "empty"}))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("an empty upload: %d %s", resp.StatusCode, body)
	}
	if e, err := tf.engine("r1").Stat(t.Context(), "empty"); err != nil || e.Size != 0 {
		t.Fatalf("stat of an empty upload: %+v %v", e, err)
	}
	resp, body = tf.patch(loc, tok, 0, []byte("12345"))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", resp.StatusCode, body)
	}
	resp, body = tf.do(http.MethodDelete, loc, tok, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
	}
	resp, _ = tf.do(http.MethodHead, loc, tok, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD after DELETE: %d, want 404", resp.StatusCode)
	}
	if _, err := tf.engine("r1").Stat(t.Context(), "gone.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an abandoned upload's path: %v, want not exist", err)
	}
}

func TestTusOptionsAndOrigins(t *testing.T) {
	tf := newTusFixture(t, nil)
	resp, _ := tf.do(http.MethodOptions, tf.endpoint("r1"), "", nil)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Tus-Version") != "1.0.0" ||
		resp.Header.Get("Tus-Extension") != roomserver.TusExtensions || !strings.Contains(roomserver.TusExtensions, "expiration") ||
		resp.Header.Get("Tus-Max-Size") == "" || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("OPTIONS: %d %v", resp.StatusCode, resp.Header)
	}
	if tf.resolved("r1") != 0 {
		t.Fatal("OPTIONS opened the room")
	}
	tok := token(t, "alice", "r1", time.Hour)
	resp, body := tf.do(http.MethodPost, tf.endpoint("r1"), tok, nil, "Upload-Length", "1",
		"Upload-Metadata", tusclient.EncodeMetadata(map[string]string{"path": "x"}), "Origin", "http://evil.example")
	wantStatus(t, "a foreign origin", resp, body, http.StatusForbidden, "origin")
	resp, body = tf.do(http.MethodOptions, tf.endpoint("r1"), "", nil, "Origin", "http://evil.example", "Access-Control-Request-Method", "POST")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("a foreign preflight: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	if tf.resolved("r1") != 0 {
		t.Fatal("a foreign origin opened the room")
	}
	loc := tf.create("r1", tok, "same.txt", 1, "filename", "same.txt")
	_ = loc
	resp, body = tf.do(http.MethodPost, tf.endpoint("r1"), tok, nil, "Upload-Length", "1",
		"Upload-Metadata", tusclient.EncodeMetadata(map[string]string{"path": "same2.txt"}), "Origin", tf.base)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("the server's own origin: %d %s", resp.StatusCode, body)
	}
	resp, body = tf.do(http.MethodGet, loc, tok, nil)
	wantStatus(t, "GET of an upload", resp, body, http.StatusMethodNotAllowed, "")
	resp, body = tf.do(http.MethodPost, tf.endpoint("r1"), tok, nil, "Upload-Defer-Length", "1",
		"Upload-Metadata", tusclient.EncodeMetadata(map[string]string{"path": "later"}))
	wantStatus(t, "a deferred length", resp, body, http.StatusNotImplemented, "")
	// A final upload of concatenation needs no Upload-Length: here the
	// header means nothing, and the length is missing.
	resp, body = tf.do(http.MethodPost, tf.endpoint("r1"), tok, nil, "Upload-Concat", "final;"+loc,
		"Upload-Metadata", tusclient.EncodeMetadata(map[string]string{"path": "part"}))
	wantStatus(t, "a concatenation", resp, body, http.StatusBadRequest, "Upload-Length")
}

func TestTusRefusesWithoutAValidTokenAndOpensNothing(t *testing.T) {
	tf := newTusFixture(t, nil)
	meta := tusclient.EncodeMetadata(map[string]string{"path": "x"})
	for _, c := range []struct {
		name, auth string
		status     int
	}{
		{"no Authorization", "", http.StatusUnauthorized},
		{"not a Bearer token", "Basic YTpi", http.StatusUnauthorized},
		{"an empty Bearer token", "Bearer ", http.StatusUnauthorized},
		{"a forged token", "Bearer not.a.jwt", http.StatusForbidden},
		{"a token for another room", "Bearer " + token(t, "alice", "r2", time.Hour), http.StatusForbidden},
		{"an expired token", "Bearer " + signed(t, roomserver.Claims{Name: "alice", Grants: []roomserver.Grant{{Name: "room", Scope: "r1"}},
			RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Minute))}}), http.StatusForbidden},
		{"an unsigned token", "Bearer " + unsigned(t), http.StatusForbidden},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, m := range []string{http.MethodPost, http.MethodHead, http.MethodPatch, http.MethodDelete} {
				u := tf.endpoint("r1")
				if m != http.MethodPost {
					u += "someid"
				}
				hdr := []string{"Upload-Length", "1", "Upload-Metadata", meta, "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream"}
				if c.auth != "" {
					hdr = append(hdr, "Authorization", c.auth)
				}
				resp, body := tf.do(m, u, "", strings.NewReader("x"), hdr...)
				if resp.StatusCode != c.status {
					t.Fatalf("%s: %d %q, want %d", m, resp.StatusCode, body, c.status)
				}
				if c.status == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("%s: WWW-Authenticate %q", m, resp.Header.Get("WWW-Authenticate"))
				}
			}
		})
	}
	if n := tf.resolved("r1"); n != 0 {
		t.Fatalf("unauthenticated requests opened the room %d times", n)
	}
	if got := tf.srv.Stats().Refused[roomserver.RefusedUnauthorized]; got != 28 {
		t.Fatalf("%d refusals counted as unauthorized, want 28", got)
	}
}

func TestTusGrantsDecideThePathAndTheRoom(t *testing.T) {
	tf := newTusFixture(t, nil)
	meta := func(p string) string { return tusclient.EncodeMetadata(map[string]string{"path": p}) }
	reader, err := roomserver.NewToken(secret, "reader", "new-room", time.Hour,
		roomserver.WithStorage(roomserver.StorageGrant{Paths: []roomserver.StoragePathGrant{{Path: "", ReadOnly: true}}}))
	if err != nil {
		t.Fatal(err)
	}
	resp, body := tf.do(http.MethodPost, tf.endpoint("new-room"), reader, nil, "Upload-Length", "1", "Upload-Metadata", meta("x"))
	wantStatus(t, "a reader's POST to a room that does not exist", resp, body, http.StatusNotFound, "no such room")
	tf.mu.Lock()
	created := len(tf.rooms["new-room"])
	tf.mu.Unlock()
	if created != 0 {
		t.Fatal("a reader created the room")
	}

	inbox, err := roomserver.NewToken(secret, "carol", "r1", time.Hour,
		roomserver.WithStorage(roomserver.StorageGrant{Paths: []roomserver.StoragePathGrant{{Path: "inbox/"}}}))
	if err != nil {
		t.Fatal(err)
	}
	resp, body = tf.do(http.MethodPost, tf.endpoint("r1"), inbox, nil, "Upload-Length", "5", "Upload-Metadata", meta("secret/x"))
	wantStatus(t, "a POST outside the grant", resp, body, http.StatusForbidden, "create_resumable secret/x: no write access")
	loc := tf.create("r1", inbox, "inbox/x", 5)
	if resp, body := tf.patch(loc, inbox, 0, []byte("hello")); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH inside the grant: %d %s", resp.StatusCode, body)
	}
	if _, err := tf.engine("r1").Stat(t.Context(), "secret/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the refused path: %v", err)
	}

	// An upload is its identity's, and its room's.
	alice := token(t, "alice", "r1", time.Hour)
	loc = tf.create("r1", alice, "a.bin", 10)
	id := loc[strings.LastIndex(loc, "/")+1:]
	mallory := token(t, "mallory", "r1", time.Hour)
	for _, m := range []string{http.MethodHead, http.MethodPatch, http.MethodDelete} {
		resp, body := tf.do(m, loc, mallory, strings.NewReader("x"), "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream")
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s of another identity's upload: %d %s", m, resp.StatusCode, body)
		}
	}
	tf.create("r2", token(t, "alice", "r2", time.Hour), "b.bin", 10)
	resp, body = tf.do(http.MethodHead, tf.endpoint("r2")+id, token(t, "alice", "r2", time.Hour), nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD of room r1's upload under r2: %d %s", resp.StatusCode, body)
	}
	resp, _ = tf.do(http.MethodHead, loc, alice, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Upload-Offset") != "0" {
		t.Fatalf("HEAD by its owner after the others: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestTusMapsTheEngineErrorsToStatuses(t *testing.T) {
	tf := newTusFixture(t, func(o *roomserver.Options) { o.MaxUploadLength = 1 << 20 },
		roomstore.WithQuota(roomstore.Quota{Bytes: 100}),
		roomstore.WithResumable(roomstore.ResumableLimits{MaxAge: time.Hour, PerParticipant: 2}))
	tok := token(t, "alice", "r1", time.Hour)
	meta := func(kv ...string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return tusclient.EncodeMetadata(m)
	}
	post := func(length string, md string) (*http.Response, string) {
		return tf.do(http.MethodPost, tf.endpoint("r1"), tok, nil, "Upload-Length", length, "Upload-Metadata", md)
	}
	if _, err := func() (roomstore.Entry, error) {
		tf.dial("r1", "opener")
		return tf.engine("r1").Upload(t.Context(), "taken", strings.NewReader("t"), roomstore.OpenOptions{})
	}(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, length, meta string
		status             int
		text               string
	}{
		{"no path", "1", meta("filename", "x"), http.StatusBadRequest, "path"},
		{"an invalid path", "1", meta("path", "../up"), http.StatusBadRequest, ""},
		{"a bad overwrite", "1", meta("path", "o", "overwrite", "yes"), http.StatusBadRequest, "overwrite"},
		{"a bad length", "-1", meta("path", "l"), http.StatusBadRequest, ""},
		{"an existing file", "1", meta("path", "taken"), http.StatusConflict, ""},
		{"a file above the path", "1", meta("path", "taken/under"), http.StatusConflict, ""},
		{"over the quota", "1000", meta("path", "q"), http.StatusRequestEntityTooLarge, ""},
		{"over MaxUploadLength", strconv.Itoa(2 << 20), meta("path", "m"), http.StatusRequestEntityTooLarge, ""},
	} {
		resp, body := post(c.length, c.meta)
		wantStatus(t, c.name, resp, body, c.status, c.text)
		if strings.Contains(body, "/tmp") || strings.Contains(body, t.TempDir()) {
			t.Fatalf("%s: a host path in %q", c.name, body)
		}
	}
	// overwrite=true replaces.
	loc := tf.create("r1", tok, "taken", 2, "overwrite", "true")
	resp, body := tf.patch(loc, tok, 1, []byte("x"))
	wantStatus(t, "a PATCH at the wrong offset", resp, body, http.StatusConflict, "")
	resp, body = tf.patch(loc, tok, 0, []byte("xyz"))
	wantStatus(t, "a PATCH past the length", resp, body, http.StatusRequestEntityTooLarge, "")
	if resp, body := tf.patch(loc, tok, 0, []byte("ok")); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", resp.StatusCode, body)
	}
	if e, err := tf.engine("r1").Stat(t.Context(), "taken"); err != nil || e.Size != 2 {
		t.Fatalf("the overwritten file: %+v %v", e, err)
	}
	// The participant's limit of unfinished uploads.
	tf.create("r1", tok, "u1", 1)
	tf.create("r1", tok, "u2", 1)
	resp, body = post("1", meta("path", "u3"))
	wantStatus(t, "a third unfinished upload", resp, body, http.StatusTooManyRequests, "")
	resp, body = tf.do(http.MethodHead, tf.endpoint("r1")+"nosuchid", tok, nil)
	if resp.StatusCode != http.StatusNotFound || body != "" {
		t.Fatalf("HEAD of an unknown upload: %d %q", resp.StatusCode, body)
	}
	resp, body = tf.do(http.MethodPost, tf.endpoint("r1"), tok, nil, "Upload-Length", "1",
		"Upload-Metadata", "path "+strings.Repeat("A", roomserver.MaxTusMetadataHeader))
	wantStatus(t, "an oversized Upload-Metadata", resp, body, http.StatusRequestHeaderFieldsTooLarge, "")
}

// stalledPatch starts a PATCH of upload loc that sends first and then
// nothing, until its pipe is closed; its answer comes on the channel.
func (tf *tusFixture) stalledPatch(loc, tok string, offset, length int64, first []byte) (<-chan *http.Response, *io.PipeWriter) {
	tf.t.Helper()
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(tf.t.Context(), http.MethodPatch, loc, pr)
	req.ContentLength = length
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	answer := make(chan *http.Response, 1)
	go func() {
		resp, err := tf.http.Client().Do(req)
		if err != nil {
			answer <- nil
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		answer <- resp
	}()
	if _, err := pw.Write(first); err != nil {
		tf.t.Fatal(err)
	}
	tf.t.Cleanup(func() { pw.Close() })
	return answer, pw
}

func waitAnswer(t *testing.T, what string, answer <-chan *http.Response) *http.Response {
	t.Helper()
	select {
	case resp := <-answer:
		if resp == nil {
			t.Fatalf("%s: no answer", what)
		}
		return resp
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no answer in 20 s", what)
	}
	return nil
}

// waitStreams waits until the server counts n streams.
func waitStreams(t *testing.T, srv *roomserver.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for srv.Stats().Streams != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams, want %d", srv.Stats().Streams, n)
		}
		time.Sleep(5 * time.Millisecond) // polling a count the server keeps, bounded by the deadline
	}
}

func TestTusBudgetsHoldAgainstAnAttacker(t *testing.T) {
	t.Run("a stalled body is cut and keeps what it sent", func(t *testing.T) {
		tf := newTusFixture(t, func(o *roomserver.Options) { o.MessageTimeout = 300 * time.Millisecond })
		tok := token(t, "mallory", "r1", time.Hour)
		loc := tf.create("r1", tok, "slow", 100)
		answer, _ := tf.stalledPatch(loc, tok, 0, 100, []byte("0123456789"))
		resp := waitAnswer(t, "a stalled PATCH", answer)
		if resp.StatusCode < 500 {
			t.Fatalf("a stalled PATCH: %d, want a timeout", resp.StatusCode)
		}
		waitStreams(t, tf.srv, 0)
		resp, _ = tf.do(http.MethodHead, loc, tok, nil)
		if resp.Header.Get("Upload-Offset") != "10" {
			t.Fatalf("offset after the stall: %q, want 10", resp.Header.Get("Upload-Offset"))
		}
	})
	t.Run("streams of an identity and of the server", func(t *testing.T) {
		tf := newTusFixture(t, func(o *roomserver.Options) { o.MaxStreamsPerIdentity = 1; o.MaxOpenStreams = 2 })
		a := token(t, "mallory", "r1", time.Hour)
		l1 := tf.create("r1", a, "s1", 100)
		l2 := tf.create("r1", a, "s2", 100)
		_, pw1 := tf.stalledPatch(l1, a, 0, 100, []byte("x"))
		waitStreams(t, tf.srv, 1)
		resp, body := tf.patch(l2, a, 0, []byte("y"))
		wantStatus(t, "a second PATCH of the identity", resp, body, http.StatusTooManyRequests, "per identity")
		b := token(t, "bob", "r1", time.Hour)
		lb := tf.create("r1", b, "b1", 100)
		_, pw2 := tf.stalledPatch(lb, b, 0, 100, []byte("z"))
		waitStreams(t, tf.srv, 2)
		c := token(t, "carol", "r1", time.Hour)
		lc := tf.create("r1", c, "c1", 1)
		resp, body = tf.patch(lc, c, 0, []byte("c"))
		wantStatus(t, "a PATCH past the server's streams", resp, body, http.StatusServiceUnavailable, "busy")
		pw1.CloseWithError(errors.New("gone"))
		pw2.CloseWithError(errors.New("gone"))
		waitStreams(t, tf.srv, 0)
		if resp, body := tf.patch(lc, c, 0, []byte("c")); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("a PATCH once the streams ended: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("connections of an identity", func(t *testing.T) {
		tf := newTusFixture(t, func(o *roomserver.Options) { o.MaxConnectionsPerIdentity = 1 })
		tok := token(t, "mallory", "r1", time.Hour)
		loc := tf.create("r1", tok, "c", 100)
		_, pw := tf.stalledPatch(loc, tok, 0, 100, []byte("x"))
		waitStreams(t, tf.srv, 1)
		resp, body := tf.do(http.MethodHead, loc, tok, nil)
		wantStatus(t, "a second request of the identity", resp, body, http.StatusTooManyRequests, "")
		if resp.Header.Get("Retry-After") == "" {
			t.Fatalf("a 429 without Retry-After: %v", resp.Header)
		}
		if resp, _ := tf.do(http.MethodHead, loc, token(t, "bob", "r1", time.Hour), nil); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("another identity meanwhile: %d, want its own answer (404)", resp.StatusCode)
		}
		pw.CloseWithError(errors.New("gone"))
		waitStreams(t, tf.srv, 0)
		if got := tf.srv.Stats().Refused[roomserver.BudgetIdentityConnections]; got != 1 {
			t.Fatalf("%d refusals of the identity's connections, want 1", got)
		}
	})
	t.Run("the call rate", func(t *testing.T) {
		tf := newTusFixture(t, func(o *roomserver.Options) { o.CallRate = 0.001; o.CallBurst = 3 })
		tok := token(t, "mallory", "r1", time.Hour)
		var codes []int
		for range 5 {
			resp, _ := tf.do(http.MethodHead, tf.endpoint("r1")+"x", tok, nil)
			codes = append(codes, resp.StatusCode)
		}
		if codes[2] == http.StatusTooManyRequests || codes[3] != http.StatusTooManyRequests || codes[4] != http.StatusTooManyRequests {
			t.Fatalf("statuses %v, want the 4th and 5th refused with 429", codes)
		}
		// Another identity has its own bucket.
		if resp, _ := tf.do(http.MethodHead, tf.endpoint("r1")+"x", token(t, "bob", "r1", time.Hour), nil); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("another identity: %d", resp.StatusCode)
		}
	})
	t.Run("an identity that expires mid-PATCH is cut", func(t *testing.T) {
		var mu sync.Mutex
		expires := time.Time{}
		tf := newTusFixture(t, func(o *roomserver.Options) {
			v := o.Verify
			o.Verify = func(ctx context.Context, room, tok string) (roomserver.Identity, error) {
				id, err := v(ctx, room, tok)
				mu.Lock()
				id.Expires = expires
				mu.Unlock()
				return id, err
			}
		})
		tok := token(t, "alice", "r1", time.Hour)
		loc := tf.create("r1", tok, "e", 100)
		mu.Lock()
		expires = time.Now().Add(500 * time.Millisecond)
		mu.Unlock()
		answer, _ := tf.stalledPatch(loc, tok, 0, 100, []byte("abc"))
		resp := waitAnswer(t, "a PATCH whose identity expires", answer)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("a PATCH whose identity expired: %d, want 403", resp.StatusCode)
		}
		waitStreams(t, tf.srv, 0)
	})
}

func TestTusShutdownWaitsForBodiesThenCutsThem(t *testing.T) {
	tf := newTusFixture(t, nil)
	tok := token(t, "alice", "r1", time.Hour)
	loc := tf.create("r1", tok, "s", 100)
	answer, _ := tf.stalledPatch(loc, tok, 0, 100, []byte("abc"))
	waitStreams(t, tf.srv, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- tf.srv.Shutdown(ctx) }()
	// Once the server refuses new requests, Shutdown has begun: it
	// waits for the body under way, and has cut nothing. (Another
	// identity asks, so as not to take the upload over.)
	prober := token(t, "prober", "r1", time.Hour)
	meta := tusclient.EncodeMetadata(map[string]string{"path": "probe"})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, _ := tf.do(http.MethodPost, tf.endpoint("r1"), prober, nil, "Upload-Length", "1", "Upload-Metadata", meta)
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST once Shutdown began: %d, want 503", resp.StatusCode)
		}
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a body under way and its context alive", err)
	case resp := <-answer:
		t.Fatalf("a PATCH answered (%v) while Shutdown waits for it", resp)
	default:
	}
	cancel() // the wait ends: the body is cut
	resp := waitAnswer(t, "a PATCH at shutdown", answer)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a PATCH cut by shutdown: %d, want 503", resp.StatusCode)
	}
	select {
	case <-shut: // its context's end, or nil if everything had stopped by then
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown did not return after its context ended")
	}
	final, cancel2 := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel2()
	if err := tf.srv.Shutdown(final); err != nil {
		t.Fatal(err)
	}
	resp, body := tf.do(http.MethodHead, loc, tok, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("HEAD after shutdown: %d %s", resp.StatusCode, body)
	}
}

func TestTusResumesOverAPatchTheServerStillWaitsOnButNoOtherIdentityCanCutIt(t *testing.T) {
	tf := newTusFixture(t, nil)
	tok := token(t, "alice", "r1", time.Hour)
	data := randomBytes(t, 100)
	loc := tf.create("r1", tok, "x", 100)

	// Another identity, knowing the URL, neither sees the upload nor
	// disturbs the PATCH under way.
	answer, pw := tf.stalledPatch(loc, tok, 0, 100, data[:10])
	waitStreams(t, tf.srv, 1)
	mallory := token(t, "mallory", "r1", time.Hour)
	for _, m := range []string{http.MethodHead, http.MethodPatch, http.MethodDelete} {
		resp, body := tf.do(m, loc, mallory, strings.NewReader("y"), "Upload-Offset", "10", "Content-Type", "application/offset+octet-stream")
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s by another identity during a PATCH: %d %s", m, resp.StatusCode, body)
		}
	}
	if _, err := pw.Write(data[10:]); err != nil {
		t.Fatal(err)
	}
	if resp := waitAnswer(t, "the PATCH", answer); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("the PATCH the other identity tried to disturb: %d", resp.StatusCode)
	}

	// Its own identity, coming back while the server still waits on a
	// PATCH whose client is gone, takes the upload over at once.
	loc = tf.create("r1", tok, "y", 100)
	answer, _ = tf.stalledPatch(loc, tok, 0, 100, data[:40])
	waitStreams(t, tf.srv, 1)
	c := tf.client(tok)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := c.Resume(ctx, loc, bytes.NewReader(data), 100); err != nil {
		t.Fatal(err)
	}
	if resp := waitAnswer(t, "the abandoned PATCH", answer); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("the abandoned PATCH: %d, want 400 (interrupted)", resp.StatusCode)
	}
	rd, err := tf.engine("r1").OpenReader(ctx, "y", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rd)
	rd.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("the resumed file: %q", got)
	}
}

func TestTusACommitThatFailsIsNeverAnsweredAsDone(t *testing.T) {
	tf := newTusFixture(t, nil)
	tok := token(t, "alice", "r1", time.Hour)
	loc := tf.create("r1", tok, "dup", 4)
	if resp, body := tf.patch(loc, tok, 0, []byte("abc")); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", resp.StatusCode, body)
	}
	// Another writer takes the path before the last byte.
	if _, err := tf.engine("r1").Upload(t.Context(), "dup", strings.NewReader("theirs"), roomstore.OpenOptions{}); err != nil {
		t.Fatal(err)
	}
	resp, body := tf.patch(loc, tok, 3, []byte("d"))
	wantStatus(t, "the last PATCH, its commit refused", resp, body, http.StatusConflict, "")
	resp, _ = tf.do(http.MethodHead, loc, tok, nil)
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("HEAD of a complete upload whose commit fails: %d, want 409", resp.StatusCode)
	}
	resp, body = tf.patch(loc, tok, 4, nil)
	wantStatus(t, "a PATCH of a complete upload whose commit fails", resp, body, http.StatusConflict, "")
	if resp, body := tf.do(http.MethodDelete, loc, tok, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE of it: %d %s", resp.StatusCode, body)
	}
	rd, err := tf.engine("r1").OpenReader(t.Context(), "dup", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rd)
	rd.Close()
	if string(got) != "theirs" {
		t.Fatalf("the file at the path: %q, want the other writer's", got)
	}
}
