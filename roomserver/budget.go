package roomserver

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/time/rate"
)

// Budget names why the server refused something, as Stats.Refused and
// the roomstore.server.refused metric (attribute "budget") name it: one
// of the budgets a participant consumes, or a request it did not let in.
type Budget string

// The budgets a server keeps, each with its option (see Options), and
// the requests it does not let in.
const (
	BudgetConnections         Budget = "connections"          // Options.MaxConnections
	BudgetIdentityConnections Budget = "identity_connections" // Options.MaxConnectionsPerIdentity
	BudgetParticipants        Budget = "participants"         // Options.MaxParticipants
	BudgetStreams             Budget = "streams"              // Options.MaxStreams
	BudgetIdentityStreams     Budget = "identity_streams"     // Options.MaxStreamsPerIdentity
	BudgetOpenStreams         Budget = "open_streams"         // Options.MaxOpenStreams
	BudgetRoomHandles         Budget = "room_handles"         // half of the room's handles (roomstore.WithMaxOpenHandles) per identity
	BudgetCallRate            Budget = "call_rate"            // Options.CallRate
	BudgetSendBuffer          Budget = "send_buffer"          // Options.SendBuffer and SendQueue: a participant that stopped reading, or lost events
	BudgetPendingBytes        Budget = "pending_bytes"        // Options.MaxPendingBytes
	BudgetMessageTimeout      Budget = "message_timeout"      // Options.MessageTimeout
	BudgetListEntries         Budget = "list_entries"         // Options.MaxListEntries
	BudgetDownloads           Budget = "downloads"            // Options.MaxDownloads
	// RefusedUnauthorized counts connections without a valid token and
	// download URLs without a valid signature.
	RefusedUnauthorized Budget = "unauthorized"
	// RefusedNoRoom counts readers (a read-only participant, a download
	// URL) of a room whose store does not exist, which is not created.
	RefusedNoRoom Budget = "no_room"
)

// budgets lists every Budget, in the order the metric reports them.
var budgets = []Budget{
	BudgetConnections, BudgetIdentityConnections, BudgetParticipants, BudgetStreams,
	BudgetIdentityStreams, BudgetOpenStreams, BudgetRoomHandles, BudgetCallRate, BudgetSendBuffer,
	BudgetPendingBytes, BudgetMessageTimeout, BudgetListEntries, BudgetDownloads,
	RefusedUnauthorized, RefusedNoRoom,
}

// Stats is a snapshot of what a server holds and what it refused.
type Stats struct {
	// Connections is the number of room connections open, and of tus
	// requests being served (Uploads), which count as connections.
	Connections int
	// Streams is the number of uploads and downloads open, each holding
	// a handle or a reader (and so, on disk, a descriptor).
	Streams int
	// Downloads is the number of signed URLs being served (Files).
	Downloads int
	// PendingBytes is the bytes of messages partly received, across all
	// connections.
	PendingBytes int64
	// Queued is the bytes waiting to go out, across all connections
	// (each connection's at most its Options.SendBuffer).
	Queued int64
	// Refused counts the refusals of each budget since the server
	// started, by Budget; a budget nothing was refused for is absent.
	Refused map[Budget]uint64
}

// Stats returns what the server holds and what it refused.
func (s *Server) Stats() Stats {
	s.lim.mu.Lock()
	st := Stats{Connections: s.lim.conns, Streams: s.lim.streams, Downloads: s.lim.downloads}
	s.lim.mu.Unlock()
	st.PendingBytes = s.lim.pending.Load()
	s.mu.Lock()
	for c := range s.conns {
		st.Queued += c.queued.Load()
	}
	s.mu.Unlock()
	st.Refused = map[Budget]uint64{}
	for i, b := range budgets {
		if n := s.lim.refused[i].Load(); n > 0 {
			st.Refused[b] = n
		}
	}
	return st
}

// limits holds the server's budgets: the connections and streams open,
// per identity and in all, and the bytes of messages partly received.
type limits struct {
	o *Options

	mu        sync.Mutex
	conns     int
	streams   int
	downloads int
	ids       map[string]*identity

	pending atomic.Int64
	refused []atomic.Uint64 // by budgetIndex

	logMu   sync.Mutex
	logRate *rate.Limiter
	quiet   int // refusals not logged since the last one that was
}

// budgetIndex numbers the budgets for the refusal counters.
var budgetIndex = func() map[Budget]int {
	m := map[Budget]int{}
	for i, b := range budgets {
		m[b] = i
	}
	return m
}()

