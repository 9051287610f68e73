package events_nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
		if len(l.queue) == 0 && l.inflight == 0 {
			l.settle(l.seq)
		}
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
				size += 160 + len(e.ID) + len(e.Path) + len(e.SourcePath) + len(e.ParticipantID) + len(e.ETag)
				n++
			}
			batch := slices.Clone(l.queue[:n])
			clear(l.queue[:n])
			l.queue = l.queue[n:]
			if len(l.queue) == 0 {
				l.queue = nil
			}
			l.inflight = n
			l.settle(batch[0].seq - 1) // the batch before, if any, is done
			l.room.Broadcast()
			l.mu.Unlock()
			return batch, true
		}
		l.inflight = 0
		l.settle(l.seq)
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
