package events_nats

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roomstore/roomstore/events"
)

// Defaults of the options below.
const (
	DefaultPrefix         = "roomstore.events"
	DefaultRetention      = time.Hour
	DefaultPublishTimeout = 30 * time.Second
	DefaultFlushTimeout   = 5 * time.Second
	DefaultQueue          = 1 << 16
	DefaultHold           = 2 * time.Second
)

// batch bounds: a message carries at most maxBatch events (a quarter of a
// subscriber's default buffer, events.DefaultBuffer, so that the burst of
// one message does not overflow it) and, past maxBatchBytes of estimated
// encoding, no more (half NATS's default 1 MB payload limit; a message
// over the server's limit goes in halves).
const (
	maxBatch      = 1024
	maxBatchBytes = 512 << 10
)

// Retry pacing of the publisher and the receiver, and the deadline of one
// publish attempt.
const (
	minBackoff  = 50 * time.Millisecond
	maxBackoff  = 2 * time.Second
	attemptWait = 2 * time.Second
	// heartbeat is how often the server tells an idle subscription it is
	// alive; two missed ones make the receiver resubscribe.
	heartbeat = time.Second
	// inactive is how long the server keeps a consumer whose receiver is
	// gone (a crashed process) before it deletes it.
	inactive = time.Minute
)

// Option configures New. An Option with an unusable argument makes New fail
// with an error wrapping fs.ErrInvalid.
type Option func(*config) error

type config struct {
	prefix         string
	retention      time.Duration
	publishTimeout time.Duration
	hold           time.Duration
	flushTimeout   time.Duration
	queue          int
	replicas       int
	log            *slog.Logger
}

// validOption is the Option that sets what set sets when ok, else fails
// with an error wrapping fs.ErrInvalid that says what is wrong (format and
// args, as fmt.Sprintf takes them).
func validOption(ok bool, set func(*config), format string, args ...any) Option {
	return func(c *config) error {
		if !ok {
			return fmt.Errorf("events_nats: %s: %w", fmt.Sprintf(format, args...), fs.ErrInvalid)
		}
		set(c)
		return nil
	}
}

var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// WithPrefix sets the first tokens of the subjects (PREFIX.HASH) and, with
// dots turned to underscores and in upper case, of the stream names
// (PREFIX_HASH) (default DefaultPrefix), so that deployments sharing a
// NATS account keep apart. Every engine of a store must use the same. It
// must be dot-separated tokens of letters, digits, '_' and '-'.
func WithPrefix(p string) Option {
	return validOption(prefixPattern.MatchString(p), func(c *config) { c.prefix = p }, "prefix %q is not dot-separated tokens of [A-Za-z0-9_-]", p)
}

// WithRetention sets how long a store's stream keeps its events (default
// DefaultRetention): how long an engine may be cut off from NATS and still
// get, once back, every event published meanwhile. It applies when this
// transport creates the stream; an existing stream keeps its own. It must
// be at least a minute (the streams' de-duplication window is kept within
// it).
func WithRetention(d time.Duration) Option {
	return validOption(d >= time.Minute, func(c *config) { c.retention = d }, "retention %v is under a minute", d)
}

// WithPublishTimeout bounds how long an event may wait to be published,
// from when the engine queued it, retries included, before the publisher
// gives it up (default DefaultPublishTimeout): such events are
// counted (TransportStats.GaveUp) and logged, and the other engines learn
// of the gap, as an overflow event, from the next event that gets through.
// It must be positive and at most half the retention, so that a retried
// message is still within the stream's de-duplication window.
func WithPublishTimeout(d time.Duration) Option {
	return validOption(d > 0, func(c *config) { c.publishTimeout = d }, "publish timeout %v is not positive", d)
}

// WithFlushTimeout bounds how long a Link's Close goes on publishing what
// is queued (default DefaultFlushTimeout); the rest is given up on. It must
// be positive.
func WithFlushTimeout(d time.Duration) Option {
	return validOption(d > 0, func(c *config) { c.flushTimeout = d }, "flush timeout %v is not positive", d)
}

// WithQueue sets how many of an engine's events may wait to be published
// (default DefaultQueue), such as while NATS is unreachable. When the queue
// is full, a commit's Publish waits for room while the publisher is
// keeping up (its last attempt succeeded), which holds an engine that
// commits faster than NATS takes its events to NATS's pace; while the
// publisher is failing, or once the commit's context ends, the event is
// given up on at once instead. It must be at least 1.
func WithQueue(n int) Option {
	return validOption(n >= 1, func(c *config) { c.queue = n }, "queue %d is under 1", n)
}

// WithHold bounds how long the receiver holds other engines' events for a
// subscriber whose queue has no room for them (default DefaultHold): they
// wait in the stream meanwhile, so a subscriber that falls behind for a
// moment loses nothing, but every subscriber of the engine gets them that
// much later. A subscriber that has kept the receiver waiting that long in
// all since its queue last drained (stuck, or slower than the events
// arrive) is not waited for again until its queue drains, and gets them
// meanwhile as it gets local events: what its full queue cannot take is
// dropped and marked by an overflow event. Zero never holds; a negative d
// makes New fail with an error wrapping fs.ErrInvalid.
func WithHold(d time.Duration) Option {
	return validOption(d >= 0, func(c *config) { c.hold = d }, "hold %v is negative", d)
}

