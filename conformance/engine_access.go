package conformance

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomserver"
)

// grant is MeshAgent's storage grant from "prefix" (read and write) and
// "prefix:ro" (read only) entries.
func grant(specs ...string) roomstore.Policy {
	g := roomserver.StorageGrant{Paths: []roomserver.StoragePathGrant{}}
	for _, s := range specs {
		p, ro := strings.CutSuffix(s, ":ro")
		g.Paths = append(g.Paths, roomserver.StoragePathGrant{Path: p, ReadOnly: ro})
	}
	return g
}

// as is e's context (participant alice) restricted by p.
func (e *env) as(p roomstore.Policy) context.Context { return roomstore.WithPolicy(e.ctx, p) }

// refused checks that err is the refusal of right r by a policy, an
// *AccessError inside an *fs.PathError matching fs.ErrPermission, naming
// path when path is set.
func refused(t *testing.T, what string, err error, r roomstore.Right, path string) {
	t.Helper()
	wantErr(t, what, err, fs.ErrPermission)
	var ae *roomstore.AccessError
	if !errors.As(err, &ae) || ae.Right != r || ae.Path != path {
		t.Fatalf("%s: %v, want an AccessError for %v naming %q", what, err, r, path)
	}
}

// walked is every path Walk yields beneath dir through ctx, folders with
// a trailing slash.
func (e *env) walked(t *testing.T, ctx context.Context, dir string) []string {
	t.Helper()
	var out []string
	for en, err := range e.Walk(ctx, dir) {
		noErr(t, "Walk "+dir, err)
		if en.IsFolder {
			out = append(out, en.Path+"/")
		} else {
			out = append(out, en.Path)
		}
	}
	return out
}

// listed is a policy of its own: Read and Write on exactly the files
// named, and for every folder a Scope that says "perhaps anything"
// (never All), so that the engine must find out for itself what each
// folder holds.
type listed map[string]bool

func (l listed) Allow(_ context.Context, _ roomstore.Right, p string) (bool, error) { return l[p], nil }
func (l listed) Beneath(_ context.Context, _ roomstore.Right, folder string) (roomstore.Scope, error) {
	if folder == "" {
		return roomstore.Scope{Within: []string{""}}, nil
	}
	return roomstore.Scope{Within: []string{folder + "/"}}, nil
}

// revocable grants everything until revoked, then nothing.
type revocable struct{ revoked atomic.Bool }

func (r *revocable) Allow(context.Context, roomstore.Right, string) (bool, error) {
	return !r.revoked.Load(), nil
}
func (r *revocable) Beneath(context.Context, roomstore.Right, string) (roomstore.Scope, error) {
	return roomstore.Scope{All: !r.revoked.Load()}, nil
}

// failing fails every question, as a policy whose database is down.
type failing struct{}

var errPolicyDown = errors.New("the policy's database is down")

func (failing) Allow(context.Context, roomstore.Right, string) (bool, error) {
	return false, errPolicyDown
}
func (failing) Beneath(context.Context, roomstore.Right, string) (roomstore.Scope, error) {
	return roomstore.Scope{}, errPolicyDown
}

