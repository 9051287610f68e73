package events_nats_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/natstest"
)

// Two engines of one store with a quota learn each other's commits from
// their events: once an event has arrived the other engine refuses what
// would pass the quota, and commits racing on both engines pass it by at
// most what the other engine's commit in flight adds (the bound Quota
// documents).
func TestTwoEnginesKeepOneQuotaWithinTheDocumentedOvershoot(t *testing.T) {
	srv := natstest.Start(t)
	store := fileStore(t)
	q := []roomstore.Option{roomstore.WithQuota(roomstore.Quota{Bytes: 1000})}
	a := newSideWith(t, store, srv.URL(), q)
	b := newSideWith(t, store, srv.URL(), q)
	ctx := roomstore.WithParticipant(context.Background(), "bob")
	for _, s := range []*side{a, b} { // both scan the empty store now
		if u, err := s.eng.Usage(ctx); err != nil || u.Bytes != 0 {
			t.Fatalf("usage of the empty store: %+v, %v", u, err)
		}
	}
	a.write(t, "alice", "a.bin", strings.Repeat("a", 600))
	b.rec.waitUntil(t, "A's commit at B", func(evs []events.Event) bool { return countFrom(evs, a.eng.ID()) == 1 })
	if u := b.eng.Stats().Usage; u.Bytes != 600 || u.Files != 1 {
		t.Fatalf("B's usage after A's event: %+v", u)
	}
	if _, err := b.eng.Upload(ctx, "b.bin", strings.NewReader(strings.Repeat("b", 401)), roomstore.OpenOptions{}); !errors.Is(err, roomstore.ErrQuotaExceeded) {
		t.Fatalf("B's commit of 401 bytes past A's 600: %v, want ErrQuotaExceeded", err)
	}

	// Both commit 300 bytes at once: each sees the other's only once its
	// event arrives.
	const size = 300
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, 2)
	for i, s := range []*side{a, b} {
		wg.Go(func() {
			<-start
			_, errs[i] = s.eng.Upload(ctx, []string{"ra.bin", "rb.bin"}[i], strings.NewReader(strings.Repeat("r", size)), roomstore.OpenOptions{})
		})
	}
	close(start)
	wg.Wait()
	committed := 0
	for _, err := range errs {
		switch {
		case err == nil:
			committed++
		case !errors.Is(err, roomstore.ErrQuotaExceeded):
			t.Fatalf("racing commit: %v", err)
		}
	}
	if committed == 0 {
		t.Fatal("both racing commits were refused, though one fits")
	}
	total := int64(600 + committed*size)
	// The store holds what the engines say, and no more than the quota
	// and one commit of the other engine in flight.
	for _, s := range []*side{a, b} {
		s.rec.waitUntil(t, "every commit's event", func(evs []events.Event) bool { return len(evs) >= 1+committed })
	}
	u, err := a.eng.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u.Bytes != total || b.eng.Stats().Usage.Bytes != total {
		t.Fatalf("usage: A %d, B %d; want both %d", u.Bytes, b.eng.Stats().Usage.Bytes, total)
	}
	if total > 1000+size {
		t.Fatalf("the store holds %d bytes, past the quota of 1000 by more than one racing commit of %d", total, size)
	}
	// Now that both know, neither takes one byte more than the quota.
	for _, s := range []*side{a, b} {
		if total >= 1000 {
			if _, err := s.eng.Upload(ctx, "more.bin", strings.NewReader("x"), roomstore.OpenOptions{}); !errors.Is(err, roomstore.ErrQuotaExceeded) {
				t.Fatalf("a commit past the quota once both engines know: %v", err)
			}
		}
	}
	t.Logf("racing commits: %d committed, the store holds %d bytes of a 1000-byte quota", committed, total)
}

// An engine that only reads its store makes no stream on the server: the
// first engine to publish makes it, and an engine that was waiting for it
// then gets the other's events from its own start.
func TestOnlyAPublisherMakesTheStream(t *testing.T) {
	srv := natstest.Start(t)
	store := fileStore(t)
	b := newSide(t, store, srv.URL())
	js, err := jetstream.New(b.nc)
	if err != nil {
		t.Fatal(err)
	}
	name := b.tr.Stream(b.eng.StoreID())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := js.Stream(ctx, name); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("a reading engine's stream: %v, want none", err)
	}
	a := newSide(t, store, srv.URL())
	a.write(t, "alice", "f", "x")
	waitStats(t, "A's event published", a.eng.TransportStats, func(s events.TransportStats) bool { return s.Published == 1 })
	if _, err := js.Stream(ctx, name); err != nil {
		t.Fatalf("the stream after a publish: %v", err)
	}
	b.rec.waitUntil(t, "A's event at B, which waited for the stream", func(evs []events.Event) bool { return countFrom(evs, a.eng.ID()) == 1 })
}
