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

// A participant joins a room served by roomserver, watches its files and
// writes one.
func Example() {
	ctx := context.Background()
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
	defer ts.Close()
	defer srv.Shutdown(ctx)

	token, err := roomserver.NewToken(secret, "alice", "r1", time.Hour)
	if err != nil {
		panic(err)
	}
	c, err := roomclient.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/rooms/r1", roomclient.Options{Token: token})
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
