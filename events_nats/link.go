package events_nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roomstore/roomstore/events"
)

// entry is one of the engine's events waiting to be published, with its
// number among the link's events.
type entry struct {
	seq    uint64
	ev     events.Event
	queued time.Time // when Publish queued it: its publish timeout runs from here
}

// peer is what the receiver knows of another engine: the number of the
// last of its events it delivered, and when.
type peer struct {
	last uint64
	seen time.Time
}

// startSkew is how far before its attach an engine's first subscription
// starts, so that a server whose clock is behind this host's by up to that
// much still delivers every event published after the attach; events of
// that last moment before it may arrive too.
const startSkew = time.Second

// maxPeers is how many engines a receiver remembers before it forgets those
// it has not heard from within the retention.
const maxPeers = 4096

// link is one engine's attachment: a publisher goroutine that sends the
// engine's events in order, one message at a time (a message carries every
// event waiting, up to a batch), and a receiver goroutine that delivers the
// other engines' events from a consumer of the store's stream.
type link struct {
	t                       *Transport
	store, origin           string
	hash, subject, stream   string
	bus                     *events.Bus
	log                     *slog.Logger
	since                   time.Time // the receiver's first subscription starts here
	ctx                     context.Context
	cancel                  context.CancelFunc
	pubDone, recvDone, wake chan struct{}
	made                    chan struct{} // the publisher made the stream: the receiver need not wait

	mu       sync.Mutex
	queue    []entry
	room     sync.Cond // signalled when the queue has room, or Publish must stop waiting for it
	inflight int       // events of the message being published
	seq      uint64    // the number of the last event Publish was given
	closing  bool
	failing  bool                      // the publisher's last attempt failed
	iter     jetstream.MessagesContext // the receiver's current subscription
	consumer string                    // its consumer's name

	streamMu sync.Mutex // one stream lookup or creation at a time

	peers map[string]*peer // the receiver's alone

	stats     counters
	closeOnce sync.Once
	closed    chan struct{} // closed once Close's work is all done
}

// counters are the link's TransportStats, updated atomically.
type counters struct {
	published, retries, gaveUp, throttled, received, duplicates atomic.Uint64
	lost, gaps, malformed, foreign, reconnects, held, lagging   atomic.Uint64
	lagCount                                                    atomic.Uint64
	lagTotal, lagMax                                            atomic.Int64
}

func newLink(t *Transport, store, origin string, bus *events.Bus) *link {
	ctx, cancel := context.WithCancel(context.Background())
	l := &link{
		t: t, store: store, origin: origin,
		hash: storeHash(store), subject: t.Subject(store), stream: t.Stream(store),
		bus: bus, log: t.cfg.log.With("store", storeHash(store)[:12], "engine", origin),
		since: time.Now().Add(-startSkew), ctx: ctx, cancel: cancel,
		pubDone: make(chan struct{}), recvDone: make(chan struct{}), wake: make(chan struct{}, 1), made: make(chan struct{}, 1), closed: make(chan struct{}),
		peers: map[string]*peer{},
	}
	l.room.L = &l.mu
	return l
}

func (l *link) start() {
	go l.publishLoop()
	go l.receiveLoop()
}

// Publish implements events.Link: it queues e. While the queue is full it
// waits for room as long as the publisher is keeping up and ctx lasts; it
// gives e up at once if the link is closed, or the queue full while the
// publisher fails or after ctx ended. Either way e takes the next number,
// so receivers see the gap of one given up.
func (l *link) Publish(ctx context.Context, e events.Event) {
	l.mu.Lock()
	if l.full() && !l.closing && !l.failing && ctx.Err() == nil {
		l.stats.throttled.Add(1)
		stop := context.AfterFunc(ctx, func() {
			l.mu.Lock()
			l.room.Broadcast()
			l.mu.Unlock()
		})
		for l.full() && !l.closing && !l.failing && ctx.Err() == nil {
			l.room.Wait()
		}
		stop()
	}
	l.seq++ // numbered here, under l.mu, so that the queue is in order
	if l.closing || l.full() {
		closing := l.closing
		l.mu.Unlock()
		n := l.stats.gaveUp.Add(1)
		if !closing && n&(n-1) == 0 {
			l.log.Warn("roomstore: event transport queue full and publishing failing (or the commit's context done), events given up on: other engines will see a gap",
				"queue", l.t.cfg.queue, "gave_up", n)
		}
		return
	}
	l.queue = append(l.queue, entry{seq: l.seq, ev: e, queued: time.Now()})
	first := len(l.queue) == 1
	l.mu.Unlock()
	if first {
		l.signal()
	}
}

