package roomclient_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// readVersion returns the bytes of version id of p through c.
func readVersion(t *testing.T, c *roomclient.Client, p, id string) (string, roomstore.Entry) {
	t.Helper()
	r, err := c.OpenVersion(deadline(t), p, id)
	must(t, err)
	defer r.Close()
	b, err := io.ReadAll(r)
	must(t, err)
	return string(b), r.Entry()
}

// save overwrites p with data through c and returns the ETag it has.
func save(t *testing.T, c *roomclient.Client, p, data string) string {
	t.Helper()
	_, err := c.Upload(deadline(t), p, strings.NewReader(data), roomstore.OpenOptions{Overwrite: true})
	must(t, err)
	return etag(t, c, p)
}

// The history round-trips through the room: past versions listed newest
// first with who replaced them and why, read, restored (one
// file.updated for the restorer and for another participant, nothing
// more), deleted files listed and restored all at once.
func TestHistoryRoundTrips(t *testing.T) {
	e := newEnv(t, stores[0].url(t))
	ctx := deadline(t)
	ann := e.dial(t, "ann", "r", roomclient.Options{})
	bob := e.dial(t, "bob", "r", roomclient.Options{})
	id := ann.ParticipantID()
	// Recorded from the start: a call's answer may come before its event.
	mine, theirs := record(t, ann), record(t, bob)
	tags := []string{save(t, ann, "f.txt", "one"), save(t, ann, "f.txt", "second"), save(t, ann, "f.txt", "third!")}
	for range tags {
		mine.expect(t, roomstore.EventFileUpdated, "f.txt", "", id)
		theirs.expect(t, roomstore.EventFileUpdated, "f.txt", "", id)
	}

	vs, err := bob.Versions(ctx, "f.txt")
	must(t, err)
	if len(vs) != 2 {
		t.Fatalf("Versions after three saves: %+v, want two", vs)
	}
	for i, want := range []struct {
		etag string
		size int64
	}{{tags[1], 6}, {tags[0], 3}} {
		v := vs[i]
		if v.Path != "f.txt" || v.ID == "" || v.ETag != want.etag || v.Size != want.size || v.Reason != "overwritten" ||
			v.ParticipantID != id || v.ModTime.IsZero() || v.Replaced.Before(v.ModTime) || time.Since(v.Replaced) > time.Minute {
			t.Errorf("version %d: %+v, want ETag %q, %d bytes, overwritten by %s", i, v, want.etag, want.size, id)
		}
	}
	if got, ent := readVersion(t, bob, "f.txt", vs[1].ID); got != "one" || ent.ETag != tags[0] || ent.Size != 3 || ent.Path != "f.txt" {
		t.Fatalf("OpenVersion of the first: %q %+v", got, ent)
	}

	ent, err := ann.Restore(ctx, "/f.txt", vs[1].ID)
	must(t, err)
	if ent.Path != "f.txt" || ent.Name != "f.txt" || ent.Size != 3 || ent.ETag == "" || ent.ETag == tags[0] || ent.ETag != etag(t, bob, "f.txt") {
		t.Fatalf("Restore entry %+v", ent)
	}
	if got, _ := read(t, bob, "f.txt"); got != "one" {
		t.Fatalf("after Restore f.txt holds %q", got)
	}
	mine.expect(t, roomstore.EventFileUpdated, "f.txt", "", id)
	theirs.expect(t, roomstore.EventFileUpdated, "f.txt", "", id)
	// The restore kept what it replaced: it can be undone.
	vs, err = ann.Versions(ctx, "f.txt")
	must(t, err)
	if len(vs) != 3 || vs[0].ETag != tags[2] {
		t.Fatalf("Versions after a restore: %+v, want three, the newest the one it replaced", vs)
	}

	// Refusals of a version that is not there, or no version at all.
	_, err = ann.Restore(ctx, "f.txt", "no-such-version")
	wantErr(t, "Restore of an unknown version", err, fs.ErrNotExist)
	_, err = ann.OpenVersion(ctx, "f.txt", "no-such-version")
	wantErr(t, "OpenVersion of an unknown version", err, fs.ErrNotExist)
	_, err = ann.OpenVersion(ctx, "f.txt", "../x")
	wantErr(t, "OpenVersion of a bad id", err, fs.ErrInvalid)
	_, err = ann.OpenVersion(ctx, "f.txt", "")
	wantErr(t, "OpenVersion of no id", err, fs.ErrInvalid)
	_, err = ann.Restore(ctx, "f.txt", "../x")
	wantErr(t, "Restore of a bad id", err, fs.ErrInvalid)
	_, err = ann.Versions(ctx, "never.txt")
	wantErr(t, "Versions of a path that never held a file", err, fs.ErrNotExist)
	_, err = ann.Versions(ctx, "../up")
	wantErr(t, "Versions of an invalid path", err, fs.ErrInvalid)

	// Deleted files, listed and restored at once.
	save(t, ann, "g/h.txt", "h")
	save(t, ann, "g/i/j.txt", "j")
	for _, r := range []*recorder{mine, theirs} {
		r.expect(t, roomstore.EventFileUpdated, "g/h.txt", "", id)
		r.expect(t, roomstore.EventFileUpdated, "g/i/j.txt", "", id)
	}
	must(t, ann.RemoveAll(ctx, "g"))
	must(t, ann.Delete(ctx, "f.txt"))
	gone, err := bob.Deleted(ctx, "")
	must(t, err)
	var got []string
	for _, v := range gone {
		got = append(got, fmt.Sprintf("%s:%s:%d", v.Path, v.Reason, v.Size))
		if v.ParticipantID != id || v.ID == "" {
			t.Errorf("deleted %+v: want its id, deleted by %s", v, id)
		}
	}
	if fmt.Sprint(got) != "[f.txt:deleted:3 g/h.txt:deleted:1 g/i/j.txt:deleted:1]" {
		t.Fatalf("Deleted of the room: %v", got)
	}
	if gone, err := bob.Deleted(ctx, "g/i"); err != nil || len(gone) != 1 || gone[0].Path != "g/i/j.txt" {
		t.Fatalf("Deleted of g/i: %+v %v", gone, err)
	}
	vs, err = bob.Versions(ctx, "f.txt")
	must(t, err)
	if len(vs) != 4 || vs[0].Reason != "deleted" {
		t.Fatalf("Versions of a deleted file: %+v", vs)
	}
	for _, p := range []string{"g/h.txt", "g/i/j.txt", "f.txt"} {
		mine.expect(t, roomstore.EventFileDeleted, p, "", id)
		theirs.expect(t, roomstore.EventFileDeleted, p, "", id)
	}

	ents, err := ann.RestoreAll(ctx, "/g/")
	must(t, err)
	if got := describe(ents); got != "g/h.txt(false,1) g/i/j.txt(false,1) " || ents[0].ETag == "" || ents[1].Name != "j.txt" {
		t.Fatalf("RestoreAll of g: %s %+v", got, ents)
	}
	for _, p := range []string{"g/h.txt", "g/i/j.txt"} {
		mine.expect(t, roomstore.EventFileUpdated, p, "", id)
		theirs.expect(t, roomstore.EventFileUpdated, p, "", id)
	}
	if got, _ := read(t, bob, "g/i/j.txt"); got != "j" {
		t.Fatalf("a file RestoreAll restored holds %q", got)
	}
	if gone, err := bob.Deleted(ctx, ""); err != nil || len(gone) != 1 || gone[0].Path != "f.txt" {
		t.Fatalf("Deleted after RestoreAll of g: %+v %v", gone, err)
	}
	ents, err = ann.RestoreAll(ctx, "g")
	if err != nil || len(ents) != 0 {
		t.Fatalf("RestoreAll with nothing to restore: %+v %v", ents, err)
	}
	// Exactly those events: a marker comes after anything else.
	save(t, bob, "marker", "")
	mine.expect(t, roomstore.EventFileUpdated, "marker", "", bob.ParticipantID())
	theirs.expect(t, roomstore.EventFileUpdated, "marker", "", bob.ParticipantID())
	mine.none(t)
	theirs.none(t)
}

