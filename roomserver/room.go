package roomserver

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/wire"
)

// room is one open room: its engine, its connections and the one
// subscription that fans its events out to them.
type room struct {
	name  string
	ready chan struct{} // closed once engine or err is set
	eng   *roomstore.Engine
	err   error
	sub   *events.Subscription
	// nextID numbers the room's events. Their frames are shared by every
	// participant, so they take ids from a range of their own: 1<<63 up,
	// above the connections' (from 1<<62) and the clients' (from 0).
	nextID atomic.Uint64

	mu    sync.Mutex
	conns map[*conn]struct{}
	refs  int
	idle  *time.Timer
	gone  bool // removed from the server; a new acquire opens anew
}

// acquire returns the room, opening its engine on first use, and counts
// a use of it until release.
func (s *Server) acquire(ctx context.Context, name string) (*room, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("server shutting down")
	}
	rm, ok := s.rooms[name]
	if !ok {
		rm = &room{name: name, ready: make(chan struct{}), conns: map[*conn]struct{}{}}
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
		return nil, rm.err
	}
	return rm, nil
}

// open resolves rm's engine and subscribes to its events.
func (s *Server) open(ctx context.Context, rm *room) {
	defer close(rm.ready)
	eng, err := s.o.Resolve(context.WithoutCancel(ctx), rm.name)
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
	rm.eng = eng
	rm.sub = eng.Subscribe(rm.fanout, roomstore.EventFileUpdated, roomstore.EventFileDeleted, roomstore.EventFileMoved)
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

func (rm *room) join(c *conn) {
	rm.mu.Lock()
	rm.conns[c] = struct{}{}
	rm.mu.Unlock()
}

func (rm *room) leave(c *conn) {
	rm.mu.Lock()
	delete(rm.conns, c)
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
// loses the event, and is told so (see conn.trySend). Each form of the event is encoded once, and its frames
// are shared by the participants that get it.
func (rm *room) fanout(ev events.Event) {
	switch ev.Type {
	case roomstore.EventFileUpdated, roomstore.EventFileDeleted, roomstore.EventFileMoved, roomstore.EventOverflow:
	default:
		return
	}
	rm.mu.Lock()
	conns := make([]*conn, 0, len(rm.conns))
	for c := range rm.conns {
		conns = append(conns, c)
	}
	rm.mu.Unlock()
	var forms [4]*wire.Encoded
	for _, c := range conns {
		v := c.view(ev)
		if v == viewNone {
			continue
		}
		if forms[v] == nil {
			m, err := rm.encode(ev, v)
			if err != nil {
				return
			}
			forms[v] = &m
		}
		c.trySend(*forms[v])
	}
}

// encode builds the message of ev as view v shows it.
func (rm *room) encode(ev events.Event, v view) (wire.Encoded, error) {
	var body any
	typ := ""
	switch {
	case ev.Type == roomstore.EventOverflow:
		typ, body = wire.TypeEventsOverflow, wire.OverflowEvent{Dropped: ev.Dropped}
	case ev.Type == roomstore.EventFileMoved && v == viewWhole:
		typ, body = wire.TypeFileMoved, wire.MoveEvent{SourcePath: ev.SourcePath, DestinationPath: ev.Path, ParticipantID: ev.ParticipantID}
	case ev.Type == roomstore.EventFileMoved && v == viewDeleted:
		typ, body = wire.TypeFileDeleted, wire.FileEvent{Path: ev.SourcePath, ParticipantID: ev.ParticipantID}
	case ev.Type == roomstore.EventFileDeleted:
		typ, body = wire.TypeFileDeleted, wire.FileEvent{Path: ev.Path, ParticipantID: ev.ParticipantID}
	default: // updated, or a move seen from its destination
		typ, body = wire.TypeFileUpdated, wire.FileEvent{Path: ev.Path, ParticipantID: ev.ParticipantID}
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
		if err != nil {
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

// Files returns the handler for the engines' signed download URLs,
// mounted at prefix (such as "/files/"): a request for
// prefix+room+"/"+rest goes to that room's Engine.Handler, which should
// have been built with WithBaseURL(base + prefix + room + "/"). An
// invalid room name gets 404, a room that cannot be opened 503.
func (s *Server) Files(prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, prefix)
		name, _, found := strings.Cut(rest, "/")
		if !ok || !found || !ValidRoom(name) {
			http.NotFound(w, r)
			return
		}
		rm, err := s.acquire(r.Context(), name)
		if err != nil {
			http.Error(w, "room unavailable", http.StatusServiceUnavailable)
			return
		}
		defer s.release(rm)
		rm.eng.Handler().ServeHTTP(w, r)
	})
}
