package events_nats_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/events_nats"
	"github.com/roomstore/roomstore/internal/natstest"
)

// coordinator returns a transport over a connection of its own to url,
// closed when the test ends.
func coordinator(t testing.TB, url string) *events_nats.Transport {
	t.Helper()
	nc, err := nats.Connect(url, events_nats.ConnOptions()...)
	if err != nil {
		t.Fatalf("nats.Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	tr, err := events_nats.New(nc, events_nats.WithLogger(quiet))
	if err != nil {
		t.Fatalf("events_nats.New: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close(context.Background()) })
	return tr
}

func bounded(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	t.Cleanup(cancel)
	return ctx
}

// TestALeaseHasOneHolderAmongConcurrentOrigins: eight origins, each with
// its own connection, ask for one lease at once, round after round: each
// round exactly one gets it, and the others keep being refused while it
// is held.
func TestALeaseHasOneHolderAmongConcurrentOrigins(t *testing.T) {
	srv := natstest.Start(t)
	trs := make([]*events_nats.Transport, 8)
	for i := range trs {
		trs[i] = coordinator(t, srv.URL())
	}
	ctx := bounded(t)
	for round := range 20 {
		name := fmt.Sprintf("round-%d", round)
		got := make([]bool, len(trs))
		errs := make([]error, len(trs))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, tr := range trs {
			wg.Go(func() {
				<-start
				got[i], errs[i] = tr.Lease(ctx, "/srv/store", name, fmt.Sprintf("origin-%d", i), time.Minute)
			})
		}
		close(start)
		wg.Wait()
		holders := 0
		for i := range trs {
			if errs[i] != nil {
				t.Fatalf("round %d: origin %d: %v", round, i, errs[i])
			}
			if got[i] {
				holders++
			}
		}
		if holders != 1 {
			t.Fatalf("round %d: %d holders, want 1: %v", round, holders, got)
		}
		for i, tr := range trs {
			held, err := tr.Lease(ctx, "/srv/store", name, fmt.Sprintf("origin-%d", i), time.Minute)
			if err != nil || held != got[i] {
				t.Fatalf("round %d: origin %d asked again: %v, %v; first %v", round, i, held, err, got[i])
			}
		}
	}
}

// TestALeasePassesToAnotherOnlyOnceItExpires: an origin that does not
// renew its lease loses it when it expires, not before; the new holder
// keeps it against the old one.
func TestALeasePassesToAnotherOnlyOnceItExpires(t *testing.T) {
	srv := natstest.Start(t)
	a, b := coordinator(t, srv.URL()), coordinator(t, srv.URL())
	ctx := bounded(t)
	const ttl = 700 * time.Millisecond
	before := time.Now()
	if held, err := a.Lease(ctx, "s", "scan", "a", ttl); !held || err != nil {
		t.Fatalf("a: %v, %v", held, err)
	}
	waitFor(t, "b to take the lease", func() bool {
		held, err := b.Lease(ctx, "s", "scan", "b", time.Minute)
		if err != nil {
			t.Fatalf("b: %v", err)
		}
		return held
	})
	if took := time.Since(before); took < ttl {
		t.Fatalf("b took the lease %v after a took it for %v", took, ttl)
	}
	if held, err := a.Lease(ctx, "s", "scan", "a", ttl); held || err != nil {
		t.Fatalf("a took back b's lease: %v, %v", held, err)
	}
}

// TestTheHolderKeepsItsLeaseByRenewingItAndGivesItUpAtOnce: renewed
// before it expires, a lease stays its holder's for many times its ttl;
// released, it is another's at once, and a release by one that does not
// hold it changes nothing.
func TestTheHolderKeepsItsLeaseByRenewingItAndGivesItUpAtOnce(t *testing.T) {
	srv := natstest.Start(t)
	a, b := coordinator(t, srv.URL()), coordinator(t, srv.URL())
	ctx := bounded(t)
	const ttl = 600 * time.Millisecond
	end := time.Now().Add(5 * ttl)
	renew := time.NewTicker(ttl / 4)
	defer renew.Stop()
	for time.Now().Before(end) {
		if held, err := a.Lease(ctx, "s", "scan", "a", ttl); !held || err != nil {
			t.Fatalf("a renewing: %v, %v", held, err)
		}
		if held, err := b.Lease(ctx, "s", "scan", "b", ttl); held || err != nil {
			t.Fatalf("b took a renewed lease: %v, %v", held, err)
		}
		<-renew.C
	}
	if err := b.Release(ctx, "s", "scan", "b"); err != nil {
		t.Fatalf("b's release: %v", err)
	}
	if held, err := b.Lease(ctx, "s", "scan", "b", ttl); held || err != nil {
		t.Fatalf("b took the lease after its own release: %v, %v", held, err)
	}
	if err := a.Release(ctx, "s", "scan", "a"); err != nil {
		t.Fatalf("a's release: %v", err)
	}
	if held, err := b.Lease(ctx, "s", "scan", "b", time.Minute); !held || err != nil {
		t.Fatalf("b after a's release: %v, %v", held, err)
	}
	if held, err := a.Lease(ctx, "s", "scan", "a", ttl); held || err != nil {
		t.Fatalf("a after its release: %v, %v", held, err)
	}
}

// TestAStateOfMegabytesComesBackWhole: a state of a few megabytes (over
// the server's payload limit) is loaded as saved, from another
// connection; a later save replaces it; each store has its own.
func TestAStateOfMegabytesComesBackWhole(t *testing.T) {
	srv := natstest.Start(t)
	a, b := coordinator(t, srv.URL()), coordinator(t, srv.URL())
	ctx := bounded(t)
	big := make([]byte, 5<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(r.Uint32())
	}
	if err := a.SaveState(ctx, "/srv/rooms/r1", "known", big); err != nil {
		t.Fatal(err)
	}
	got, err := b.LoadState(ctx, "/srv/rooms/r1", "known")
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("loaded %d bytes, %v; saved %d", len(got), err, len(big))
	}
	if err := b.SaveState(ctx, "/srv/rooms/r1", "known", []byte("small")); err != nil {
		t.Fatal(err)
	}
	if got, err := a.LoadState(ctx, "/srv/rooms/r1", "known"); err != nil || string(got) != "small" {
		t.Fatalf("after the second save: %q, %v", got, err)
	}
	if _, err := a.LoadState(ctx, "/srv/rooms/r2", "known"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("another store's state: %v, want fs.ErrNotExist", err)
	}
}

// TestAStateNeverSavedDoesNotExist: before any state was saved (no bucket
// yet, and LoadState makes none) and after another was.
func TestAStateNeverSavedDoesNotExist(t *testing.T) {
	srv := natstest.Start(t)
	tr := coordinator(t, srv.URL())
	ctx := bounded(t)
	if _, err := tr.LoadState(ctx, "s", "known"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no bucket: %v, want fs.ErrNotExist", err)
	}
	if err := tr.SaveState(ctx, "s", "other", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.LoadState(ctx, "s", "known"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("another name saved: %v, want fs.ErrNotExist", err)
	}
}

// TestNoStoreIDReachesNATS: the leases' keys and the states' names carry
// a hash of the store's id, never the id, which may be a host path.
func TestNoStoreIDReachesNATS(t *testing.T) {
	srv := natstest.Start(t)
	tr := coordinator(t, srv.URL())
	ctx := bounded(t)
	const store = "/home/alice/secret-project"
	if _, err := tr.Lease(ctx, store, "scan", "a", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := tr.SaveState(ctx, store, "known", []byte("x")); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, tr.LeaseBucket())
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, tr.StateStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	hash := strings.TrimPrefix(tr.Subject(store), events_nats.DefaultPrefix+".")
	if len(keys) != 1 || keys[0] != hash+".scan" {
		t.Errorf("lease keys %q, want %s.scan", keys, hash)
	}
	state := events_nats.DefaultPrefix + ".states." + hash + ".known"
	if len(info.State.Subjects) != 2 {
		t.Errorf("state subjects %v, want the manifest's and one chunk's", info.State.Subjects)
	}
	for subject := range info.State.Subjects {
		if subject != state && !strings.HasPrefix(subject, state+".") || strings.Contains(subject, "secret") {
			t.Errorf("state subject %s, want %s or beneath it", subject, state)
		}
	}
}

// TestCoordinationFailsWithinItsContextWhileNATSIsDown: with the server
// down from the start, and after it went away, every call fails, and
// returns by its context's deadline at the latest.
func TestCoordinationFailsWithinItsContextWhileNATSIsDown(t *testing.T) {
	calls := map[string]func(context.Context, *events_nats.Transport) error{
		"lease": func(ctx context.Context, tr *events_nats.Transport) error {
			_, err := tr.Lease(ctx, "s", "scan", "a", time.Minute)
			return err
		},
		"release": func(ctx context.Context, tr *events_nats.Transport) error {
			return tr.Release(ctx, "s", "scan", "a")
		},
		"save": func(ctx context.Context, tr *events_nats.Transport) error {
			return tr.SaveState(ctx, "s", "known", []byte("x"))
		},
		"load": func(ctx context.Context, tr *events_nats.Transport) error {
			_, err := tr.LoadState(ctx, "s", "known")
			return err
		},
	}
	check := func(t *testing.T, tr *events_nats.Transport) {
		for name, call := range calls {
			const bound = time.Second
			ctx, cancel := context.WithTimeout(t.Context(), bound)
			start := time.Now()
			err := call(ctx, tr)
			took := time.Since(start)
			cancel()
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: %v, want a failure", name, err)
			}
			if took > bound+500*time.Millisecond {
				t.Errorf("%s took %v with a context of %v", name, took, bound)
			}
		}
	}
	t.Run("down from the start", func(t *testing.T) {
		srv := natstest.Reserve(t)
		check(t, coordinator(t, srv.URL()))
	})
	t.Run("gone after use", func(t *testing.T) {
		srv := natstest.Start(t)
		tr := coordinator(t, srv.URL())
		ctx := bounded(t)
		if _, err := tr.Lease(ctx, "s", "scan", "a", time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := tr.SaveState(ctx, "s", "known", []byte("x")); err != nil {
			t.Fatal(err)
		}
		srv.Stop()
		check(t, tr)
	})
}

// TestCoordinationRefusesBadArgumentsAndAClosedTransport: each unusable
// argument is fs.ErrInvalid, and every call after Close fs.ErrClosed.
func TestCoordinationRefusesBadArgumentsAndAClosedTransport(t *testing.T) {
	srv := natstest.Start(t)
	tr := coordinator(t, srv.URL())
	ctx := bounded(t)
	for name, err := range map[string]error{
		"no store":     func() error { _, err := tr.Lease(ctx, "", "scan", "a", time.Minute); return err }(),
		"bad name":     func() error { _, err := tr.Lease(ctx, "s", "a.b", "a", time.Minute); return err }(),
		"no origin":    func() error { _, err := tr.Lease(ctx, "s", "scan", "", time.Minute); return err }(),
		"no ttl":       func() error { _, err := tr.Lease(ctx, "s", "scan", "a", 0); return err }(),
		"release":      tr.Release(ctx, "s", "scan", ""),
		"save no name": tr.SaveState(ctx, "s", "", nil),
		"load no store": func() error {
			_, err := tr.LoadState(ctx, "", "known")
			return err
		}(),
	} {
		if !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("%s: %v, want fs.ErrInvalid", name, err)
		}
	}
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Lease(ctx, "s", "scan", "a", time.Minute); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("lease after Close: %v, want fs.ErrClosed", err)
	}
	if _, err := tr.LoadState(ctx, "s", "known"); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("load after Close: %v, want fs.ErrClosed", err)
	}
}

// TestFlushWaitsForEveryEventHandedBeforeIt: a link's Flush returns once
// the events Publish was given before it are acknowledged, waits (until
// its context ends) while NATS is down and they are not, and returns at
// once after Close.
func TestFlushWaitsForEveryEventHandedBeforeIt(t *testing.T) {
	srv := natstest.Reserve(t)
	tr := coordinator(t, srv.URL())
	bus, err := events.New()
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close(context.Background())
	l, err := tr.Attach("s", "o", bus)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := l.(events.Flusher)
	if !ok {
		t.Fatalf("%T is no events.Flusher", l)
	}
	n := 0
	publish := func(k int) {
		for range k {
			n++
			l.Publish(t.Context(), events.Event{Type: "file.updated", Path: "a", ID: fmt.Sprintf("o-%d", n), Origin: "o", Time: time.Now()})
		}
	}
	publish(1)
	short, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := f.Flush(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with NATS down: %v, want its context's deadline", err)
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	publish(99)
	if err := f.Flush(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.Published != 100 || s.Queued != 0 {
		t.Fatalf("flushed with %+v", s)
	}
	if err := l.Close(bounded(t)); err != nil {
		t.Fatal(err)
	}
	publish(1) // given up on at once
	if err := f.Flush(short); err != nil {
		t.Fatalf("Flush after Close: %v", err)
	}
}

// TestSavesAtOnceLeaveOneWholeStateAndNothingElse: two origins save
// different states of one store at once, again and again, while a third
// loads it: every load returns one of the two whole (or fails, when a
// save replaced the state under it), and what the server keeps in the
// end is one state, its manifest and its chunks.
func TestSavesAtOnceLeaveOneWholeStateAndNothingElse(t *testing.T) {
	srv := natstest.Start(t)
	a, b, r := coordinator(t, srv.URL()), coordinator(t, srv.URL()), coordinator(t, srv.URL())
	ctx := bounded(t)
	states := [][]byte{bytes.Repeat([]byte("a"), 1<<20+5), bytes.Repeat([]byte("b"), 700<<10)}
	whole := func(got []byte) bool { return bytes.Equal(got, states[0]) || bytes.Equal(got, states[1]) }
	for round := range 10 {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, tr := range []*events_nats.Transport{a, b} {
			wg.Go(func() { errs[i] = tr.SaveState(ctx, "s", "known", states[i]) })
		}
		wg.Go(func() {
			if got, err := r.LoadState(ctx, "s", "known"); err == nil && !whole(got) {
				t.Errorf("round %d: loaded %d bytes that are neither state", round, len(got))
			}
		})
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: save %d: %v", round, i, err)
			}
		}
		if got, err := r.LoadState(ctx, "s", "known"); err != nil || !whole(got) {
			t.Fatalf("round %d: after the saves: %d bytes, %v", round, len(got), err)
		}
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, a.StateStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := r.LoadState(ctx, "s", "known")
	chunks := uint64(len(got)+256<<10-1) / (256 << 10)
	if len(info.State.Subjects) != 2 || info.State.Msgs != chunks+1 {
		t.Fatalf("the server keeps %d messages on %v, want a manifest and %d chunks", info.State.Msgs, info.State.Subjects, chunks)
	}
}
