package events_nats

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/roompath"
)

// DefaultS3FeedBuffer is how many notifications an S3Feed holds by default
// while its changed function is busy (see WithS3FeedBuffer).
const DefaultS3FeedBuffer = 4096

// s3FeedFlushWait bounds one flush round trip of an S3Feed; a flush that
// does not come back within it is tried again.
const s3FeedFlushWait = 2 * time.Second

// s3TestEvent is the event of the message an S3 server sends on a
// notification target when it starts sending to it (AWS when the target is
// configured, versitygw when it connects): it names no object.
const s3TestEvent = "s3:TestEvent"

// S3FeedOption configures NewS3Feed. An S3FeedOption with an unusable
// argument makes NewS3Feed fail with an error wrapping fs.ErrInvalid.
type S3FeedOption func(*s3FeedConfig) error

type s3FeedConfig struct {
	buffer int
	log    *slog.Logger
}

// WithS3FeedBuffer sets how many notifications a Watch holds while its
// changed function is busy (default DefaultS3FeedBuffer). NATS drops what
// arrives when they are all taken; the feed then reports Lost. It must be
// at least 1.
func WithS3FeedBuffer(n int) S3FeedOption {
	return func(c *s3FeedConfig) error {
		if n < 1 {
			return fmt.Errorf("events_nats: S3 feed buffer %d is under 1: %w", n, fs.ErrInvalid)
		}
		c.buffer = n
		return nil
	}
}

// WithS3FeedLogger sets where the feed logs (default slog.Default()):
// malformed notifications, notifications dropped, a connection regained.
// A nil l is refused.
func WithS3FeedLogger(l *slog.Logger) S3FeedOption {
	return func(c *s3FeedConfig) error {
		if l == nil {
			return fmt.Errorf("events_nats: WithS3FeedLogger(nil): %w", fs.ErrInvalid)
		}
		c.log = l
		return nil
	}
}

// S3Feed is a backend.Watcher over the S3 event notifications that a
// server publishes to core NATS, for one store: a bucket and a key prefix.
// See the package documentation (S3 bucket notifications) for what it
// reports and what it guarantees. It is safe for concurrent use; each
// Watch has a subscription of its own.
type S3Feed struct {
	nc      *nats.Conn
	subject string
	bucket  string
	prefix  string // "" or ending in "/"
	cfg     s3FeedConfig
	stats   s3FeedCounters
}

var _ backend.Watcher = (*S3Feed)(nil)

// s3FeedCounters are an S3Feed's S3FeedStats, updated atomically.
type s3FeedCounters struct {
	received, tests, changes, foreign, ignored atomic.Uint64
	malformed, dropped, reconnects, lost       atomic.Uint64
}

// S3FeedStats counts what an S3Feed's Watch calls did, since NewS3Feed.
type S3FeedStats struct {
	// Received counts the messages received on the subject, each once
	// the changes it made were reported.
	Received uint64
	// Tests counts the test events among them (s3:TestEvent), which name
	// no object.
	Tests uint64
	// Changes counts the changes reported with a path.
	Changes uint64
	// Foreign counts the records of another bucket, or of a key outside
	// the prefix.
	Foreign uint64
	// Ignored counts the records of a key under the prefix that no path of
	// the store names: a reserved name (roompath.ReservedPrefix), a key
	// that is no clean path, the prefix's own folder marker.
	Ignored uint64
	// Malformed counts the messages that were not S3 notifications, or
	// had a record that names no bucket, or no object of this bucket.
	Malformed uint64
	// Dropped counts the messages NATS dropped because the feed's buffer
	// was full (see WithS3FeedBuffer).
	Dropped uint64
	// Reconnects counts the connection's reconnections seen while
	// watching.
	Reconnects uint64
	// Lost counts the changes reported as Lost.
	Lost uint64
}

