package backend_s3_test

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_s3"
)

// deathTimeout bounds every call that meets the dead gateway: the SDK's
// retries (three attempts, a fraction of a second of backoff with the
// default retryer on connection errors), the cleanup the failure runs
// before it returns, and Abort's retries, which end with the cleanup
// timeout of the store.
const deathTimeout = 25 * time.Second

// deathCleanupTimeout is the cleanup timeout of the stores below: long
// enough for the gateway to restart, short enough that a stuck cleanup
// fails the test well within deathTimeout.
const deathCleanupTimeout = 10 * time.Second

// crasher kills a gateway with SIGKILL just before the nth call of one
// operation, as if the server died with a multipart upload in flight.
// When restartAfter is set, it also restarts the gateway that long after
// the first cleanup request (AbortMultipartUpload, DeleteObject) that
// follows the kill: by then the request that met the dead server has
// failed for good, so the failure cannot be retried away, and the
// cleanup has to outlast the outage.
type crasher struct {
	gw           *gateway
	op           string
	nth          int
	restartAfter time.Duration // 0: the test restarts the gateway itself

	mu         sync.Mutex
	armed      bool
	calls      int // calls of op since armed
	killed     bool
	restarting bool
	cleanups   int // cleanup requests sent since the kill
	restarts   sync.WaitGroup
	restartErr error
}

func newCrasher(t *testing.T, gw *gateway, op string, nth int, restartAfter time.Duration) *crasher {
	c := &crasher{gw: gw, op: op, nth: nth, restartAfter: restartAfter}
	t.Cleanup(c.restarts.Wait)
	return c
}

// arm starts counting calls of op; setup requests before it are ignored.
func (c *crasher) arm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = true
}

func (c *crasher) before(_ context.Context, op string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.armed {
		return nil
	}
	if op == c.op && !c.killed {
		if c.calls++; c.calls == c.nth {
			c.gw.Kill()
			c.killed = true
			return nil
		}
	}
	if c.killed && (op == "AbortMultipartUpload" || op == "DeleteObject") {
		c.cleanups++
		if c.restartAfter > 0 && !c.restarting {
			c.restarting = true
			c.restarts.Go(func() {
				time.Sleep(c.restartAfter)
				err := c.gw.Restart()
				c.mu.Lock()
				c.restartErr = err
				c.mu.Unlock()
			})
		}
	}
	return nil
}

// client returns a client for the gateway that runs the crasher's hook,
// with the SDK's default retryer: the store meets the dead gateway as a
// real client would.
func (c *crasher) client() *s3.Client { return c.gw.hookedClient(c.before) }

// assertKilled checks that the gateway died during the test, and that a
// restart the hook started succeeded.
func (c *crasher) assertKilled(t *testing.T) {
	t.Helper()
	c.restarts.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.killed {
		t.Fatalf("the gateway was never killed: only %d calls of %s", c.calls, c.op)
	}
	if c.restartErr != nil {
		t.Fatalf("restart: %v", c.restartErr)
	}
}

func (c *crasher) cleanupRequests() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cleanups
}

// restart brings the gateway back on its address, over its data.
func restart(t *testing.T, g *gateway) {
	t.Helper()
	if err := g.Restart(); err != nil {
		t.Fatal(err)
	}
}

// within runs f and fails the test if it has not returned after d, so
// that a call stuck on the dead gateway shows up as a failure rather than
// a hung test.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s still blocked after %v", what, d)
	}
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

// assertNothingPartial checks, once the gateway is back, that the file at
// path holds old (or is missing when old is nil), that the store lists
// exactly want at its root, that no key in the bucket but the files in
// want exists (no partial object, no temporary), and that no multipart
// upload is left.
func assertNothingPartial(t *testing.T, s *store, path string, old []byte, want ...string) {
	t.Helper()
	if old == nil {
		if _, err := s.Stat(t.Context(), path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat %q after the failed write: %v, want fs.ErrNotExist", path, err)
		}
	} else {
		assertContent(t, s, path, old)
	}
	if got := names(t, s, ""); !sameSet(got, want) {
		t.Errorf("List after the failed write = %q, want %q", got, want)
	}
	out, err := s.gw.client.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket)})
	if err != nil {
		t.Fatalf("ListObjectsV2: %v", err)
	}
	var keys, wantKeys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	for _, n := range want {
		wantKeys = append(wantKeys, s.prefix+"/"+n)
	}
	if !sameSet(keys, wantKeys) {
		t.Errorf("keys in the bucket = %q, want %q", keys, wantKeys)
	}
	assertUploads(t, s.gw, s, 0)
}

