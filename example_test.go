package roomstore_test

import (
	"context"
	"fmt"

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
