package events_nats

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

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
