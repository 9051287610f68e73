package roomserver

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/wire"
)

// room is one open room: its engine, its connections and the one
// subscription that fans its events out to them.
type room struct {
	name  string
	ready chan struct{} // closed once engine or err is set
	// create is whether the room was opened for a caller that may create
	// it (see Resolver).
	create bool
	eng    *roomstore.Engine
	err    error
	sub    *events.Subscription
	// nextID numbers the room's events. Their frames are shared by every
	// participant, so they take ids from a range of their own: 1<<63 up,
	// above the connections' (from 1<<62) and the clients' (from 0).
	nextID atomic.Uint64

	mu    sync.Mutex
	conns map[*conn]struct{}
	// names are the identity names of the room's participants by id, for
	// the events their changes cause (a change's event may be fanned out
	// after its connection left); left holds the ids of those that left,
	// oldest first, whose names go once more than keptNames have left.
	names   map[string]string
	left    []string
	entered int            // connections admitted, before and after they join
	writes  map[string]int // the uploads open, by identity name
	refs    int
	idle    *time.Timer
	gone    bool // removed from the server; a new acquire opens anew
	// lastPos is the position of the last event fanned out, or where the
	// room's subscription started: a connection that joins now gets the
	// events after it.
	lastPos string
}

// acquire returns the room, opening its engine on first use, and counts
// a use of it until release. With create false a room whose store does
// not exist yields an error wrapping fs.ErrNotExist; a caller that may
// create it, waiting on such an opening, opens it again itself.
func (s *Server) acquire(ctx context.Context, name string, create bool) (*room, error) {
	for {
		rm, err := s.acquireOnce(ctx, name, create)
		if err != nil && create && rm != nil && !rm.create && errors.Is(err, fs.ErrNotExist) {
			continue // opened by a reader meanwhile, which found nothing
		}
		if err != nil {
			return nil, err
		}
		return rm, nil
	}
}

func (s *Server) acquireOnce(ctx context.Context, name string, create bool) (*room, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errShuttingDown
	}
	rm, ok := s.rooms[name]
	if !ok {
		rm = &room{name: name, ready: make(chan struct{}), conns: map[*conn]struct{}{}, create: create}
		s.rooms[name] = rm
		rm.refs++
		s.mu.Unlock()
		s.open(ctx, rm)
	} else {
		rm.mu.Lock()
		rm.refs++
		if rm.idle != nil {
			rm.idle.Stop()
			rm.idle = nil
		}
		rm.mu.Unlock()
		s.mu.Unlock()
	}
	select {
	case <-rm.ready:
	case <-ctx.Done():
		s.release(rm)
		return nil, ctx.Err()
	}
	if rm.err != nil {
		s.release(rm)
		return rm, rm.err
	}
	return rm, nil
}

// open resolves rm's engine and subscribes to its events.
func (s *Server) open(ctx context.Context, rm *room) {
	defer close(rm.ready)
	eng, err := s.o.Resolve(context.WithoutCancel(ctx), rm.name, rm.create)
	if err == nil && eng == nil {
		err = errors.New("the resolver returned no engine")
	}
	if err != nil {
		rm.err = err
		s.mu.Lock()
		if s.rooms[rm.name] == rm {
			delete(s.rooms, rm.name)
		}
		s.mu.Unlock()
		return
	}
	// From the engine's position on, so that the room knows where its
	// stream starts: an event published in between is replayed.
	start := eng.EventPosition()
	rm.mu.Lock()
	rm.lastPos = start
	rm.mu.Unlock()
	sub, err := eng.SubscribeAfter(start, rm.fanout)
	if err != nil {
		rm.err = err
		s.mu.Lock()
		if s.rooms[rm.name] == rm {
			delete(s.rooms, rm.name)
		}
		s.mu.Unlock()
		return
	}
	rm.eng, rm.sub = eng, sub
}

// release ends a use of rm; the last one starts its idle timer.
func (s *Server) release(rm *room) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.refs--
	if rm.refs > 0 || rm.eng == nil || rm.gone {
		return
	}
	rm.idle = time.AfterFunc(s.o.RoomIdle, func() { s.expire(rm) })
}

