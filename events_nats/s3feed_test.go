package events_nats_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/nats-io/nats.go"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/events_nats"
	"github.com/roomstore/roomstore/internal/testserver"
)

// s3Env is a nats-server, a versitygw that publishes its notifications
// there on topic, and a connection to the server as a feed's caller
// would make it.
type s3Env struct {
	nats  *testserver.NATS
	gw    *testserver.VersityGW
	s3    *s3.Client
	topic string
	nc    *nats.Conn
}

func newS3Env(t *testing.T) *s3Env {
	t.Helper()
	n := testserver.StartNATS(t)
	topic := "s3.events." + strings.ReplaceAll(t.Name(), "/", "_")
	gw := testserver.StartVersityGWWithEvents(t, n.URL, topic)
	// The slow consumer that a test provokes is the feed's to report; the
	// connection keeps quiet about it.
	nc, err := nats.Connect(n.URL, append(events_nats.ConnOptions(), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))...)
	if err != nil {
		t.Fatalf("nats.Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return &s3Env{nats: n, gw: gw, s3: gw.Client(), topic: topic, nc: nc}
}

// feed returns a feed of the store bucket/prefix on the env's topic.
func (e *s3Env) feed(t *testing.T, bucket, prefix string, opts ...events_nats.S3FeedOption) *events_nats.S3Feed {
	t.Helper()
	f, err := events_nats.NewS3Feed(e.nc, e.topic, bucket, prefix, append([]events_nats.S3FeedOption{events_nats.WithS3FeedLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatalf("NewS3Feed: %v", err)
	}
	return f
}

func (e *s3Env) put(t *testing.T, bucket, key, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if _, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: strings.NewReader(body)}); err != nil {
		t.Fatalf("put %s/%s: %v", bucket, key, err)
	}
}

// publish sends raw messages on the env's topic and waits until the
// server has them.
func (e *s3Env) publish(t *testing.T, msgs ...[]byte) {
	t.Helper()
	for _, m := range msgs {
		if err := e.nc.Publish(e.topic, m); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	if err := e.nc.FlushTimeout(wait); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// notification is an S3 notification as AWS sends it, of one record.
func notification(t *testing.T, event, bucket, key string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"Records": []any{map[string]any{
		"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": event,
		"s3": map[string]any{
			"s3SchemaVersion": "1.0",
			"bucket":          map[string]any{"name": bucket, "arn": "arn:aws:s3:::" + bucket},
			"object":          map[string]any{"key": key, "size": 1},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// watching is a Watch running on a goroutine of the test's, with every
// change it reported.
type watching struct {
	feed   *events_nats.S3Feed
	cancel context.CancelFunc
	done   chan error

	expect uint64 // the messages step waited for

	mu      sync.Mutex
	changes []backend.Change
	grew    chan struct{} // a token after each change
	block   chan struct{} // when not nil, each change waits for a token
	entered chan struct{} // a token as a change starts to wait on block
}

// watch starts f's Watch and returns once it called ready. The Watch is
// stopped when the test ends if the test did not stop it.
func watch(t *testing.T, f *events_nats.S3Feed) *watching {
	t.Helper()
	return watchBlocking(t, f, false)
}

// watchBlocking is watch whose changed function waits, when block is set,
// for w.release before it returns.
func watchBlocking(t *testing.T, f *events_nats.S3Feed, block bool) *watching {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watching{feed: f, cancel: cancel, done: make(chan error, 1), grew: make(chan struct{}, 1), entered: make(chan struct{}, 1)}
	if block {
		w.block = make(chan struct{})
	}
	ready := make(chan struct{})
	go func() {
		w.done <- f.Watch(ctx, func() { close(ready) }, w.changed)
	}()
	t.Cleanup(func() { w.stop(t) })
	select {
	case <-ready:
	case err := <-w.done:
		w.done <- err
		t.Fatalf("Watch returned %v before it was ready", err)
	case <-time.After(wait):
		t.Fatalf("Watch not ready after %v", wait)
	}
	return w
}

func (w *watching) changed(c backend.Change) {
	w.mu.Lock()
	w.changes = append(w.changes, c)
	w.mu.Unlock()
	select {
	case w.grew <- struct{}{}:
	default:
	}
	if w.block != nil {
		select {
		case w.entered <- struct{}{}:
		default:
		}
		<-w.block
	}
}

// release lets the change waiting on block, and every later one, return.
func (w *watching) release() { close(w.block) }

func (w *watching) snapshot() []backend.Change {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.changes)
}

// waitStats waits until ok holds for the feed's stats, or fails the test
// after wait, saying what for. The stats count what changes no recorded
// change (foreign and ignored records), so it looks at them every
// millisecond, and whenever a change is recorded.
func (w *watching) waitStats(t *testing.T, what string, ok func(events_nats.S3FeedStats) bool) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !ok(w.feed.Stats()) {
		select {
		case <-w.grew:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; stats %+v, changes %v", wait, what, w.feed.Stats(), w.snapshot())
		}
	}
}

// step runs op, requests to the gateway that make n notifications, and
// waits until the feed has received them. The gateway encodes a
// notification after it has answered the request, from the request's
// buffers, which a later request may reuse first (see
// testserver.StartVersityGWWithEvents): the next request must wait.
func (w *watching) step(t *testing.T, n int, op func()) {
	t.Helper()
	op()
	w.expect += uint64(n)
	w.waitStats(t, "the step's notifications", func(s events_nats.S3FeedStats) bool { return s.Received >= w.expect })
}

// waitFor waits until ok holds, looking every millisecond, or fails the
// test after wait, saying what for.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !ok() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", wait, what)
		}
	}
}

// waitLost waits until the feed reported a Lost change.
func (w *watching) waitLost(t *testing.T, what string) {
	t.Helper()
	w.waitStats(t, what, func(s events_nats.S3FeedStats) bool { return s.Lost > 0 })
}

// stop ends the Watch, checks that it returned context.Canceled within
// wait, and returns every change it reported. It is idempotent.
func (w *watching) stop(t *testing.T) []backend.Change {
	t.Helper()
	w.cancel()
	select {
	case err, ok := <-w.done:
		if ok && !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v, want context.Canceled", err)
		}
		if ok {
			close(w.done)
		}
	case <-time.After(wait):
		t.Fatalf("Watch still running %v after its context ended", wait)
	}
	return w.snapshot()
}

// sorted returns the changes in a fixed order, for comparison.
func sorted(cs []backend.Change) []backend.Change {
	return slices.SortedFunc(slices.Values(cs), func(a, b backend.Change) int {
		return strings.Compare(fmt.Sprintf("%q %v %v", a.Path, a.Folder, a.Lost), fmt.Sprintf("%q %v %v", b.Path, b.Folder, b.Lost))
	})
}

func checkChanges(t *testing.T, got, want []backend.Change) {
	t.Helper()
	if got, want := sorted(got), sorted(want); !slices.Equal(got, want) {
		t.Errorf("changes\n got %+v\nwant %+v", got, want)
	}
}

func file(p string) backend.Change { return backend.Change{Path: p} }

// Every way a client changes an object of the store (put, copy, delete one
// or many, multipart upload, a folder marker) is reported once, as its
// path within the store.
func TestS3FeedReportsEveryChangeOfItsStoresObjects(t *testing.T) {
	e := newS3Env(t)
	bucket := e.gw.NewBucket(t)
	w := watch(t, e.feed(t, bucket, "rooms/r1"))
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()

	w.step(t, 1, func() { e.put(t, bucket, "rooms/r1/a.txt", "a") })
	w.step(t, 1, func() { e.put(t, bucket, "rooms/r1/dir/b c é.txt", "b") })
	w.step(t, 1, func() {
		if _, err := e.s3.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket: &bucket, Key: aws.String("rooms/r1/copy.txt"), CopySource: aws.String(bucket + "/rooms/r1/a.txt"),
		}); err != nil {
			t.Fatalf("copy: %v", err)
		}
	})
	w.step(t, 1, func() {
		if _, err := e.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: aws.String("rooms/r1/a.txt")}); err != nil {
			t.Fatalf("delete: %v", err)
		}
	})
	w.step(t, 2, func() {
		if _, err := e.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &bucket, Delete: &types.Delete{Objects: []types.ObjectIdentifier{
			{Key: aws.String("rooms/r1/dir/b c é.txt")}, {Key: aws.String("rooms/r1/copy.txt")},
		}}}); err != nil {
			t.Fatalf("delete objects: %v", err)
		}
	})
	w.step(t, 1, func() {
		const key = "rooms/r1/big.bin"
		up, err := e.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: aws.String(key)})
		if err != nil {
			t.Fatalf("create multipart upload: %v", err)
		}
		var parts []types.CompletedPart
		for i := int32(1); i <= 2; i++ {
			body := bytes.Repeat([]byte{byte(i)}, 5<<20) // every part but the last at least 5 MiB
			p, err := e.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: aws.String(key), UploadId: up.UploadId, PartNumber: aws.Int32(i), Body: bytes.NewReader(body)})
			if err != nil {
				t.Fatalf("upload part %d: %v", i, err)
			}
			parts = append(parts, types.CompletedPart{ETag: p.ETag, PartNumber: aws.Int32(i)})
		}
		if _, err := e.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: &bucket, Key: aws.String(key), UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		}); err != nil {
			t.Fatalf("complete multipart upload: %v", err)
		}
	})
	w.step(t, 1, func() { e.put(t, bucket, "rooms/r1/dir/sub/", "") })

	want := []backend.Change{
		file("a.txt"), file("dir/b c é.txt"), file("copy.txt"), // put, put, copy
		file("a.txt"), file("dir/b c é.txt"), file("copy.txt"), // delete, delete objects
		file("big.bin"), {Path: "dir/sub", Folder: true},
	}
	checkChanges(t, w.stop(t), want)
	n := uint64(len(want))
	if s := w.feed.Stats(); s != (events_nats.S3FeedStats{Received: n, Changes: n}) {
		t.Errorf("stats %+v, want %d received and changes, nothing else", s, n)
	}
}