// full reports whether the queue is full; l.mu is held.
func (l *link) full() bool { return len(l.queue) >= l.t.cfg.queue }

// setFailing records whether the publisher's last attempt failed, waking
// the Publish calls that wait for room when it starts failing.
func (l *link) setFailing(failing bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if failing && !l.failing {
		l.room.Broadcast()
	}
	l.failing = failing
}

func (l *link) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Stats implements events.Link.
func (l *link) Stats() events.TransportStats {
	l.mu.Lock()
	queued := uint64(len(l.queue) + l.inflight)
	l.mu.Unlock()
	c := &l.stats
	return events.TransportStats{
		Published: c.published.Load(), Queued: queued, Retries: c.retries.Load(), GaveUp: c.gaveUp.Load(), Throttled: c.throttled.Load(),
		Received: c.received.Load(), Held: c.held.Load(), Duplicates: c.duplicates.Load(), Lost: c.lost.Load(), Gaps: c.gaps.Load(),
		Malformed: c.malformed.Load(), Foreign: c.foreign.Load(), Reconnects: c.reconnects.Load(),
		LagCount: c.lagCount.Load(), LagTotal: time.Duration(c.lagTotal.Load()), LagMax: time.Duration(c.lagMax.Load()),
	}
}

// Close implements events.Link: publishing stops at once when the flush
// timeout passes or ctx ends (then Close returns ctx's error), whichever
// is first. Every caller's ctx bounds its own wait, a later caller's too.
func (l *link) Close(ctx context.Context) error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closing = true
		l.room.Broadcast()
		l.mu.Unlock()
		l.signal()
		go l.finish()
	})
	select {
	case <-l.closed:
		return nil
	case <-ctx.Done():
		// Stop flushing now. The receiver ends at once once stopped (its
		// calls all use l.ctx): after this, the bus gets nothing more.
		l.stop()
		<-l.recvDone
		return ctx.Err()
	}
}

// finish does Close's work once: flush within the flush timeout, stop,
// and delete the receiver's last consumer (best effort, briefly; the
// server would delete it after the inactivity threshold anyway).
func (l *link) finish() {
	defer close(l.closed)
	flush := time.NewTimer(l.t.cfg.flushTimeout)
	select {
	case <-l.pubDone:
	case <-flush.C:
	case <-l.ctx.Done():
	}
	flush.Stop()
	l.stop() // what is still queued fails at once and is given up on
	<-l.pubDone
	<-l.recvDone
	l.mu.Lock()
	consumer := l.consumer
	l.mu.Unlock()
	l.deleteConsumer(context.Background(), consumer)
	l.t.detach(l)
}

// stop ends the publisher's and the receiver's work at once.
func (l *link) stop() {
	l.cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.iter != nil {
		l.iter.Stop()
	}
}

// deleteConsumer deletes a consumer the receiver is done with, if the
// connection is up, waiting at most a second.
func (l *link) deleteConsumer(ctx context.Context, name string) {
	if name == "" || !l.t.nc.IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_ = l.t.js.DeleteConsumer(ctx, l.stream, name)
}

// sleep waits d, or less if the link stops; it reports whether it may go on.
// creation tells of the creation of a link's stream by any engine: the
// advisory JetStream publishes then.
type creation struct {
	c   chan *nats.Msg
	sub *nats.Subscription // nil when the subscription failed
}

