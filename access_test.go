package roomstore_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_mem"
)

// prefixes grants Read and Write on the paths that begin with one of its
// entries: a policy as simple as they come, exact in Beneath.
type prefixes []string

func (p prefixes) Allow(_ context.Context, _ roomstore.Right, path string) (bool, error) {
	for _, pre := range p {
		if strings.HasPrefix(path, pre) {
			return true, nil
		}
	}
	return false, nil
}

func (p prefixes) Beneath(_ context.Context, _ roomstore.Right, folder string) (roomstore.Scope, error) {
	dir := ""
	if folder != "" {
		dir = folder + "/"
	}
	var s roomstore.Scope
	for _, pre := range p {
		switch {
		case strings.HasPrefix(dir, pre):
			return roomstore.Scope{All: true}, nil
		case strings.HasPrefix(pre, dir):
			s.Within = append(s.Within, pre)
		}
	}
	return s, nil
}

// anywhere grants exactly the files it names, and says of every folder
// that anything beneath may be granted.
type anywhere map[string]bool

func (a anywhere) Allow(_ context.Context, _ roomstore.Right, p string) (bool, error) {
	return a[p], nil
}
func (a anywhere) Beneath(_ context.Context, _ roomstore.Right, folder string) (roomstore.Scope, error) {
	if folder == "" {
		return roomstore.Scope{Within: []string{""}}, nil
	}
	return roomstore.Scope{Within: []string{folder + "/"}}, nil
}

// listings counts the backend's listings.
type listings struct {
	backend.Backend
	n atomic.Int64
}

func (l *listings) List(ctx context.Context, dir string) iter.Seq2[backend.Info, error] {
	l.n.Add(1)
	return l.Backend.List(ctx, dir)
}

func engineWith(t *testing.T, b backend.Backend, files ...string) *roomstore.Engine {
	t.Helper()
	e, err := roomstore.New(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	for _, f := range files {
		if _, err := e.Upload(t.Context(), f, strings.NewReader(f), roomstore.OpenOptions{Overwrite: true}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// TestPoliciesNest checks that a context restricted twice grants only
// what both policies grant, and that WithPolicy(ctx, nil) widens nothing.
func TestPoliciesNest(t *testing.T) {
	e := engineWith(t, backend_mem.New(), "a/x", "b/y", "c/z")
	ctx := roomstore.WithPolicy(t.Context(), prefixes{"a/", "b/"})
	for _, inner := range []context.Context{
		roomstore.WithPolicy(ctx, prefixes{"b/", "c/"}),
		roomstore.WithPolicy(roomstore.WithPolicy(ctx, nil), prefixes{"b/", "c/"}),
	} {
		list, err := e.List(inner, "")
		if err != nil || len(list) != 1 || list[0].Path != "b" {
			t.Fatalf("the root through both: %+v, %v; want only b", list, err)
		}
		for _, p := range []string{"a/x", "c/z"} {
			if _, err := e.Download(inner, p); !errors.Is(err, fs.ErrPermission) {
				t.Errorf("Download %s through both: %v, want a refusal", p, err)
			}
		}
	}
	for _, wider := range []context.Context{roomstore.WithPolicy(ctx, nil), roomstore.WithPolicy(ctx, roomstore.FullAccess)} {
		if _, err := e.Download(wider, "c/z"); !errors.Is(err, fs.ErrPermission) {
			t.Errorf("a policy laid over a narrower one widened it: %v", err)
		}
	}
}

// TestTheFSViewNeverReadsAFileReplacedAfterItsCheck races a hidden file
// in and out where the participant may see a folder: opening the path
// through the restricted io/fs view must never yield its bytes.
func TestTheFSViewNeverReadsAFileReplacedAfterItsCheck(t *testing.T) {
	e := engineWith(t, backend_mem.New())
	ctx := roomstore.WithPolicy(t.Context(), prefixes{"team/"})
	stop, done := make(chan struct{}), make(chan struct{})
	var flips atomic.Int64
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = e.Upload(context.Background(), "team", strings.NewReader("hidden"), roomstore.OpenOptions{Overwrite: true})
			_ = e.Delete(context.Background(), "team")
			flips.Add(1)
		}
	}()
	fsys := e.FS(ctx)
	for flips.Load() < 2000 {
		f, err := fsys.Open("team")
		if err == nil {
			b := make([]byte, 16)
			n, _ := f.Read(b)
			f.Close()
			if n > 0 {
				close(stop)
				<-done
				t.Fatalf("read %q of a file the participant may not read", b[:n])
			}
		}
	}
	close(stop)
	<-done
}

// TestAPolicysListingsStayFew counts the backend listings a restricted
// List and Walk cost: one per folder a grant ends in, however many
// grants end there, and a walk that asks about each folder once.
func TestAPolicysListingsStayFew(t *testing.T) {
	var files []string
	for i := range 200 {
		files = append(files, fmt.Sprintf("d/other%03d.txt", i))
	}
	b := &listings{Backend: backend_mem.New()}
	e := engineWith(t, b, files...)
	var mine prefixes
	for i := range 500 {
		mine = append(mine, fmt.Sprintf("d/mine%03d.txt", i))
	}
	b.n.Store(0)
	// None of the 500 files is there yet: the root, which is always there,
	// lists empty.
	if list, err := e.List(roomstore.WithPolicy(t.Context(), mine), ""); err != nil || len(list) != 0 {
		t.Fatalf("List of the root with nothing readable: %+v, %v", list, err)
	}
	if n := b.n.Load(); n > 2 {
		t.Errorf("List of the root under 500 grants in one folder cost %d listings, want at most 2", n)
	}
	for _, depth := range []int{10, 50} {
		b := &listings{Backend: backend_mem.New()}
		p := strings.Repeat("d/", depth) + "f.txt"
		e := engineWith(t, b, p, "other/x")
		b.n.Store(0)
		var seen []string
		for en, err := range e.Walk(roomstore.WithPolicy(t.Context(), anywhere{p: true}), "") {
			if err != nil {
				t.Fatal(err)
			}
			seen = append(seen, en.Path)
		}
		if len(seen) != depth+1 || seen[depth] != p {
			t.Fatalf("depth %d: Walk yields %d entries ending %q", depth, len(seen), seen[len(seen)-1])
		}
		if n := b.n.Load(); n > int64(3*depth+6) {
			t.Errorf("depth %d: a restricted Walk cost %d listings, want at most %d", depth, n, 3*depth+6)
		}
	}
	b.n.Store(0)
	if err := e.RemoveAll(roomstore.WithPolicy(t.Context(), roomstore.NoAccess), "d"); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("RemoveAll with no access: %v", err)
	}
	if _, err := e.List(roomstore.WithPolicy(t.Context(), roomstore.NoAccess), "d"); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("List with no access: %v", err)
	}
	if n := b.n.Load(); n != 0 {
		t.Errorf("refusals that nothing could pass cost %d listings, want none", n)
	}
}