// Another bucket's objects, keys outside the prefix (a sibling prefix
// that extends the store's name included), reserved keys and the store's
// own folder marker are not reported.
func TestS3FeedReportsNoOtherStoresObjectsNorReservedKeys(t *testing.T) {
	e := newS3Env(t)
	bucket, other := e.gw.NewBucket(t), e.gw.NewBucket(t)
	w := watch(t, e.feed(t, bucket, "/rooms/r1/"))

	foreign := []struct{ bucket, key string }{
		{other, "rooms/r1/a.txt"},
		{bucket, "rooms/r2/a.txt"},
		{bucket, "rooms/r1x/a.txt"}, // a sibling prefix
		{bucket, "a.txt"},
	}
	ignored := []string{
		"rooms/r1/.roomstore/tmp/upload", // the S3 backend's temporary object
		"rooms/r1/dir/.roomstore-lock",   // a reserved name in a folder
		"rooms/r1/",                      // the store's own folder marker
		"rooms/r1/a//b.txt",              // no clean path names it
	}
	for _, o := range foreign {
		w.step(t, 1, func() { e.put(t, o.bucket, o.key, "not the store's") })
	}
	for _, key := range ignored {
		w.step(t, 1, func() { e.put(t, bucket, key, "") })
	}
	if got := w.snapshot(); len(got) != 0 {
		t.Errorf("reported %+v, want nothing", got)
	}

	w.step(t, 1, func() { e.put(t, bucket, "rooms/r1/mine.txt", "the store's own") })
	checkChanges(t, w.stop(t), []backend.Change{file("mine.txt")})
	want := events_nats.S3FeedStats{Received: uint64(len(foreign) + len(ignored) + 1), Changes: 1, Foreign: uint64(len(foreign)), Ignored: uint64(len(ignored))}
	if s := w.feed.Stats(); s != want {
		t.Errorf("stats %+v, want %+v", s, want)
	}
}