// expire shuts an idle room down, unless it was used again meanwhile.
func (s *Server) expire(rm *room) {
	s.mu.Lock()
	if s.closed { // Shutdown closes the rooms itself
		s.mu.Unlock()
		return
	}
	rm.mu.Lock()
	if rm.refs > 0 || rm.gone {
		rm.mu.Unlock()
		s.mu.Unlock()
		return
	}
	rm.gone = true
	rm.idle = nil
	if s.rooms[rm.name] == rm {
		delete(s.rooms, rm.name)
	}
	rm.mu.Unlock()
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.shutRoom(context.Background(), rm)
}

func (s *Server) shutRoom(ctx context.Context, rm *room) error {
	rm.sub.Unsubscribe()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err := rm.eng.Shutdown(ctx)
	if err != nil {
		s.log.Warn("room shutdown", "room", rm.name, "err", err)
		return err
	}
	s.log.Info("room closed", "room", rm.name)
	return nil
}

// closeRooms shuts down every room still open.
func (s *Server) closeRooms(ctx context.Context) error {
	s.mu.Lock()
	var open []*room
	for name, rm := range s.rooms {
		delete(s.rooms, name)
		rm.mu.Lock()
		if !rm.gone && rm.eng != nil {
			rm.gone = true
			if rm.idle != nil {
				rm.idle.Stop()
			}
			open = append(open, rm)
		}
		rm.mu.Unlock()
	}
	s.mu.Unlock()
	var errs []error
	for _, rm := range open {
		errs = append(errs, s.shutRoom(ctx, rm))
	}
	return errors.Join(errs...)
}

// enter admits one more connection to the room, unless it has max.
func (rm *room) enter(max int) bool {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.entered >= max {
		return false
	}
	rm.entered++
	return true
}

// takeHandle counts an upload of the identity named name, unless it
// holds its share of the room's handles already: half of them, so that
// no identity can take the last one. It returns the share when refused.
func (rm *room) takeHandle(name string) (share int, ok bool) {
	share = max(rm.eng.MaxOpenHandles()/2, 1)
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.writes[name] >= share {
		return share, false
	}
	if rm.writes == nil {
		rm.writes = map[string]int{}
	}
	rm.writes[name]++
	return share, true
}

// dropHandle ends an upload that takeHandle counted.
func (rm *room) dropHandle(name string) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.writes[name]--; rm.writes[name] <= 0 {
		delete(rm.writes, name)
	}
}

// exit ends a connection that enter admitted.
func (rm *room) exit() {
	rm.mu.Lock()
	rm.entered--
	rm.mu.Unlock()
}

// join adds c to the room's events and returns the position after
// which they start. Until c.catchUp, the room holds c's events for it.
func (rm *room) join(c *conn) (start string) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.conns[c] = struct{}{}
	c.holding = true
	if rm.names == nil {
		rm.names = map[string]string{}
	}
	rm.names[c.id] = c.ident.Name
	return rm.lastPos
}

// nameOf is the identity name of participant id, where the room knows it.
func (rm *room) nameOf(id string) string {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.names[id]
}

// keptNames bounds the names of departed participants a room keeps for
// the events of their last changes.
const keptNames = 256

func (rm *room) leave(c *conn) {
	rm.mu.Lock()
	delete(rm.conns, c)
	rm.left = append(rm.left, c.id)
	if len(rm.left) > keptNames {
		delete(rm.names, rm.left[0])
		rm.left = append(rm.left[:0], rm.left[1:]...)
	}
	rm.mu.Unlock()
}

// view is how one participant sees an event, by what its policy lets it
// read.
type view uint8

const (
	viewNone    view = iota // nothing it may read
	viewWhole               // the event as it is
	viewUpdated             // a move seen from its destination alone: the file appeared there
	viewDeleted             // a move seen from its source alone: the file left it
)

// fanout sends one engine event to every participant of the room that
// may read its path. It never waits: a participant whose queue is full
// loses the event (see conn.lose). Each form of the event is encoded
// once, and its frames are shared by the participants that get it. A
// participant that is still being greeted and sent what it missed gets
// the event later, in order (see conn.catchUp).
func (rm *room) fanout(ev events.Event) {
	switch ev.Type {
	case roomstore.EventFileUpdated, roomstore.EventFileDeleted, roomstore.EventFileMoved, roomstore.EventOverflow:
	default:
		return
	}
	rm.mu.Lock()
	if ev.Position != "" {
		rm.lastPos = ev.Position
	}
	conns := make([]*conn, 0, len(rm.conns))
	for c := range rm.conns {
		if c.holding {
			c.holdLocked(ev)
			continue
		}
		conns = append(conns, c)
	}
	name := rm.names[ev.ParticipantID] // "" for a change made elsewhere
	rm.mu.Unlock()
	if ev.Type == roomstore.EventOverflow {
		// The room's own subscription lost events: so did everyone.
		for _, c := range conns {
			c.lose(max(ev.Dropped, 1), ev.Position)
		}
		return
	}
	var f forms
	for _, c := range conns {
		ms, n := rm.messages(c, ev, name, &f)
		for _, m := range ms[:n] {
			c.trySend(*m, ev.Position)
		}
	}
}

