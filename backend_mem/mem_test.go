package backend_mem_test

import (
	"errors"
	"testing"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_mem"
	"github.com/roomstore/roomstore/conformance"
)

func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.Harness{
		New:    func(*testing.T) backend.Backend { return backend_mem.New() },
		Reopen: func(_ *testing.T, b backend.Backend) backend.Backend { return b },
		Broken: func(*testing.T) []conformance.BrokenStore {
			// A store in memory cannot break by itself; faults make it
			// fail the way a disk or a bucket does.
			failing := backend_mem.New()
			for _, op := range []backend_mem.Op{backend_mem.OpCreate, backend_mem.OpAppend, backend_mem.OpWrite, backend_mem.OpCommit} {
				failing.Inject(backend_mem.Fault{Op: op, Err: errors.New("the store refuses writes")})
			}
			gone := backend_mem.New()
			for _, op := range allOps {
				gone.Inject(backend_mem.Fault{Op: op, Err: backend.Errorf(backend.ErrStoreUnavailable, nil, "store dropped")})
			}
			return []conformance.BrokenStore{
				{Name: "every write fails", Backend: failing},
				{Name: "every call says the store is gone", Backend: gone, Gone: true},
			}
		},
	})
}

var allOps = []backend_mem.Op{
	backend_mem.OpStat, backend_mem.OpCreate, backend_mem.OpAppend, backend_mem.OpWrite, backend_mem.OpCommit,
	backend_mem.OpRead, backend_mem.OpList, backend_mem.OpRemove, backend_mem.OpPresign,
}