// identity is what one identity holds across its connections: they
// share its budgets and its call rate.
type identity struct {
	name    string
	conns   int
	streams int
	rate    *rate.Limiter // nil: unlimited
	lists   chan struct{} // the lists it may run at once
	forget  *time.Timer   // once it has no connection: forgets it when its rate is whole again
}

// maxListsPerIdentity bounds the lists one identity runs at once: a
// list's reply is built whole before it is sent, so lists are what one
// identity's calls could otherwise hold the most memory with.
const maxListsPerIdentity = 2

func newLimits(o *Options) *limits {
	return &limits{o: o, ids: map[string]*identity{}, refused: make([]atomic.Uint64, len(budgets)), logRate: rate.NewLimiter(rate.Every(time.Second/refusalLogsPerSecond), refusalLogBurst)}
}

// refuse counts a refusal of b.
func (l *limits) refuse(b Budget) { l.refused[budgetIndex[b]].Add(1) }

// admit counts a connection of the identity named name, or refuses it:
// over MaxConnections with 503, over MaxConnectionsPerIdentity with 429.
func (l *limits) admit(name string) (*identity, int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns >= l.o.MaxConnections {
		l.refuse(BudgetConnections)
		return nil, http.StatusServiceUnavailable, fmt.Errorf("server full: %d connections open", l.o.MaxConnections)
	}
	id := l.ids[name]
	if id == nil {
		id = &identity{name: name, lists: make(chan struct{}, maxListsPerIdentity)}
		if l.o.CallRate > 0 {
			id.rate = rate.NewLimiter(rate.Limit(l.o.CallRate), l.o.CallBurst)
		}
		l.ids[name] = id
	}
	if id.conns >= l.o.MaxConnectionsPerIdentity {
		l.refuse(BudgetIdentityConnections)
		return nil, http.StatusTooManyRequests, fmt.Errorf("too many connections: at most %d per identity", l.o.MaxConnectionsPerIdentity)
	}
	if id.rate != nil && !id.rate.Allow() { // a connection costs a call
		l.refuse(BudgetCallRate)
		return nil, http.StatusTooManyRequests, fmt.Errorf("rate limited: at most %g calls a second", l.o.CallRate)
	}
	if id.forget != nil {
		id.forget.Stop()
		id.forget = nil
	}
	id.conns++
	l.conns++
	return id, 0, nil
}

// leave ends a connection that admit counted. An identity with no
// connection left is forgotten once its bucket has refilled, so that
// connecting again gives it no calls it had spent.
func (l *limits) leave(id *identity) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns--
	id.conns--
	if id.conns > 0 || l.ids[id.name] != id {
		return
	}
	var whole time.Duration
	if id.rate != nil {
		whole = time.Duration((float64(id.rate.Burst()) - id.rate.Tokens()) / float64(id.rate.Limit()) * float64(time.Second))
	}
	if whole <= 0 {
		delete(l.ids, id.name)
		return
	}
	id.forget = time.AfterFunc(whole, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if id.conns == 0 && l.ids[id.name] == id {
			delete(l.ids, id.name)
		}
	})
}

// stop stops forgetting the identities: the server has stopped.
func (l *limits) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range l.ids {
		if id.forget != nil {
			id.forget.Stop()
		}
	}
}

// openStream counts a stream of the identity, or refuses it with an
// error reply's code and text.
func (l *limits) openStream(id *identity) (int, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case id.streams >= l.o.MaxStreamsPerIdentity:
		l.refuse(BudgetIdentityStreams)
		return CodeTooMany, fmt.Sprintf("too many streams (at most %d per identity)", l.o.MaxStreamsPerIdentity)
	case l.streams >= l.o.MaxOpenStreams:
		l.refuse(BudgetOpenStreams)
		return CodeUnavailable, fmt.Sprintf("server busy: %d streams open", l.o.MaxOpenStreams)
	}
	id.streams++
	l.streams++
	return 0, ""
}

// closeStream ends a stream that openStream counted.
func (l *limits) closeStream(id *identity) {
	l.mu.Lock()
	defer l.mu.Unlock()
	id.streams--
	l.streams--
}

// download counts a download of a signed URL, or refuses it.
func (l *limits) download() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.downloads >= l.o.MaxDownloads {
		return false
	}
	l.downloads++
	return true
}

