package roomstore_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/roomstore/roomstore"
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

	wd, _ := os.Getwd()
	t.Chdir(t.TempDir())
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
	for _, u := range []string{"nosuch://x", "file://host/dir", "file://", "file:///tmp/x?fsync=maybe", "::bad"} {
		if _, err := roomstore.OpenURL(t.Context(), u); !errors.Is(err, fs.ErrInvalid) {
			t.Fatalf("OpenURL(%q) = %v, want fs.ErrInvalid", u, err)
		}
	}
}
