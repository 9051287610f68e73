package events_nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

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