// downloaded ends a download that download counted.
func (l *limits) downloaded() {
	l.mu.Lock()
	l.downloads--
	l.mu.Unlock()
}

// allowCall takes a call from the identity's rate, or reports that it
// is spent.
func (l *limits) allowCall(id *identity) bool {
	if id.rate == nil || id.rate.Allow() {
		return true
	}
	l.refuse(BudgetCallRate)
	return false
}

// hold counts n more bytes of messages partly received (n < 0 gives
// them back) and reports whether the server's budget still holds them.
func (l *limits) hold(n int64) bool {
	if n <= 0 {
		l.pending.Add(n)
		return true
	}
	if l.pending.Add(n) > l.o.MaxPendingBytes {
		l.pending.Add(-n)
		l.refuse(BudgetPendingBytes)
		return false
	}
	return true
}

// Refusals are logged at most refusalLogsPerSecond a second (after a
// burst of refusalLogBurst), so that a flood of refused requests cannot
// flood the log; the next line logged says how many were not.
const (
	refusalLogsPerSecond = 10
	refusalLogBurst      = 20
	// maxLogValue bounds each value of a refusal's log line.
	maxLogValue = 128
)

// logRefusal logs a refusal of budget b (which it counts), rate-limited,
// each string value shortened to maxLogValue bytes.
// A refusal its budget counted already is logged with b "".
func (s *Server) logRefusal(b Budget, msg string, args ...any) {
	l := s.lim
	if b != "" {
		l.refuse(b)
	}
	l.logMu.Lock()
	if !l.logRate.Allow() {
		l.quiet++
		l.logMu.Unlock()
		return
	}
	quiet := l.quiet
	l.quiet = 0
	l.logMu.Unlock()
	for i, a := range args {
		if v, ok := a.(string); ok {
			args[i] = shorten(v)
		} else if err, ok := a.(error); ok {
			args[i] = shorten(err.Error())
		}
	}
	if b != "" {
		args = append(args, "budget", string(b))
	}
	if quiet > 0 {
		args = append(args, "not_logged", quiet)
	}
	s.log.Info(msg, args...)
}

// shorten cuts v to maxLogValue bytes (on a rune boundary), saying how
// long it was.
func shorten(v string) string {
	if len(v) <= maxLogValue {
		return v
	}
	cut := maxLogValue
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", v[:cut], len(v))
}

// instruments registers the server's observable metrics with mp: the
// connections and streams open, the bytes of messages partly received,
// and the refusals by budget. It returns what unregisters them.
func (s *Server) instruments(mp metric.MeterProvider) (func(), error) {
	m := mp.Meter("github.com/roomstore/roomstore/roomserver")
	conns, err1 := m.Int64ObservableGauge("roomstore.server.connections", metric.WithUnit("{connection}"), metric.WithDescription("Room connections open."))
	streams, err2 := m.Int64ObservableGauge("roomstore.server.streams", metric.WithUnit("{stream}"), metric.WithDescription("Uploads and downloads open, each holding a handle or a reader."))
	pending, err3 := m.Int64ObservableGauge("roomstore.server.pending", metric.WithUnit("By"), metric.WithDescription("Bytes of messages partly received, across connections."))
	queued, err5 := m.Int64ObservableGauge("roomstore.server.queued", metric.WithUnit("By"), metric.WithDescription("Bytes waiting to go out, across connections."))
	refused, err4 := m.Int64ObservableCounter("roomstore.server.refused", metric.WithUnit("{refusal}"), metric.WithDescription("Requests, connections, calls and messages refused, by the budget that refused them."))
	for _, err := range []error{err1, err2, err3, err4, err5} {
		if err != nil {
			return nil, fmt.Errorf("roomserver: metrics: %w", err)
		}
	}
	sets := make([]metric.ObserveOption, len(budgets))
	for i, b := range budgets {
		sets[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("budget", string(b))))
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := s.Stats()
		o.ObserveInt64(conns, int64(st.Connections))
		o.ObserveInt64(streams, int64(st.Streams))
		o.ObserveInt64(pending, st.PendingBytes)
		o.ObserveInt64(queued, st.Queued)
		for i := range budgets {
			o.ObserveInt64(refused, int64(s.lim.refused[i].Load()), sets[i])
		}
		return nil
	}, conns, streams, pending, queued, refused)
	if err != nil {
		return nil, fmt.Errorf("roomserver: metrics: %w", err)
	}
	return func() { _ = reg.Unregister() }, nil
}