var accessCases = []tcase{
	{"a read-only participant reads everything and changes nothing", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "a.txt", []byte("a"), overwrite)
		e.put(t, "dir/b.txt", []byte("b"), overwrite)
		e.barrier(t)
		before := len(e.rec.snapshot())
		ro := e.as(grant(":ro"))
		_, err := e.Open(ro, "a.txt", overwrite)
		refused(t, "Open", err, roomstore.Write, "")
		_, err = e.Open(ro, "new.txt", roomstore.OpenOptions{Exclusive: true})
		refused(t, "Open of a new file", err, roomstore.Write, "")
		_, err = e.Upload(ro, "a.txt", strings.NewReader("changed"), overwrite)
		refused(t, "Upload", err, roomstore.Write, "")
		refused(t, "Delete", e.Delete(ro, "a.txt"), roomstore.Write, "")
		refused(t, "RemoveAll of a folder", e.RemoveAll(ro, "dir"), roomstore.Write, "")
		refused(t, "RemoveAll of the root", e.RemoveAll(ro, ""), roomstore.Write, "")
		refused(t, "Move", e.Move(ro, "a.txt", "c.txt", roomstore.MoveOptions{}), roomstore.Write, "a.txt")
		refused(t, "Move of a folder", e.Move(ro, "dir", "dir2", roomstore.MoveOptions{}), roomstore.Write, "dir")
		e.mustContain(t, "a.txt", []byte("a"))
		e.mustContain(t, "dir/b.txt", []byte("b"))
		if got := e.names(t, ""); !slices.Equal(got, []string{"a.txt", "dir/"}) {
			t.Fatalf("root lists %v", got)
		}
		e.barrier(t)
		if evs := e.rec.snapshot(); len(evs) != before {
			t.Fatalf("refused calls published %+v", evs[before:])
		}
		// Reading is untouched.
		f, err := e.Download(ro, "dir/b.txt")
		noErr(t, "Download", err)
		if string(f.Data) != "b" {
			t.Fatalf("Download: %q", f.Data)
		}
		if got := e.listNames(t, ro, ""); !slices.Equal(got, []string{"a.txt", "dir/"}) {
			t.Fatalf("the read-only root lists %v", got)
		}
		_, err = e.DownloadURL(ro, "a.txt")
		noErr(t, "DownloadURL", err)
	}},
	{"a participant limited to a folder sees and touches only that folder", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		for _, p := range []string{"team/a.txt", "team/sub/b.txt", "other/c.txt", "top.txt", "teammates.txt"} {
			e.put(t, p, []byte("content of "+p), overwrite)
		}
		team := e.as(grant("team/"))
		if got := e.listNames(t, team, ""); !slices.Equal(got, []string{"team/"}) {
			t.Fatalf("the root lists %v, want [team/]", got)
		}
		if got := e.listNames(t, team, "team"); !slices.Equal(got, []string{"a.txt", "sub/"}) {
			t.Fatalf("team lists %v", got)
		}
		if got := e.walked(t, team, ""); !slices.Equal(got, []string{"team/", "team/a.txt", "team/sub/", "team/sub/b.txt"}) {
			t.Fatalf("Walk yields %v", got)
		}
		_, err := e.List(team, "other")
		refused(t, "List other", err, roomstore.Read, "")
		_, err = e.List(team, "nope")
		refused(t, "List of a missing folder outside", err, roomstore.Read, "")
		for _, p := range []string{"other/c.txt", "top.txt", "teammates.txt", "other", "missing.txt"} {
			_, err := e.Exists(team, p)
			refused(t, "Exists "+p, err, roomstore.Read, "")
			_, err = e.Stat(team, p)
			refused(t, "Stat "+p, err, roomstore.Read, "")
		}
		for _, p := range []string{"other/c.txt", "top.txt"} {
			_, err := e.Download(team, p)
			refused(t, "Download "+p, err, roomstore.Read, "")
			_, err = e.OpenReader(team, p, 0, -1)
			refused(t, "OpenReader "+p, err, roomstore.Read, "")
			_, err = e.DownloadURL(team, p)
			refused(t, "DownloadURL "+p, err, roomstore.Read, "")
		}
		// Inside, everything works, a missing file included.
		if ok, err := e.Exists(team, "team/missing"); err != nil || ok {
			t.Fatalf("Exists team/missing: %v, %v", ok, err)
		}
		_, err = e.Stat(team, "team/missing")
		wantErr(t, "Stat team/missing", err, fs.ErrNotExist)
		if st, err := e.Stat(team, "team"); err != nil || !st.IsFolder {
			t.Fatalf("Stat team: %+v, %v", st, err)
		}
		_, err = e.Upload(team, "team/new.txt", strings.NewReader("new"), overwrite)
		noErr(t, "Upload inside", err)
		noErr(t, "Move inside", e.Move(team, "team/new.txt", "team/sub/new.txt", roomstore.MoveOptions{}))
		_, err = e.Upload(team, "other/new.txt", strings.NewReader("new"), overwrite)
		refused(t, "Upload outside", err, roomstore.Write, "")
		e.mustBeAbsent(t, "other/new.txt")
		// The io/fs view is the same filtered store, and a consistent one.
		fsys := e.FS(team)
		var seen []string
		noErr(t, "WalkDir", fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				seen = append(seen, p)
			}
			return err
		}))
		if want := []string{"team/a.txt", "team/sub/b.txt", "team/sub/new.txt"}; !slices.Equal(seen, want) {
			t.Fatalf("the fs view holds %v, want %v", seen, want)
		}
		if err := fstest.TestFS(fsys, "team/a.txt", "team/sub/b.txt"); err != nil {
			t.Fatal(err)
		}
		_, err = fs.ReadFile(fsys, "other/c.txt")
		wantErr(t, "fs ReadFile outside", err, fs.ErrPermission)
		_, err = fs.Stat(fsys, "top.txt")
		wantErr(t, "fs Stat outside", err, fs.ErrPermission)
		// ServeFile refuses the request's policy too.
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			e.ServeFile(w, r.WithContext(roomstore.WithPolicy(r.Context(), grant("team/"))), r.URL.Query().Get("p"))
		}))
		defer srv.Close()
		if _, status := fetch(t, srv.URL+"/?p=top.txt", nil); status != http.StatusForbidden {
			t.Fatalf("ServeFile outside: %d, want 403", status)
		}
		if body, status := fetch(t, srv.URL+"/?p=team/a.txt", nil); status != http.StatusOK || string(body) != "content of team/a.txt" {
			t.Fatalf("ServeFile inside: %d %q", status, body)
		}
	}},
	{"a folder shows only while something readable lies beneath it", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "team/docs/x", []byte("x"), overwrite)
		e.put(t, "team/other/y", []byte("y"), overwrite)
		e.put(t, "team/dolly.txt", []byte("d"), overwrite)
		deep := e.as(grant("team/docs/"))
		if got := e.listNames(t, deep, ""); !slices.Equal(got, []string{"team/"}) {
			t.Fatalf("root lists %v, want [team/]", got)
		}
		if got := e.listNames(t, deep, "team"); !slices.Equal(got, []string{"docs/"}) {
			t.Fatalf("team lists %v, want [docs/]", got)
		}
		if ok, err := e.Exists(deep, "team"); err != nil || !ok {
			t.Fatalf("Exists team: %v, %v", ok, err)
		}
		// A prefix is a string prefix: "team/do" covers docs and dolly.
		if got := e.listNames(t, e.as(grant("team/do")), "team"); !slices.Equal(got, []string{"docs/", "dolly.txt"}) {
			t.Fatalf("with team/do, team lists %v", got)
		}
		noErr(t, "Delete", e.Delete(e.ctx, "team/docs/x"))
		if got := e.listNames(t, deep, ""); len(got) != 0 {
			t.Fatalf("root lists %v once nothing readable is left, want nothing", got)
		}
		_, err := e.List(deep, "team")
		refused(t, "List of a folder with nothing readable", err, roomstore.Read, "")
		_, err = e.Stat(deep, "team")
		refused(t, "Stat of a folder with nothing readable", err, roomstore.Read, "")
		if ok, err := e.Exists(deep, "team/docs"); err != nil || ok {
			t.Fatalf("Exists of the granted folder, now empty: %v, %v; want false", ok, err)
		}
		var walked []string
		for en, err := range e.Walk(deep, "") {
			noErr(t, "Walk", err)
			walked = append(walked, en.Path)
		}
		if len(walked) != 0 {
			t.Fatalf("Walk yields %v, want nothing", walked)
		}
	}},
	{"a policy that may grant anything beneath any folder is asked about each file", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		for _, p := range []string{"a/keep", "a/hide", "b/hide", "c/d/keep", "c/e/hide", "top"} {
			e.put(t, p, []byte(p), overwrite)
		}
		ctx := e.as(listed{"a/keep": true, "c/d/keep": true, "top": true})
		if got := e.listNames(t, ctx, ""); !slices.Equal(got, []string{"a/", "c/", "top"}) {
			t.Fatalf("root lists %v", got)
		}
		if got := e.listNames(t, ctx, "c"); !slices.Equal(got, []string{"d/"}) {
			t.Fatalf("c lists %v", got)
		}
		if got := e.walked(t, ctx, ""); !slices.Equal(got, []string{"a/", "a/keep", "c/", "c/d/", "c/d/keep", "top"}) {
			t.Fatalf("Walk yields %v", got)
		}
		_, err := e.List(ctx, "b")
		refused(t, "List b", err, roomstore.Read, "")
		// A recursive delete of c would take c/e/hide: refused whole, naming
		// no file the participant may not read.
		refused(t, "RemoveAll c", e.RemoveAll(ctx, "c"), roomstore.Write, "")
		e.mustContain(t, "c/d/keep", []byte("c/d/keep"))
		noErr(t, "RemoveAll c/d", e.RemoveAll(ctx, "c/d"))
		e.mustBeAbsent(t, "c/d/keep")
		e.mustContain(t, "c/e/hide", []byte("c/e/hide"))
	}},
	{"what a participant may not see looks the same whether or not something is there", func(t *testing.T, h Harness) {
		// probe answers every call about p through ctx, in classes of
		// outcome, on a store that holds files.
		probe := func(policy roomstore.Policy, p string, files ...string) []string {
			e := fresh(t, h)
			for _, f := range files {
				e.put(t, f, []byte("hidden"), overwrite)
			}
			ctx := e.as(policy)
			var out []string
			note := func(what string, err error) {
				switch {
				case err == nil:
					out = append(out, what+": ok")
				case errors.Is(err, fs.ErrPermission):
					out = append(out, what+": refused "+err.Error())
				case errors.Is(err, fs.ErrNotExist):
					out = append(out, what+": not there")
				default:
					out = append(out, what+": "+err.Error())
				}
			}
			ok, err := e.Exists(ctx, p)
			note(fmt.Sprintf("exists %v", ok), err)
			_, err = e.Stat(ctx, p)
			note("stat", err)
			_, err = e.List(ctx, p)
			note("list", err)
			_, err = e.Download(ctx, p)
			note("download", err)
			_, err = e.FS(ctx).Open(p)
			note("fs open", err)
			_, err = fs.Stat(e.FS(ctx), p)
			note("fs stat", err)
			note("delete", e.Delete(ctx, p))
			note("remove_all", e.RemoveAll(ctx, p))
			note("move", e.Move(ctx, p, "mine/moved", roomstore.MoveOptions{}))
			_, err = e.Upload(ctx, p+"/below", strings.NewReader("x"), overwrite)
			if err == nil {
				err = e.RemoveAll(e.ctx, p+"/below")
			}
			note("upload below", err)
			return out
		}
		for _, c := range []struct {
			name   string
			policy roomstore.Policy
			p      string
			hidden []string // what is there, that the policy hides
		}{
			{"a file named as the grant's folder", grant("team/", "mine/"), "team", []string{"team"}},
			{"a file outside the grant", grant("team/", "mine/"), "secret.txt", []string{"secret.txt"}},
			{"a folder of hidden files", grant("team/", "mine/"), "other", []string{"other/a", "other/b/c"}},
			{"a file under a policy that may grant anything", listed{"mine/moved": true, "mine/x": true}, "hidden.txt", []string{"hidden.txt"}},
		} {
			there, absent := probe(c.policy, c.p, append(c.hidden, "mine/x")...), probe(c.policy, c.p, "mine/x")
			// Writing below a file is refused, and only that tells it is
			// there; the reads, deletes and moves tell nothing.
			for i := range there {
				if strings.HasPrefix(there[i], "upload below") {
					continue
				}
				if there[i] != absent[i] {
					t.Errorf("%s: %q with it there, %q without", c.name, there[i], absent[i])
				}
			}
		}
	}},
	{"a recursive delete needs write on every file and removes none without it", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		for _, p := range []string{"team/keep/k", "team/work/w1", "team/work/w2", "team/t"} {
			e.put(t, p, []byte(p), overwrite)
		}
		e.barrier(t)
		before := len(e.rec.snapshot())
		ctx := e.as(grant("team/keep/:ro", "team/"))
		refused(t, "RemoveAll team", e.RemoveAll(ctx, "team"), roomstore.Write, "team/keep/k")
		for _, p := range []string{"team/keep/k", "team/work/w1", "team/work/w2", "team/t"} {
			e.mustContain(t, p, []byte(p))
		}
		e.barrier(t)
		if evs := e.rec.snapshot(); len(evs) != before {
			t.Fatalf("a refused RemoveAll published %+v", evs[before:])
		}
		noErr(t, "RemoveAll team/work", e.RemoveAll(ctx, "team/work"))
		e.mustBeAbsent(t, "team/work")
		if evs := e.await(t, roomstore.EventFileDeleted, "team/work/w2", 1); len(evs) != 1 {
			t.Fatalf("events %+v", evs)
		}
		if got := len(e.rec.snapshot()) - before; got != 2 {
			t.Fatalf("%d events, want 2 file.deleted", got)
		}
		refused(t, "RemoveAll of a missing path outside", e.RemoveAll(e.as(grant("team/")), "other"), roomstore.Write, "")
		noErr(t, "RemoveAll of a missing path inside", e.RemoveAll(e.as(grant("team/")), "team/none"))
	}},
	{"a move needs write on both paths, for every file of a folder", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "in/a", []byte("a"), overwrite)
		e.put(t, "in/sub/b", []byte("b"), overwrite)
		e.put(t, "out/c", []byte("c"), overwrite)
		ctx := e.as(grant("in/", "out/:ro"))
		refused(t, "Move in/a to out/a", e.Move(ctx, "in/a", "out/a", roomstore.MoveOptions{}), roomstore.Write, "out/a")
		refused(t, "Move out/c to in/c", e.Move(ctx, "out/c", "in/c", roomstore.MoveOptions{}), roomstore.Write, "out/c")
		refused(t, "Move of a folder into a read-only one", e.Move(ctx, "in", "out/in", roomstore.MoveOptions{}), roomstore.Write, "out/in")
		refused(t, "Move of a folder over a read-only file", e.Move(e.as(grant("in/sub/b:ro", "in/")), "in/sub", "in/sub2", roomstore.MoveOptions{}), roomstore.Write, "in/sub/b")
		refused(t, "Move of a folder to nowhere granted", e.Move(ctx, "in", "elsewhere", roomstore.MoveOptions{}), roomstore.Write, "elsewhere")
		e.mustContain(t, "in/a", []byte("a"))
		e.mustContain(t, "in/sub/b", []byte("b"))
		e.mustContain(t, "out/c", []byte("c"))
		e.mustBeAbsent(t, "out/a")
		noErr(t, "Move inside", e.Move(ctx, "in/sub", "in/moved", roomstore.MoveOptions{}))
		e.mustContain(t, "in/moved/b", []byte("b"))
		e.moved(t, "in/sub/b", "in/moved/b", 1)
	}},
	{"a handle's close asks the policy again", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "f", []byte("old"), overwrite)
		p := &revocable{}
		ctx := e.as(p)
		hd, err := e.Open(ctx, "f", overwrite)
		noErr(t, "Open", err)
		noErr(t, "Write", e.Write(ctx, hd, []byte("new")))
		p.revoked.Store(true)
		refused(t, "Close after the rights were withdrawn", e.Close(ctx, hd), roomstore.Write, "")
		e.mustContain(t, "f", []byte("old"))
		wantErr(t, "Close again", e.Close(ctx, hd), fs.ErrClosed)
		// The handle's own Close, which takes no context, asks it too.
		p.revoked.Store(false)
		hd, err = e.Open(ctx, "f", overwrite)
		noErr(t, "Open", err)
		_, err = hd.Write([]byte("newer"))
		noErr(t, "Write", err)
		p.revoked.Store(true)
		refused(t, "Handle.Close after the rights were withdrawn", hd.Close(), roomstore.Write, "")
		e.mustContain(t, "f", []byte("old"))
		e.barrier(t)
		if evs := e.rec.matching(roomstore.EventFileUpdated, "f"); len(evs) != 1 {
			t.Fatalf("file.updated events of f: %+v, want only the first put's", evs)
		}
	}},
	{"a policy that fails fails the call and grants nothing", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "d/f", []byte("old"), overwrite)
		ctx := e.as(failing{})
		errs := map[string]error{}
		_, errs["Exists"] = e.Exists(ctx, "d/f")
		_, errs["Stat"] = e.Stat(ctx, "d/f")
		_, errs["List"] = e.List(ctx, "d")
		_, errs["Download"] = e.Download(ctx, "d/f")
		_, errs["Open"] = e.Open(ctx, "d/f", overwrite)
		errs["Delete"] = e.Delete(ctx, "d/f")
		errs["RemoveAll"] = e.RemoveAll(ctx, "d")
		errs["Move"] = e.Move(ctx, "d/f", "d/g", roomstore.MoveOptions{})
		for what, err := range errs {
			if !errors.Is(err, errPolicyDown) || errors.Is(err, fs.ErrPermission) {
				t.Errorf("%s: %v, want the policy's failure", what, err)
			}
			var pe *fs.PathError
			if !errors.As(err, &pe) {
				t.Errorf("%s: %v is not an *fs.PathError", what, err)
			}
		}
		e.mustContain(t, "d/f", []byte("old"))
	}},
	{"a url lives no longer than NotAfter and the engine's own urls name their version", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "f.txt", []byte("v1"), overwrite)
		bound := time.Now().Add(90 * time.Second)
		raw, err := e.DownloadURL(e.ctx, "f.txt", roomstore.NotAfter(bound))
		noErr(t, "DownloadURL", err)
		if left := urlLifetime(t, raw); left <= 0 || left > time.Until(bound)+time.Second {
			t.Fatalf("URL %s lives %v, want at most %v", raw, left, time.Until(bound))
		}
		_, err = e.DownloadURL(e.ctx, "f.txt", roomstore.NotAfter(time.Now().Add(500*time.Millisecond)))
		wantErr(t, "DownloadURL bound to less than a second", err, fs.ErrInvalid)
		// An engine that signs its own URLs on every backend (as roomstore
		// serve's do) binds each to the version it was issued for.
		own := fresh(t, h, roomstore.WithPresign(false))
		own.put(t, "f.txt", []byte("v1"), overwrite)
		first := own.url(t, "f.txt")
		if body, status := fetch(t, first, nil); status != http.StatusOK || string(body) != "v1" {
			t.Fatalf("GET: %d %q", status, body)
		}
		own.put(t, "f.txt", []byte("v2"), overwrite)
		if body, status := fetch(t, first, nil); status != http.StatusGone || strings.Contains(string(body), "v2") {
			t.Fatalf("the first version's URL after an overwrite: %d %q, want 410", status, body)
		}
		if body, status := fetch(t, own.url(t, "f.txt"), nil); status != http.StatusOK || string(body) != "v2" {
			t.Fatalf("a new URL: %d %q", status, body)
		}
		signedAgain := own.url(t, "f.txt")
		noErr(t, "Move", own.Move(own.ctx, "f.txt", "g.txt", roomstore.MoveOptions{}))
		own.put(t, "f.txt", []byte("v2"), overwrite) // same bytes, another version
		if body, status := fetch(t, signedAgain, nil); status == http.StatusOK {
			t.Fatalf("a URL after its file moved away and came back: %d %q", status, body)
		}
		if left := urlLifetime(t, own.url(t, "f.txt")); left > roomstore.DefaultURLExpiry+time.Second {
			t.Fatalf("an engine-signed URL lives %v", left)
		}
	}},
}

// urlLifetime reads how long a signed URL stays valid from its query: the
// engine's exp (a Unix time), S3's X-Amz-Date and X-Amz-Expires, or
// GCS's X-Goog-Date and X-Goog-Expires.
func urlLifetime(t *testing.T, raw string) time.Duration {
	t.Helper()
	u, err := url.Parse(raw)
	noErr(t, "parse URL", err)
	q := u.Query()
	if exp := q.Get("exp"); exp != "" {
		n, err := strconv.ParseInt(exp, 10, 64)
		noErr(t, "exp", err)
		return time.Until(time.Unix(n+1, 0)) // valid through the second it names
	}
	for _, pre := range []string{"X-Amz-", "X-Goog-"} {
		date, secs := q.Get(pre+"Date"), q.Get(pre+"Expires")
		if date == "" || secs == "" {
			continue
		}
		at, err := time.Parse("20060102T150405Z", date)
		noErr(t, pre+"Date", err)
		n, err := strconv.Atoi(secs)
		noErr(t, pre+"Expires", err)
		return time.Until(at.Add(time.Duration(n) * time.Second))
	}
	t.Fatalf("URL %s carries no expiry this suite can read", raw)
	return 0
}
