package backend_test

import (
	"sync"
	"testing"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/conformance"
	"github.com/spf13/afero"
)

// leftovers lists the temporaries under an afero store's reserved folder.
func leftovers(_ *testing.T, b backend.Backend) []string {
	f, err := b.(*backend.Afero).Fs().Open(backend.ReservedPrefix + "/tmp")
	if err != nil {
		return nil
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	return names
}

func TestConformanceMemMapFs(t *testing.T) {
	conformance.Run(t, conformance.Harness{
		Leftovers: leftovers,
		New:       func(*testing.T) backend.Backend { return backend.NewAfero(afero.NewMemMapFs()) },
		Reopen: func(_ *testing.T, b backend.Backend) backend.Backend {
			return backend.NewAfero(b.(*backend.Afero).Fs())
		},
	})
}

func TestConformanceOsFs(t *testing.T) {
	var dirs sync.Map // backend.Backend -> its directory; subtests run in parallel
	open := func(dir string) backend.Backend {
		b := backend.NewAfero(afero.NewBasePathFs(afero.NewOsFs(), dir)) // fsync on, as users get it
		return b
	}
	conformance.Run(t, conformance.Harness{
		Leftovers: leftovers,
		New: func(t *testing.T) backend.Backend {
			dir := t.TempDir()
			b := open(dir)
			dirs.Store(b, dir)
			return b
		},
		Reopen: func(_ *testing.T, b backend.Backend) backend.Backend {
			dir, _ := dirs.Load(b)
			return open(dir.(string))
		},
	})
}
