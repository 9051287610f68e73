package objstore

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/roomstore/roomstore/internal/grace"
)

// DefaultCleanupTimeout is the cleanup budget of a backend that is given
// no other: see Cleanup.
const DefaultCleanupTimeout = 30 * time.Second

// Cleanup is the budget of the work that follows a failed or aborted
// write (aborting an upload, deleting a temporary, a claim or a copy,
// telling whether a request cut short had landed). That work runs on a
// context of its own, so that a cancelled caller still leaves nothing
// behind, and Timeout keeps a server that does not answer from stalling
// the caller for good.
type Cleanup struct {
	// Timeout bounds each cleanup call; it must be positive.
	Timeout time.Duration
}

// Once returns the context of a cleanup tried once, right after the call
// it follows: it keeps ctx's values, ends grace.Period after ctx does
// (so that the call waits at most that long past its deadline) and
// Timeout from now at the latest.
func (c Cleanup) Once(ctx context.Context) (context.Context, context.CancelFunc) {
	return grace.Context(ctx, c.Timeout)
}

// Pauses between the tries of Persist: they double from the first to the
// last, each cut by up to half at random so that writers cleaning up
// after one outage do not retry in step.
const (
	firstPause = 50 * time.Millisecond
	maxPause   = time.Second
)

// Persist calls try on a context that keeps ctx's values but not its
// cancellation, bounded by Timeout, until it succeeds, fails for a reason
// that transient says trying again cannot change, or the time is up; it
// returns try's last error. It is the cleanup of an Abort, which the
// caller may make after its own context ended, and it lets a server that
// restarts within Timeout still be told.
func (c Cleanup) Persist(ctx context.Context, try func(context.Context) error, transient func(error) bool) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.Timeout)
	defer cancel()
	pause := firstPause
	for {
		err := try(ctx)
		if err == nil || !transient(err) {
			return err
		}
		t := time.NewTimer(pause/2 + rand.N(pause/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		pause = min(2*pause, maxPause)
	}
}