// The history obeys the participant's grants as every call does: a
// read-only participant reads past versions but restores none; one that
// may not read a path learns nothing of it, neither its versions nor
// whether it has any, and Deleted shows it only what it may read.
func TestHistoryRefusedRights(t *testing.T) {
	e := newEnv(t, stores[0].url(t))
	ctx := deadline(t)
	admin := e.dial(t, "admin", "r", roomclient.Options{})
	// Recorded from the start, the setup's events taken first: a call's
	// answer may come before its event.
	seen := record(t, admin)
	id := admin.ParticipantID()
	for _, f := range [][2]string{{"a.txt", "old"}, {"a.txt", "new"}, {"team/t.txt", "t"}, {"secret/s.txt", "s1"}, {"secret/s.txt", "s2"}, {"secret/gone.txt", "g"}} {
		save(t, admin, f[0], f[1])
		seen.expect(t, roomstore.EventFileUpdated, f[0], "", id)
	}
	must(t, admin.Delete(ctx, "secret/gone.txt"))
	must(t, admin.Delete(ctx, "team/t.txt"))
	seen.expect(t, roomstore.EventFileDeleted, "secret/gone.txt", "", id)
	seen.expect(t, roomstore.EventFileDeleted, "team/t.txt", "", id)
	vs, err := admin.Versions(ctx, "a.txt")
	must(t, err)

	viewer := e.dialAs(t, "viewer", "r", grantOf(":ro"))
	if got, err := viewer.Versions(ctx, "a.txt"); err != nil || len(got) != 1 || got[0].ID != vs[0].ID {
		t.Fatalf("a read-only participant's Versions: %+v %v", got, err)
	}
	if got, _ := readVersion(t, viewer, "a.txt", vs[0].ID); got != "old" {
		t.Fatalf("a read-only participant reads %q", got)
	}
	_, err = viewer.Restore(ctx, "a.txt", vs[0].ID)
	forbidden(t, "a read-only participant's Restore", err, "restore a.txt: no write access")
	_, err = viewer.RestoreAll(ctx, "team")
	forbidden(t, "a read-only participant's RestoreAll", err, "restore_all team/t.txt: no write access")

	member := e.dialAs(t, "member", "r", grantOf("team/"))
	for _, p := range []string{"secret/s.txt", "secret/gone.txt", "secret/never.txt"} {
		_, err := member.Versions(ctx, p)
		forbidden(t, "Versions outside the grant", err, "versions "+p+": no read access")
		_, err = member.OpenVersion(ctx, p, vs[0].ID)
		forbidden(t, "OpenVersion outside the grant", err, "download "+p+": no read access")
		_, err = member.Restore(ctx, p, vs[0].ID)
		forbidden(t, "Restore outside the grant", err, "restore "+p+": no read access")
	}
	gone, err := member.Deleted(ctx, "")
	must(t, err)
	if len(gone) != 1 || gone[0].Path != "team/t.txt" {
		t.Fatalf("Deleted for a participant of team/: %+v", gone)
	}
	ents, err := member.RestoreAll(ctx, "")
	must(t, err)
	if describe(ents) != "team/t.txt(false,1) " {
		t.Fatalf("RestoreAll for a participant of team/: %s", describe(ents))
	}
	seen.expect(t, roomstore.EventFileUpdated, "team/t.txt", "", member.ParticipantID())

	// Nothing else changed: a.txt, and secret/gone.txt still gone.
	if got, _ := read(t, admin, "a.txt"); got != "new" {
		t.Fatalf("a.txt holds %q after refused restores", got)
	}
	if ok, _ := admin.Exists(ctx, "secret/gone.txt"); ok {
		t.Fatal("a file the participant may not read was restored")
	}
	save(t, admin, "marker", "")
	seen.expect(t, roomstore.EventFileUpdated, "marker", "", admin.ParticipantID())
	seen.none(t)
}

