package roomclient_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// exampleRoom serves rooms on mem:// stores from a loopback room server,
// and returns the URL of room, a token for participant name, and the
// function that stops the server.
func exampleRoom(ctx context.Context, name, room string) (url, token string, stop func()) {
	secret := []byte("an example secret of 32 bytes or more")
	srv, err := roomserver.New(roomserver.Options{
		Resolve: func(ctx context.Context, room string, _ bool) (*roomstore.Engine, error) {
			return roomstore.OpenURL(ctx, "mem://")
		},
		Verify: roomserver.HS256(secret),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	ts := httptest.NewServer(srv)
	token, err = roomserver.NewToken(secret, name, room, time.Hour)
	if err != nil {
		panic(err)
	}
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/rooms/" + room, token, func() {
		srv.Shutdown(ctx)
		ts.Close()
	}
}

// A participant joins a room served by roomserver, watches its files and
// writes one.
func Example() {
	ctx := context.Background()
	url, token, stop := exampleRoom(ctx, "alice", "r1")
	defer stop()
	c, err := roomclient.Dial(ctx, url, roomclient.Options{Token: token})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	updated := make(chan string, 1)
	c.On(roomstore.EventFileUpdated, func(path, participant string) {
		updated <- fmt.Sprintf("%s by me: %v", path, participant == c.ParticipantID())
	})
	if _, err := c.Upload(ctx, "notes/today.md", strings.NewReader("- ship it\n"), roomstore.OpenOptions{Exclusive: true}); err != nil {
		panic(err)
	}
	fmt.Println("updated:", <-updated)

	f, err := c.Download(ctx, "notes/today.md")
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s: %q\n", f.Path, f.Data)

	_, err = c.Upload(ctx, "notes/today.md", strings.NewReader("again"), roomstore.OpenOptions{Exclusive: true})
	fmt.Println(errors.Is(err, fs.ErrExist), err)
	// Output:
	// updated: notes/today.md by me: true
	// notes/today.md: "- ship it\n"
	// true upload notes/today.md: file already exists
}

// The engine's own Example (package roomstore), remotely: the same calls
// in the same order, through a room server. A handle's bytes are
// invisible until Close, as on the engine.
func Example_engine() {
	ctx := context.Background()
	url, token, stop := exampleRoom(ctx, "alice", "r1")
	defer stop()
	store, err := roomclient.Dial(ctx, url, roomclient.Options{Token: token})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	seen := make(chan string)
	store.On(roomstore.EventFileUpdated, func(path, participant string) {
		who := participant
		if participant == store.ParticipantID() {
			who = "alice"
		}
		seen <- fmt.Sprintf("file.updated %s by %s", path, who)
	})

	h, _ := store.Open(ctx, "notes/hello.txt", roomstore.OpenOptions{Overwrite: true})
	h.Write([]byte("Hello, "))
	h.Write([]byte("room!"))
	if err := h.Close(); err != nil {
		panic(err)
	}
	fmt.Println(<-seen)

	f, _ := store.Download(ctx, "notes/hello.txt")
	fmt.Printf("%s (%s): %s\n", f.Path, f.MimeType, f.Data)

	entries, _ := store.List(ctx, "/")
	for _, e := range entries {
		fmt.Println("entry:", e.Name, "folder:", e.IsFolder)
	}

	store.Delete(ctx, "notes/hello.txt")
	ok, _ := store.Exists(ctx, "notes")
	fmt.Println("notes exists after delete:", ok)
	// Output:
	// file.updated notes/hello.txt by alice
	// notes/hello.txt (text/plain; charset=utf-8): Hello, room!
	// entry: notes folder: true
	// notes exists after delete: false
}