// TestGatewayDeath kills versitygw (SIGKILL) while a Writer has a
// multipart upload in flight, and checks that the Write or Commit that
// meets the dead server fails within the SDK's retries, and that once the
// gateway is back on the same address over the same data, Abort leaves
// the old content, no partial object, no temporary and no multipart
// upload.
func TestGatewayDeath(t *testing.T) {
	cases := []struct {
		name   string
		append bool
		old    int    // size of the file before the write; -1: none
		write  int    // bytes written
		op     string // the request before which the gateway dies
		nth    int
		commit bool // the failure comes from Commit rather than Write
	}{
		{name: "create of a new file: dies mid-write", old: -1, write: 4 * part, op: "UploadPart", nth: 2},
		{name: "create over a file: dies mid-write", old: 6 * mib, write: 4 * part, op: "UploadPart", nth: 2},
		{name: "create over a file: dies at commit", old: 100, write: 2*part + 1, op: "CompleteMultipartUpload", nth: 1, commit: true},
		{name: "append: dies mid-write", append: true, old: 6 * mib, write: 4 * part, op: "UploadPart", nth: 2},
		{name: "append to a new file: dies mid-write", append: true, old: -1, write: 4 * part, op: "UploadPart", nth: 2},
		// The temporary is staged and the composed upload started when the
		// server dies: both must go.
		{name: "append: dies while composing at commit", append: true, old: 6 * mib, write: part + 7, op: "UploadPartCopy", nth: 1, commit: true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := startGateway(t)
			c := newCrasher(t, g, tc.op, tc.nth, 0)
			s := g.storeIn(t, g.NewBucket(t), "room", c.client(), backend_s3.WithCleanupTimeout(deathCleanupTimeout))
			var old []byte
			want := []string{}
			if tc.old >= 0 {
				old = content(uint64(i), tc.old)
				put(t, s, "f", old)
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
			c.arm()

			ctx, cancel := context.WithTimeout(t.Context(), deathTimeout)
			defer cancel()
			within(t, deathTimeout+time.Second, "the write to the dead gateway", func() {
				err = writeUntilError(ctx, w, content(uint64(100+i), tc.write), mib)
				if tc.commit {
					if err != nil {
						t.Errorf("Write before the gateway died: %v", err)
						return
					}
					_, err = w.Commit(ctx)
				}
			})
			c.assertKilled(t)
			if err == nil {
				t.Fatal("the write to the dead gateway succeeded")
			}
			var pe *fs.PathError
			if errors.As(err, &pe) {
				t.Errorf("error %v names a path: backends leave that to the engine", err)
			}
			t.Logf("failure while the gateway is dead: %v", err)
			if err := w.Write(ctx, []byte("x")); err == nil {
				t.Error("Write after the failure succeeded")
			}

			restart(t, g)
			within(t, deathCleanupTimeout+5*time.Second, "Abort", func() { err = w.Abort(ctx) })
			if err != nil {
				t.Fatalf("Abort once the gateway is back: %v", err)
			}
			if _, err := w.Commit(ctx); err == nil {
				t.Error("Commit after Abort succeeded")
			}
			assertNothingPartial(t, s, "f", old, want...)
		})
	}

	t.Run("Abort keeps trying until the gateway is back", func(t *testing.T) {
		t.Parallel()
		g := startGateway(t)
		c := newCrasher(t, g, "UploadPart", 2, 0)
		s := g.storeIn(t, g.NewBucket(t), "room", c.client(), backend_s3.WithCleanupTimeout(deathCleanupTimeout))
		w, err := s.Create(t.Context(), "f", backend.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.arm()
		ctx, cancel := context.WithTimeout(t.Context(), deathTimeout)
		defer cancel()
		within(t, deathTimeout, "Write", func() { err = writeUntilError(ctx, w, content(1, 3*part), mib) })
		c.assertKilled(t)
		if err == nil {
			t.Fatal("Write to the dead gateway succeeded")
		}
		tried := c.cleanupRequests()

		const down = time.Second
		var wg sync.WaitGroup
		var restartErr error
		wg.Go(func() {
			time.Sleep(down)
			restartErr = g.Restart()
		})
		start := time.Now()
		within(t, deathCleanupTimeout+5*time.Second, "Abort", func() { err = w.Abort(ctx) })
		took := time.Since(start)
		wg.Wait()
		if restartErr != nil {
			t.Fatal(restartErr)
		}
		if err != nil {
			t.Fatalf("Abort while the gateway restarts: %v", err)
		}
		if n := c.cleanupRequests() - tried; took < down || n < 2 {
			t.Errorf("Abort returned after %v with %d AbortMultipartUpload tries; want it to keep trying for the %v the gateway was down", took, n, down)
		}
		assertNothingPartial(t, s, "f", nil)
	})

	t.Run("Abort gives up after the cleanup timeout and the next Abort finishes the job", func(t *testing.T) {
		t.Parallel()
		g := startGateway(t)
		c := newCrasher(t, g, "UploadPart", 2, 0)
		const cleanupTimeout = time.Second
		s := g.storeIn(t, g.NewBucket(t), "room", c.client(), backend_s3.WithCleanupTimeout(cleanupTimeout))
		w, err := s.Append(t.Context(), "f", backend.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.arm()
		ctx, cancel := context.WithTimeout(t.Context(), deathTimeout)
		defer cancel()
		within(t, deathTimeout, "Write", func() { err = writeUntilError(ctx, w, content(1, 3*part), mib) })
		c.assertKilled(t)
		if err == nil {
			t.Fatal("Write to the dead gateway succeeded")
		}
		start := time.Now()
		within(t, cleanupTimeout+5*time.Second, "Abort", func() { err = w.Abort(ctx) })
		if took := time.Since(start); took < cleanupTimeout/2 || took > cleanupTimeout+2*time.Second {
			t.Errorf("Abort on a dead gateway took %v, want about the cleanup timeout %v", took, cleanupTimeout)
		}
		if err == nil {
			t.Fatal("Abort on a dead gateway succeeded")
		}
		restart(t, g)
		assertUploads(t, g, s, 1) // what a lifecycle rule would reclaim
		if err := w.Abort(ctx); err != nil {
			t.Fatalf("second Abort once the gateway is back: %v", err)
		}
		assertNothingPartial(t, s, "f", nil)
	})
}

// TestGatewayDeathThroughEngine runs the same crash under a roomstore
// Engine: the gateway dies while a handle's multipart upload is in flight
// and comes back while the engine discards the handle. The Write (or
// Close) fails, the handle is finished, and by the time the call returns
// the upload is aborted and the file holds its old content.
func TestGatewayDeathThroughEngine(t *testing.T) {
	cases := []struct {
		name  string
		opts  roomstore.OpenOptions
		old   int // -1: no file before
		write int
		op    string
		nth   int
		close bool // the failure comes from Close
	}{
		{name: "overwrite: dies mid-write", opts: roomstore.OpenOptions{Overwrite: true}, old: 3 * mib, write: 4 * part, op: "UploadPart", nth: 2},
		{name: "append: dies mid-write", old: 6 * mib, write: 4 * part, op: "UploadPart", nth: 2},
		{name: "new file: dies at close", opts: roomstore.OpenOptions{Overwrite: true}, old: -1, write: 2*part + 1, op: "CompleteMultipartUpload", nth: 1, close: true},
		{name: "append: dies at close", old: 6 * mib, write: part + 1, op: "UploadPartCopy", nth: 1, close: true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := startGateway(t)
			c := newCrasher(t, g, tc.op, tc.nth, 300*time.Millisecond)
			s := g.storeIn(t, g.NewBucket(t), "room", c.client(), backend_s3.WithCleanupTimeout(deathCleanupTimeout))
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
				old = content(uint64(i), tc.old)
				put(t, s, "f.bin", old)
				want = append(want, "f.bin")
			}
			ctx, cancel := context.WithTimeout(t.Context(), deathTimeout)
			defer cancel()
			h, err := e.Open(ctx, "f.bin", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			c.arm()

			data := content(uint64(100+i), tc.write)
			within(t, deathTimeout+time.Second, "the engine's write to the dead gateway", func() {
				for len(data) > 0 && err == nil {
					n := min(mib, len(data))
					err = e.Write(ctx, h, data[:n])
					data = data[n:]
				}
				if tc.close {
					if err != nil {
						t.Errorf("Write before the gateway died: %v", err)
						return
					}
					err = e.Close(ctx, h)
				}
			})
			c.assertKilled(t)
			if err == nil {
				t.Fatal("the write to the dead gateway succeeded")
			}
			t.Logf("failure while the gateway is dead: %v", err)
			var pe *fs.PathError
			if !errors.As(err, &pe) || pe.Path != "f.bin" {
				t.Errorf("error %v is not an *fs.PathError on f.bin", err)
			}
			if err := e.Write(ctx, h, []byte("x")); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Write after the failure: %v, want fs.ErrClosed", err)
			}
			if err := e.Close(ctx, h); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Close after the failure: %v, want fs.ErrClosed", err)
			}

			// The gateway is back (the hook restarted it while the engine
			// aborted the handle), and the abort went through.
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
				if !slices.Equal(f.Data, old) {
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
			if !sameSet(got, want) {
				t.Errorf("engine List = %q, want %q", got, want)
			}
		})
	}
}
