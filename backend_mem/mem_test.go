package backend_mem_test

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/roomstore/roomstore"
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
		// A store in memory has no server; faults on every call stand in
		// for one that died, and clearing them for its restart.
		Mortal: func(*testing.T) conformance.MortalStore {
			b := backend_mem.New()
			return conformance.MortalStore{
				Backend: b,
				Kill: func() {
					for _, op := range allOps {
						b.Inject(backend_mem.Fault{Op: op, Err: errServerDied})
					}
				},
				Restart: func() error { b.ClearFaults(); return nil },
			}
		},
	})
}

var allOps = []backend_mem.Op{
	backend_mem.OpStat, backend_mem.OpCreate, backend_mem.OpAppend, backend_mem.OpWrite, backend_mem.OpCommit,
	backend_mem.OpRead, backend_mem.OpList, backend_mem.OpRemove, backend_mem.OpPresign, backend_mem.OpMove,
}

var errServerDied = errors.New("connection refused: the store's server died")

// A named store opened and closed without a file is forgotten, so that
// names opened once cost nothing; one that holds a file stays.
func TestAnEmptyNamedStoreIsReleasedWithItsLastEngine(t *testing.T) {
	ctx := t.Context()
	name := "mem://release-" + t.Name()
	e, err := roomstore.OpenURL(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := roomstore.OpenExistingURL(ctx, name); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an empty named store after its engine shut down: %v, want not-exist", err)
	}
	e, err = roomstore.OpenURL(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Upload(ctx, "a", strings.NewReader("a"), roomstore.OpenOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := roomstore.OpenExistingURL(ctx, name)
	if err != nil {
		t.Fatalf("a named store that holds a file: %v", err)
	}
	defer again.Shutdown(ctx)
	t.Cleanup(func() { backend_mem.Drop(strings.TrimPrefix(name, "mem://")) })
	if ok, err := again.Exists(ctx, "a"); !ok || err != nil {
		t.Fatalf("the file is gone: %v %v", ok, err)
	}
}
