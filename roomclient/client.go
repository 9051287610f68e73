package roomclient

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	neturl "net/url"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/batchconn"
)

// Defaults of Options.
const (
	DefaultChunkSize      = 4<<20 - 64<<10
	DefaultMaxMessageSize = 64 << 20
	DefaultMaxBackoff     = 30 * time.Second
	DefaultPingInterval   = 20 * time.Second
	DefaultPingTimeout    = 10 * time.Second
	DefaultWriteTimeout   = 30 * time.Second
)

// firstBackoff is the ceiling of the wait before the first redial; each
// failed redial doubles it, up to Options.MaxBackoff.
const firstBackoff = 100 * time.Millisecond

// redialTimeout bounds one redial, handshake included.
const redialTimeout = 30 * time.Second

// Options configure Dial. Zero values take the documented defaults.
type Options struct {
	// Token is the participant token, sent as "Authorization: Bearer
	// <token>" on every (re)connection. Empty sends none.
	Token string
	// HTTPClient makes the WebSocket handshakes. By default the client
	// uses a transport of its own (a clone of http.DefaultTransport)
	// whose idle connections Close closes, and whose connections gather
	// the WebSocket library's 4 KiB writes into large ones, so that an
	// upload costs far fewer system calls; with a client of your own,
	// writes go to its transport's connections as they come.
	HTTPClient *http.Client
	// HTTPHeader is added to every handshake request.
	HTTPHeader http.Header
	// Logger receives connection logs (default slog.Default()).
	Logger *slog.Logger
	// Reconnect redials after the connection ends with any close code
	// but 1000, or drops without one, with exponential back-off and
	// jitter (each wait is drawn between half and all of a ceiling that
	// starts at 100 ms and doubles up to MaxBackoff), until a redial
	// succeeds, the server refuses one with 403 or 404, or Close is
	// called. Calls made while disconnected fail at once with
	// ErrDisconnected; subscriptions stay. The client redials with the
	// position of the last event it got (roomstore_after), and a server
	// that resumes (roomserver names the "resume" extension) sends every
	// event of the gap, once and in order, before any live one, so that
	// subscribers miss nothing; where it cannot (its history no longer
	// reaches back, or the room's engine is not the one that issued the
	// position) it says so, and subscribers get one EventOverflow
	// (re-list). A server that does not resume leaves the gap unknown:
	// subscribers then get an EventOverflow with Dropped 0 once
	// reconnected.
	Reconnect bool
	// MaxBackoff caps the wait between redials (default 30 s).
	MaxBackoff time.Duration
	// ChunkSize is the most bytes an upload sends per chunk (less when
	// the server pulls less) and a download asks for per chunk (default
	// 4 MiB less 64 KiB; the server may send less, roomserver at most
	// that). A
	// download holds up to two chunks: it pulls the next one before the
	// last has arrived when the server says how much each pull brings.
	ChunkSize int
	// Compression offers permessage-deflate (without context takeover);
	// the server decides (roomserver declines unless its
	// Options.Compression is set). Worth it only on a slow network and
	// for content that compresses: see roomserver.Options.Compression.
	Compression bool
	// MaxMessageSize bounds one incoming message (default 64 MiB); a
	// bigger one drops the connection.
	MaxMessageSize int
	// EventBuffer bounds the events waiting for each subscriber (default
	// events.DefaultBuffer); see package events for what happens past it.
	EventBuffer int
	// PingInterval is how often the connection is pinged (default 20 s);
	// PingTimeout how long a pong may take (default 10 s) before the
	// connection is taken for dead.
	PingInterval, PingTimeout time.Duration
	// WriteTimeout bounds writing one message (default 30 s); past it
	// the connection is taken for dead.
	WriteTimeout time.Duration
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defi := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	def(&o.MaxBackoff, DefaultMaxBackoff)
	def(&o.PingInterval, DefaultPingInterval)
	def(&o.PingTimeout, DefaultPingTimeout)
	def(&o.WriteTimeout, DefaultWriteTimeout)
	defi(&o.ChunkSize, DefaultChunkSize)
	defi(&o.MaxMessageSize, DefaultMaxMessageSize)
	defi(&o.EventBuffer, events.DefaultBuffer)
}

// Client is one participant of a room, connected to its room server. It
// is safe for concurrent use: calls may run at once, several of them
// streams. Create it with Dial and end it with Close.
type Client struct {
	url     string
	name    string // url without its query, for logs and errors
	o       Options
	log     *slog.Logger
	http    *http.Client
	ownHTTP bool
	bus     *events.Bus

	subMu sync.Mutex
	ons   map[string][]onSub // On's subscriptions, for Off

	// pos is the server's position of the last event handed to the
	// subscribers, or where the stream started (room_ready's), for
	// redials to resume after; "" when the server gives none.
	posMu sync.Mutex
	pos   string

	mu     sync.Mutex
	cur    *conn // nil while disconnected
	last   *conn // cur, or the connection that ended last
	closed bool
	down   error // why the client stopped reconnecting, if it did

	ctx    context.Context // ends at Close: redials stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // the supervisor
}

