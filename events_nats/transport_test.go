package events_nats_test

import (
	"fmt"
	"net/url"
	"path/filepath"
	"testing"

	_ "github.com/roomstore/roomstore/backend_s3"
	"github.com/roomstore/roomstore/events" // registers s3://
	"github.com/roomstore/roomstore/internal/natstest"
	"github.com/roomstore/roomstore/internal/testserver"
)

// fileStore returns the URL of a new disk store.
func fileStore(t testing.TB) string { return "file://" + filepath.ToSlash(t.TempDir()) }

// s3Stores starts versitygw with a bucket and returns a function that
// names a new store (a prefix) in it. The credentials come from the
// environment, so the test cannot run in parallel.
func s3Stores(t *testing.T) func() string {
	gw := testserver.StartVersityGW(t)
	bucket := gw.NewBucket(t)
	gw.SetCredentialEnv(t)
	n := 0
	return func() string {
		n++
		return fmt.Sprintf("s3://%s/store%d?region=us-east-1&endpoint=%s&path_style=true", bucket, n, url.QueryEscape(gw.Endpoint))
	}
}

// TestEveryEngineSeesEveryChangeOnce: two engines (each with its own NATS
// connection, as two replicas have) on one store make 1,000 mixed changes
// between them, 500 each at once; A injects the fault after its 250th
// while B goes on changing; each subscriber on each side sees every
// change exactly once, with its participant, in each engine's commit
// order, and no overflow.
func TestEveryEngineSeesEveryChangeOnce(t *testing.T) {
	s3Store := s3Stores(t)
	stores := []struct {
		name string
		url  func() string
	}{
		{"file", func() string { return fileStore(t) }},
		{"s3", s3Store},
	}
	faults := []struct {
		name   string
		inject func(srv *natstest.Server, a *side) error
	}{
		{"no fault", func(*natstest.Server, *side) error { return nil }},
		{"NATS restarted", func(srv *natstest.Server, _ *side) error { return srv.Restart() }},
		{"one engine's connection cut", func(srv *natstest.Server, a *side) error {
			id, err := a.nc.GetClientID()
			if err != nil {
				return err
			}
			return srv.Disconnect(id)
		}},
	}
	for _, st := range stores {
		for _, f := range faults {
			t.Run(st.name+"/"+f.name, func(t *testing.T) {
				srv := natstest.Start(t)
				store := st.url()
				a, b := newSide(t, store, srv.URL()), newSide(t, store, srv.URL())
				ctx := t.Context()
				counts := [2]int{}
				errs := make(chan error, 3)
				for i, s := range []*side{a, b} {
					go func() {
						at, fault := -1, func() {}
						if i == 0 {
							at, fault = 250, func() { errs <- f.inject(srv, a) }
						}
						n, err := churnWith(ctx, s.eng, fmt.Sprint("participant-", i), 500, uint64(1+i), at, fault)
						counts[i] = n
						errs <- err
					}()
				}
				for range 3 {
					if err := <-errs; err != nil {
						t.Fatal(err)
					}
				}
				for _, s := range []*side{a, b} {
					s.rec.waitUntil(t, "every change of both engines", func(evs []events.Event) bool {
						return countFrom(evs, a.eng.ID()) >= counts[0] && countFrom(evs, b.eng.ID()) >= counts[1]
					})
				}
				a.shutdown(t)
				b.shutdown(t)
				checkExactlyOnce(t, a, b)
				if counts[0] < 200 || counts[1] < 200 {
					t.Fatalf("only %v of the changes made events: the test changed too little", counts)
				}
				for i, s := range []*side{a, b} {
					st := s.eng.TransportStats()
					if st.Received != uint64(counts[1-i]) || st.Published != uint64(counts[i]) || st.GaveUp != 0 || st.Malformed != 0 || st.Foreign != 0 {
						t.Errorf("side %d stats %+v: want %d received, %d published, nothing given up", i, st, counts[1-i], counts[i])
					}
				}
				t.Logf("events: %v; stats %+v / %+v", counts, a.eng.TransportStats(), b.eng.TransportStats())
			})
		}
	}
}