// forms are the encoded forms of one event: by whether they carry
// roomstore's extensions (the participant's name and the position, for
// the clients that asked for them) and by view.
type forms [2][4]*wire.Encoded

// messages returns the messages that tell c of ev, which name caused:
// none, one, or for the handle era a move's two. It encodes each form
// once into f, for every participant that gets it.
func (rm *room) messages(c *conn, ev events.Event, name string, f *forms) (ms [2]*wire.Encoded, n int) {
	v := c.view(ev)
	if v == viewNone {
		return ms, 0
	}
	x := 0
	if c.extras {
		x = 1
	}
	form := func(v view) *wire.Encoded {
		if f[x][v] == nil {
			var ext extras
			if x == 1 {
				ext = extras{name: name, position: ev.Position}
			}
			m, err := rm.encode(ev, v, ext)
			if err != nil {
				return nil
			}
			f[x][v] = &m
		}
		return f[x][v]
	}
	if v == viewWhole && ev.Type == roomstore.EventFileMoved && c.legacy.Load() {
		// The handle era knows no move: its source was deleted, its
		// destination updated.
		if d, u := form(viewDeleted), form(viewUpdated); d != nil && u != nil {
			return [2]*wire.Encoded{d, u}, 2
		}
		return ms, 0
	}
	if m := form(v); m != nil {
		return [2]*wire.Encoded{m}, 1
	}
	return ms, 0
}

// extras are the fields of an event that only the clients that asked
// for roomstore's extensions get.
type extras struct {
	name     string // of the participant that caused it, where known
	position string // the event's, or where the stream goes on after an overflow
}

// encode builds the message of ev as view v shows it, with the extras
// that are set.
func (rm *room) encode(ev events.Event, v view, x extras) (wire.Encoded, error) {
	var body any
	typ := ""
	name, pos := x.name, x.position
	switch {
	case ev.Type == roomstore.EventOverflow:
		typ, body = wire.TypeEventsOverflow, wire.OverflowEvent{Dropped: ev.Dropped, Position: pos}
	case ev.Type == roomstore.EventFileMoved && v == viewWhole:
		typ, body = wire.TypeFileMoved, wire.MoveEvent{SourcePath: ev.SourcePath, DestinationPath: ev.Path, ParticipantID: ev.ParticipantID, ParticipantName: name, Position: pos}
	case ev.Type == roomstore.EventFileMoved && v == viewDeleted:
		typ, body = wire.TypeFileDeleted, wire.FileEvent{Path: ev.SourcePath, ParticipantID: ev.ParticipantID, ParticipantName: name, Position: pos}
	case ev.Type == roomstore.EventFileDeleted:
		typ, body = wire.TypeFileDeleted, wire.FileEvent{Path: ev.Path, ParticipantID: ev.ParticipantID, ParticipantName: name, Position: pos}
	default: // updated, or a move seen from its destination
		typ, body = wire.TypeFileUpdated, wire.FileEvent{Path: ev.Path, ParticipantID: ev.ParticipantID, ParticipantName: name, Position: pos}
	}
	return wire.Encode(1<<63|rm.nextID.Add(1), typ, body, nil)
}

// view decides how the participant sees ev: only the paths its policy
// lets it read, a move between a readable and an unreadable path as the
// event of its readable side, never naming the other. A policy that
// fails counts as a refusal.
func (c *conn) view(ev events.Event) view {
	p := c.policy
	if p == nil || ev.Type == roomstore.EventOverflow {
		return viewWhole
	}
	readable := func(path string) bool {
		ok, err := p.Allow(c.ectx, roomstore.Read, path)
		if err != nil && err != errTokenExpired {
			c.s.log.Warn("access policy failed; event withheld", "room", c.rm.name, "participant", c.id, "err", err)
		}
		return ok && err == nil
	}
	dst := readable(ev.Path)
	if ev.Type != roomstore.EventFileMoved {
		if dst {
			return viewWhole
		}
		return viewNone
	}
	src := readable(ev.SourcePath)
	switch {
	case src && dst:
		return viewWhole
	case dst:
		return viewUpdated
	case src:
		return viewDeleted
	}
	return viewNone
}

