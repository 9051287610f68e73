package roomstore_test

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"testing/iotest"

	"github.com/roomstore/roomstore"
)

// A room's store in memory: write a file through a handle, watch the
// event, read it back, list, delete.
func Example() {
	ctx := context.Background()
	store, err := roomstore.OpenURL(ctx, "mem://")
	if err != nil {
		panic(err)
	}
	defer store.Shutdown(ctx)

	seen := make(chan string)
	store.On(roomstore.EventFileUpdated, func(path, participant string) {
		seen <- fmt.Sprintf("file.updated %s by %s", path, participant)
	})

	alice := roomstore.WithParticipant(ctx, "alice")
	h, _ := store.Open(alice, "notes/hello.txt", roomstore.OpenOptions{Overwrite: true})
	store.Write(alice, h, []byte("Hello, "))
	store.Write(alice, h, []byte("room!"))
	if err := store.Close(alice, h); err != nil {
		panic(err)
	}
	fmt.Println(<-seen)

	f, _ := store.Download(ctx, "notes/hello.txt")
	fmt.Printf("%s (%s): %s\n", f.Path, f.MimeType, f.Data)

	entries, _ := store.List(ctx, "/")
	for _, e := range entries {
		fmt.Println("entry:", e.Name, "folder:", e.IsFolder)
	}

	store.Delete(alice, "notes/hello.txt")
	ok, _ := store.Exists(ctx, "notes")
	fmt.Println("notes exists after delete:", ok)
	// Output:
	// file.updated notes/hello.txt by alice
	// notes/hello.txt (text/plain; charset=utf-8): Hello, room!
	// entry: notes folder: true
	// notes exists after delete: false
}

// Moving a file publishes one file.moved event that names both paths.
func ExampleEngine_Move() {
	ctx := context.Background()
	store, err := roomstore.OpenURL(ctx, "mem://")
	if err != nil {
		panic(err)
	}
	defer store.Shutdown(ctx)

	moved := make(chan roomstore.Event, 1)
	store.Subscribe(func(ev roomstore.Event) { moved <- ev }, roomstore.EventFileMoved)

	if _, err := store.Upload(ctx, "drafts/plan.md", strings.NewReader("# Plan"), roomstore.OpenOptions{Overwrite: true}); err != nil {
		panic(err)
	}
	if err := store.Move(ctx, "drafts/plan.md", "final/plan.md", roomstore.MoveOptions{}); err != nil {
		panic(err)
	}
	ev := <-moved
	fmt.Println(ev.Type, ev.SourcePath, "->", ev.Path)

	err = store.Move(ctx, "final/plan.md", "final/plan.md", roomstore.MoveOptions{})
	fmt.Println("onto itself is invalid:", errors.Is(err, fs.ErrInvalid))
	ok, _ := store.Exists(ctx, "drafts")
	fmt.Println("drafts exists:", ok)
	// Output:
	// file.moved drafts/plan.md -> final/plan.md
	// onto itself is invalid: true
	// drafts exists: false
}

// Upload streams any io.Reader into a file in bounded memory; a reader
// that fails leaves the old content.
func ExampleEngine_Upload() {
	ctx := context.Background()
	store, err := roomstore.OpenURL(ctx, "mem://")
	if err != nil {
		panic(err)
	}
	defer store.Shutdown(ctx)

	entry, err := store.Upload(ctx, "logs/today.txt", strings.NewReader("line 1\n"), roomstore.OpenOptions{})
	if err != nil {
		panic(err)
	}
	fmt.Println(entry.Path, entry.Size, "bytes")

	broken := io.MultiReader(strings.NewReader("half a line"), iotest.ErrReader(errors.New("client went away")))
	_, err = store.Upload(ctx, "logs/today.txt", broken, roomstore.OpenOptions{})
	fmt.Println("failed:", err)

	f, _ := store.Download(ctx, "logs/today.txt")
	fmt.Printf("still %q\n", f.Data)
	// Output:
	// logs/today.txt 7 bytes
	// failed: upload logs/today.txt: reading the upload: client went away
	// still "line 1\n"
}

// FS gives the standard io/fs view of a room: fs.WalkDir, http.FileServerFS,
// template.ParseFS.
func ExampleEngine_FS() {
	ctx := context.Background()
	store, err := roomstore.OpenURL(ctx, "mem://")
	if err != nil {
		panic(err)
	}
	defer store.Shutdown(ctx)
	for _, p := range []string{"site/index.tmpl", "site/parts/footer.tmpl"} {
		store.Upload(ctx, p, strings.NewReader(`{{define "`+path.Base(p)+`"}}from `+p+`{{end}}`), roomstore.OpenOptions{Overwrite: true})
	}

	room := store.FS(ctx)
	fs.WalkDir(room, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fmt.Println(p, d.IsDir())
		return nil
	})
	t := template.Must(template.ParseFS(room, "site/*.tmpl", "site/parts/*.tmpl"))
	t.ExecuteTemplate(os.Stdout, "footer.tmpl", nil)
	fmt.Println()
	// Output:
	// . true
	// site true
	// site/index.tmpl false
	// site/parts true
	// site/parts/footer.tmpl false
	// from site/parts/footer.tmpl
}
