// Package conformance is the one test suite every roomstore backend runs,
// in the way of testing/fstest: backend-level cases check the
// backend.Backend contract directly, engine-level cases check every promise
// of package roomstore (paths, folders, handles, visibility, concurrency,
// URLs, events, errors) through Engines over that backend.
//
// A backend's test calls Run with a Harness:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, conformance.Harness{
//			New: func(t *testing.T) backend.Backend { return backend_mem.New() },
//			Reopen: func(t *testing.T, b backend.Backend) backend.Backend { return b },
//			Broken: func(t *testing.T) []conformance.BrokenStore { ... },
//			Mortal: func(t *testing.T) conformance.MortalStore { ... }, // optional
//		})
//	}
//
// Every case is a named subtest that states the behaviour it checks, gets a
// fresh store, and cleans up after itself. Nothing is skipped.
package conformance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/events"
)

// Harness connects the suite to a backend.
type Harness struct {
	// New returns a fresh, empty store. It registers any cleanup with
	// t.Cleanup. New and Reopen are called from parallel subtests, so they
	// must be safe for concurrent use.
	New func(t *testing.T) backend.Backend
	// Reopen returns a second, independent Backend value over the same
	// store as b, as another process would open it (for a store that lives
	// only in one value, b itself).
	Reopen func(t *testing.T, b backend.Backend) backend.Backend
	// PartSize is the backend's chunk or part size; the size cases write
	// files around it. Zero means 5 MiB.
	PartSize int
	// URLSignaturesUnchecked declares that the store's server serves
	// presigned URLs without checking their signature (fake-gcs-server).
	// The URL cases then check the URL's signature and expiry parameters
	// instead of expecting a 403, which such a server cannot give.
	URLSignaturesUnchecked bool
	// CommitIgnoresFolders declares a plain object store, whose commit
	// cannot tell that a folder is at the path or a file above it (GCS;
	// S3 servers that store objects as files refuse both). The case on
	// such conflicts then checks that the Engine refuses them at Open,
	// the only place such a store can.
	CommitIgnoresFolders bool
	// DeletePreconditionRacy declares a server that checks a conditional
	// DeleteObject (If-Match) apart from the conditional writes it races:
	// versitygw v1.8.0's posix backend compares the ETag and unlinks
	// without the lock its writes hold, so that a write landing in between
	// is removed with the old version or survives the delete. A move
	// racing appends from another process cannot be shown safe on such a
	// server (AWS evaluates the condition atomically); the racing-move
	// case then races appends from the same Engine, whose path locks
	// order them, and the backend's own tests show the precondition
	// refusing a change made between copy and delete.
	DeletePreconditionRacy bool
	// ListOmitsETags declares a store whose listings do not carry the
	// ETag that Stat and reads report (S3: ListObjectsV2 has no object
	// metadata, and the ETag holds a commit id kept there). List then
	// leaves Entry.ETag empty, never a different value.
	ListOmitsETags bool
	// Leftovers, when set, lists what the backend keeps for itself in the
	// store b (temporary files or objects, unfinished multipart uploads).
	// Every case checks that nothing is left once its engines have shut
	// down and its writers are committed or aborted.
	Leftovers func(t *testing.T, b backend.Backend) []string
	// Broken returns fresh stores that cannot work, each broken in a way
	// the backend meets in production (a staging folder that is a file, a
	// removed directory, a missing bucket, a store whose every call
	// fails); at least one is required. The broken-store cases check that
	// writes fail cleanly on each and that a store that is gone says so.
	Broken func(t *testing.T) []BrokenStore
	// Mortal, when set, returns a fresh, empty store on a server of its
	// own that the server-death cases kill while a writer has an upload in
	// flight and bring back (S3 and GCS: the emulator's process; memory:
	// faults that fail every call until Restart clears them). Those cases
	// check that the calls meeting the dead server fail within their
	// context, that the engine discards the handle, and that once the
	// server is back the old content stays and nothing partial is left. A
	// store with no server to lose (a local disk, whose process crashes
	// are the disk store's crash test) leaves it nil, and the cases are
	// not listed for it.
	Mortal func(t *testing.T) MortalStore
}