// NewS3Feed returns a feed of the S3 notifications on subject that name
// objects of bucket under prefix: the store that backend_s3.New(client,
// bucket, prefix) opens. subject may have wildcards, to hear several
// servers. prefix is cleaned as the S3 backend cleans it (leading and
// trailing slashes dropped).
//
// nc stays the caller's: the feed never closes it, and every Watch
// releases what it made on it (a subscription, a status listener). nc may
// be connecting still. It should reconnect for as long as the feed is to
// watch (see ConnOptions): a Watch goes on through reconnections,
// reporting Lost after each, and ends once nc is closed. NewS3Feed fails with an error wrapping fs.ErrInvalid for
// a nil nc, an empty or blank subject, an empty bucket, a prefix that is
// not a valid folder path (see roompath.CleanPrefix), or a bad option.
func NewS3Feed(nc *nats.Conn, subject, bucket, prefix string, opts ...S3FeedOption) (*S3Feed, error) {
	switch {
	case nc == nil:
		return nil, fmt.Errorf("events_nats: S3 feed: nil connection: %w", fs.ErrInvalid)
	case subject == "" || strings.ContainsAny(subject, " \t\r\n"):
		return nil, fmt.Errorf("events_nats: S3 feed: subject %q is empty or has blanks: %w", subject, fs.ErrInvalid)
	case bucket == "":
		return nil, fmt.Errorf("events_nats: S3 feed: no bucket: %w", fs.ErrInvalid)
	}
	clean, err := roompath.CleanPrefix(prefix)
	if err != nil {
		return nil, fmt.Errorf("events_nats: S3 feed: %w", err)
	}
	if clean != "" {
		clean += "/"
	}
	cfg := s3FeedConfig{buffer: DefaultS3FeedBuffer, log: slog.Default()}
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("events_nats: S3 feed option %d is nil: %w", i, fs.ErrInvalid)
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	return &S3Feed{nc: nc, subject: subject, bucket: bucket, prefix: clean, cfg: cfg}, nil
}

// Stats returns what the feed counted so far, over all its Watch calls.
func (f *S3Feed) Stats() S3FeedStats {
	c := &f.stats
	return S3FeedStats{
		Received: c.received.Load(), Tests: c.tests.Load(), Changes: c.changes.Load(),
		Foreign: c.foreign.Load(), Ignored: c.ignored.Load(), Malformed: c.malformed.Load(),
		Dropped: c.dropped.Load(), Reconnects: c.reconnects.Load(), Lost: c.lost.Load(),
	}
}

// Watch implements backend.Watcher. It subscribes to the subject and
// calls ready once the server has the subscription (a flush round trip
// came back; while nc is disconnected, that waits for it to be back). It
// then calls changed with Change{Path} for every object of the store a
// notification names, and Change{Lost: true} for a message it cannot read,
// for messages NATS dropped because they came faster than changed took
// them, and after each reconnection of nc (core NATS does not keep what
// was published while the subscription was away), once the subscription
// is live again. It returns ctx's error when ctx ends; an error wrapping
// nats.ErrConnectionClosed when nc is closed; or, at once, the error of
// the subscription nc refused.
func (f *S3Feed) Watch(ctx context.Context, ready func(), changed func(backend.Change)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Listening from before the subscription, so that live sees nc come
	// back whenever it went.
	status := f.nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer f.nc.RemoveStatusListener(status)
	msgs := make(chan *nats.Msg, f.cfg.buffer)
	sub, err := f.nc.ChanSubscribe(f.subject, msgs)
	if err != nil {
		return fmt.Errorf("events_nats: S3 feed: subscribe to %q: %w", f.subject, err)
	}
	defer sub.Unsubscribe() // fails only once nc is closed, which has dropped it
	reconnects, err := f.live(ctx, status)
	if err != nil {
		return err
	}
	if ready != nil {
		ready()
	}
	dropped := 0
	// reconnected reports Lost if nc reconnected since it last looked, once
	// the subscription is live again.
	reconnected := func() error {
		if f.nc.Stats().Reconnects == reconnects || !f.nc.IsConnected() {
			return nil
		}
		n, err := f.live(ctx, status)
		if err != nil {
			return err
		}
		f.stats.reconnects.Add(n - reconnects)
		reconnects = n
		f.cfg.log.Info("roomstore: S3 notifications resubscribed after a reconnection; changes meanwhile are lost", "subject", f.subject)
		f.lost(changed)
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-status:
			if f.nc.IsClosed() {
				return fmt.Errorf("events_nats: S3 feed: %w", nats.ErrConnectionClosed)
			}
			if err := reconnected(); err != nil {
				return err
			}
		case m := <-msgs:
			f.deliver(m.Data, changed)
			f.stats.received.Add(1)
			// NATS drops messages only while msgs is full, so that there is
			// always one after a drop to notice it with.
			if n, err := sub.Dropped(); err == nil && n > dropped {
				f.stats.dropped.Add(uint64(n - dropped))
				f.cfg.log.Warn("roomstore: S3 notifications came faster than they were handled and some were dropped", "subject", f.subject, "dropped", n-dropped)
				dropped = n
				f.lost(changed)
			}
			if err := reconnected(); err != nil {
				return err
			}
		}
	}
}