func (c creation) stop() {
	if c.sub != nil {
		_ = c.sub.Unsubscribe()
	}
}

// watchCreation subscribes to the advisory of the stream's creation.
func (l *link) watchCreation() creation {
	c := creation{c: make(chan *nats.Msg, 1)}
	c.sub, _ = l.t.nc.ChanSubscribe(streamCreated+l.stream, c.c)
	return c
}

// awaitStream waits until the stream is made (the advisory, or this
// engine's publisher made it), or for streamPoll should the advisory
// never come (an account that may not read advisories); false once the
// link stops.
func (l *link) awaitStream(created creation) bool {
	t := time.NewTimer(streamPoll)
	defer t.Stop()
	select {
	case <-created.c:
	case <-l.made:
	case <-t.C:
	case <-l.ctx.Done():
		return false
	}
	return true
}

// streamCreated is the subject of JetStream's advisory of a stream's
// creation, less the stream's name.
const streamCreated = "$JS.EVENT.ADVISORY.STREAM.CREATED."

// streamPoll is how often a receiver looks for a stream that does not
// exist yet, besides the advisory of its creation.
const streamPoll = 10 * time.Second

func (l *link) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.ctx.Done():
		return false
	}
}

// backoff is the wait before retry n (n >= 1): exponential with full
// jitter, from minBackoff to maxBackoff.
func backoff(n int) time.Duration {
	ceiling := min(minBackoff<<min(n-1, 10), maxBackoff)
	return ceiling/2 + rand.N(ceiling/2+1)
}

// ensureStream returns the store's stream's info, creating the stream if
// it does not exist and create is set: only a publisher creates it, so
// that an engine that only reads a store (a room opened for a reader)
// leaves nothing behind on the server; a receiver that finds no stream
// gets jetstream.ErrStreamNotFound and waits for one.
func (l *link) ensureStream(ctx context.Context, create bool) (*jetstream.StreamInfo, error) {
	l.streamMu.Lock()
	defer l.streamMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, attemptWait)
	defer cancel()
	s, err := l.t.js.Stream(ctx, l.stream)
	if create && errors.Is(err, jetstream.ErrStreamNotFound) {
		cfg := l.t.cfg
		s, err = l.t.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        l.stream,
			Description: "roomstore: the file events of one store",
			Subjects:    []string{l.subject},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      cfg.retention,
			Duplicates:  min(cfg.retention, max(2*cfg.publishTimeout, 2*time.Minute)),
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.replicas,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another engine was first
			s, err = l.t.js.Stream(ctx, l.stream)
		}
	}
	if err != nil {
		return nil, err
	}
	info := s.CachedInfo()
	if !slices.Contains(info.Config.Subjects, l.subject) {
		// Another prefix maps to the same stream name (WithPrefix): this
		// stream is not this store's, and must not be used.
		return nil, fmt.Errorf("stream %s exists for subjects %v, not %s: use a prefix of your own", l.stream, info.Config.Subjects, l.subject)
	}
	return info, nil
}

// publishLoop sends the queued events in order until the link closes and
// its queue is empty.
func (l *link) publishLoop() {
	defer close(l.pubDone)
	for {
		batch, ok := l.take()
		if !ok {
			return
		}
		l.send(batch)
	}
}

// take waits for queued events and removes a batch of them from the
// queue. It reports false once the link closes with nothing queued.
func (l *link) take() ([]entry, bool) {
	for {
		l.mu.Lock()
		if len(l.queue) > 0 {
			n, size := 0, 0
			for n < len(l.queue) && n < maxBatch && size < maxBatchBytes {
				e := &l.queue[n].ev
				size += 160 + len(e.ID) + len(e.Path) + len(e.SourcePath) + len(e.ParticipantID)
				n++
			}
			batch := slices.Clone(l.queue[:n])
			clear(l.queue[:n])
			l.queue = l.queue[n:]
			if len(l.queue) == 0 {
				l.queue = nil
			}
			l.inflight = n
			l.room.Broadcast()
			l.mu.Unlock()
			return batch, true
		}
		l.inflight = 0
		done := l.closing || l.ctx.Err() != nil
		l.mu.Unlock()
		if done {
			return nil, false
		}
		select {
		case <-l.wake:
		case <-l.ctx.Done():
		}
	}
}