func (h Harness) partSize() int {
	if h.PartSize > 0 {
		return h.PartSize
	}
	return 5 << 20
}

// checkingLeftovers makes every store the case creates check, at the very
// end of the case (its cleanup runs after the engines' Shutdown), that the
// backend left nothing of its own behind.
func (h Harness) checkingLeftovers() Harness {
	if h.Leftovers == nil {
		return h
	}
	newStore := h.New
	h.New = func(t *testing.T) backend.Backend {
		b := newStore(t)
		t.Cleanup(func() {
			if left := h.Leftovers(t, b); len(left) > 0 {
				t.Errorf("the backend left %d things behind: %v", len(left), left)
			}
		})
		return b
	}
	return h
}

// Run runs the whole suite against the harness's backend.
func Run(t *testing.T, h Harness) {
	if h.New == nil || h.Reopen == nil || h.Broken == nil {
		t.Fatal("conformance: Harness.New, Harness.Reopen and Harness.Broken are required")
	}
	t.Run("backend", func(t *testing.T) { runBackend(t, h) })
	t.Run("engine", func(t *testing.T) { runEngine(t, h) })
	if h.Mortal != nil {
		t.Run("server death", func(t *testing.T) { runServerDeath(t, h) })
	}
}

// cases runs named cases as parallel subtests.
func cases(t *testing.T, h Harness, cs []tcase) {
	t.Helper()
	for _, c := range cs {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, h.checkingLeftovers())
		})
	}
}

type tcase struct {
	name string
	run  func(t *testing.T, h Harness)
}

// env is one Engine over a backend, with its signed-URL handler served on
// a loopback test server and every event recorded.
type env struct {
	*roomstore.Engine
	b   backend.Backend
	rec *recorder
	ctx context.Context // carries participant "alice"
}

func newEnv(t *testing.T, b backend.Backend, opts ...roomstore.Option) *env {
	t.Helper()
	logs := &testLog{t: t}
	t.Cleanup(logs.stop) // registered first, so it runs after Shutdown
	var e *roomstore.Engine
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.Handler().ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	opts = append([]roomstore.Option{
		roomstore.WithBaseURL(srv.URL + "/dl"),
		roomstore.WithLogger(slog.New(slog.NewTextHandler(logs, nil))),
	}, opts...)
	e, err := roomstore.New(b, opts...)
	if err != nil {
		t.Fatalf("roomstore.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	rec := &recorder{}
	e.Subscribe(rec.add)
	return &env{Engine: e, b: b, rec: rec, ctx: roomstore.WithParticipant(t.Context(), "alice")}
}

func fresh(t *testing.T, h Harness, opts ...roomstore.Option) *env {
	t.Helper()
	return newEnv(t, h.New(t), opts...)
}

// open opens p with o, failing t on an error.
func (e *env) open(t *testing.T, p string, o roomstore.OpenOptions) *roomstore.Handle {
	t.Helper()
	hd, err := e.Open(e.ctx, p, o)
	noErr(t, "Open", err)
	return hd
}

// put writes data to p in one handle and closes it, failing the test on
// error.
func (e *env) put(t *testing.T, p string, data []byte, o roomstore.OpenOptions) {
	t.Helper()
	if err := e.write(e.ctx, p, data, o); err != nil {
		t.Fatalf("write %q: %v", p, err)
	}
}

func (e *env) write(ctx context.Context, p string, data []byte, o roomstore.OpenOptions) error {
	h, err := e.Open(ctx, p, o)
	if err != nil {
		return err
	}
	if len(data) > 0 {
		if err := e.Write(ctx, h, data); err != nil {
			return err
		}
	}
	return e.Close(ctx, h)
}

var overwrite = roomstore.OpenOptions{Overwrite: true}

// get downloads p, failing the test on error.
func (e *env) get(t *testing.T, p string) []byte {
	t.Helper()
	f, err := e.Download(e.ctx, p)
	if err != nil {
		t.Fatalf("download %q: %v", p, err)
	}
	return f.Data
}

func (e *env) mustContain(t *testing.T, p string, want []byte) {
	t.Helper()
	if got := e.get(t, p); !bytes.Equal(got, want) {
		t.Fatalf("%q holds %s, want %s", p, show(got), show(want))
	}
}

func (e *env) mustBeAbsent(t *testing.T, p string) {
	t.Helper()
	ok, err := e.Exists(e.ctx, p)
	if err != nil || ok {
		t.Fatalf("Exists(%q) = %v, %v; want false, nil", p, ok, err)
	}
}

// names lists p and returns the entry names, folders with a trailing "/".
func (e *env) names(t *testing.T, p string) []string {
	t.Helper()
	return e.listNames(t, e.ctx, p)
}

// listNames is names through ctx.
func (e *env) listNames(t *testing.T, ctx context.Context, p string) []string {
	t.Helper()
	es, err := e.List(ctx, p)
	if err != nil {
		t.Fatalf("list %q: %v", p, err)
	}
	out := make([]string, len(es))
	for i, x := range es {
		out[i] = x.Name
		if x.IsFolder {
			out[i] += "/"
		}
	}
	return out
}

func show(b []byte) string {
	if len(b) <= 64 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%d bytes (sha256 %x)", len(b), sha256.Sum256(b))
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		t.Fatalf("%s: error %v (%T) is not an *fs.PathError", what, err, err)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// pattern returns n deterministic pseudo-random bytes, different per seed.
func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// testLog sends the engine's log to the test's log until the test ends.
type testLog struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Logf("engine log: %s", bytes.TrimSpace(p))
	}
	return len(p), nil
}

func (l *testLog) stop() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}

