package roomserver_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/roomstore/roomstore"
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

// panicky is an embedder's policy with a bug: it panics on one folder.
type panicky struct{}

func (panicky) Allow(_ context.Context, _ roomstore.Right, p string) (bool, error) {
	if strings.HasPrefix(p, "bug/") {
		panic("the policy's own bug")
	}
	return true, nil
}

func (panicky) Beneath(context.Context, roomstore.Right, string) (roomstore.Scope, error) {
	return roomstore.Scope{Within: []string{""}}, nil
}

// TestAPanickingPolicyFailsTheCallNotTheServer checks that a policy that
// panics fails the one call it decides (500) and withholds the events it
// decides, while the connection and the server go on.
func TestAPanickingPolicyFailsTheCallNotTheServer(t *testing.T) {
	f := newFixture(t, func(o *roomserver.Options) {
		hs := o.Verify
		o.Verify = func(ctx context.Context, room, token string) (roomserver.Identity, error) {
			id, err := hs(ctx, room, token)
			id.Policy = panicky{}
			return id, err
		}
	})
	r := f.dial("r1", "alice")
	if c := r.call("exists", map[string]any{"path": "bug/x"}); c.Type != wire.KindError || c.Code != roomserver.CodeInternal || c.Text != "internal error" {
		t.Fatalf("exists under the bug: %+v, want a plain 500", c)
	}
	if c := r.upload("u1", "bug/y", []byte("data"), true); c.Type != wire.KindError || c.Code != roomserver.CodeInternal {
		t.Fatalf("upload under the bug: %+v, want a 500", c)
	}
	e := f.engine("r1")
	if _, err := e.Upload(t.Context(), "bug/z", strings.NewReader("z"), roomstore.OpenOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Upload(t.Context(), "fine", strings.NewReader("f"), roomstore.OpenOptions{}); err != nil {
		t.Fatal(err)
	}
	// The event of bug/z is withheld; the next one arrives.
	m := r.until(func(m *wire.Message) bool {
		return m.Type == wire.TypeFileUpdated || m.Type == wire.TypeFileDeleted || m.Type == wire.TypeFileMoved
	})
	body, _, _ := m.Split()
	if !strings.Contains(string(body), `"fine"`) {
		t.Fatalf("first event %s, want the one of fine", body)
	}
	if c := r.call("exists", map[string]any{"path": "fine"}); c.Type != wire.KindJSON {
		t.Fatalf("a call after the panics: %+v", c)
	}
}