// send publishes batch as one message, retrying until the server
// acknowledges it or the publish timeout of its oldest event passes; its
// Nats-Msg-Id, the first event's id, makes a retry of a message the server
// stored but whose acknowledgement was lost a duplicate that the server
// drops. A batch too large for the server's payload limit goes in halves.
func (l *link) send(batch []entry) {
	m := message{V: messageVersion, Store: l.hash, Origin: l.origin, Events: make([]wireEvent, len(batch))}
	for i, e := range batch {
		m.Events[i] = toWire(e.seq, e.ev)
	}
	data, err := json.Marshal(m)
	if err == nil && int64(len(data)) > l.t.nc.MaxPayload() && l.t.nc.MaxPayload() > 0 {
		if len(batch) > 1 {
			l.send(batch[:len(batch)/2])
			l.send(batch[len(batch)/2:])
			return
		}
		err = fmt.Errorf("an event of %d bytes is over the server's payload limit of %d", len(data), l.t.nc.MaxPayload())
	}
	if err != nil { // cannot be sent as it is, however often it is tried
		l.giveUp(batch, err)
		return
	}
	msg := nats.NewMsg(l.subject)
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, batch[0].ev.ID)
	publish := func(ctx context.Context) (*jetstream.PubAck, error) {
		return l.t.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(l.stream), jetstream.WithRetryAttempts(0))
	}
	deadline := batch[0].queued.Add(l.t.cfg.publishTimeout)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if !time.Now().Before(deadline) || !l.sleep(backoff(attempt)) {
				break
			}
			l.stats.retries.Add(1)
		}
		ctx, cancel := context.WithDeadline(l.ctx, earliest(deadline, time.Now().Add(attemptWait)))
		var ack *jetstream.PubAck
		ack, err = publish(ctx)
		if errors.Is(err, jetstream.ErrNoStreamResponse) { // no stream (yet, or any more)
			if _, serr := l.ensureStream(ctx, true); serr == nil {
				select { // the receiver waits for it
				case l.made <- struct{}{}:
				default:
				}
				// Made (by this engine or another) or found: the first
				// message of an engine that got there before its receiver
				// made the stream is no failure of the publisher.
				ack, err = publish(ctx)
			}
		}
		cancel()
		if l.ctx.Err() == nil {
			l.setFailing(err != nil)
		}
		if err == nil {
			l.stats.published.Add(uint64(len(batch)))
			if ack.Duplicate {
				l.stats.duplicates.Add(uint64(len(batch)))
			}
			return
		}
		if l.ctx.Err() != nil {
			break
		}
	}
	l.giveUp(batch, err)
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (l *link) giveUp(batch []entry, err error) {
	n := l.stats.gaveUp.Add(uint64(len(batch)))
	l.log.Warn("roomstore: events could not be published in time and were given up on: other engines will see a gap",
		"events", len(batch), "first", batch[0].ev.ID, "gave_up", n, "err", err)
}

