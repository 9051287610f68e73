package roomserver_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// denylist holds the names of revoked participants.
type denylist struct {
	mu      sync.Mutex
	revoked map[string]bool
}

func (d *denylist) has(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.revoked[name]
}

// homeFolders is an embedder's own rule: every participant reads the
// whole room and writes only below home/<its name>/, until revoked.
type homeFolders struct {
	name string
	deny *denylist
}

func (p homeFolders) Allow(_ context.Context, r roomstore.Right, path string) (bool, error) {
	if p.deny.has(p.name) {
		return false, nil
	}
	return r == roomstore.Read || strings.HasPrefix(path, "home/"+p.name+"/"), nil
}

func (p homeFolders) Beneath(_ context.Context, r roomstore.Right, folder string) (roomstore.Scope, error) {
	home := "home/" + p.name
	switch {
	case p.deny.has(p.name):
		return roomstore.Scope{}, nil
	case r == roomstore.Read, folder == home, strings.HasPrefix(folder, home+"/"):
		return roomstore.Scope{All: true}, nil
	}
	return roomstore.Scope{Within: []string{home + "/"}}, nil
}

// An embedding server keeps HS256's checks of the token and puts its own
// rules in their place: a policy per participant, and a denylist that
// refuses a revoked participant both at the door and on every call of a
// connection it already has.
func Example_policy() {
	ctx := context.Background()
	secret := []byte("an example secret of 32 bytes or more")
	deny := &denylist{revoked: map[string]bool{}}
	hs256 := roomserver.HS256(secret)
	srv, err := roomserver.New(roomserver.Options{
		Resolve: func(ctx context.Context, room string, _ bool) (*roomstore.Engine, error) {
			return roomstore.OpenURL(ctx, "mem://")
		},
		Verify: func(ctx context.Context, room, token string) (roomserver.Identity, error) {
			id, err := hs256(ctx, room, token)
			if err != nil {
				return id, err
			}
			if deny.has(id.Name) {
				return roomserver.Identity{}, errors.New("revoked")
			}
			id.Policy = homeFolders{name: id.Name, deny: deny}
			return id, nil
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	defer srv.Shutdown(ctx)
	room := "ws" + strings.TrimPrefix(ts.URL, "http") + "/rooms/r1"
	join := func(name string) (*roomclient.Client, error) {
		token, err := roomserver.NewToken(secret, name, "r1", time.Hour)
		if err != nil {
			panic(err)
		}
		return roomclient.Dial(ctx, room, roomclient.Options{Token: token, Logger: slog.New(slog.DiscardHandler)})
	}

	ann, err := join("ann")
	if err != nil {
		panic(err)
	}
	defer ann.Close()
	_, err = ann.Upload(ctx, "home/ann/plan.md", strings.NewReader("# plan"), roomstore.OpenOptions{Exclusive: true})
	fmt.Println("ann writes her home:", err)
	_, err = ann.Upload(ctx, "home/bob/plan.md", strings.NewReader("# mine now"), roomstore.OpenOptions{Exclusive: true})
	fmt.Println("ann writes bob's home:", err)

	deny.mu.Lock()
	deny.revoked["ann"] = true
	deny.mu.Unlock()
	_, err = ann.Stat(ctx, "home/ann/plan.md")
	fmt.Println("revoked, her open connection:", err)
	_, err = join("ann")
	fmt.Println("revoked, a new connection:", errors.Is(err, roomclient.ErrForbidden))
	// Output:
	// ann writes her home: <nil>
	// ann writes bob's home: upload home/bob/plan.md: no write access
	// revoked, her open connection: stat home/ann/plan.md: no read access
	// revoked, a new connection: true
}
