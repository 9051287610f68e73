package backend_gcs

import (
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

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/testserver"
)

// The conformance suite's server-death cases kill the server under every
// kind of write, directly and through an Engine, and keep it down until
// the write has failed. The tests here check what is GCS's own: a server
// that comes back has forgotten the resumable upload, so the write fails
// at once rather than when its context ends, and an append whose compose
// met the dead server either rides out the outage or fails whole.

// Bounds of the server-death tests: callTimeout bounds each call, and
// blockedLimit catches a call that ignores its context.
const (
	callTimeout  = 20 * time.Second
	blockedLimit = callTimeout + 10*time.Second
)

// deathChunk is the chunk size of the stores below, so that writes of a
// few MiB keep a resumable upload with several chunks in flight.
const deathChunk = testChunk

// dyingServer is an on-disk fake-gcs-server that a test crashes and
// brings back on the same address with its buckets and objects, though
// not its upload sessions (see testserver.StartFakeGCSOnDisk). Once
// killed, it restarts just before the next request of the store's client
// (see client), so that the request meets a server that came back, with
// no timer deciding when.
type dyingServer struct {
	*testserver.FakeGCS

	mu         sync.Mutex
	killed     bool
	restarted  bool
	restartErr error
}

func startDyingServer(t *testing.T) *dyingServer {
	t.Helper()
	return &dyingServer{FakeGCS: testserver.StartFakeGCSOnDisk(t)}
}

// kill crashes the server; the next request through client restarts it.
func (d *dyingServer) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Kill()
	d.killed = true
}

// reviveBefore restarts the server before r if it was killed and has not
// come back yet.
func (d *dyingServer) reviveBefore(*http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.killed && !d.restarted {
		d.restarted = true
		d.restartErr = d.Restart()
	}
}

// back checks that the server came back, restarting it if no request
// did.
func (d *dyingServer) back(t *testing.T) {
	t.Helper()
	d.reviveBefore(nil)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.restartErr != nil {
		t.Fatalf("restart: %v", d.restartErr)
	}
}

// newDeathStore returns a store under prefix "room" in a new bucket of d,
// through a client that runs before ahead of each request (d.reviveBefore
// when nil).
func newDeathStore(t *testing.T, d *dyingServer, before func(*http.Request)) *store {
	t.Helper()
	bucket := testserver.NewFakeGCSBucket(t, d.Endpoint)
	raw := testserver.FakeGCSClient(t, d.Endpoint)
	if before == nil {
		before = d.reviveBefore
	}
	b, err := New(hookedClient(t, d.Endpoint, before), bucket, "room", WithChunkSize(deathChunk), WithURLEndpoint(d.Endpoint))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &store{Backend: b, endpoint: d.Endpoint, client: raw, bucket: bucket}
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

// TestServerDeath kills fake-gcs-server (SIGKILL) while a Writer's
// resumable upload is in flight and brings it back before the next
// request: the restarted server no longer knows the upload session, so
// the Write or Commit fails at once, not when its context ends, and once
// aborted the file holds its old content and the bucket no partial object
// and no temporary.
func TestServerDeath(t *testing.T) {
	cases := []struct {
		name   string
		append bool
		old    int // size of the file before the write
		before int // bytes written before the server dies
		after  int // bytes written after it died; 0: Commit at once
	}{
		{name: "create over a file: dies mid-write and comes back", old: 3*deathChunk + 5, before: 4 * deathChunk, after: 8 * deathChunk},
		{name: "create over a file: dies before commit and comes back", old: 100, before: 4*deathChunk + 17},
		{name: "append: dies mid-write and comes back", append: true, old: 100, before: 4 * deathChunk, after: 8 * deathChunk},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := startDyingServer(t)
			s := newDeathStore(t, d, nil)
			old := randBytes(tc.old, uint64(i))
			mustCreate(t, s, "f", old)
			w := openWriter(t, s, "f", tc.append, backend.WriteOptions{})
			data := randBytes(tc.before+tc.after, uint64(100+i))
			// The SDK reads a chunk only once it has sent the one before,
			// so when this returns, chunks are on the server.
			write(t, w, data[:tc.before], 64<<10)

			d.kill()
			ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
			defer cancel()
			var err error
			testserver.Within(t, blockedLimit, "the write to the restarted server", func() {
				if tc.after > 0 {
					err = testserver.WriteUntilError(ctx, w, data[tc.before:], 64<<10)
				} else {
					_, err = w.Commit(ctx)
				}
			})
			if err == nil {
				t.Fatal("the write across the restart succeeded")
			}
			t.Logf("failure: %v", err)
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("the write failed only when its context ended (%v), not when the server came back without the session", err)
			}
			var pe *fs.PathError
			if errors.As(err, &pe) {
				t.Errorf("error %v names a path: backends leave that to the engine", err)
			}
			d.back(t)
			if tc.after > 0 {
				if _, err := w.Commit(ctx); err == nil {
					t.Error("Commit after a failed Write succeeded")
				}
			}
			testserver.Within(t, blockedLimit, "Abort", func() { err = w.Abort(ctx) })
			if err != nil {
				t.Errorf("Abort: %v", err)
			}
			assertNothingPartial(t, s, "f", old, "f")
		})
	}

	// The temporary is finalised and the append claimed when the server
	// dies; it comes back for the SDK's retry, which may then carry the
	// compose through, or the Commit fails. Either way the file is whole
	// and nothing of the backend's own is left.
	t.Run("append: dies while composing and comes back", func(t *testing.T) {
		t.Parallel()
		d := startDyingServer(t)
		var once sync.Once
		var died atomic.Bool
		s := newDeathStore(t, d, func(r *http.Request) {
			d.reviveBefore(r)
			if strings.HasSuffix(r.URL.Path, "/compose") {
				once.Do(func() {
					d.kill()
					died.Store(true)
				})
			}
		})
		old := randBytes(3*deathChunk+5, 1)
		mustCreate(t, s, "f", old)
		w := openWriter(t, s, "f", true, backend.WriteOptions{})
		added := randBytes(2*deathChunk+3, 2)
		write(t, w, added, 64<<10)
		ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
		defer cancel()
		var err error
		testserver.Within(t, blockedLimit, "Commit", func() { _, err = commitRetrying(ctx, w) })
		if !died.Load() {
			t.Fatal("the server never died: Commit sent no compose")
		}
		d.back(t)
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
