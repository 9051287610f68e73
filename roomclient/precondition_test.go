package roomclient_test

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// etag is the ETag Stat gives for p, failing t without one.
func etag(t *testing.T, c *roomclient.Client, p string) string {
	t.Helper()
	st, err := c.Stat(deadline(t), p)
	must(t, err)
	if st.ETag == "" {
		t.Fatalf("Stat(%q) gave no ETag: %+v", p, st)
	}
	return st.ETag
}

// refusedPrecondition checks that err is the server's 412, matching
// roomstore.ErrPrecondition.
func refusedPrecondition(t *testing.T, what string, err error) {
	t.Helper()
	wantErr(t, what, err, roomstore.ErrPrecondition)
	var re *roomclient.Error
	if !errors.As(err, &re) || re.Code != roomserver.CodePrecondition {
		t.Fatalf("%s: %v, want the server's 412", what, err)
	}
}

// Every call that changes a file takes its precondition to the server:
// one that holds lets the change happen, one that fails is a 412 that
// matches roomstore.ErrPrecondition and changes nothing, no event
// included.
func TestPreconditionsHoldOrChangeNothing(t *testing.T) {
	e := newEnv(t, stores[0].url(t))
	ctx := deadline(t)
	c := e.dial(t, "ann", "r", roomclient.Options{})
	other := e.dial(t, "bob", "r", roomclient.Options{})
	seen := record(t, other)
	id := c.ParticipantID()
	put := func(p, data string, o roomstore.OpenOptions) error {
		_, err := c.Upload(ctx, p, strings.NewReader(data), o)
		return err
	}
	must(t, put("a.txt", "v1", roomstore.OpenOptions{Exclusive: true}))
	seen.expect(t, roomstore.EventFileUpdated, "a.txt", "", id)
	e1 := etag(t, c, "a.txt")
	rd, err := c.OpenReader(ctx, "a.txt", 0, -1)
	must(t, err)
	if got := rd.Entry().ETag; got != e1 {
		t.Errorf("a read names ETag %q, Stat %q", got, e1)
	}
	must(t, rd.Close())

	// Upload: IfMatch holds, then names a version that is past.
	must(t, put("a.txt", "v2", roomstore.OpenOptions{Overwrite: true, IfMatch: e1}))
	seen.expect(t, roomstore.EventFileUpdated, "a.txt", "", id)
	e2 := etag(t, c, "a.txt")
	if e2 == e1 {
		t.Fatalf("the ETag did not change with the content: %q", e2)
	}
	refusedPrecondition(t, "an upload over a past version", put("a.txt", "lost", roomstore.OpenOptions{Overwrite: true, IfMatch: e1}))
	// IfNoneMatch: "*" only where no file is, an ETag only while the file
	// is another version.
	refusedPrecondition(t, "IfNoneMatch * onto a file", put("a.txt", "lost", roomstore.OpenOptions{Overwrite: true, IfNoneMatch: "*"}))
	refusedPrecondition(t, "IfNoneMatch of the current version", put("a.txt", "lost", roomstore.OpenOptions{Overwrite: true, IfNoneMatch: e2}))
	refusedPrecondition(t, "IfMatch of a missing file", put("none.txt", "lost", roomstore.OpenOptions{Overwrite: true, IfMatch: e2}))
	must(t, put("b.txt", "b", roomstore.OpenOptions{Overwrite: true, IfNoneMatch: "*"}))
	seen.expect(t, roomstore.EventFileUpdated, "b.txt", "", id)
	wantErr(t, "IfMatch with Exclusive", put("b.txt", "lost", roomstore.OpenOptions{Exclusive: true, IfMatch: e2}), fs.ErrInvalid)

	// Open checks at Open and again at Close: a handle opened over the
	// current version fails at Close once another participant saved.
	_, err = c.Open(ctx, "a.txt", roomstore.OpenOptions{Overwrite: true, IfMatch: e1})
	refusedPrecondition(t, "Open over a past version", err)
	h, err := c.Open(ctx, "a.txt", roomstore.OpenOptions{Overwrite: true, IfMatch: e2})
	must(t, err)
	_, err = h.Write([]byte("mine, lost"))
	must(t, err)
	_, err = other.Upload(ctx, "a.txt", strings.NewReader("bob's"), roomstore.OpenOptions{Overwrite: true})
	must(t, err)
	seen.expect(t, roomstore.EventFileUpdated, "a.txt", "", other.ParticipantID())
	refusedPrecondition(t, "Close after another's save", h.Close())
	if got, _ := read(t, c, "a.txt"); got != "bob's" {
		t.Fatalf("a refused handle left %q, want bob's save", got)
	}
	e3 := etag(t, c, "a.txt")

	// Delete and RemoveAll.
	refusedPrecondition(t, "Delete of a past version", c.Delete(ctx, "a.txt", roomstore.DeleteOptions{IfMatch: e2}))
	refusedPrecondition(t, "RemoveAll of a past version", c.RemoveAll(ctx, "a.txt", roomstore.DeleteOptions{IfMatch: e2}))
	must(t, put("dir/x.txt", "x", roomstore.OpenOptions{Exclusive: true}))
	seen.expect(t, roomstore.EventFileUpdated, "dir/x.txt", "", id)
	refusedPrecondition(t, "RemoveAll of a folder with IfMatch", c.RemoveAll(ctx, "dir", roomstore.DeleteOptions{IfMatch: e3}))
	wantErr(t, "Delete with two DeleteOptions", c.Delete(ctx, "a.txt", roomstore.DeleteOptions{}, roomstore.DeleteOptions{}), fs.ErrInvalid)

	// Move.
	refusedPrecondition(t, "Move of a past version", c.Move(ctx, "a.txt", "moved.txt", roomstore.MoveOptions{IfMatch: e2}))
	refusedPrecondition(t, "Move of a folder with IfMatch", c.Move(ctx, "dir", "dir2", roomstore.MoveOptions{IfMatch: e3}))

	// Nothing the refusals touched changed.
	if got, _ := read(t, c, "a.txt"); got != "bob's" {
		t.Fatalf("after the refusals a.txt holds %q", got)
	}
	list, err := c.List(ctx, "")
	must(t, err)
	if got := describe(list); got != "a.txt(false,5) b.txt(false,1) dir(true,0) " {
		t.Fatalf("after the refusals the room holds %s", got)
	}
	seen.none(t)

	// And each change happens when its precondition holds.
	must(t, c.Move(ctx, "a.txt", "moved.txt", roomstore.MoveOptions{IfMatch: e3}))
	seen.expect(t, roomstore.EventFileMoved, "moved.txt", "a.txt", id)
	must(t, c.Delete(ctx, "moved.txt", roomstore.DeleteOptions{IfMatch: e3}))
	seen.expect(t, roomstore.EventFileDeleted, "moved.txt", "", id)
	must(t, c.RemoveAll(ctx, "dir/x.txt", roomstore.DeleteOptions{IfMatch: etag(t, c, "dir/x.txt")}))
	seen.expect(t, roomstore.EventFileDeleted, "dir/x.txt", "", id)
	must(t, c.Delete(ctx, "b.txt", roomstore.DeleteOptions{}))
	seen.expect(t, roomstore.EventFileDeleted, "b.txt", "", id)
	seen.none(t)
}