// recorder keeps every event one subscriber received, except those of the
// barrier files, which it only notes.
type recorder struct {
	mu       sync.Mutex
	evs      []events.Event
	barriers map[string]bool
}

// barrierDir holds the files that barrier writes and deletes at once.
const barrierDir = "zz-barrier"

func (r *recorder) add(e events.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if strings.HasPrefix(e.Path, barrierDir+"/") {
		if e.Type == roomstore.EventFileDeleted {
			if r.barriers == nil {
				r.barriers = map[string]bool{}
			}
			r.barriers[e.Path] = true
		}
		return
	}
	r.evs = append(r.evs, e)
}

func (r *recorder) snapshot() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.Event(nil), r.evs...)
}

// matching returns the recorded events of topic for path.
func (r *recorder) matching(topic, p string) []events.Event {
	var out []events.Event
	for _, e := range r.snapshot() {
		if e.Type == topic && e.Path == p {
			out = append(out, e)
		}
	}
	return out
}

// barrier returns once every event that e published before the call has
// reached its recorder: it writes and deletes a file of its own and waits
// for that deletion's event, which a subscriber receives after all earlier
// ones. The store is as it was before.
func (e *env) barrier(t *testing.T) {
	t.Helper()
	p := fmt.Sprintf("%s/%x", barrierDir, rand.Uint64())
	if err := e.write(e.ctx, p, nil, overwrite); err != nil {
		t.Fatalf("barrier write: %v", err)
	}
	if err := e.Delete(e.ctx, p); err != nil && !errors.Is(err, fs.ErrNotExist) { // a handler may have beaten us to it
		t.Fatalf("barrier delete: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.rec.mu.Lock()
		seen := e.rec.barriers[p]
		e.rec.mu.Unlock()
		if seen {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("barrier event did not arrive within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// await waits until n events of topic for p arrived, then for every event
// published so far, and returns those of topic for p.
func (e *env) await(t *testing.T, topic, p string, n int) []events.Event {
	t.Helper()
	eventually(t, fmt.Sprintf("%d %s events of %q", n, topic, p), func() bool { return len(e.rec.matching(topic, p)) >= n })
	e.barrier(t)
	return e.rec.matching(topic, p)
}

// none checks that no event at all arrived.
func (e *env) none(t *testing.T, why string) {
	t.Helper()
	e.barrier(t)
	if evs := e.rec.snapshot(); len(evs) > 0 {
		t.Fatalf("%s: got events %+v, want none", why, evs)
	}
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// readAll drains r and closes it.
func readAll(t *testing.T, r io.ReadCloser) []byte {
	t.Helper()
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}