// Keys are reported as every spelling they may stand for: as they are
// (versitygw sends keys unencoded) and URL-decoded (AWS encodes them as
// form values, a space as '+').
func TestS3FeedReportsEachSpellingOfAKey(t *testing.T) {
	e := newS3Env(t)
	bucket := e.gw.NewBucket(t)
	w := watch(t, e.feed(t, bucket, "p"))

	w.step(t, 1, func() { e.put(t, bucket, "p/x+y 100%.txt", "from versitygw, unencoded") })
	e.publish(t,
		notification(t, "ObjectCreated:Put", bucket, "p/a+b%C3%A9.txt"),        // as AWS spells "a bé.txt"
		notification(t, "ObjectRemoved:Delete", bucket, "p/plain.txt"),         // nothing to decode
		notification(t, "ObjectTagging:Put", bucket, "p%2Fenc%2Fslash.txt"),    // the slash encoded too
		notification(t, "ObjectCreated:Put", bucket, "p/.roomstore%2Ftmp%2Fx"), // reserved however spelt
	)
	want := []backend.Change{
		file("x+y 100%.txt"),
		file("a bé.txt"), file("a+bé.txt"), file("a+b%C3%A9.txt"),
		file("plain.txt"),
		file("enc/slash.txt"),
	}
	w.waitStats(t, "every spelling", func(s events_nats.S3FeedStats) bool { return s.Changes >= uint64(len(want)) && s.Received == 5 })
	checkChanges(t, w.stop(t), want)
}

