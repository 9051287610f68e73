// Package grace gives the bookkeeping that must follow a call (releasing a
// claim, removing a temporary, telling whether a request that was cut
// short had landed) a context of its own that still ends soon after the
// call's: so that such work survives the caller's cancellation without
// making the call wait past its deadline by more than Period.
package grace

import (
	"context"
	"time"
)

// Period is how long the work may go on after the caller's context ends.
const Period = 500 * time.Millisecond

// Context returns a context with ctx's values that is not cancelled with
// ctx but ends Period after ctx does, and limit after now at the latest.
// The caller calls cancel when the work is done.
func Context(ctx context.Context, limit time.Duration) (context.Context, context.CancelFunc) {
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(Period, cancel) })
	return gctx, func() { stop(); cancel() }
}