// receiveLoop subscribes to the store's stream and delivers what arrives,
// subscribing again, from the message after the last one it delivered,
// whenever the subscription breaks (a server restart, a connection lost
// for longer than the server keeps consumers, the stream deleted).
func (l *link) receiveLoop() {
	defer close(l.recvDone)
	var (
		next    uint64 // the stream sequence to deliver next; 0: from l.since
		created time.Time
		resumed bool
		failing bool
	)
	for attempt := 0; ; attempt++ {
		if attempt > 0 && !l.sleep(backoff(attempt)) {
			return
		}
		if l.ctx.Err() != nil {
			return
		}
		// Told of the stream's creation before looking for it, so that
		// one made in between is not missed.
		advisory := l.watchCreation()
		info, err := l.ensureStream(l.ctx, false)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			// Nobody has published yet: the first publisher, this engine
			// or another, makes the stream. Delivery starts from the
			// engine's start (l.since) whenever it comes.
			attempt = 0
			ok := l.awaitStream(advisory)
			advisory.stop()
			if !ok {
				return
			}
			continue
		}
		advisory.stop()
		var it jetstream.MessagesContext
		if err == nil {
			if !created.IsZero() && !info.Created.Equal(created) {
				// A new stream: whatever the old one held past next is gone.
				l.gap(0)
				next = 1
			}
			created = info.Created
			it, err = l.subscribe(next)
		}
		if err != nil {
			if !failing && l.ctx.Err() == nil {
				l.log.Warn("roomstore: cannot subscribe to other engines' events; retrying", "err", err)
				failing = true
			}
			continue
		}
		if failing {
			l.log.Info("roomstore: subscribed to other engines' events again")
			failing = false
		}
		if resumed {
			l.stats.reconnects.Add(1)
		}
		resumed, attempt = true, 0
		next = l.drain(it, next)
		if l.ctx.Err() == nil { // at Close, finish deletes the last one
			l.mu.Lock()
			done := l.consumer
			l.consumer = ""
			l.mu.Unlock()
			l.deleteConsumer(l.ctx, done)
		}
	}
}

