package roomserver

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"go.opentelemetry.io/otel/metric"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/batchconn"
	"github.com/roomstore/roomstore/internal/wire"
)

// Resolver returns the engine of a room, opening it on first use. The
// server calls it once per room while anyone is connected to it (or
// fetching one of its signed URLs) and shuts the engine down after
// Options.RoomIdle without connections; it must not hand out an engine
// it shuts down itself.
//
// create reports whether the room may be created: it is true only for a
// participant whose token lets it write somewhere in the room. For a
// participant that may only read, and for a signed download URL, a room
// whose store does not exist must yield an error wrapping fs.ErrNotExist
// and create nothing (roomstore.OpenExistingURL does that), so that no
// read ever creates a store, a directory or an event stream; the server
// answers it with 404.
type Resolver func(ctx context.Context, room string, create bool) (*roomstore.Engine, error)

// Options configure a Server. Zero values take the documented defaults.
type Options struct {
	// Resolve opens a room's engine. Required.
	Resolve Resolver
	// Verify checks each connection's token. Required unless Insecure.
	Verify Verifier
	// Insecure accepts connections without a token, each as a participant
	// named "anonymous": for development only. A token that is given is
	// still verified when Verify is set.
	Insecure bool
	// Logger receives connection and protocol logs (default slog.Default()).
	Logger *slog.Logger
	// RoomIdle is how long a room's engine stays open with nobody
	// connected (default 1 minute).
	RoomIdle time.Duration
	// MaxMessageSize bounds one incoming message, all its frames together
	// (default 4 MiB, at least 128 KiB). A bigger one closes the
	// connection with 1009.
	MaxMessageSize int
	// MaxStreams bounds the uploads and downloads open at once on one
	// connection (default 16); one more is refused with code 429.
	MaxStreams int
	// MaxRequests bounds the simple calls running at once on one
	// connection (default 32); more wait, and so does the connection.
	MaxRequests int
	// SendBuffer bounds the replies and download chunks waiting to go out
	// on one connection, by the memory they hold (default 8 MiB; a
	// message bigger than that goes alone): they wait for room, which only
	// the participant's own calls wait for. SendQueue bounds its events
	// waiting (default 256; their frames are shared by the room): an
	// event past it is dropped for that participant alone. A participant
	// that asked for roomstore's extensions is told how many it lost
	// (storage.events.overflow) before its next event; any other is
	// closed with 1013 after the events queued before the loss, and has
	// room for bursts of up to 8 times SendQueue events while it keeps
	// reading (its writer took a message within the last second), since
	// a loss costs it its connection. A participant that stops reading is
	// dropped after WriteTimeout: a slow reader never stalls the room, nor
	// holds more than its buffer.
	SendQueue  int
	SendBuffer int

	// Budgets a participant cannot exhaust for the others: every refusal
	// is counted in Stats().Refused and the roomstore.server.refused
	// metric under its Budget, and logged (at most 10 lines a second).
	//
	// MaxConnections bounds the room connections open at once (default
	// 10,000): one more is refused with HTTP 503 before the upgrade.
	MaxConnections int
	// MaxConnectionsPerIdentity bounds the connections of one identity
	// (Identity.Name, across rooms) at once (default 32): one more is
	// refused with HTTP 429.
	MaxConnectionsPerIdentity int
	// MaxParticipants bounds the connections to one room at once
	// (default 1,000): one more is refused with HTTP 429.
	MaxParticipants int
	// MaxStreamsPerIdentity bounds the uploads and downloads of one
	// identity open at once across its connections (default 64), and
	// MaxOpenStreams those of the server (default 4,096): each holds a
	// handle or a reader (on disk, a descriptor). One more is refused
	// with code 429 (the identity's) or 503 (the server's).
	MaxStreamsPerIdentity int
	MaxOpenStreams        int
	// CallRate is the calls a second one identity may start, across its
	// connections (a token bucket of CallBurst calls; defaults 500 a
	// second and a burst of 1,000; a negative CallRate is unlimited). A
	// call beyond it is refused at once with code 429, and its connection
	// reads nothing more until the bucket holds a call again (10 ms at
	// least): a flood waits in its own sockets rather than cost the server
	// a refusal per call, and nobody else waits. The chunks of a stream
	// are not calls.
	CallRate  float64
	CallBurst int
	// MessageTimeout bounds the time from the first byte of a message to
	// its last (default 30 s), and MaxPendingBytes the bytes of messages
	// partly received across all connections (default 256 MiB). A
	// message over either closes its connection (code 1008, or 1013 for
	// the server's budget).
	MessageTimeout  time.Duration
	MaxPendingBytes int64
	// MaxListEntries bounds the entries of one list reply (default
	// 100,000, about 14 MB); a folder with more is refused with code 413
	// (its entries can still be reached by path). It bounds the replies
	// of the history's tools too (versions, deleted, restore_all, which
	// then restores nothing). One identity runs at most two lists, of
	// either kind, at once; more wait.
	MaxListEntries int
	// MeterProvider, if set, receives the server's metrics: the
	// connections and streams open (roomstore.server.connections,
	// roomstore.server.streams), the bytes partly received
	// (roomstore.server.pending) and the refusals by budget
	// (roomstore.server.refused).
	MeterProvider metric.MeterProvider
	// MaxDownloads bounds the downloads of signed URLs (Files) served at
	// once (default 1,024), each holding a reader of its file: one more is
	// refused with HTTP 503. A download whose client stops taking bytes
	// for WriteTimeout is cut off.
	MaxDownloads int
	// SigningKey is the key the rooms' engines sign download URLs with
	// (roomstore.WithSigningKey): Files checks a URL's signature with it
	// before it opens the room. Without it Files refuses every request.
	SigningKey []byte
	// ChunkSize is the upload chunk size the server pulls (default and
	// most: MaxMessageSize less 64 KiB, so 4 MiB less 64 KiB). Each
	// upload under way holds about two chunks, so a server expecting
	// many at once may want less; large chunks cost fewer round trips.
	// A download sends chunks of the size its client asks for, at most
	// 4 MiB less 64 KiB (and MaxMessageSize less 64 KiB).
	ChunkSize int
	// PingInterval is how often an idle connection is pinged (default 20
	// s); PingTimeout how long a pong may take (default 10 s) before the
	// connection is dropped.
	PingInterval, PingTimeout time.Duration
	// WriteTimeout bounds writing one message to a connection (default
	// 30 s).
	WriteTimeout time.Duration
	// StreamIdle is how long an upload or download may wait for the
	// client's next chunk (default 2 minutes) before it is ended, an
	// upload's bytes discarded.
	StreamIdle time.Duration
	// OriginPatterns lists the hosts browsers may connect from besides
	// the server's own (see websocket.AcceptOptions).
	OriginPatterns []string
	// PublicURL is the base URL participants reach the server at (http,
	// https, ws or wss; a server mounted below a prefix names it), from
	// which room_ready's room_url is made: its ws or wss form followed by
	// rooms/{room}. Empty: the URL the participant connected to, without
	// its query, which behind a proxy that terminates TLS, or below a
	// prefix, is not the URL the participant reached: set PublicURL there.
	PublicURL string
	// MaxUploadLength bounds the length of one resumable upload (Uploads;
	// default 64 GiB): a larger Upload-Length is refused with 413 before
	// anything is created. The room's Quota bounds it too, where set.
	MaxUploadLength int64
	// Compression accepts permessage-deflate (without context takeover,
	// so that a connection keeps no compressor between messages) from
	// clients that offer it. Off by default: the newest clients offer it
	// and connect either way, and on 2 cores it cost about 8 times the
	// CPU of a transfer of text that it shrank to a fifth, and 3 times
	// for a file already compressed, which it did not shrink at all
	// (BENCHMARKS.md section 15): the server's CPU, shared by every
	// participant, is spent so that one participant's bytes travel less.
	// Set it where participants wait on slow links for text.
	Compression bool
}