// A message on the subject that is no S3 notification, or whose record
// names no object of the bucket, is reported as Lost; a test event is
// not reported at all.
func TestS3FeedReportsAMalformedNotificationAsLost(t *testing.T) {
	e := newS3Env(t)
	bucket := e.gw.NewBucket(t)
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"not JSON", []byte("not json")},
		{"a JSON array", []byte(`[{"Records":[]}]`)},
		{"no records", []byte(`{"Records":[]}`)},
		{"a record with no bucket", notification(t, "ObjectCreated:Put", "", "p/a.txt")},
		{"a record of the bucket with no key", notification(t, "ObjectCreated:Post", bucket, "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := watch(t, e.feed(t, bucket, "p"))
			e.publish(t, tc.msg)
			w.waitLost(t, "Lost")
			checkChanges(t, w.stop(t), []backend.Change{{Lost: true}})
			if s := w.feed.Stats(); s.Received != 1 || s.Malformed != 1 || s.Lost != 1 {
				t.Errorf("stats %+v, want 1 received, malformed and lost", s)
			}
		})
	}
	t.Run("a test event", func(t *testing.T) {
		w := watch(t, e.feed(t, bucket, "p"))
		e.publish(t, []byte(`{"Service":"S3","Event":"s3:TestEvent","Time":"2026-01-01T00:00:00Z","Bucket":"`+bucket+`"}`))
		w.waitStats(t, "the test event", func(s events_nats.S3FeedStats) bool { return s.Tests == 1 })
		if got := w.stop(t); len(got) != 0 {
			t.Errorf("reported %+v for a test event, want nothing", got)
		}
	})
}

// Core NATS keeps nothing for a subscription while it is away: after the
// server restarts, the feed reports Lost once it is subscribed again, and
// goes on reporting changes.
func TestS3FeedReportsLostWhenNATSRestarts(t *testing.T) {
	e := newS3Env(t)
	bucket := e.gw.NewBucket(t)
	w := watch(t, e.feed(t, bucket, ""))

	e.nats.Kill()
	if err := e.nats.Restart(); err != nil {
		t.Fatalf("restart nats-server: %v", err)
	}
	w.waitLost(t, "Lost after the restart")
	w.step(t, 1, func() { e.put(t, bucket, "after.txt", "after the restart") })
	checkChanges(t, w.stop(t), []backend.Change{{Lost: true}, file("after.txt")})
	if s := w.feed.Stats(); s.Reconnects != 1 || s.Lost != 1 {
		t.Errorf("stats %+v, want 1 reconnection and 1 lost", s)
	}
}

// Notifications that come while every place of the feed's buffer is taken
// are dropped by NATS, and the feed reports Lost.
func TestS3FeedReportsLostWhenNotificationsAreDropped(t *testing.T) {
	e := newS3Env(t)
	bucket := e.gw.NewBucket(t)
	w := watchBlocking(t, e.feed(t, bucket, "", events_nats.WithS3FeedBuffer(1)), true)

	e.publish(t, notification(t, "ObjectCreated:Put", bucket, "first.txt"))
	select {
	case <-w.entered: // the first change is being handled, and waits
	case <-time.After(wait):
		t.Fatalf("no change after %v", wait)
	}
	// One fits the buffer; the three after it find it full. The flush's
	// round trip comes back after NATS handed the client all four.
	e.publish(t,
		notification(t, "ObjectCreated:Put", bucket, "second.txt"),
		notification(t, "ObjectCreated:Put", bucket, "third.txt"),
		notification(t, "ObjectCreated:Put", bucket, "fourth.txt"),
		notification(t, "ObjectCreated:Put", bucket, "fifth.txt"),
	)
	w.release()
	w.waitStats(t, "Lost and the one kept", func(s events_nats.S3FeedStats) bool { return s.Lost == 1 && s.Received == 2 })
	checkChanges(t, w.stop(t), []backend.Change{file("first.txt"), file("second.txt"), {Lost: true}})
	if s := w.feed.Stats(); s.Dropped != 3 || s.Received != 2 || s.Lost != 1 {
		t.Errorf("stats %+v, want 3 dropped, 2 received, 1 lost", s)
	}
}