// live waits until the server has what nc sent before it (the
// subscription): a flush round trip. While nc is disconnected it waits for
// a status change (on status) before it tries again. It returns nc's count
// of reconnections from before the round trip that came back: the
// subscription is live on that connection or a later one.
func (f *S3Feed) live(ctx context.Context, status <-chan nats.Status) (reconnects uint64, err error) {
	for {
		reconnects = f.nc.Stats().Reconnects
		fctx, cancel := context.WithTimeout(ctx, s3FeedFlushWait)
		err := f.nc.FlushWithContext(fctx)
		cancel()
		switch {
		case err == nil:
			return reconnects, nil
		case ctx.Err() != nil:
			return 0, ctx.Err()
		case f.nc.IsClosed():
			return 0, fmt.Errorf("events_nats: S3 feed: %w", nats.ErrConnectionClosed)
		case f.nc.IsConnected():
			continue // a round trip lost to a reconnection, or slow: again
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-status:
		}
	}
}

func (f *S3Feed) lost(changed func(backend.Change)) {
	f.stats.lost.Add(1)
	changed(backend.Change{Lost: true})
}

// s3Notification is what an S3 notification message holds that the feed
// reads: its records, or the name of a test event.
type s3Notification struct {
	Records []s3Record `json:"Records"`
	Event   string     `json:"Event"`
}

type s3Record struct {
	EventName string `json:"eventName"`
	S3        struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key string `json:"key"`
		} `json:"object"`
	} `json:"s3"`
}

// deliver reports what the message data says of the store.
func (f *S3Feed) deliver(data []byte, changed func(backend.Change)) {
	var n s3Notification
	if err := json.Unmarshal(data, &n); err != nil {
		f.malformed(changed, "undecodable", err)
		return
	}
	if len(n.Records) == 0 {
		if n.Event == s3TestEvent {
			f.stats.tests.Add(1)
			return
		}
		f.malformed(changed, "no records", nil)
		return
	}
	bad := false
	for _, r := range n.Records {
		switch {
		case r.S3.Bucket.Name == "":
			bad = true
		case r.S3.Bucket.Name != f.bucket:
			f.stats.foreign.Add(1)
		case r.S3.Object.Key == "":
			bad = true // such as versitygw's browser-form upload (ObjectCreated:Post)
		default:
			f.record(r.S3.Object.Key, changed)
		}
	}
	if bad {
		f.malformed(changed, "a record names no bucket, or no object of this bucket", nil)
	}
}

// record reports the paths that key may spell.
func (f *S3Feed) record(key string, changed func(backend.Change)) {
	inside, reported := false, 0
	for _, k := range keySpellings(key) {
		rest, ok := strings.CutPrefix(k, f.prefix)
		if !ok {
			continue
		}
		inside = true
		if c, ok := storeChange(rest); ok {
			reported++
			f.stats.changes.Add(1)
			changed(c)
		}
	}
	switch {
	case !inside:
		f.stats.foreign.Add(1)
	case reported == 0:
		f.stats.ignored.Add(1)
	}
}

// keySpellings returns the keys that a notification's key may stand for,
// without repeats: S3 sends keys URL-encoded as form values (a space as
// '+'), while versitygw sends them as they are. The first is the key as
// it is; the others are its decodings, when it has an escape or a '+' to
// decode.
func keySpellings(key string) []string {
	keys := []string{key}
	if !strings.ContainsAny(key, "%+") {
		return keys
	}
	for _, unescape := range []func(string) (string, error){url.QueryUnescape, url.PathUnescape} {
		if k, err := unescape(key); err == nil && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// storeChange returns the change of the object whose key is rest under the
// prefix, and false when no path of the store names it: a reserved name,
// a key that is no clean path, the folder marker of the store's root. A
// folder marker (a key ending in '/') reports its folder.
func storeChange(rest string) (backend.Change, bool) {
	dir, folder := strings.CutSuffix(rest, "/")
	if dir == "" {
		return backend.Change{}, false
	}
	p, err := roompath.Clean(dir, roompath.TargetFile)
	if err != nil || p != dir {
		return backend.Change{}, false
	}
	return backend.Change{Path: p, Folder: folder}, true
}

func (f *S3Feed) malformed(changed func(backend.Change), why string, err error) {
	if n := f.stats.malformed.Add(1); n&(n-1) == 0 {
		f.cfg.log.Warn("roomstore: a malformed S3 notification; changes may be lost", "subject", f.subject, "why", why, "err", err, "malformed", n)
	}
	f.lost(changed)
}