func (o *Options) defaults() {
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
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	def(&o.RoomIdle, time.Minute)
	defi(&o.MaxMessageSize, 4<<20)
	defi(&o.MaxStreams, 16)
	defi(&o.MaxRequests, 32)
	defi(&o.SendQueue, 256)
	defi(&o.SendBuffer, 8<<20)
	defi(&o.MaxConnections, 10_000)
	defi(&o.MaxConnectionsPerIdentity, 32)
	defi(&o.MaxParticipants, 1_000)
	defi(&o.MaxStreamsPerIdentity, 64)
	defi(&o.MaxOpenStreams, 4_096)
	if o.CallRate == 0 {
		o.CallRate = 500
	}
	defi(&o.CallBurst, 1_000)
	def(&o.MessageTimeout, 30*time.Second)
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = 256 << 20
	}
	defi(&o.MaxListEntries, 100_000)
	defi(&o.MaxDownloads, 1_024)
	o.MaxMessageSize = max(o.MaxMessageSize, 128<<10)
	defi(&o.ChunkSize, o.MaxMessageSize-64<<10)
	o.ChunkSize = min(o.ChunkSize, o.MaxMessageSize-64<<10)
	def(&o.PingInterval, 20*time.Second)
	def(&o.PingTimeout, 10*time.Second)
	def(&o.WriteTimeout, 30*time.Second)
	def(&o.StreamIdle, 2*time.Minute)
	if o.MaxUploadLength <= 0 {
		o.MaxUploadLength = 64 << 30
	}
}