// Watch calls ready only once the server has the subscription, waiting
// for a server that is down; it ends with its context, before ready as
// after, and leaves nothing on the connection.
func TestS3FeedWatchEndsWithItsContext(t *testing.T) {
	e := newS3Env(t)
	bucket := e.gw.NewBucket(t)

	t.Run("once watching", func(t *testing.T) {
		w := watch(t, e.feed(t, bucket, ""))
		w.stop(t)
		if n := e.nc.NumSubscriptions(); n != 0 {
			t.Errorf("%d subscriptions left on the connection", n)
		}
	})

	t.Run("while the server is down", func(t *testing.T) {
		down := e.nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING)
		defer e.nc.RemoveStatusListener(down)
		e.nats.Kill()
		select {
		case <-down:
		case <-time.After(wait):
			t.Fatalf("the connection still up %v after the server died", wait)
		}
		f := e.feed(t, bucket, "")
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		readied := make(chan struct{})
		go func() { done <- f.Watch(ctx, func() { close(readied) }, func(backend.Change) {}) }()
		waitFor(t, "Watch to subscribe", func() bool { return e.nc.NumSubscriptions() == 1 })
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Watch returned %v, want context.Canceled", err)
			}
		case <-time.After(wait):
			t.Fatalf("Watch still running %v after its context ended", wait)
		}
		select {
		case <-readied:
			t.Error("ready while the server was down")
		default:
		}
		if n := e.nc.NumSubscriptions(); n != 0 {
			t.Errorf("%d subscriptions left on the connection", n)
		}
	})

	t.Run("ready once the server is back", func(t *testing.T) {
		f := e.feed(t, bucket, "")
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		readied := make(chan struct{})
		go func() { done <- f.Watch(ctx, func() { close(readied) }, func(backend.Change) {}) }()
		if err := e.nats.Restart(); err != nil {
			t.Fatalf("restart nats-server: %v", err)
		}
		select {
		case <-readied:
		case err := <-done:
			t.Fatalf("Watch returned %v before ready", err)
		case <-time.After(wait):
			t.Fatalf("not ready %v after the server came back", wait)
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Watch returned %v, want context.Canceled", err)
			}
		case <-time.After(wait):
			t.Fatalf("Watch still running %v after its context ended", wait)
		}
	})
}

// Watch returns an error wrapping nats.ErrConnectionClosed when its
// connection is closed under it.
func TestS3FeedWatchEndsWhenItsConnectionCloses(t *testing.T) {
	e := newS3Env(t)
	bucket := e.gw.NewBucket(t)
	f := e.feed(t, bucket, "")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	readied := make(chan struct{})
	go func() { done <- f.Watch(ctx, func() { close(readied) }, func(backend.Change) {}) }()
	select {
	case <-readied:
	case <-time.After(wait):
		t.Fatalf("not ready after %v", wait)
	}
	e.nc.Close()
	select {
	case err := <-done:
		if !errors.Is(err, nats.ErrConnectionClosed) {
			t.Errorf("Watch returned %v, want nats.ErrConnectionClosed", err)
		}
	case <-time.After(wait):
		t.Fatalf("Watch still running %v after its connection closed", wait)
	}
}

func TestNewS3FeedRefusesBadArguments(t *testing.T) {
	nc, err := nats.Connect(testserver.StartNATS(t).URL)
	if err != nil {
		t.Fatalf("nats.Connect: %v", err)
	}
	defer nc.Close()
	for _, tc := range []struct {
		name                    string
		nc                      *nats.Conn
		subject, bucket, prefix string
		opts                    []events_nats.S3FeedOption
	}{
		{"no connection", nil, "s3.events", "b", "", nil},
		{"no subject", nc, "", "b", "", nil},
		{"a subject with a blank", nc, "s3 events", "b", "", nil},
		{"no bucket", nc, "s3.events", "", "", nil},
		{"a prefix that climbs", nc, "s3.events", "b", "a/../b", nil},
		{"a reserved prefix", nc, "s3.events", "b", ".roomstore", nil},
		{"a buffer of 0", nc, "s3.events", "b", "", []events_nats.S3FeedOption{events_nats.WithS3FeedBuffer(0)}},
		{"no logger", nc, "s3.events", "b", "", []events_nats.S3FeedOption{events_nats.WithS3FeedLogger(nil)}},
		{"a nil option", nc, "s3.events", "b", "", []events_nats.S3FeedOption{nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := events_nats.NewS3Feed(tc.nc, tc.subject, tc.bucket, tc.prefix, tc.opts...); !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("NewS3Feed: %v, want fs.ErrInvalid", err)
			}
		})
	}
}
