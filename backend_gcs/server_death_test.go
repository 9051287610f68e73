package backend_gcs

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/testserver"
)

// Bounds of the server-death tests. A resumable upload whose server is
// gone is retried by the SDK until the call's context ends (or for
// ChunkRetryDeadline, 32 s, per chunk), so every call that meets the dead
// server carries downTimeout; callTimeout bounds those that meet it once
// it is back, and blockedLimit catches a call that ignores its context.
const (
	downTimeout  = 2 * time.Second
	callTimeout  = 20 * time.Second
	blockedLimit = callTimeout + 10*time.Second
)

// deathChunk is the chunk size of the stores below, so that writes of a
// few MiB keep a resumable upload with several chunks in flight.
const deathChunk = testChunk

// dyingServer is an on-disk fake-gcs-server that a test crashes and
// brings back on the same address with its buckets and objects, though
// not its upload sessions (see testserver.StartFakeGCSOnDisk).
type dyingServer struct {
	*testserver.FakeGCS
	restarts sync.WaitGroup

	mu         sync.Mutex
	restartErr error
}

func startDyingServer(t *testing.T) *dyingServer {
	t.Helper()
	d := &dyingServer{FakeGCS: testserver.StartFakeGCSOnDisk(t)}
	t.Cleanup(d.restarts.Wait)
	return d
}

// dieFor kills the server now and, when down is positive, restarts it
// after down in the background; back waits for that restart.
func (d *dyingServer) dieFor(down time.Duration) {
	d.Kill()
	if down <= 0 {
		return
	}
	d.restarts.Go(func() {
		time.Sleep(down)
		err := d.Restart()
		d.mu.Lock()
		d.restartErr = errors.Join(d.restartErr, err)
		d.mu.Unlock()
	})
}

// back makes sure the server is up again: it waits for a background
// restart, or restarts the server itself when none was started.
func (d *dyingServer) back(t *testing.T, restarted bool) {
	t.Helper()
	d.restarts.Wait()
	d.mu.Lock()
	err := d.restartErr
	d.mu.Unlock()
	if !restarted && err == nil {
		err = d.Restart()
	}
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
}

// newDeathStore returns a store under prefix "room" in a new bucket of d,
// through client (a plain client when nil).
func newDeathStore(t *testing.T, d *dyingServer, client *storage.Client) *store {
	t.Helper()
	bucket := testserver.NewFakeGCSBucket(t, d.Endpoint)
	raw := testserver.FakeGCSClient(t, d.Endpoint)
	if client == nil {
		client = raw
	}
	b, err := New(client, bucket, "room", WithChunkSize(deathChunk), WithURLEndpoint(d.Endpoint))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &store{Backend: b, endpoint: d.Endpoint, client: raw, bucket: bucket}
}

// notBlocked runs f and fails the test if it has not returned after
// blockedLimit, so that a call stuck on the dead server shows up as a
// failure rather than a hung test.
func notBlocked(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(blockedLimit):
		t.Fatalf("%s still blocked after %v", what, blockedLimit)
	}
}

// assertNothingPartial checks, once the server is back, that the file at
// path holds old (or is missing when old is nil), that the store lists
// exactly want at its root, and that the bucket holds the files in want
// and nothing else: no partial object, no temporary, no claim.
func assertNothingPartial(t *testing.T, s *store, path string, old []byte, want ...string) {
	t.Helper()
	if old == nil {
		if _, err := s.Stat(t.Context(), path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat %q after the failed write: %v, want fs.ErrNotExist", path, err)
		}
	} else {
		mustEqual(t, path, readAll(t, s, path), old)
	}
	if got := list(t, s, ""); !sameNames(got, want) {
		t.Errorf("List after the failed write = %q, want %q", got, want)
	}
	var wantObjects []string
	for _, n := range want {
		wantObjects = append(wantObjects, s.key(n))
	}
	if got := s.objects(t); !sameNames(got, wantObjects) {
		t.Errorf("bucket after the failed write holds %q, want %q", got, wantObjects)
	}
}

