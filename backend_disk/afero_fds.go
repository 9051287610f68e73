package backend_disk

import (
	"context"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// A writer of an Afero backend stages its first bytes in memory and needs a
// file descriptor only for what goes beyond: so that many open handles (the
// Engine allows 10,000 by default) cannot exhaust a process's descriptors,
// descriptors for staging come from a budget shared by every Afero value in
// the process and sized from its descriptor limit (RLIMIT_NOFILE on Unix).
//
//   - held: a writer that spills past stageInMemory keeps its temporary
//     open while a held unit is free (taken without waiting, since holders
//     may stay open for minutes); otherwise it opens the temporary for each
//     spill and closes it again.
//   - transient: every other descriptor a write needs for the length of
//     one call (a spill without a held unit, a commit's temporary, lock
//     and copies, a removal's lock) comes from here, waited for as the
//     call's context allows, all of a call's units at once so that calls
//     never hold some while waiting for more.
//
// A store on NewOSRoot itself keeps descriptors of its directory (see
// NewOSRoot) and its liveness file. The rest of the limit stays free for
// readers, listings and the rest of the program. Running out anyway (the
// program itself uses them up) is reported as ErrTooManyHandles and
// changes nothing.
const (
	// stageInMemory is how many bytes a writer holds in memory before it
	// writes them to its temporary file. It covers the small files that
	// most handles write, which then need no descriptor until Commit.
	stageInMemory = 64 << 10

	// commitFDs is what one commit may have open at once: the staged
	// temporary, the lock file, the old content and the joined temporary
	// of an append (the folder sync comes after the copies are closed).
	commitFDs = 4
)

type fdBudget struct {
	held      *semaphore.Weighted
	transient *semaphore.Weighted
	size      int64 // of each pool
}

var (
	fdBudgetMu sync.Mutex
	fdBudgetP  atomic.Pointer[fdBudget]
)

// refreshFDBudget sizes the budget from the process's descriptor limit as it
// is now; NewAfero calls it, so that a limit lowered at run time is
// honoured by the backends made after. Units taken from an older budget go
// back to it.
func refreshFDBudget() {
	size := min(max(fdLimit()/4, 4), 4096)
	fdBudgetMu.Lock()
	defer fdBudgetMu.Unlock()
	if b := fdBudgetP.Load(); b != nil && b.size == size {
		return
	}
	fdBudgetP.Store(&fdBudget{held: semaphore.NewWeighted(size), transient: semaphore.NewWeighted(size), size: size})
}

// fdUnits are units of the budget that a call or a writer holds.
type fdUnits struct {
	sem *semaphore.Weighted
	n   int64
}

func (u *fdUnits) release() {
	if u.sem != nil {
		u.sem.Release(u.n)
		u.sem = nil
	}
}

// tryHold takes a held unit without waiting and reports whether it did.
func tryHold() (fdUnits, bool) {
	b := fdBudgetP.Load()
	if b.held.TryAcquire(1) {
		return fdUnits{sem: b.held, n: 1}, true
	}
	return fdUnits{}, false
}

// acquire takes n transient units, waiting as ctx allows.
func acquire(ctx context.Context, n int64) (fdUnits, error) {
	b := fdBudgetP.Load()
	n = min(n, b.size)
	if err := b.transient.Acquire(ctx, n); err != nil {
		return fdUnits{}, err
	}
	return fdUnits{sem: b.transient, n: n}, nil
}
