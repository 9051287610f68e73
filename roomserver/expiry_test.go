package roomserver_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/roomstore/roomstore/internal/wire"
	"github.com/roomstore/roomstore/roomserver"
)

// TestAnExpiringIdentityClosesItsConnectionAndAbortsItsUpload gives a
// participant an identity that ends shortly after it connects: at that
// moment the connection closes with 1008 "token expired", the upload it
// has under way is aborted and leaves nothing, and a connection whose
// identity has already ended is refused before the upgrade.
func TestAnExpiringIdentityClosesItsConnectionAndAbortsItsUpload(t *testing.T) {
	const life = time.Second
	var (
		mu   sync.Mutex
		ends = map[string]time.Time{} // participant name -> end of its identity
	)
	f := newFixture(t, func(o *roomserver.Options) {
		hs := o.Verify
		o.Verify = func(ctx context.Context, room, token string) (roomserver.Identity, error) {
			id, err := hs(ctx, room, token)
			mu.Lock()
			defer mu.Unlock()
			switch id.Name {
			case "brief":
				id.Expires = time.Now().Add(life)
			case "late":
				id.Expires = time.Now().Add(-time.Millisecond)
			}
			ends[id.Name] = id.Expires
			return id, err
		}
	})
	r := f.dial("r1", "brief")
	mu.Lock()
	end := ends["brief"]
	mu.Unlock()
	if c := r.open("upload", "u1"); c.Type != wire.KindControl {
		t.Fatalf("open: %+v", c)
	}
	r.chunk("u1", wire.Binary(map[string]any{"kind": "start", "path": "cut.txt", "overwrite": true}), nil)
	if c, _ := r.streamed("u1"); c.Headers["kind"] != "pull" {
		t.Fatalf("upload start answered %+v", c)
	}
	if c := r.chunk("u1", wire.Binary(map[string]any{"kind": "data"}), []byte("half of it")); c.Type != wire.KindEmpty {
		t.Fatalf("data chunk answered %+v", c)
	}
	// Read until the server closes the connection.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var err error
	for err == nil {
		_, err = r.read(ctx)
	}
	closed := time.Now()
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "token expired" {
		t.Fatalf("the connection ended with %v, want 1008 token expired", err)
	}
	if closed.Before(end) {
		t.Fatalf("closed at %v, before the identity's end %v", closed, end)
	}
	e := f.engine("r1")
	if ok, err := e.Exists(t.Context(), "cut.txt"); err != nil || ok {
		t.Fatalf("the cut upload left cut.txt: %v, %v", ok, err)
	}
	// An identity that has ended already is refused at the door.
	_, resp, err := f.tryDial("r1", "?token="+token(t, "late", "r1", time.Hour), nil, nil)
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("an identity that ended before the upgrade: %v (%v), want 403", err, resp)
	}
}