// Dial connects to the room at url (such as "ws://host/rooms/r1"; http
// and https URLs are taken as ws and wss; give the token in
// Options.Token, not in the URL, whose query may show in errors of the
// HTTP client) and returns once the server has
// sent room_ready and connected and has answered a first call, so that
// every event from then on reaches the client's subscribers. Dial does
// not retry: a refused handshake fails with an error wrapping ErrForbidden
// (HTTP 403: bad, expired or missing token, or a token for another room)
// or fs.ErrNotExist (HTTP 404: no such room); another refusal whose body
// gives a reason with an *Error of its status and that reason (HTTP 503
// "room store unavailable: permission denied" matches
// roomstore.ErrStoreUnavailable, 429 roomstore.ErrTooManyHandles, see
// Error); any other failure (the server unreachable, ctx ending first)
// with its cause.
// Options.Reconnect applies to connections that drop after Dial.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	opts.defaults()
	// The server's positions are what a reconnection resumes after: the
	// client's own bus needs no history.
	bus, err := events.New(events.WithBuffer(opts.EventBuffer), events.WithHistory(0), events.WithLogger(opts.Logger))
	if err != nil {
		return nil, fmt.Errorf("roomclient: %w", err)
	}
	c := &Client{url: url, name: redact(url), o: opts, log: opts.Logger, http: opts.HTTPClient, bus: bus, ons: map[string][]onSub{}}
	if c.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		dial := tr.DialContext
		if dial == nil {
			dial = (&net.Dialer{}).DialContext
		}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			bc := batchconn.New(c)
			if slot, ok := ctx.Value(gatherSlot{}).(*gathered); ok {
				slot.bc = bc
			}
			return bc, nil
		}
		c.http = &http.Client{Transport: tr}
		c.ownHTTP = true
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	k, err := c.dial(ctx)
	if err != nil {
		c.cancel()
		_ = bus.Close(context.Background())
		c.closeIdle()
		return nil, fmt.Errorf("roomclient: %w", err)
	}
	c.cur, c.last = k, k
	c.wg.Go(func() { c.supervise(k) })
	return c, nil
}

// ParticipantID returns the participant id the room server gave the
// current connection (the one its events carry for this client's
// changes). Each connection gets a new one: after a reconnect it changes;
// while disconnected it is the last connection's.
func (c *Client) ParticipantID() string {
	c.mu.Lock()
	k := c.last
	c.mu.Unlock()
	return k.participantID()
}

// Close ends the client: the connection closes with code 1000, calls and
// streams in flight fail with fs.ErrClosed, redials stop, queued events
// are delivered and Close waits for running handlers (not when called
// from inside one), and every goroutine the client started has ended
// when it returns. Later calls fail with fs.ErrClosed. Close returns nil;
// a second Close does nothing.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	k := c.cur
	c.cur = nil
	c.mu.Unlock()
	c.cancel()
	if k != nil {
		k.closeNormally(errClientClosed)
	}
	c.wg.Wait()
	_ = c.bus.Close(context.Background()) // fails only on its context
	c.closeIdle()
	return nil
}

// redact is rawURL without its query (which may hold a token) and user
// information.
func redact(rawURL string) string {
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.ForceQuery = nil, "", false
	return u.String()
}

// closeIdle closes the idle connections of the client's own transport,
// such as those left by refused handshakes.
func (c *Client) closeIdle() {
	if c.ownHTTP {
		c.http.CloseIdleConnections()
	}
}

// conn returns the live connection for a call of op on p, or the error
// that call fails with: fs.ErrClosed after Close, ErrDisconnected while
// there is no connection.
func (c *Client) conn(op, p string) (*conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, pathError(op, p, errClientClosed)
	case c.cur == nil && c.down != nil:
		return nil, pathError(op, p, c.down)
	case c.cur == nil:
		return nil, pathError(op, p, c.last.cause())
	}
	return c.cur, nil
}

// supervise waits for the connection to end and, with Reconnect, replaces
// it until Close.
func (c *Client) supervise(k *conn) {
	for {
		select {
		case <-k.done:
		case <-c.ctx.Done():
			return
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		c.cur = nil
		c.mu.Unlock()
		cause := k.cause()
		if !c.o.Reconnect || k.closeStatus() == websocket.StatusNormalClosure {
			c.log.Info("roomclient: disconnected", "url", c.name, "err", cause)
			return
		}
		c.log.Warn("roomclient: connection lost, reconnecting", "url", c.name, "err", cause)
		if k = c.redial(); k == nil {
			return
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			k.closeNormally(errClientClosed)
			return
		}
		c.cur, c.last = k, k
		c.mu.Unlock()
		c.log.Info("roomclient: reconnected", "url", c.name, "participant", k.participantID(), "resumed", k.resumed())
		if !k.resumed() {
			c.publishGap()
		}
	}
}

// redial dials until it succeeds (returning the connection), the server
// refuses for good, or Close is called (both returning nil).
func (c *Client) redial() *conn {
	ceiling := firstBackoff
	for {
		t := time.NewTimer(ceiling/2 + rand.N(ceiling/2+1))
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return nil
		}
		ctx, cancel := context.WithTimeout(c.ctx, redialTimeout)
		k, err := c.dial(ctx)
		cancel()
		switch {
		case err == nil:
			return k
		case c.ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrForbidden), errors.Is(err, fs.ErrNotExist):
			c.log.Error("roomclient: reconnection refused, giving up", "url", c.name, "err", err)
			c.mu.Lock()
			c.down = fmt.Errorf("%w: reconnection refused: %w", ErrDisconnected, err)
			c.mu.Unlock()
			return nil
		}
		c.log.Info("roomclient: redial failed", "url", c.name, "err", err, "next_within", min(2*ceiling, c.o.MaxBackoff))
		ceiling = min(2*ceiling, c.o.MaxBackoff)
	}
}