// Server serves rooms over the MeshAgent room protocol. It is an
// http.Handler for GET /rooms/{room} (mount it with http.StripPrefix to
// serve it below a prefix). Create it with New.
type Server struct {
	o       Options
	log     *slog.Logger
	lim     *limits
	metrics func() // unregisters the server's metrics
	mu      sync.Mutex
	rooms   map[string]*room
	conns   map[*conn]struct{}
	tus     map[*tusRequest]struct{} // the tus requests being served (Uploads)
	closed  bool
	drain   chan struct{}  // closed when Shutdown begins
	wg      sync.WaitGroup // connections and room shutdowns

	stopOnce sync.Once
	stopped  chan struct{}
	stopErr  error
}

// New returns a Server. It fails without Options.Resolve, or without
// Options.Verify unless Options.Insecure is set, or when the
// MeterProvider refuses its instruments.
func New(o Options) (*Server, error) {
	if o.Resolve == nil {
		return nil, errors.New("roomserver: Options.Resolve is required")
	}
	if o.Verify == nil && !o.Insecure {
		return nil, errors.New("roomserver: Options.Verify is required unless Options.Insecure is set")
	}
	o.defaults()
	s := &Server{o: o, log: o.Logger, rooms: map[string]*room{}, conns: map[*conn]struct{}{}, drain: make(chan struct{}), stopped: make(chan struct{}), metrics: func() {}}
	s.lim = newLimits(&s.o)
	if o.MeterProvider != nil {
		unregister, err := s.instruments(o.MeterProvider)
		if err != nil {
			return nil, err
		}
		s.metrics = unregister
	}
	return s, nil
}

