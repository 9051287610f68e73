package roomclient_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/roomclient"
)

// scenario is one behaviour of the client against a room server.
type scenario struct {
	name string
	run  func(t *testing.T, e *env)
}

// scenarios run on every store (TestClient); the S3 run takes some.
var scenarios = []scenario{
	{"every call answers as the engine does", testCalls},
	{"participants see each other's events and another room's none", testEvents},
	{"an upload without Overwrite refuses an existing file", testOverwriteRefused},
	{"50 MiB streams through Upload and OpenReader unchanged", testLargeRoundTrip},
	{"names with spaces, quotes, escapes and emoji round-trip", testWeirdNames},
	{"invalid paths are refused and write nothing", testInvalidPaths},
	{"a client closed mid-upload leaves nothing visible", testClosedMidUpload},
	{"handlers of the engine's shapes, Off and refused subscriptions", testHandlers},
	{"after a drop, streams in flight fail and the client resumes where it was: events arrive again, no overflow", testReconnect},
	{"without Reconnect, calls after a drop fail fast", testNoReconnect},
	{"downloads that pull ahead end exactly at every size, and close mid-way", testPullAhead},
}

func TestClient(t *testing.T) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) {
					t.Parallel()
					sc.run(t, newEnv(t, s.url(t)))
				})
			}
		})
	}
}

