package backend_s3_test

import (
	"context"
	"errors"
	"io/fs"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_s3"
	"github.com/roomstore/roomstore/internal/testserver"
)

// The conformance suite's server-death cases kill the gateway under
// every kind of write, directly and through an Engine. The tests here
// check what is S3's own: Abort's persistent cleanup of a multipart upload
// while the gateway is away, within the store's cleanup timeout.

// deathTimeout bounds every call that meets the dead gateway: the SDK's
// retries (three attempts, a fraction of a second of backoff with the
// default retryer on connection errors), the cleanup the failure runs
// before it returns, and Abort's retries, which end with the cleanup
// timeout of the store.
const deathTimeout = 25 * time.Second

// crasher kills a gateway with SIGKILL just before the nth call of one
// operation, as if the server died with a multipart upload in flight,
// and can bring it back just before a given cleanup request
// (AbortMultipartUpload, DeleteObject) that follows the kill.
type crasher struct {
	gw  *gateway
	op  string
	nth int

	mu           sync.Mutex
	armed        bool
	calls        int // calls of op since armed
	killed       bool
	cleanups     int // cleanup requests sent since the kill
	restartAt    int // the cleanup request before which the gateway restarts; 0: none
	restarted    bool
	restartErr   error
	cleanupsDown int // cleanup requests sent while the gateway was dead
}

func newCrasher(gw *gateway, op string, nth int) *crasher {
	return &crasher{gw: gw, op: op, nth: nth}
}

// arm starts counting calls of op; setup requests before it are ignored.
func (c *crasher) arm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = true
}

// restartBefore brings the gateway back just before the nth cleanup
// request from now: the n-1 before it meet the dead gateway.
func (c *crasher) restartBefore(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.restartAt = c.cleanups + n
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
		if c.cleanups == c.restartAt && !c.restarted {
			// The request waits for the restart, and then reaches the
			// gateway: no timer decides which tries meet it dead.
			c.restartErr = c.gw.Restart()
			c.restarted = true
		}
		if !c.restarted {
			c.cleanupsDown++
		}
	}
	return nil
}

// client returns a client for the gateway that runs the crasher's hook,
// with the SDK's default retryer: the store meets the dead gateway as a
// real client would.
func (c *crasher) client() *s3.Client { return c.gw.hookedClient(c.before) }

// assertKilled checks that the gateway died during the test.
func (c *crasher) assertKilled(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.killed {
		t.Fatalf("the gateway was never killed: only %d calls of %s", c.calls, c.op)
	}
}

// state returns the cleanup requests sent while the gateway was dead,
// whether it restarted, and the restart's error.
func (c *crasher) state() (down int, restarted bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cleanupsDown, c.restarted, c.restartErr
}

// assertNothingLeft checks, once the gateway is back, that the failed
// write of a new file left no file, no key in the bucket and no
// multipart upload.
func assertNothingLeft(t *testing.T, s *store) {
	t.Helper()
	if _, err := s.Stat(t.Context(), "f"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat after the failed write: %v, want fs.ErrNotExist", err)
	}
	out, err := s.gw.client.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket)})
	if err != nil {
		t.Fatalf("ListObjectsV2: %v", err)
	}
	if len(out.Contents) > 0 {
		t.Errorf("%d keys in the bucket after the failed write, want none", len(out.Contents))
	}
	assertUploads(t, s.gw, s, 0)
}

// deadWriter returns a writer whose gateway died under its second part,
// and the Write's failure checked.
func deadWriter(t *testing.T, c *crasher, s *store, appending bool) backend.Writer {
	t.Helper()
	start := s.Create
	if appending {
		start = s.Append
	}
	w, err := start(t.Context(), "f", backend.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.arm()
	ctx, cancel := context.WithTimeout(t.Context(), deathTimeout)
	defer cancel()
	testserver.Within(t, deathTimeout+time.Second, "Write", func() { err = testserver.WriteUntilError(ctx, w, content(1, 3*part), mib) })
	c.assertKilled(t)
	if err == nil {
		t.Fatal("Write to the dead gateway succeeded")
	}
	return w
}

func TestAbortKeepsTryingUntilTheGatewayIsBack(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	c := newCrasher(g, "UploadPart", 2)
	s := g.storeIn(t, g.NewBucket(t), "room", c.client(), backend_s3.WithCleanupTimeout(deathTimeout))
	w := deadWriter(t, c, s, false)

	const deadTries = 3
	c.restartBefore(deadTries + 1)
	down, _, _ := c.state()
	ctx, cancel := context.WithTimeout(t.Context(), deathTimeout)
	defer cancel()
	var err error
	testserver.Within(t, deathTimeout+time.Second, "Abort", func() { err = w.Abort(ctx) })
	downAfter, restarted, restartErr := c.state()
	if restartErr != nil {
		t.Fatal(restartErr)
	}
	if err != nil {
		t.Fatalf("Abort while the gateway restarts: %v", err)
	}
	if !restarted || downAfter-down != deadTries {
		t.Fatalf("Abort returned after %d tries on the dead gateway (restarted: %v); want %d, then one that succeeds", downAfter-down, restarted, deadTries)
	}
	assertNothingLeft(t, s)
}

func TestAbortGivesUpAfterTheCleanupTimeoutAndTheNextAbortFinishesTheJob(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	c := newCrasher(g, "UploadPart", 2)
	const cleanupTimeout = time.Second
	s := g.storeIn(t, g.NewBucket(t), "room", c.client(), backend_s3.WithCleanupTimeout(cleanupTimeout))
	w := deadWriter(t, c, s, true)

	down, _, _ := c.state()
	ctx, cancel := context.WithTimeout(t.Context(), deathTimeout)
	defer cancel()
	var err error
	testserver.Within(t, cleanupTimeout+5*time.Second, "Abort", func() { err = w.Abort(ctx) })
	if err == nil {
		t.Fatal("Abort on a dead gateway succeeded")
	}
	// The caller's context had 25 s left: what ended Abort is the store's
	// own cleanup timeout, after it tried more than once.
	if n, _, _ := c.state(); n-down < 2 {
		t.Fatalf("Abort gave up after %d try on the dead gateway; want it to keep trying", n-down)
	}
	if err := g.Restart(); err != nil {
		t.Fatal(err)
	}
	assertUploads(t, g, s, 1) // what a lifecycle rule would reclaim
	if err := w.Abort(ctx); err != nil {
		t.Fatalf("second Abort once the gateway is back: %v", err)
	}
	assertNothingLeft(t, s)
}
