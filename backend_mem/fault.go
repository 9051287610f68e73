package backend_mem

import (
	"context"
	"sync"
)

// Op names a backend operation that a Fault can target.
type Op string

// The operations a Fault can target.
const (
	OpStat         Op = "stat"
	OpCreate       Op = "create"        // Create, before a writer exists
	OpAppend       Op = "append"        // Append, before a writer exists
	OpWrite        Op = "write"         // Writer.Write
	OpCommit       Op = "commit"        // Writer.Commit, before anything changes
	OpRead         Op = "read"          // Read
	OpList         Op = "list"          // List
	OpRemove       Op = "remove"        // Remove, before anything changes
	OpPresign      Op = "presign"       // Presign
	OpMove         Op = "move"          // Move, before anything changes
	OpHistory      Op = "history"       // Versions, Kept, ReadVersion, Forget
	OpStaged       Op = "staged"        // Stage, Staged, Restage, RemoveStaged, ListStaged
	OpAppendStaged Op = "append_staged" // AppendStaged, before a byte is read
	OpCommitStaged Op = "commit_staged" // CommitStaged, before anything changes
)

// Fault makes an operation fail, so that code built on roomstore can test
// its error paths against a store that misbehaves on cue.
//
// The fault lets After calls of Op through, then hits the next Times calls
// (every later call when Times is 0). A hit call returns Err, or, with
// Stall, blocks until its context is done and returns the context's error.
// A hit call changes nothing in the store.
type Fault struct {
	Op    Op
	After int
	Times int
	Err   error
	Stall bool
	// Notify, when set, is called each time the fault hits a call, just
	// before the call fails or stalls, so that a test can wait until a
	// call is stuck instead of guessing how long that takes.
	Notify func()
}

type faults struct {
	mu   sync.Mutex
	list []*armed
}

type armed struct {
	Fault
	seen, hit int
}

// Inject arms f. Several faults may be armed at once; the first that hits a
// call decides its outcome.
func (b *Backend) Inject(f Fault) {
	b.faults.mu.Lock()
	b.faults.list = append(b.faults.list, &armed{Fault: f})
	b.faults.mu.Unlock()
}

// ClearFaults disarms every fault.
func (b *Backend) ClearFaults() {
	b.faults.mu.Lock()
	b.faults.list = nil
	b.faults.mu.Unlock()
}

// fault reports the error an armed fault gives this call of op, or nil.
func (b *Backend) fault(ctx context.Context, op Op) error {
	b.faults.mu.Lock()
	var hit *armed
	for _, f := range b.faults.list {
		if f.Op != op {
			continue
		}
		f.seen++
		if hit == nil && f.seen > f.After && (f.Times == 0 || f.hit < f.Times) {
			f.hit++
			hit = f
		}
	}
	b.faults.mu.Unlock()
	if hit != nil && hit.Notify != nil {
		hit.Notify()
	}
	switch {
	case hit == nil:
		return nil
	case hit.Stall:
		<-ctx.Done()
		return ctx.Err()
	default:
		return hit.Err
	}
}