// ValidRoom reports whether name can name a room: one path element of
// 1 to 255 bytes of valid UTF-8 without control characters, '/', '\\', or
// a leading '.'.
func ValidRoom(name string) bool {
	if name == "" || len(name) > 255 || !utf8.ValidString(name) || name[0] == '.' {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// ServeHTTP upgrades GET /rooms/{room} to a room connection. A bad or
// missing token gets 403, an unknown path or invalid room name 404, and
// so does a room whose store does not exist for a participant that may
// only read (which creates nothing); a server shutting down, full
// (MaxConnections) or with a room that cannot be opened gets 503 (for a
// room whose store cannot be opened, with the one-line body "room store
// unavailable: " and the backend's reason, such as "permission denied",
// never a host path; roomclient reports it), an
// identity at MaxConnectionsPerIdentity or a room at MaxParticipants 429,
// a malformed roomstore_after (wire.AfterParam) from a client that asked
// for roomstore's extensions 400, all before the upgrade, and nothing is
// opened before the token is
// checked.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/rooms/")
	if !ok || !ValidRoom(name) {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		refuseHTTP(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	token, subprotocol := tokenOf(r)
	q := r.URL.Query()
	greet := greeting{roomURL: s.roomURL(r, name), extensions: q.Get(wire.ExtensionsParam) == "1"}
	if greet.extensions {
		greet.after = q.Get(wire.AfterParam)
	}
	ident := Identity{Name: "anonymous", Attributes: map[string]any{"name": "anonymous"}}
	switch {
	case token == "" && s.o.Insecure:
	case s.o.Verify == nil && s.o.Insecure:
	case token == "":
		s.logRefusal(RefusedUnauthorized, "room connection refused", "room", name, "reason", "no token")
		refuseHTTP(w, "forbidden", http.StatusForbidden)
		return
	default:
		id, err := s.o.Verify(r.Context(), name, token)
		if err == nil && ended(id.Expires) {
			err = errors.New("the identity has expired")
		}
		if err != nil {
			s.logRefusal(RefusedUnauthorized, "room connection refused", "room", name, "reason", err)
			refuseHTTP(w, "forbidden", http.StatusForbidden)
			return
		}
		ident = id
	}
	if err := events.CheckPosition(greet.after); err != nil {
		s.logRefusal(Budget(""), "room connection refused", "room", name, "reason", err)
		refuseHTTP(w, "invalid "+wire.AfterParam, http.StatusBadRequest)
		return
	}
	idst, code, err := s.lim.admit(ident.Name)
	if err != nil {
		s.logRefusal(Budget(""), "room connection refused", "room", name, "name", ident.Name, "reason", err)
		refuseHTTP(w, err.Error(), code)
		return
	}
	admitted := true
	defer func() {
		if admitted {
			s.lim.leave(idst)
		}
	}()
	create, err := mayWrite(r.Context(), ident)
	if err != nil {
		s.log.Warn("room connection refused: the access policy failed", "room", name, "err", err)
		refuseHTTP(w, "room unavailable", http.StatusServiceUnavailable)
		return
	}
	rm, ok := s.enterRoom(w, r, name, create, "room connection refused")
	if !ok {
		return
	}
	if !rm.enter(s.o.MaxParticipants) {
		s.release(rm)
		s.logRefusal(BudgetParticipants, "room connection refused", "room", name, "reason", "room full")
		refuseHTTP(w, fmt.Sprintf("room full: at most %d participants", s.o.MaxParticipants), http.StatusTooManyRequests)
		return
	}
	var protos []string
	if subprotocol != "" {
		protos = []string{subprotocol}
	}
	ao := &websocket.AcceptOptions{Subprotocols: protos, OriginPatterns: s.o.OriginPatterns}
	if s.o.Compression {
		ao.CompressionMode = websocket.CompressionNoContextTakeover
	}
	bw := &batched{ResponseWriter: w}
	ws, err := websocket.Accept(bw, r, ao)
	if err != nil {
		rm.exit()
		s.release(rm)
		s.logRefusal(Budget(""), "room upgrade failed", "room", name, "err", err)
		return
	}
	ws.SetReadLimit(int64(s.o.MaxMessageSize) + 16 + 256)
	c := newConn(s, rm, ws, ident, idst, greet)
	c.bc = bw.bc
	admitted = false // the connection leaves when it ends
	if !s.track(c) {
		_ = ws.Close(websocket.StatusGoingAway, "server shutting down")
		rm.exit()
		s.release(rm)
		s.lim.leave(idst)
		return
	}
	// On a goroutine of its own, so that the handler returns and net/http
	// lets go of the request and its response buffers: an idle
	// participant then holds its reader's goroutine and little else.
	go c.serve()
}

// greeting is what a connection's request says of how to greet it.
type greeting struct {
	roomURL    string
	extensions bool // the client asked for roomstore's extensions (wire.ExtensionsParam)
	// after is the position of the last event the client saw
	// (wire.AfterParam; "" for none, and for a client that did not ask
	// for the extensions).
	after string
}

// roomURL is the URL of the room as room_ready names it: Options.PublicURL's
// ws or wss form followed by rooms/{room}, else the URL the request came
// to, without its query.
func (s *Server) roomURL(r *http.Request, name string) string {
	if base := s.o.PublicURL; base != "" {
		for from, to := range map[string]string{"http://": "ws://", "https://": "wss://"} {
			if rest, ok := strings.CutPrefix(base, from); ok {
				base = to + rest
			}
		}
		return strings.TrimSuffix(base, "/") + "/rooms/" + url.PathEscape(name)
	}
	scheme := "ws"
	if r.TLS != nil {
		scheme = "wss"
	}
	return (&url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path}).String()
}

// refuseHTTP answers a request the server refuses, and closes its
// connection after the answer: a refused client keeps no socket open.
func refuseHTTP(w http.ResponseWriter, text string, code int) {
	w.Header().Set("Connection", "close")
	http.Error(w, text, code)
}

// mayWrite reports whether ident may write anywhere in its room, and so
// create the room's store.
func mayWrite(ctx context.Context, ident Identity) (ok bool, err error) {
	p := connPolicy{p: ident.Policy, expires: ident.Expires}
	sc, err := p.Beneath(ctx, roomstore.Write, "")
	return !sc.Empty(), err
}

// tokenOf finds a connection's token: ?token=, Authorization: Bearer, or
// the meshagent-room.<jwt> subprotocol, which is then echoed.
func tokenOf(r *http.Request) (token, subprotocol string) {
	if t := r.URL.Query().Get("token"); t != "" {
		return t, ""
	}
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && t != "" {
		return strings.TrimSpace(t), ""
	}
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(h, ",") {
			p = strings.TrimSpace(p)
			if t, ok := strings.CutPrefix(p, "meshagent-room."); ok && t != "" {
				return t, p
			}
		}
	}
	return "", ""
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops the server: new connections and new calls are refused,
// uploads and downloads under way may finish until ctx ends, then every
// connection is closed with 1001 (the uploads still open are aborted,
// their bytes discarded) and every room's engine is shut down. If ctx
// ends first, Shutdown returns its error and the rest goes on in the
// background; a later Shutdown waits for it again.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.closed
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if first {
		close(s.drain)
	}
	var wait sync.WaitGroup
	for _, c := range conns {
		wait.Go(func() { c.drainStreams(ctx) })
	}
	wait.Go(func() { s.drainUploads(ctx) })
	wait.Wait()
	s.stopOnce.Do(func() { go s.stop() })
	select {
	case <-s.stopped:
		return s.stopErr
	case <-ctx.Done():
		return fmt.Errorf("roomserver: shutdown: %w", ctx.Err())
	}
}

// stop closes every connection, waits for them and shuts the rooms down,
// once, whatever the callers' contexts.
func (s *Server) stop() {
	defer close(s.stopped)
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var closing sync.WaitGroup
	for _, c := range conns {
		closing.Go(func() { c.closeAfterQueued(websocket.StatusGoingAway, "server shutting down") })
	}
	closing.Wait()
	s.cutUploads()
	s.wg.Wait()
	s.stopErr = s.closeRooms(context.Background())
	s.metrics() // the server's series end with it
	s.lim.stop()
}

func (s *Server) draining() bool {
	select {
	case <-s.drain:
		return true
	default:
		return false
	}
}

// participantID returns a new random participant id.
func participantID() string { return rand.Text() }

// batched hands the WebSocket library a hijacked connection whose writes
// the connection's writer gathers (see internal/batchconn): the messages
// it finds queued, each a header frame and a data frame flushed on their
// own, reach the socket in one system call.
type batched struct {
	http.ResponseWriter
	bc *batchconn.Conn // once hijacked
}

// Hijack hijacks the connection and wraps it.
func (b *batched) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(b.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	b.bc = batchconn.New(c)
	// A small writer: batchconn gathers the frames anyway, and the server's
	// frames are not masked, so the library writes a payload straight
	// through once the header is buffered.
	return b.bc, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(b.bc, hijackWriterSize)), nil
}

// hijackWriterSize is the buffer of a connection's frame writer.
const hijackWriterSize = 512

// Unwrap is the ResponseWriter batched wraps.
func (b *batched) Unwrap() http.ResponseWriter { return b.ResponseWriter }