// WithReplicas sets how many servers of a NATS cluster hold each stream
// this transport creates (default 1). It must be 1 to 5.
func WithReplicas(n int) Option {
	return validOption(n >= 1 && n <= 5, func(c *config) { c.replicas = n }, "replicas %d outside 1..5", n)
}

// WithLogger sets where the transport logs (default slog.Default()): a
// connection lost and regained, events given up on, malformed messages. A
// nil l is refused.
func WithLogger(l *slog.Logger) Option {
	return validOption(l != nil, func(c *config) { c.log = l }, "WithLogger(nil)")
}

// ConnOptions are the nats.Connect options a transport's connection should
// have: it connects in the background when the server is down at first
// (nats.RetryOnFailedConnect), reconnects forever, quickly and with jitter,
// notices a dead server within seconds, and does not buffer publishes
// while disconnected (nats.ReconnectBufSize(-1)): the transport's publisher
// queues and retries itself, and an event it gave up on must not be sent
// after all, behind the events that followed it. Append your own
// (credentials, TLS, a name) after them.
func ConnOptions() []nats.Option {
	return []nats.Option{
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(-1),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
	}
}

// Transport carries the events of any number of engines and stores over
// one NATS connection with JetStream (see the package documentation). It
// implements events.Transport, and events.Coordinator for the engines'
// shared scan (see Coordinating the engines of a store), and is safe for
// concurrent use. Its Links are events.Flusher.
type Transport struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg config

	mu     sync.Mutex
	closed bool
	links  map[string]*link // by origin

	coordMu     sync.Mutex         // guards the two below, not the calls that fill them
	leaseKV     jetstream.KeyValue // nil until found or made
	stateStream jetstream.Stream   // nil until found or made
}

var _ events.Transport = (*Transport)(nil)

// New returns a Transport over nc, which stays the caller's: the Transport
// never closes it. nc may be connecting still (see ConnOptions). New fails
// with fs.ErrInvalid for a nil nc, a bad option, or a publish timeout over
// half the retention.
func New(nc *nats.Conn, opts ...Option) (*Transport, error) {
	if nc == nil {
		return nil, fmt.Errorf("events_nats: nil connection: %w", fs.ErrInvalid)
	}
	cfg := config{
		prefix:         DefaultPrefix,
		retention:      DefaultRetention,
		publishTimeout: DefaultPublishTimeout,
		hold:           DefaultHold,
		flushTimeout:   DefaultFlushTimeout,
		queue:          DefaultQueue,
		replicas:       1,
		log:            slog.Default(),
	}
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("events_nats: option %d is nil: %w", i, fs.ErrInvalid)
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.publishTimeout > cfg.retention/2 {
		return nil, fmt.Errorf("events_nats: publish timeout %v over half the retention %v: %w", cfg.publishTimeout, cfg.retention, fs.ErrInvalid)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("events_nats: %w", err)
	}
	return &Transport{nc: nc, js: js, cfg: cfg, links: map[string]*link{}}, nil
}

// Subject returns the subject on which the events of store travel:
// PREFIX.HASH, HASH being the first 32 hex digits of the SHA-256 of store,
// so that store ids, which may be host paths, never appear in NATS.
func (t *Transport) Subject(store string) string {
	return t.cfg.prefix + "." + storeHash(store)[:32]
}

// Stream returns the name of the JetStream stream that holds the events
// of store: PREFIX_HASH in upper case, with HASH as in Subject.
func (t *Transport) Stream(store string) string {
	return strings.ToUpper(strings.ReplaceAll(t.cfg.prefix, ".", "_")) + "_" + strings.ToUpper(storeHash(store)[:32])
}

// Attach implements events.Transport: it starts publishing what the
// engine origin hands its Link and delivering to bus, from now on, the
// events the other engines of store publish. It does not wait for NATS:
// the stream is created, and the subscription made, as soon as the server
// answers. It fails with fs.ErrInvalid for an empty store or origin, a nil
// bus, or an origin attached already, and with fs.ErrClosed after Close.
func (t *Transport) Attach(store, origin string, bus *events.Bus) (events.Link, error) {
	if store == "" || origin == "" || bus == nil {
		return nil, fmt.Errorf("events_nats: attach needs a store, an origin and a bus: %w", fs.ErrInvalid)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, fmt.Errorf("events_nats: attach: %w", fs.ErrClosed)
	}
	if _, dup := t.links[origin]; dup {
		return nil, fmt.Errorf("events_nats: origin %q is attached already: %w", origin, fs.ErrInvalid)
	}
	l := newLink(t, store, origin, bus)
	t.links[origin] = l
	l.start()
	return l, nil
}

// detach forgets a closed link.
func (t *Transport) detach(l *link) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.links[l.origin] == l {
		delete(t.links, l.origin)
	}
}

// Close closes every Link still attached, all at once (see Link's Close:
// what is queued is published within the flush timeout or ctx) and refuses later Attach
// calls and coordination (fs.ErrClosed). It does not close the NATS connection. It returns ctx's error if
// ctx ended first, and is idempotent.
func (t *Transport) Close(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	links := make([]*link, 0, len(t.links))
	for _, l := range t.links {
		links = append(links, l)
	}
	t.mu.Unlock()
	errs := make([]error, len(links))
	var wg sync.WaitGroup
	for i, l := range links { // in parallel: each may flush for a while
		wg.Go(func() { errs[i] = l.Close(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
