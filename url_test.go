package roomstore_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_mem"
)

func TestOpenURLMemoryStoresArePrivateUnlessNamed(t *testing.T) {
	ctx := t.Context()
	open := func(u string) *roomstore.Engine {
		e, err := roomstore.OpenURL(ctx, u)
		if err != nil {
			t.Fatalf("OpenURL(%q): %v", u, err)
		}
		t.Cleanup(func() { e.Shutdown(context.Background()) })
		return e
	}
	a, b := open("mem://"), open("mem://")
	put(t, a, "f", "x")
	if ok, _ := b.Exists(ctx, "f"); ok {
		t.Fatal("two mem:// stores share files")
	}
	n1, n2 := open("mem://"+t.Name()), open("mem://"+t.Name())
	put(t, n1, "f", "x")
	if ok, _ := n2.Exists(ctx, "f"); !ok {
		t.Fatal("two engines on one named mem:// store do not share files")
	}
}

func TestFaultsReachANamedMemoryStoreOpenedByURL(t *testing.T) {
	name := t.Name()
	t.Cleanup(func() { backend_mem.Drop(name) })
	b := backend_mem.Named(name)
	if b == nil || backend_mem.Named(name) != b || backend_mem.Named("") != nil {
		t.Fatal("Named does not return the one store of a name")
	}
	full := errors.New("disk full")
	b.Inject(backend_mem.Fault{Op: backend_mem.OpCommit, Err: full})
	e, err := roomstore.OpenURL(t.Context(), "mem://"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	if _, err := e.Upload(t.Context(), "a.txt", strings.NewReader("x"), roomstore.OpenOptions{}); !errors.Is(err, full) {
		t.Fatalf("Upload into the store with a commit fault: %v, want the injected error", err)
	}
	b.ClearFaults()
	put(t, e, "a.txt", "x")
	if _, err := b.Stat(t.Context(), "a.txt"); err != nil {
		t.Errorf("the engine's file is not in the store Named returned: %v", err)
	}
}

func TestOpenURLFileStoresOnDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "room")
	e, err := roomstore.OpenURL(t.Context(), "file://"+dir+"?fsync=false")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	put(t, e, "sub/f.txt", "on disk")
	got, err := os.ReadFile(filepath.Join(dir, "sub", "f.txt"))
	if err != nil || string(got) != "on disk" {
		t.Fatalf("file on disk: %q, %v", got, err)
	}

	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	if err := os.Mkdir("rel", 0o755); err != nil {
		t.Fatal(err)
	}
	rel, err := roomstore.OpenURL(t.Context(), "file://./rel/room")
	if err != nil {
		t.Fatal(err)
	}
	defer rel.Shutdown(context.Background())
	put(t, rel, "g", "relative")
	if _, err := os.Stat(filepath.Join("rel", "room", "g")); err != nil {
		t.Fatalf("relative file store: %v (from %s)", err, wd)
	}
}

func TestOpenURLRefusesBadURLs(t *testing.T) {
	dir := t.TempDir()
	for _, u := range []string{"nosuch://x", "file://host/dir", "file://", "file:" + dir, "file:/." + dir, "file:." + dir, "file:///." + dir, "file://" + dir + "/../x", "file://" + dir + "?fsync=maybe", "file://" + dir + "?fsynk=false", "file://" + dir + "?fsync=true&fsync=false", "::bad"} {
		_, err := roomstore.OpenURL(t.Context(), u)
		var pe *fs.PathError
		if !errors.Is(err, fs.ErrInvalid) || !errors.As(err, &pe) || pe.Op != "openurl" {
			t.Fatalf("OpenURL(%q) = %v, want a PathError wrapping fs.ErrInvalid", u, err)
		}
	}
}

func TestOpenURLCreatesTheStoreDirectoryButNotItsParents(t *testing.T) {
	base := t.TempDir()
	typo := filepath.Join(base, "typo", "dir")
	_, err := roomstore.OpenURL(t.Context(), "file://"+typo)
	if !errors.Is(err, fs.ErrNotExist) || strings.Contains(err.Error(), "no such file") {
		t.Errorf("OpenURL of a store whose parent is missing: %v, want fs.ErrNotExist saying which directory is missing", err)
	}
	if _, err := os.Stat(filepath.Join(base, "typo")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenURL created the parent of a store directory (%v)", err)
	}
	e, err := roomstore.OpenURL(t.Context(), "file://"+filepath.Join(base, "room"))
	if err != nil {
		t.Fatalf("OpenURL of a new store in an existing directory: %v", err)
	}
	e.Shutdown(context.Background())
	if fi, err := os.Stat(filepath.Join(base, "room")); err != nil || !fi.IsDir() {
		t.Errorf("OpenURL did not create the store's own directory: %v", err)
	}
}

func TestBadOptionsAreInvalidPathErrors(t *testing.T) {
	bad := map[string]roomstore.Option{
		"WithLogger(nil)":           roomstore.WithLogger(nil),
		"WithIdleTimeout(0)":        roomstore.WithIdleTimeout(0),
		"WithMaxOpenHandles(0)":     roomstore.WithMaxOpenHandles(0),
		"WithURLExpiry(1ms)":        roomstore.WithURLExpiry(time.Millisecond),
		"WithEventBuffer(0)":        roomstore.WithEventBuffer(0),
		"WithSigningKey(short)":     roomstore.WithSigningKey([]byte("short")),
		"WithBaseURL(ftp)":          roomstore.WithBaseURL("ftp://x/dl"),
		"WithCommitAttempts(0)":     roomstore.WithCommitAttempts(0),
		"WithHandleTimeout(-1s)":    roomstore.WithHandleTimeout(-time.Second),
		"WithBaseURL(with query)":   roomstore.WithBaseURL("https://x/dl?a=b"),
		"WithURLExpiry(negative)":   roomstore.WithURLExpiry(-time.Minute),
		"WithIdleTimeout(negative)": roomstore.WithIdleTimeout(-time.Minute),
	}
	for name, o := range bad {
		var pe *fs.PathError
		if _, err := roomstore.New(backend_mem.New(), o); !errors.Is(err, fs.ErrInvalid) || !errors.As(err, &pe) {
			t.Errorf("New with %s = %v, want a PathError wrapping fs.ErrInvalid", name, err)
		}
		if _, err := roomstore.OpenURL(t.Context(), "mem://", o); !errors.Is(err, fs.ErrInvalid) || !errors.As(err, &pe) || pe.Path != "mem://" {
			t.Errorf("OpenURL with %s = %v, want a PathError on mem:// wrapping fs.ErrInvalid", name, err)
		}
	}
	var pe *fs.PathError
	if _, err := roomstore.New(nil); !errors.Is(err, fs.ErrInvalid) || !errors.As(err, &pe) {
		t.Errorf("New(nil) = %v, want a PathError wrapping fs.ErrInvalid", err)
	}
}

func TestShutdownClosesTheStoreOpenURLBuilt(t *testing.T) {
	dir := t.TempDir()
	e, err := roomstore.OpenURL(t.Context(), "file://"+dir+"?fsync=false")
	if err != nil {
		t.Fatal(err)
	}
	put(t, e, "f", "x")
	if err := e.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Stat(t.Context(), "f"); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("Stat after Shutdown = %v, want fs.ErrClosed", err)
	}
	// The liveness lock is released with the store: nothing but the
	// file and the empty reserved folders is left.
	live, err := os.ReadDir(filepath.Join(dir, ".roomstore", "live"))
	if err != nil || len(live) != 0 {
		t.Fatalf("liveness files after Shutdown: %v, %v", live, err)
	}
}
