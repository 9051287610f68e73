package roomserver_test

import (
	"context"
	"testing"

	"github.com/roomstore/roomstore/internal/wire"
	"github.com/roomstore/roomstore/roomserver"
)

// A precondition is honoured from a client that did not ask for
// roomstore's extensions too: MeshAgent clients never send one, and a
// client that does meant its change to be conditional, which ignoring
// the precondition would turn into an overwrite. The history's tools
// stay unknown to such a client.
func TestAPreconditionFromAClientThatDidNotAskIsHonoured(t *testing.T) {
	f := newFixture(t, nil)
	p := f.dial("r1", "alice")
	if c := p.upload("u1", "a.txt", []byte("mine"), true); c.Type != wire.KindControl {
		t.Fatalf("upload: %+v", c)
	}
	eng := f.engine("r1")
	ctx := context.Background()
	before, err := eng.Stat(ctx, "a.txt")
	if err != nil {
		t.Fatal(err)
	}
	stale := "not-" + before.ETag
	wantError(t, p.call("delete", map[string]any{"path": "a.txt", "if_match": stale}), roomserver.CodePrecondition)
	wantError(t, p.call("delete", map[string]any{"path": "a.txt", "recursive": true, "if_match": stale}), roomserver.CodePrecondition)
	wantError(t, p.call("move", map[string]any{"source_path": "a.txt", "destination_path": "b.txt", "if_match": stale}), roomserver.CodePrecondition)
	c, _ := p.startUpload("u2", map[string]any{"path": "a.txt", "overwrite": true, "if_match": stale})
	wantError(t, c, roomserver.CodePrecondition)
	p.chunk("u2", wire.Control("close"), nil)
	after, err := eng.Stat(ctx, "a.txt")
	if err != nil || after.ETag != before.ETag {
		t.Fatalf("after refused changes a.txt is %+v (%v), want it unchanged", after, err)
	}
	wantError(t, p.call("versions", map[string]any{"path": "a.txt"}), roomserver.CodeNotFound)
	// One that holds lets the change happen.
	if c := p.call("delete", map[string]any{"path": "a.txt", "if_match": before.ETag}); c.Type == wire.KindError {
		t.Fatalf("a delete whose if_match holds: %+v", c)
	}
	if _, err := eng.Stat(ctx, "a.txt"); err == nil {
		t.Fatal("a delete whose if_match holds left the file")
	}
	vs, err := eng.Versions(ctx, "a.txt")
	if err != nil || len(vs) != 1 || vs[0].Reason != "deleted" {
		t.Fatalf("the deleted file's versions: %+v %v", vs, err)
	}
}
