package bench

import (
	"context"
	"crypto/rand"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spf13/afero"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_disk"
)

// benchCase is one sub-benchmark of a comparison.
type benchCase struct {
	name string
	run  func(b *testing.B)
}

// runCases runs the cases as sub-benchmarks in order, or in reverse order
// when ROOMSTORE_BENCH_REVERSE=1, which cmd/benchreport sets on every
// other round so that neither roomstore nor a baseline always goes first.
func runCases(b *testing.B, cases []benchCase) {
	if os.Getenv("ROOMSTORE_BENCH_REVERSE") == "1" {
		cases = slices.Clone(cases)
		slices.Reverse(cases)
	}
	for _, c := range cases {
		b.Run(c.name, c.run)
	}
}

// randomBytes returns n incompressible bytes.
func randomBytes(n int) []byte {
	p := make([]byte, n)
	_, _ = rand.Read(p)
	return p
}

// newEngine returns an engine over be, shut down when b ends.
func newEngine(b testing.TB, be backend.Backend, opts ...roomstore.Option) *roomstore.Engine {
	b.Helper()
	e, err := roomstore.New(be, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}

// fileEngine returns the engine that users get for a folder:
// roomstore.OpenURL("file://DIR"), with "?fsync=false" when fsync is off,
// default options otherwise.
func fileEngine(b testing.TB, dir string, fsync bool) *roomstore.Engine {
	return openURLEngine(b, fileURL(dir, fsync))
}

// fileURL returns the URL of the store in dir: "file://DIR", with
// "?fsync=false" when fsync is off.
func fileURL(dir string, fsync bool) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(dir)}
	if !fsync {
		u.RawQuery = "fsync=false"
	}
	return u.String()
}

// basePathEngine returns an engine on afero.NewBasePathFs(afero.NewOsFs(),
// dir), the portable disk path (os calls per path element, no kernel
// confinement).
func basePathEngine(b testing.TB, dir string, fsync bool) *roomstore.Engine {
	return newEngine(b, backend_disk.NewAfero(afero.NewBasePathFs(afero.NewOsFs(), dir), backend_disk.WithFsync(fsync)), roomstore.WithLogger(quietLog))
}

// memEngine returns the engine of roomstore.OpenURL("mem://").
func memEngine(b testing.TB) *roomstore.Engine { return openURLEngine(b, "mem://") }

// check fails b on err. It calls Helper only on failure: Helper walks the
// stack, which would otherwise show up in every profile.
func check(b testing.TB, err error) {
	if err != nil {
		b.Helper()
		b.Fatal(err)
	}
}