// Two participants that read one version and save over it at once,
// each with IfMatch: exactly one save wins, the other is refused and
// leaves the winner's content, every time.
func TestTwoIfMatchSavesOfOneVersionOneWins(t *testing.T) {
	e := newEnv(t, stores[0].url(t))
	ctx := deadline(t)
	ann := e.dial(t, "ann", "r", roomclient.Options{})
	bob := e.dial(t, "bob", "r", roomclient.Options{})
	_, err := ann.Upload(ctx, "doc.txt", strings.NewReader("start"), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	const rounds = 20
	wins := map[string]int{}
	for round := range rounds {
		base := etag(t, ann, "doc.txt")
		if got := etag(t, bob, "doc.txt"); got != base {
			t.Fatalf("round %d: ann reads %q, bob %q", round, base, got)
		}
		// Both open over the version they read before either commits, so
		// that both pass the check at Open and race at Close.
		hs := map[string]*roomclient.Handle{}
		for name, c := range map[string]*roomclient.Client{"ann": ann, "bob": bob} {
			h, err := c.Open(ctx, "doc.txt", roomstore.OpenOptions{Overwrite: true, IfMatch: base})
			must(t, err)
			_, err = fmt.Fprintf(h, "%s's round %d", name, round)
			must(t, err)
			hs[name] = h
		}
		errs := map[string]error{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for name, h := range hs {
			wg.Go(func() {
				err := h.Close()
				mu.Lock()
				errs[name] = err
				mu.Unlock()
			})
		}
		wg.Wait()
		winner := ""
		for name, err := range errs {
			switch {
			case err == nil && winner == "":
				winner = name
			case err == nil:
				t.Fatalf("round %d: both saves of one version won", round)
			default:
				refusedPrecondition(t, fmt.Sprintf("round %d: %s's losing save", round, name), err)
			}
		}
		if winner == "" {
			t.Fatalf("round %d: no save won: %v", round, errs)
		}
		wins[winner]++
		if got, _ := read(t, ann, "doc.txt"); got != fmt.Sprintf("%s's round %d", winner, round) {
			t.Fatalf("round %d: %s won but the file holds %q", round, winner, got)
		}
	}
	if wins["ann"]+wins["bob"] != rounds {
		t.Fatalf("wins %v over %d rounds", wins, rounds)
	}
}

// A server that does not speak the preconditions extension could not
// honour an IfMatch: every conditional call fails with
// errors.ErrUnsupported rather than change the file unconditionally.
func TestWithoutExtensionsAPreconditionIsUnsupported(t *testing.T) {
	e := newPlainEnv(t, stores[0].url(t))
	ctx := deadline(t)
	c := e.dial(t, "ann", "r", roomclient.Options{})
	_, err := c.Upload(ctx, "a.txt", strings.NewReader("v1"), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	st, err := c.Stat(ctx, "a.txt")
	must(t, err)
	if st.ETag != "" {
		t.Errorf("a strict server's stat gave ETag %q", st.ETag)
	}
	const tag = "some-etag"
	upload := func(o roomstore.OpenOptions) error {
		_, err := c.Upload(ctx, "a.txt", strings.NewReader("x"), o)
		return err
	}
	_, openErr := c.Open(ctx, "a.txt", roomstore.OpenOptions{Overwrite: true, IfMatch: tag})
	for what, err := range map[string]error{
		"Upload with IfMatch":     upload(roomstore.OpenOptions{Overwrite: true, IfMatch: tag}),
		"Upload with IfNoneMatch": upload(roomstore.OpenOptions{Overwrite: true, IfNoneMatch: "*"}),
		"Open with IfMatch":       openErr,
		"Delete with IfMatch":     c.Delete(ctx, "a.txt", roomstore.DeleteOptions{IfMatch: tag}),
		"RemoveAll with IfMatch":  c.RemoveAll(ctx, "a.txt", roomstore.DeleteOptions{IfMatch: tag}),
		"Move with IfMatch":       c.Move(ctx, "a.txt", "b.txt", roomstore.MoveOptions{IfMatch: tag}),
	} {
		wantErr(t, what, err, errors.ErrUnsupported)
	}
	if got, err := read(t, c, "a.txt"); got != "v1" || err != nil {
		t.Fatalf("after the unsupported calls a.txt holds %q (%v)", got, err)
	}
	if ok, _ := c.Exists(ctx, "b.txt"); ok {
		t.Fatal("an unsupported conditional move moved the file")
	}
	// Without a precondition the same calls work.
	must(t, c.Delete(ctx, "a.txt", roomstore.DeleteOptions{}))
}