func sameNames(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// writeUntilError writes data through w in pieces of piece bytes and
// returns the first error (nil when every piece was written).
func writeUntilError(ctx context.Context, w backend.Writer, data []byte, piece int) error {
	for len(data) > 0 {
		n := min(piece, len(data))
		if err := w.Write(ctx, data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// TestServerDeath kills fake-gcs-server (SIGKILL) while a Writer's
// resumable upload is in flight, and checks that the Write or Commit that
// meets the dead server fails (when the server stays down, by the call's
// context; when it comes back, at once, as the restarted server no longer
// knows the upload session), and that once the server is back on the same
// address over the same data, the file holds its old content (or is
// missing) and the bucket holds no partial object and no temporary.
func TestServerDeath(t *testing.T) {
	cases := []struct {
		name   string
		append bool
		old    int           // size of the file before the write; -1: none
		before int           // bytes written before the server dies
		after  int           // bytes written after it died; 0: Commit at once
		down   time.Duration // 0: it stays down until the failure
	}{
		{name: "create of a new file: dies mid-write and stays down", old: -1, before: 4 * deathChunk, after: 4 * deathChunk},
		{name: "create over a file: dies mid-write and comes back", old: 3*deathChunk + 5, before: 4 * deathChunk, after: 8 * deathChunk, down: 300 * time.Millisecond},
		{name: "create over a file: dies before commit", old: 100, before: 4*deathChunk + 17},
		{name: "create over a file: dies before commit and comes back", old: 100, before: 4*deathChunk + 17, down: 300 * time.Millisecond},
		{name: "append: dies mid-write and stays down", append: true, old: 3*deathChunk + 5, before: 4 * deathChunk, after: 4 * deathChunk},
		{name: "append: dies mid-write and comes back", append: true, old: 100, before: 4 * deathChunk, after: 8 * deathChunk, down: 300 * time.Millisecond},
		{name: "append: dies before commit", append: true, old: 100, before: 4*deathChunk + 17},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := startDyingServer(t)
			s := newDeathStore(t, d, nil)
			var old []byte
			want := []string{}
			if tc.old >= 0 {
				old = randBytes(tc.old, uint64(i))
				mustCreate(t, s, "f", old)
				want = append(want, "f")
			}
			var w backend.Writer
			var err error
			if tc.append {
				w, err = s.Append(t.Context(), "f", backend.WriteOptions{})
			} else {
				w, err = s.Create(t.Context(), "f", backend.WriteOptions{})
			}
			if err != nil {
				t.Fatal(err)
			}
			data := randBytes(tc.before+tc.after, uint64(100+i))
			// The SDK reads a chunk only once it has sent the one before,
			// so when this returns, chunks are on the server.
			write(t, w, data[:tc.before], 64<<10)

			d.dieFor(tc.down)
			timeout := downTimeout
			if tc.down > 0 {
				timeout = callTimeout
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			start := time.Now()
			notBlocked(t, "the write to the dead server", func() {
				if tc.after > 0 {
					err = writeUntilError(ctx, w, data[tc.before:], 64<<10)
				} else {
					_, err = w.Commit(ctx)
				}
			})
			took := time.Since(start)
			if err == nil {
				t.Fatal("the write to the dead server succeeded")
			}
			t.Logf("failure after %v: %v", took.Round(time.Millisecond), err)
			var pe *fs.PathError
			if errors.As(err, &pe) {
				t.Errorf("error %v names a path: backends leave that to the engine", err)
			}
			if tc.down > 0 && errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("the write failed only when its context ended (%v), not when the server came back without the session", err)
			}

			d.back(t, tc.down > 0)
			ctx, cancel = context.WithTimeout(t.Context(), callTimeout)
			defer cancel()
			if tc.after > 0 {
				if _, err := w.Commit(ctx); err == nil {
					t.Error("Commit after a failed Write succeeded")
				}
			}
			notBlocked(t, "Abort", func() { err = w.Abort(ctx) })
			if err != nil {
				t.Errorf("Abort: %v", err)
			}
			assertNothingPartial(t, s, "f", old, want...)
		})
	}

	// The temporary is finalised and the append claimed when the server
	// dies; the SDK's retries may then carry the compose through once the
	// server is back, or the Commit fails. Either way the file is whole and
	// nothing of the backend's own is left.
	t.Run("append: dies while composing and comes back", func(t *testing.T) {
		t.Parallel()
		d := startDyingServer(t)
		var once sync.Once
		var died atomic.Bool
		client := hookedClient(t, d.Endpoint, func(r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/compose") {
				once.Do(func() {
					d.dieFor(500 * time.Millisecond)
					died.Store(true)
				})
			}
		})
		s := newDeathStore(t, d, client)
		old := randBytes(3*deathChunk+5, 1)
		mustCreate(t, s, "f", old)
		w, err := s.Append(t.Context(), "f", backend.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		added := randBytes(2*deathChunk+3, 2)
		write(t, w, added, 64<<10)
		ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
		defer cancel()
		notBlocked(t, "Commit", func() { _, err = commitRetrying(ctx, w) })
		if !died.Load() {
			t.Fatal("the server never died: Commit sent no compose")
		}
		d.back(t, true)
		if err := w.Abort(ctx); err != nil {
			t.Errorf("Abort: %v", err)
		}
		if err != nil {
			t.Logf("Commit failed: %v", err)
			assertNothingPartial(t, s, "f", old, "f")
			return
		}
		t.Log("Commit rode out the outage")
		assertNothingPartial(t, s, "f", append(slices.Clip(old), added...), "f")
	})
}

// TestServerDeathThroughEngine runs the same crash under a roomstore
// Engine: the server dies while a handle's upload is in flight, the Write
// (or Close) fails within its context, the handle is finished, and once
// the server is back the file holds its old content and the bucket
// nothing partial.
func TestServerDeathThroughEngine(t *testing.T) {
	cases := []struct {
		name   string
		opts   roomstore.OpenOptions
		old    int // -1: no file before
		before int
		after  int // 0: Close at once
		down   time.Duration
	}{
		{name: "overwrite: dies mid-write and stays down", opts: roomstore.OpenOptions{Overwrite: true}, old: 3*deathChunk + 5, before: 4 * deathChunk, after: 4 * deathChunk},
		{name: "overwrite: dies mid-write and comes back", opts: roomstore.OpenOptions{Overwrite: true}, old: 3*deathChunk + 5, before: 4 * deathChunk, after: 8 * deathChunk, down: 300 * time.Millisecond},
		{name: "append: dies mid-write and stays down", old: 3*deathChunk + 5, before: 4 * deathChunk, after: 4 * deathChunk},
		{name: "append: dies mid-write and comes back", old: 100, before: 4 * deathChunk, after: 8 * deathChunk, down: 300 * time.Millisecond},
		{name: "new file: dies before close", opts: roomstore.OpenOptions{Overwrite: true}, old: -1, before: 4*deathChunk + 17},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := startDyingServer(t)
			s := newDeathStore(t, d, nil)
			e, err := roomstore.New(s)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := e.Shutdown(context.Background()); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			})
			var old []byte
			want := []string{}
			if tc.old >= 0 {
				old = randBytes(tc.old, uint64(i))
				mustCreate(t, s, "f.bin", old)
				want = append(want, "f.bin")
			}
			h, err := e.Open(t.Context(), "f.bin", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			data := randBytes(tc.before+tc.after, uint64(100+i))
			for p := data[:tc.before]; len(p) > 0; p = p[min(64<<10, len(p)):] {
				if err := e.Write(t.Context(), h, p[:min(64<<10, len(p))]); err != nil {
					t.Fatalf("Write before the server died: %v", err)
				}
			}

			d.dieFor(tc.down)
			timeout := downTimeout
			if tc.down > 0 {
				timeout = callTimeout
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			notBlocked(t, "the engine's write to the dead server", func() {
				if tc.after == 0 {
					err = e.Close(ctx, h)
					return
				}
				for p := data[tc.before:]; len(p) > 0 && err == nil; p = p[min(64<<10, len(p)):] {
					err = e.Write(ctx, h, p[:min(64<<10, len(p))])
				}
			})
			if err == nil {
				t.Fatal("the write to the dead server succeeded")
			}
			t.Logf("failure: %v", err)
			var pe *fs.PathError
			if !errors.As(err, &pe) || pe.Path != "f.bin" {
				t.Errorf("error %v is not an *fs.PathError on f.bin", err)
			}

			d.back(t, tc.down > 0)
			ctx, cancel = context.WithTimeout(t.Context(), callTimeout)
			defer cancel()
			if err := e.Write(ctx, h, []byte("x")); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Write after the failure: %v, want fs.ErrClosed", err)
			}
			if err := e.Close(ctx, h); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Close after the failure: %v, want fs.ErrClosed", err)
			}
			assertNothingPartial(t, s, "f.bin", old, want...)
			if old == nil {
				if ok, err := e.Exists(ctx, "f.bin"); ok || err != nil {
					t.Errorf("Exists = %v, %v; want false", ok, err)
				}
			} else {
				f, err := e.Download(ctx, "f.bin")
				if err != nil {
					t.Fatalf("Download: %v", err)
				}
				if !bytes.Equal(f.Data, old) {
					t.Errorf("Download: %d bytes, want the %d old ones", len(f.Data), len(old))
				}
			}
			entries, err := e.List(ctx, "")
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			var got []string
			for _, en := range entries {
				got = append(got, en.Name)
			}
			if !sameNames(got, want) {
				t.Errorf("engine List = %q, want %q", got, want)
			}
		})
	}
}