// enterRoom acquires the room for a request, or answers it: 404 (and no
// store created) for a room that does not exist and may not be created,
// 503 for one that cannot be opened. refused names the request's refusal
// in the log.
func (s *Server) enterRoom(w http.ResponseWriter, r *http.Request, name string, create bool, refused string) (*room, bool) {
	rm, err := s.acquire(r.Context(), name, create)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !create:
		s.logRefusal(RefusedNoRoom, refused, "room", name, "reason", "no such room, and the request may not create it")
		refuseHTTP(w, "no such room", http.StatusNotFound)
		return nil, false
	case errors.Is(err, errShuttingDown):
		refuseHTTP(w, err.Error(), http.StatusServiceUnavailable)
		return nil, false
	case err != nil:
		s.log.Warn("room unavailable", "room", name, "err", err)
		refuseHTTP(w, unavailable(err), http.StatusServiceUnavailable)
		return nil, false
	}
	return rm, true
}

// errShuttingDown refuses a room to a request that comes once Shutdown
// has begun.
var errShuttingDown = errors.New("server shutting down")

// unavailable is what a client is told of a room whose store cannot be
// opened: "room store unavailable", and the reason a backend gave when
// it classified the failure (a backend's message names no host path, a
// Resolver's own error may: only its kind is told).
func unavailable(err error) string {
	const text = "room store unavailable"
	var be *backend.Error
	if errors.As(err, &be) {
		var parts []string
		if be.Kind != nil && be.Kind != backend.ErrStoreUnavailable {
			parts = append(parts, be.Kind.Error())
		}
		if be.Detail != "" {
			parts = append(parts, be.Detail)
		}
		if len(parts) > 0 {
			return text + ": " + strings.Join(parts, ": ")
		}
	}
	if k := backend.KindOf(err); k != nil && k != backend.ErrStoreUnavailable {
		return text + ": " + k.Error()
	}
	return text
}

// Files returns the handler for the engines' signed download URLs,
// mounted at prefix (such as "/files/"): a request for
// prefix+room+"/"+rest goes to that room's Engine.Handler, which should
// have been built with WithBaseURL(base + prefix + room + "/") and
// Options.SigningKey. Nothing is opened before the URL's signature and
// expiry are checked (roomstore.VerifyURL): a forged, expired or unsigned
// URL gets 403, an invalid room name 404, both without side effects; a
// valid URL of a room whose store no longer exists gets 404, creating
// nothing; a room that cannot be opened gets 503. Without
// Options.SigningKey every request gets 403.
func (s *Server) Files(prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, prefix)
		name, _, found := strings.Cut(rest, "/")
		if !ok || !found || !ValidRoom(name) {
			http.NotFound(w, r)
			return
		}
		if !roomstore.VerifyURL(r, s.o.SigningKey, prefix+name) {
			s.logRefusal(RefusedUnauthorized, "download URL refused", "room", name, "reason", "invalid, expired or unsigned")
			refuseHTTP(w, "forbidden", http.StatusForbidden)
			return
		}
		rm, ok := s.enterRoom(w, r, name, false, "download URL refused")
		if !ok {
			return
		}
		defer s.release(rm)
		if !s.lim.download() {
			s.logRefusal(BudgetDownloads, "download URL refused", "room", name, "reason", "server busy")
			refuseHTTP(w, "server busy: too many downloads", http.StatusServiceUnavailable)
			return
		}
		defer s.lim.downloaded()
		rm.eng.Handler().ServeHTTP(stallGuard{w, http.NewResponseController(w), s.o.WriteTimeout}, r)
	})
}

// stallGuard cuts off a response whose client stops taking bytes: each
// write must go out within timeout.
type stallGuard struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (g stallGuard) Write(p []byte) (int, error) {
	_ = g.rc.SetWriteDeadline(time.Now().Add(g.timeout))
	return g.ResponseWriter.Write(p)
}

// Unwrap is the ResponseWriter the guard wraps.
func (g stallGuard) Unwrap() http.ResponseWriter { return g.ResponseWriter }