// Every history call is a call: each costs the identity's rate; those
// that build a list are bounded as list is (a longer reply is refused
// with 413, and RestoreAll then restores nothing); OpenVersion is a
// stream, counted as one.
func TestHistoryCallsSpendTheBudgets(t *testing.T) {
	e := newEnvWith(t, stores[0].url(t), func(o *roomserver.Options) {
		o.MaxListEntries = 2
		o.MaxStreams = 1
		o.CallRate, o.CallBurst = 50, 50
	})
	ctx := deadline(t)
	c := e.dial(t, "ann", "r", roomclient.Options{})
	for _, p := range []string{"d/a", "d/b", "d/c", "e/a"} {
		save(t, c, p, p)
	}
	save(t, c, "d/a", "again")
	save(t, c, "d/a", "and again")
	save(t, c, "d/a", "once more")
	must(t, c.RemoveAll(ctx, "d"))
	must(t, c.Delete(ctx, "e/a"))

	_, err := c.Versions(ctx, "d/a")
	wantErr(t, "Versions past MaxListEntries", err, roomstore.ErrTooManyEntries)
	_, err = c.Deleted(ctx, "")
	wantErr(t, "Deleted past MaxListEntries", err, roomstore.ErrTooManyEntries)
	_, err = c.RestoreAll(ctx, "d")
	wantErr(t, "RestoreAll past MaxListEntries", err, roomstore.ErrTooManyEntries)
	var re *roomclient.Error
	if !errors.As(err, &re) || re.Code != roomserver.CodeTooLarge || re.Text != "restore_all d: more than 2 entries" {
		t.Fatalf("RestoreAll past MaxListEntries: %v", err)
	}
	for _, p := range []string{"d/a", "d/b", "d/c"} {
		if ok, _ := c.Exists(ctx, p); ok {
			t.Fatalf("a refused RestoreAll restored %s", p)
		}
	}
	if n := e.srv.Stats().Refused[roomserver.BudgetListEntries]; n != 3 {
		t.Errorf("%d list_entries refusals counted, want 3", n)
	}
	if ents, err := c.RestoreAll(ctx, "e"); err != nil || len(ents) != 1 {
		t.Fatalf("RestoreAll within the bound: %+v %v", ents, err)
	}

	save(t, c, "v.txt", "1")
	save(t, c, "v.txt", "2")
	vs, err := c.Versions(ctx, "v.txt")
	must(t, err)
	r, err := c.OpenVersion(ctx, "v.txt", vs[0].ID)
	must(t, err)
	_, err = c.OpenVersion(ctx, "v.txt", vs[0].ID)
	wantErr(t, "a second OpenVersion past MaxStreams", err, roomstore.ErrTooManyHandles)
	must(t, r.Close())
	if got, _ := readVersion(t, c, "v.txt", vs[0].ID); got != "1" {
		t.Fatalf("OpenVersion once the stream was given back: %q", got)
	}

	var limited error
	for i := 0; i < 1_000 && limited == nil; i++ {
		if _, err := c.Versions(ctx, "v.txt"); err != nil {
			limited = err
		}
	}
	wantErr(t, "Versions past the call rate", limited, roomclient.ErrRateLimited)
	if e.srv.Stats().Refused[roomserver.BudgetCallRate] == 0 {
		t.Error("no call_rate refusal counted")
	}
}