func testCalls(t *testing.T, e *env) {
	c := e.dial(t, "alice", "r1", roomclient.Options{})
	ctx := deadline(t)
	if ok, err := c.Exists(ctx, "docs/a.txt"); err != nil || ok {
		t.Fatalf("Exists before upload: %v, %v", ok, err)
	}
	ent, err := c.Upload(ctx, "/docs/a.txt", strings.NewReader("hello"), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	if ent.Name != "a.txt" || ent.Path != "docs/a.txt" || ent.Size != 5 || ent.IsFolder {
		t.Fatalf("Upload entry %+v", ent)
	}
	_, err = c.Upload(ctx, "docs/b.md", strings.NewReader("abc"), roomstore.OpenOptions{Exclusive: true, Size: 3})
	must(t, err)
	_, err = c.Upload(ctx, "z.bin", bytes.NewReader(nil), roomstore.OpenOptions{Exclusive: true})
	must(t, err)

	for _, p := range []string{"docs/a.txt", "docs", "docs/", "/docs/b.md", "z.bin", ""} {
		if ok, err := c.Exists(ctx, p); err != nil || !ok {
			t.Errorf("Exists(%q): %v, %v", p, ok, err)
		}
	}
	st, err := c.Stat(ctx, "docs/a.txt")
	must(t, err)
	if st.Name != "a.txt" || st.Path != "docs/a.txt" || st.IsFolder || st.Size != 5 || time.Since(st.ModTime) > time.Minute {
		t.Errorf("Stat file %+v", st)
	}
	// Reads name the version they stream: its ETag, and the ModTime Stat
	// gives (which has a precision of its own).
	rd, err := c.OpenReader(ctx, "docs/a.txt", 0, -1)
	must(t, err)
	got := rd.Entry()
	must(t, rd.Close())
	if got.ETag == "" || got.ModTime.Sub(st.ModTime).Abs() > time.Second {
		t.Errorf("OpenReader entry %+v, Stat %+v", got, st)
	}
	st, err = c.Stat(ctx, "docs")
	must(t, err)
	if st.Name != "docs" || st.Path != "docs" || !st.IsFolder {
		t.Errorf("Stat folder %+v", st)
	}
	_, err = c.Stat(ctx, "nope")
	wantErr(t, "Stat missing", err, fs.ErrNotExist)
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Op != "stat" || pe.Path != "nope" {
		t.Errorf("Stat missing: %#v, want a PathError on stat nope", err)
	}
	_, err = c.Stat(ctx, "z.bin/")
	wantErr(t, "Stat of a file written as a folder", err, roomstore.ErrNotFolder)

	list, err := c.List(ctx, "")
	must(t, err)
	if got := describe(list); got != "docs(true,0) z.bin(false,0) " {
		t.Errorf("List root: %s", got)
	}
	list, err = c.List(ctx, "docs/")
	must(t, err)
	if got := describe(list); got != "docs/a.txt(false,5) docs/b.md(false,3) " {
		t.Errorf("List docs: %s", got)
	}
	_, err = c.List(ctx, "nope")
	wantErr(t, "List missing", err, fs.ErrNotExist)
	_, err = c.List(ctx, "z.bin")
	wantErr(t, "List a file", err, roomstore.ErrNotFolder)

	f, err := c.Download(ctx, "docs/a.txt")
	must(t, err)
	if string(f.Data) != "hello" || f.Size != 5 || f.Name != "a.txt" || f.Path != "docs/a.txt" || f.MimeType != mime.TypeByExtension(".txt") || !f.ModTime.Equal(got.ModTime) {
		t.Errorf("Download %+v, want ModTime %v", f, got.ModTime)
	}
	f, err = c.Download(ctx, "z.bin")
	must(t, err)
	if len(f.Data) != 0 || f.Size != 0 {
		t.Errorf("Download of an empty file: %+v", f)
	}
	_, err = c.Download(ctx, "nope")
	wantErr(t, "Download missing", err, fs.ErrNotExist)
	_, err = c.Download(ctx, "docs")
	wantErr(t, "Download a folder", err, roomstore.ErrIsFolder)

	r, err := c.OpenReader(ctx, "docs/b.md", 0, -1)
	must(t, err)
	if r.Entry().Size != 3 || r.Size() != 3 || r.Entry().Name != "b.md" || r.MimeType() == "" {
		t.Errorf("OpenReader: %+v %q", r.Entry(), r.MimeType())
	}
	data, err := io.ReadAll(r)
	must(t, err)
	must(t, r.Close())
	if string(data) != "abc" {
		t.Errorf("OpenReader read %q", data)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Read after Close: %v, want fs.ErrClosed", err)
	}
	must(t, r.Close())

	u, err := c.DownloadURL(ctx, "docs/a.txt", roomclient.URLOptions{})
	must(t, err)
	if body, _ := get(t, e, u); body != "hello" {
		t.Errorf("GET %s: %q", u, body)
	}
	u, err = c.DownloadURL(ctx, "docs/a.txt", roomclient.URLOptions{Attachment: true})
	must(t, err)
	if _, h := get(t, e, u); !strings.HasPrefix(h.Get("Content-Disposition"), "attachment") {
		t.Errorf("attachment URL answered Content-Disposition %q", h.Get("Content-Disposition"))
	}
	_, err = c.DownloadURL(ctx, "nope", roomclient.URLOptions{})
	wantErr(t, "DownloadURL missing", err, fs.ErrNotExist)

	must(t, c.Move(ctx, "docs/a.txt", "moved/a.txt", roomstore.MoveOptions{}))
	if ok, _ := c.Exists(ctx, "docs/a.txt"); ok {
		t.Error("the source of a move still exists")
	}
	err = c.Move(ctx, "moved/a.txt", "docs/b.md", roomstore.MoveOptions{})
	wantErr(t, "Move onto a file", err, fs.ErrExist)
	if !errors.As(err, &pe) || pe.Op != "move" || pe.Path != "moved/a.txt" {
		t.Errorf("Move onto a file: %#v, want a PathError on move moved/a.txt", err)
	}
	must(t, c.Move(ctx, "moved/a.txt", "docs/b.md", roomstore.MoveOptions{Overwrite: true}))
	if f, err := c.Download(ctx, "docs/b.md"); err != nil || string(f.Data) != "hello" {
		t.Errorf("after Move with Overwrite: %v %q", err, f.Data)
	}
	wantErr(t, "Move missing", c.Move(ctx, "nope", "x", roomstore.MoveOptions{}), fs.ErrNotExist)
	wantErr(t, "Move into itself", c.Move(ctx, "docs", "docs/in", roomstore.MoveOptions{}), fs.ErrInvalid)

	_, err = c.Upload(ctx, "z.bin/under", strings.NewReader("x"), roomstore.OpenOptions{Exclusive: true})
	wantErr(t, "Upload below a file", err, roomstore.ErrNotFolder)
	_, err = c.Upload(ctx, "docs", strings.NewReader("x"), roomstore.OpenOptions{Overwrite: true})
	wantErr(t, "Upload onto a folder", err, roomstore.ErrIsFolder)
	_, err = c.Upload(ctx, "sized", strings.NewReader("four"), roomstore.OpenOptions{Exclusive: true, Size: 3})
	wantErr(t, "Upload longer than its Size", err, fs.ErrInvalid)
	_, err = c.Upload(ctx, "nil", nil, roomstore.OpenOptions{Exclusive: true})
	wantErr(t, "Upload of a nil reader", err, fs.ErrInvalid)

	wantErr(t, "Delete a folder", c.Delete(ctx, "docs"), roomstore.ErrIsFolder)
	err = c.Delete(ctx, "nope")
	wantErr(t, "Delete missing", err, fs.ErrNotExist)
	var re *roomclient.Error
	if !errors.As(err, &re) || re.Code != 404 || err.Error() != "delete nope: file does not exist" {
		t.Errorf("Delete missing: %q (%#v), want the server's 404 as `delete nope: file does not exist`", err, re)
	}
	must(t, c.Delete(ctx, "z.bin"))
	must(t, c.RemoveAll(ctx, "docs"))
	must(t, c.RemoveAll(ctx, "nope"))
	list, err = c.List(ctx, "")
	must(t, err)
	if len(list) != 0 {
		t.Errorf("after RemoveAll: %s", describe(list))
	}
}

// get fetches a signed URL.
func get(t *testing.T, e *env, u string) (string, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(deadline(t), http.MethodGet, u, nil)
	must(t, err)
	resp, err := e.http.Do(req)
	must(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", u, resp.Status, body)
	}
	return string(body), resp.Header
}

func testEvents(t *testing.T, e *env) {
	a := e.dial(t, "alice", "r1", roomclient.Options{})
	b := e.dial(t, "bob", "r1", roomclient.Options{})
	c := e.dial(t, "carol", "r2", roomclient.Options{})
	ra, rb, rc := record(t, a), record(t, b), record(t, c)
	ctx := deadline(t)
	if a.ParticipantID() == "" || a.ParticipantID() == b.ParticipantID() {
		t.Fatalf("participant ids %q and %q", a.ParticipantID(), b.ParticipantID())
	}

	_, err := a.Upload(ctx, "e/one", strings.NewReader("1"), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	ra.expect(t, roomstore.EventFileUpdated, "e/one", "", a.ParticipantID())
	rb.expect(t, roomstore.EventFileUpdated, "e/one", "", a.ParticipantID())
	must(t, b.Move(ctx, "e/one", "e/two", roomstore.MoveOptions{}))
	ra.expect(t, roomstore.EventFileMoved, "e/two", "e/one", b.ParticipantID())
	rb.expect(t, roomstore.EventFileMoved, "e/two", "e/one", b.ParticipantID())
	must(t, a.Delete(ctx, "e/two"))
	ra.expect(t, roomstore.EventFileDeleted, "e/two", "", a.ParticipantID())
	rb.expect(t, roomstore.EventFileDeleted, "e/two", "", a.ParticipantID())

	// Carol's own change reaches her after anything room r1 could have
	// sent her: the first event she gets must be hers.
	_, err = c.Upload(ctx, "mine", strings.NewReader("c"), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	rc.expect(t, roomstore.EventFileUpdated, "mine", "", c.ParticipantID())
	rc.none(t)
	ra.none(t)
	rb.none(t)
}

func testOverwriteRefused(t *testing.T, e *env) {
	c := e.dial(t, "alice", "r1", roomclient.Options{})
	ctx := deadline(t)
	_, err := c.Upload(ctx, "f", strings.NewReader("old"), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	_, err = c.Upload(ctx, "f", strings.NewReader("new"), roomstore.OpenOptions{Exclusive: true})
	wantErr(t, "Upload onto a file without Overwrite", err, fs.ErrExist)
	var re *roomclient.Error
	if !errors.As(err, &re) || re.Code != 409 {
		t.Errorf("refusal %#v, want a 409 *roomclient.Error", err)
	}
	if f, err := c.Download(ctx, "f"); err != nil || string(f.Data) != "old" {
		t.Fatalf("after the refusal: %v %q, want the old content", err, f.Data)
	}
	_, err = c.Upload(ctx, "f", strings.NewReader("new"), roomstore.OpenOptions{Overwrite: true})
	must(t, err)
	if f, err := c.Download(ctx, "f"); err != nil || string(f.Data) != "new" {
		t.Fatalf("after Overwrite: %v %q", err, f.Data)
	}
}

func testLargeRoundTrip(t *testing.T, e *env) { roundTrip(t, e, 50<<20) }

// roundTrip streams size pseudo-random bytes up and down again and
// compares their SHA-256.
func roundTrip(t *testing.T, e *env, size int64) {
	c := e.dial(t, "alice", "r1", roomclient.Options{})
	// Tens of MiB under the race detector, beside the other packages'
	// tests on 2 cores, take far longer than a call.
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	up := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), size), up)
	ent, err := c.Upload(ctx, "big/blob.bin", src, roomstore.OpenOptions{Exclusive: true, Size: size})
	must(t, err)
	if ent.Size != size {
		t.Fatalf("uploaded %d bytes, want %d", ent.Size, size)
	}
	r, err := c.OpenReader(ctx, "big/blob.bin", 0, -1)
	must(t, err)
	defer r.Close()
	if r.Size() != size || r.MimeType() != "application/octet-stream" {
		t.Errorf("reader of %d bytes, %q", r.Size(), r.MimeType())
	}
	down := sha256.New()
	n, err := io.Copy(down, r)
	must(t, err)
	if n != size || !bytes.Equal(up.Sum(nil), down.Sum(nil)) {
		t.Fatalf("downloaded %d bytes with SHA-256 %x, want %d with %x", n, down.Sum(nil), size, up.Sum(nil))
	}
}

func testWeirdNames(t *testing.T, e *env) {
	c := e.dial(t, "alice", "r1", roomclient.Options{})
	rc := record(t, c)
	ctx := deadline(t)
	names := []string{"with space.txt", `quo"te's.txt`, "%41.txt", "what?.txt", "hash#tag", "plus+plus", "emoji 🎉.txt", `back\slash`, "t-/in", "t/in"}
	for _, n := range names {
		_, err := c.Upload(ctx, n, strings.NewReader("content of "+n), roomstore.OpenOptions{Exclusive: true})
		must(t, err)
		rc.expect(t, roomstore.EventFileUpdated, n, "", c.ParticipantID())
	}
	list, err := c.List(ctx, "")
	must(t, err)
	var got []string
	for _, ent := range list {
		got = append(got, ent.Path)
	}
	want := []string{"%41.txt", "emoji 🎉.txt", "hash#tag", "plus+plus", `quo"te's.txt`, "t-", "t", `back\slash`, "what?.txt", "with space.txt"}
	slices.SortFunc(want, func(a, b string) int {
		key := func(s string) string {
			if s == "t" || s == "t-" {
				return s + "/"
			}
			return s
		}
		return strings.Compare(key(a), key(b))
	})
	if !slices.Equal(got, want) {
		t.Errorf("List root:\n got %q\nwant %q", got, want)
	}
	for _, n := range names {
		f, err := c.Download(ctx, n)
		must(t, err)
		if string(f.Data) != "content of "+n || f.Path != n {
			t.Errorf("Download(%q): %q at %q", n, f.Data, f.Path)
		}
		st, err := c.Stat(ctx, n)
		must(t, err)
		if st.Path != n {
			t.Errorf("Stat(%q).Path = %q", n, st.Path)
		}
	}
	in, err := c.List(ctx, "t-")
	must(t, err)
	if describe(in) != "t-/in(false,16) " {
		t.Errorf("List t-: %s", describe(in))
	}
}

func testInvalidPaths(t *testing.T, e *env) {
	c := e.dial(t, "alice", "r1", roomclient.Options{})
	ctx := deadline(t)
	for _, p := range []string{"", "/", ".", "a/../b", "../x", "./a", "a//b", "trailing/", ".roomstore/x", "a\x00b", "tab\tname", "bad\xffutf8", strings.Repeat("x", 256)} {
		_, err := c.Upload(ctx, p, strings.NewReader("x"), roomstore.OpenOptions{Overwrite: true})
		wantErr(t, "Upload("+p+")", err, fs.ErrInvalid)
		if p != "" && p != "/" && p != "." && p != "trailing/" {
			_, err = c.Stat(ctx, p)
			wantErr(t, "Stat("+p+")", err, fs.ErrInvalid)
			wantErr(t, "Delete("+p+")", c.Delete(ctx, p), fs.ErrInvalid)
		}
		wantErr(t, "Move(x, "+p+")", c.Move(ctx, "x", p, roomstore.MoveOptions{}), fs.ErrInvalid)
	}
	list, err := c.List(ctx, "")
	must(t, err)
	if len(list) != 0 {
		t.Errorf("invalid uploads wrote %s", describe(list))
	}
}

// blockingReader yields one chunk, then blocks its next Read until
// released, then yields more.
type blockingReader struct {
	chunk   []byte
	reads   int
	blocked chan struct{} // closed when the blocking Read begins
	release chan struct{}
}

func (r *blockingReader) Read(p []byte) (int, error) {
	r.reads++
	if r.reads == 2 {
		close(r.blocked)
		<-r.release
	}
	return copy(p, r.chunk), nil
}

func testClosedMidUpload(t *testing.T, e *env) {
	const chunk = 64 << 10
	c := e.dial(t, "alice", "r1", roomclient.Options{ChunkSize: chunk})
	other := e.dial(t, "bob", "r1", roomclient.Options{})
	br := &blockingReader{chunk: fill(1, chunk), blocked: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := c.Upload(deadline(t), "partial.bin", br, roomstore.OpenOptions{Exclusive: true})
		done <- err
	}()
	select {
	case <-br.blocked: // the first chunk went out and was pulled for more
	case <-time.After(wait):
		t.Fatal("the upload never asked for its second chunk")
	}
	must(t, c.Close())
	close(br.release)
	select {
	case err := <-done:
		wantErr(t, "Upload cut short by Close", err, fs.ErrClosed)
	case <-time.After(wait):
		t.Fatal("Upload did not return after Close")
	}
	ctx := deadline(t)
	if ok, err := other.Exists(ctx, "partial.bin"); err != nil || ok {
		t.Fatalf("Exists(partial.bin) after the cut: %v, %v", ok, err)
	}
	list, err := other.List(ctx, "")
	must(t, err)
	if len(list) != 0 {
		t.Errorf("a cut upload left %s", describe(list))
	}
	_, err = c.Exists(ctx, "x")
	wantErr(t, "a call after Close", err, fs.ErrClosed)
}

// offHits counts the calls of countUpdates, a top-level handler that Off
// can find.
var offHits atomic.Int32

func countUpdates(string) { offHits.Add(1) }

func testHandlers(t *testing.T, e *env) {
	c := e.dial(t, "alice", "r1", roomclient.Options{})
	ctx := deadline(t)
	paths := make(chan string, 8)
	byWho := make(chan string, 8)
	moves := make(chan events.Event, 8)
	_, err := c.On(roomstore.EventFileUpdated, func(p string) { paths <- p })
	must(t, err)
	_, err = c.On(roomstore.EventFileUpdated, func(string) { panic("a handler that panics") })
	must(t, err)
	_, err = c.On(roomstore.EventFileDeleted, func(p, who string) { byWho <- p + " by " + who })
	must(t, err)
	_, err = c.On(roomstore.EventFileMoved, func(ev events.Event) { moves <- ev })
	must(t, err)
	_, err = c.On(roomstore.EventFileUpdated, countUpdates)
	must(t, err)
	must(t, c.Off(roomstore.EventFileUpdated, countUpdates))
	wantErr(t, "a second Off", c.Off(roomstore.EventFileUpdated, countUpdates), fs.ErrNotExist)
	wantErr(t, "Off of a non-function", c.Off(roomstore.EventFileUpdated, 3), fs.ErrInvalid)
	_, err = c.On("file.created", func(string) {})
	wantErr(t, "On an unknown event", err, fs.ErrInvalid)
	_, err = c.On(roomstore.EventFileUpdated, func(int) {})
	wantErr(t, "On with a func(int)", err, fs.ErrInvalid)
	_, err = c.On(roomstore.EventFileUpdated, nil)
	wantErr(t, "On with nil", err, fs.ErrInvalid)
	gone, err := c.On(roomstore.EventFileUpdated, func(string) { offHits.Add(1) })
	must(t, err)
	gone.Unsubscribe()

	_, err = c.Upload(ctx, "h", strings.NewReader("x"), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	must(t, c.Move(ctx, "h", "h2", roomstore.MoveOptions{}))
	must(t, c.Delete(ctx, "h2"))
	receive := func(ch <-chan string, want string) {
		t.Helper()
		select {
		case got := <-ch:
			if got != want {
				t.Errorf("handler got %q, want %q", got, want)
			}
		case <-time.After(wait):
			t.Fatalf("no %q within %v", want, wait)
		}
	}
	receive(paths, "h")
	receive(byWho, "h2 by "+c.ParticipantID())
	select {
	case ev := <-moves:
		if ev.Type != roomstore.EventFileMoved || ev.Path != "h2" || ev.SourcePath != "h" || ev.ParticipantID != c.ParticipantID() {
			t.Errorf("moved event %+v", ev)
		}
	case <-time.After(wait):
		t.Fatal("no moved event")
	}
	if n := offHits.Load(); n != 0 {
		t.Errorf("unsubscribed handlers ran %d times", n)
	}

	closed := e.dial(t, "bob", "r1", roomclient.Options{})
	must(t, closed.Close())
	must(t, closed.Close())
	_, err = closed.On(roomstore.EventFileUpdated, func(string) {})
	wantErr(t, "On after Close", err, fs.ErrClosed)
}

func testReconnect(t *testing.T, e *env) {
	opts := roomclient.Options{Reconnect: true, MaxBackoff: 200 * time.Millisecond, ChunkSize: 64 << 10}
	var back [2]chan struct{}
	var clients [2]*roomclient.Client
	for i, name := range []string{"alice", "bob"} {
		o := opts
		o.Logger, back[i] = reconnections()
		clients[i] = e.dial(t, name, "r1", o)
	}
	a, b := clients[0], clients[1]
	ra, rb := record(t, a), record(t, b)
	ctx := deadline(t)
	_, err := a.Upload(ctx, "big", bytes.NewReader(fill(2, 1<<20)), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	ra.expect(t, roomstore.EventFileUpdated, "big", "", a.ParticipantID())
	rb.expect(t, roomstore.EventFileUpdated, "big", "", a.ParticipantID())

	// In flight at the drop: a download half read and an upload whose
	// reader is blocked.
	r, err := a.OpenReader(ctx, "big", 0, -1)
	must(t, err)
	defer r.Close()
	if _, err := io.ReadFull(r, make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	br := &blockingReader{chunk: fill(3, 64<<10), blocked: make(chan struct{}), release: make(chan struct{})}
	upload := make(chan error, 1)
	go func() {
		_, err := b.Upload(ctx, "cut", br, roomstore.OpenOptions{Exclusive: true})
		upload <- err
	}()
	select {
	case <-br.blocked:
	case <-time.After(wait):
		t.Fatal("the upload never asked for its second chunk")
	}
	before := a.ParticipantID()
	if n := e.drop(); n < 2 {
		t.Fatalf("dropped %d connections, want 2", n)
	}
	_, err = io.ReadAll(r)
	wantErr(t, "Read after the drop", err, roomclient.ErrDisconnected)
	close(br.release)
	select {
	case err := <-upload:
		wantErr(t, "Upload after the drop", err, roomclient.ErrDisconnected)
	case <-time.After(wait):
		t.Fatal("the upload did not fail after the drop")
	}

	// Each client resumes after the last event it got: nothing happened
	// in the gap, so its subscribers see no sign of it.
	for i := range back {
		select {
		case <-back[i]:
		case <-time.After(wait):
			t.Fatal("a client did not reconnect")
		}
	}
	if a.ParticipantID() == before || a.ParticipantID() == "" {
		t.Errorf("participant id %q after reconnecting, was %q", a.ParticipantID(), before)
	}
	_, err = b.Upload(ctx, "after", strings.NewReader("x"), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	ra.expect(t, roomstore.EventFileUpdated, "after", "", b.ParticipantID())
	rb.expect(t, roomstore.EventFileUpdated, "after", "", b.ParticipantID())
	if ok, err := a.Exists(ctx, "cut"); err != nil || ok {
		t.Errorf("Exists(cut): %v, %v; want nothing from the cut upload", ok, err)
	}
}

func testNoReconnect(t *testing.T, e *env) {
	a := e.dial(t, "alice", "r1", roomclient.Options{})
	ctx := deadline(t)
	if n := e.drop(); n != 1 {
		t.Fatalf("dropped %d connections, want 1", n)
	}
	for range 3 {
		_, err := a.Exists(ctx, "x")
		wantErr(t, "Exists after the drop", err, roomclient.ErrDisconnected)
	}
	_, err := a.Upload(ctx, "x", strings.NewReader("x"), roomstore.OpenOptions{Exclusive: true})
	wantErr(t, "Upload after the drop", err, roomclient.ErrDisconnected)
	_, err = a.OpenReader(ctx, "x", 0, -1)
	wantErr(t, "OpenReader after the drop", err, roomclient.ErrDisconnected)
}

// A download pulls its next chunk before the last has arrived (the
// server announces its chunk size): every size around the chunk
// boundaries arrives whole, with no pull past the end (which the server
// would refuse), and a reader closed with a pull in flight lets the
// stream go, so that later calls work.
func testPullAhead(t *testing.T, e *env) {
	const chunk = 64 << 10
	c := e.dial(t, "alice", "r1", roomclient.Options{ChunkSize: chunk})
	ctx := deadline(t)
	buf := make([]byte, 10_000) // reads smaller than a chunk
	for i, size := range []int{1, chunk - 1, chunk, chunk + 1, 2 * chunk, 3*chunk + 7} {
		data := fill(byte(i), size)
		p := fmt.Sprintf("ahead/%d.bin", size)
		_, err := c.Upload(ctx, p, bytes.NewReader(data), roomstore.OpenOptions{Exclusive: true})
		must(t, err)
		r, err := c.OpenReader(ctx, p, 0, -1)
		must(t, err)
		var got []byte
		for {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			must(t, err)
		}
		must(t, r.Close())
		if !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: read back %d bytes that differ", size, len(got))
		}
	}
	// Closed after its first Read: a pull is then in flight.
	for range 20 { // more than the server's streams per connection
		r, err := c.OpenReader(ctx, "ahead/196615.bin", 0, -1)
		must(t, err)
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
		must(t, r.Close())
	}
	f, err := c.Download(ctx, "ahead/196615.bin")
	must(t, err)
	if !bytes.Equal(f.Data, fill(5, 3*chunk+7)) {
		t.Fatal("the last download differs")
	}
}