// subscribe makes a consumer of the stream from stream sequence next (from
// l.since when next is 0) and returns its message iterator.
func (l *link) subscribe(next uint64) (jetstream.MessagesContext, error) {
	cfg := jetstream.ConsumerConfig{
		Description:       "roomstore engine " + l.origin,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: inactive,
	}
	if next == 0 {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &l.since
	} else {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, next
	}
	ctx, cancel := context.WithTimeout(l.ctx, attemptWait)
	defer cancel()
	cons, err := l.t.js.CreateConsumer(ctx, l.stream, cfg)
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages(jetstream.PullHeartbeat(heartbeat), jetstream.PullExpiry(5*heartbeat),
		jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx.Err() != nil { // Close came first and will not see it
		it.Stop()
	}
	l.iter, l.consumer = it, cons.CachedInfo().Name
	return it, nil
}

// drain delivers messages from it until it fails, and returns the stream
// sequence to resume from. The consumer acknowledges nothing, so the
// server counts a message delivered once sent: one lost in flight (the
// connection died under it) shows as a jump of the consumer sequence, and
// the receiver then subscribes again from the message after the last one
// it delivered. A jump of the stream sequence alone means messages expired
// before they could be read.
func (l *link) drain(it jetstream.MessagesContext, next uint64) uint64 {
	defer it.Stop()
	var consumed uint64 // the consumer sequence of the last message
	for {
		msg, err := it.Next()
		if err != nil {
			if l.ctx.Err() == nil {
				l.log.Debug("roomstore: subscription to other engines' events broke; resubscribing", "err", err)
			}
			return next
		}
		meta, err := msg.Metadata()
		if err != nil {
			l.malformed("no JetStream metadata", err)
			continue
		}
		if meta.Sequence.Consumer != consumed+1 {
			l.log.Debug("roomstore: a message was lost in flight; resubscribing", "after", consumed, "got", meta.Sequence.Consumer)
			return next
		}
		consumed = meta.Sequence.Consumer
		seq := meta.Sequence.Stream
		switch {
		case next != 0 && seq < next: // before where this subscription started
			continue
		case next != 0 && seq > next:
			l.gap(0) // messages expired before they could be read
		}
		next = seq + 1
		l.deliver(msg.Data())
	}
}

// gap tells the bus that events were lost: n of them, or 0 for unknown.
func (l *link) gap(n uint64) {
	l.stats.gaps.Add(1)
	l.stats.lost.Add(n)
	l.bus.Gap(n)
}

func (l *link) malformed(why string, err error) {
	if n := l.stats.malformed.Add(1); n&(n-1) == 0 {
		l.log.Warn("roomstore: a malformed message on the events subject was ignored", "why", why, "err", err, "malformed", n)
	}
}

// deliver hands the bus the events of one message, unless it is the
// engine's own, another store's, or not one this package wrote.
func (l *link) deliver(data []byte) {
	m, err := decode(data)
	if err != nil {
		l.malformed("undecodable", err)
		return
	}
	if m.Store != l.hash {
		if n := l.stats.foreign.Add(1); n&(n-1) == 0 {
			l.log.Warn("roomstore: a message of another store on this store's events subject was ignored", "foreign", n)
		}
		return
	}
	if m.Origin == l.origin {
		return // delivered locally when it happened
	}
	// Delivered in chunks that fit a subscriber's queue, each held until
	// they do (see hold), with a slot to spare for an overflow event
	// should the chunk's numbering show a gap.
	size := max(l.bus.Buffer()-1, 1)
	for chunk := range slices.Chunk(m.Events, size) {
		if !l.hold(len(chunk) + 1) {
			return // closing
		}
		l.deliverChunk(m.Origin, chunk)
	}
}

func (l *link) deliverChunk(origin string, chunk []wireEvent) {
	now := time.Now()
	p := l.peers[origin]
	if p == nil {
		l.forgetPeers(now)
		p = &peer{}
		l.peers[origin] = p
	}
	for _, w := range chunk {
		switch {
		case p.last != 0 && w.Seq <= p.last:
			l.stats.duplicates.Add(1)
			continue
		case p.last != 0 && w.Seq > p.last+1:
			l.gap(w.Seq - p.last - 1) // given up on by their publisher
		}
		p.last, p.seen = w.Seq, now
		e := w.event(origin)
		// Counted before it is published, so that whoever sees the
		// event sees it counted.
		l.stats.received.Add(1)
		lag := max(now.Sub(w.Time), 0)
		l.stats.lagCount.Add(1)
		l.stats.lagTotal.Add(int64(lag))
		raise(&l.stats.lagMax, int64(lag))
		l.bus.Publish(e.Type, e)
	}
}

// hold waits until every subscriber has room for n more events, so that
// one that falls behind for a moment delays the other engines' events,
// which wait in the stream, rather than loses them. A subscriber that has
// kept the receiver waiting for the hold (WithHold) in all since its queue
// last drained is not waited for again until it drains (see
// events.Bus.WaitRoom). It reports false if the link stopped.
func (l *link) hold(n int) bool {
	if l.t.cfg.hold == 0 {
		return true
	}
	if l.bus.Room(n) {
		return true
	}
	l.stats.held.Add(1)
	lagged, err := l.bus.WaitRoom(l.ctx, n, l.t.cfg.hold)
	if err != nil {
		return false // only l.ctx ends it
	}
	if lagged {
		if k := l.stats.lagging.Add(1); k&(k-1) == 0 {
			l.log.Warn("roomstore: a subscriber is not keeping up with other engines' events; they are not held for it until its queue drains",
				"hold", l.t.cfg.hold, "times", k)
		}
	}
	return true
}

// raise sets v to x if x is larger.
func raise(v *atomic.Int64, x int64) {
	for {
		cur := v.Load()
		if x <= cur || v.CompareAndSwap(cur, x) {
			return
		}
	}
}

// forgetPeers bounds the peers map: past maxPeers, those not heard from
// within the retention go (their events have expired from the stream).
func (l *link) forgetPeers(now time.Time) {
	if len(l.peers) < maxPeers {
		return
	}
	for o, p := range l.peers {
		if now.Sub(p.seen) > l.t.cfg.retention {
			delete(l.peers, o)
		}
	}
}