// A restore writes through a handle, as an upload does: it counts
// against the identity's share of the room's handles, and is refused
// with ErrTooManyHandles past it, restoring nothing.
func TestARestoreTakesTheIdentitysShareOfTheRoomsHandles(t *testing.T) {
	e := newEnvWith(t, stores[0].url(t), func(o *roomserver.Options) {
		o.Resolve = func(ctx context.Context, room string, _ bool) (*roomstore.Engine, error) {
			return roomstore.OpenURL(ctx, "mem://", roomstore.WithMaxOpenHandles(2)) // a share of one
		}
	})
	ctx := deadline(t)
	c := e.dial(t, "ann", "r", roomclient.Options{})
	save(t, c, "a.txt", "old")
	save(t, c, "a.txt", "new")
	save(t, c, "b.txt", "b")
	must(t, c.Delete(ctx, "b.txt"))
	vs, err := c.Versions(ctx, "a.txt")
	must(t, err)
	h, err := c.Open(ctx, "c.txt", roomstore.OpenOptions{Overwrite: true})
	must(t, err)
	_, err = c.Restore(ctx, "a.txt", vs[0].ID)
	wantErr(t, "Restore while the identity's handle is open", err, roomstore.ErrTooManyHandles)
	_, err = c.RestoreAll(ctx, "")
	wantErr(t, "RestoreAll while the identity's handle is open", err, roomstore.ErrTooManyHandles)
	if got, _ := read(t, c, "a.txt"); got != "new" {
		t.Fatalf("a refused Restore left %q", got)
	}
	if ok, _ := c.Exists(ctx, "b.txt"); ok {
		t.Fatal("a refused RestoreAll restored b.txt")
	}
	must(t, h.Abort())
	_, err = c.Restore(ctx, "a.txt", vs[0].ID)
	must(t, err)
	ents, err := c.RestoreAll(ctx, "")
	if err != nil || describe(ents) != "b.txt(false,1) " {
		t.Fatalf("RestoreAll once the handle was given back: %s %v", describe(ents), err)
	}
	if n := e.srv.Stats().Refused[roomserver.BudgetRoomHandles]; n != 2 {
		t.Errorf("%d room_handles refusals counted, want 2", n)
	}
}

// A server without the history extension (a MeshAgent server, an older
// roomstore server) makes every history call fail with
// errors.ErrUnsupported, having sent nothing.
func TestWithoutExtensionsTheHistoryIsUnsupported(t *testing.T) {
	e := newPlainEnv(t, stores[0].url(t))
	ctx := deadline(t)
	c := e.dial(t, "ann", "r", roomclient.Options{})
	save2 := func(data string) {
		_, err := c.Upload(ctx, "a.txt", strings.NewReader(data), roomstore.OpenOptions{Overwrite: true})
		must(t, err)
	}
	save2("v1")
	save2("v2")
	for what, call := range map[string]func(context.Context) error{
		"Versions":    func(ctx context.Context) error { _, err := c.Versions(ctx, "a.txt"); return err },
		"OpenVersion": func(ctx context.Context) error { _, err := c.OpenVersion(ctx, "a.txt", "v"); return err },
		"Restore":     func(ctx context.Context) error { _, err := c.Restore(ctx, "a.txt", "v"); return err },
		"Deleted":     func(ctx context.Context) error { _, err := c.Deleted(ctx, ""); return err },
		"RestoreAll":  func(ctx context.Context) error { _, err := c.RestoreAll(ctx, ""); return err },
	} {
		err := call(ctx)
		wantErr(t, what, err, errors.ErrUnsupported)
		if !strings.Contains(err.Error(), "history extension") {
			t.Errorf("%s: %v, want it to name the extension it needs", what, err)
		}
	}
	if got, _ := read(t, c, "a.txt"); got != "v2" {
		t.Fatalf("a.txt holds %q", got)
	}
}
