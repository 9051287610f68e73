package roomclient_test

import (
	"context"
	"errors"
	"io/fs"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// grantOf is a storage grant of "prefix" (read and write) and
// "prefix:ro" (read only) entries.
func grantOf(specs ...string) roomserver.TokenOption {
	g := roomserver.StorageGrant{Paths: []roomserver.StoragePathGrant{}}
	for _, s := range specs {
		p, ro := strings.CutSuffix(s, ":ro")
		g.Paths = append(g.Paths, roomserver.StoragePathGrant{Path: p, ReadOnly: ro})
	}
	return roomserver.WithStorage(g)
}

// dialAs connects participant name to room with a token restricted by
// opts.
func (e *env) dialAs(t *testing.T, name, room string, opts ...roomserver.TokenOption) *roomclient.Client {
	t.Helper()
	return e.dial(t, name, room, roomclient.Options{Token: e.token(t, name, room, opts...)})
}

// forbidden checks that err is the server's 403 with a text that names
// op, the path and the missing right.
func forbidden(t *testing.T, what string, err error, text string) {
	t.Helper()
	wantErr(t, what, err, fs.ErrPermission)
	var re *roomclient.Error
	if !errors.As(err, &re) || re.Code != 403 || re.Text != text {
		t.Fatalf("%s: %v, want a 403 %q", what, err, text)
	}
}

func TestGrants(t *testing.T) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			for name, run := range map[string]func(*testing.T, *env){
				"a read-only participant changes nothing":                    testReadOnlyParticipant,
				"a participant limited to a folder sees only it, events too": testFolderParticipant,
				"a token without an api grant may not touch storage":         testNoAPIGrant,
			} {
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					run(t, newEnv(t, s.url(t)))
				})
			}
		})
	}
}

func testReadOnlyParticipant(t *testing.T, e *env) {
	ctx := deadline(t)
	admin := e.dial(t, "admin", "r1", roomclient.Options{})
	// The setup's own events are taken before the refusals, so that a
	// late one is never taken for theirs.
	seen := record(t, admin)
	for _, p := range []string{"a.txt", "dir/b.txt"} {
		_, err := admin.Upload(ctx, p, strings.NewReader("content of "+p), roomstore.OpenOptions{Overwrite: true})
		must(t, err)
		seen.expect(t, roomstore.EventFileUpdated, p, "", admin.ParticipantID())
	}
	viewer := e.dialAs(t, "viewer", "r1", grantOf(":ro"))
	_, err := viewer.Upload(ctx, "a.txt", strings.NewReader("changed"), roomstore.OpenOptions{Overwrite: true})
	forbidden(t, "Upload", err, "upload a.txt: no write access")
	_, err = viewer.Upload(ctx, "new.txt", strings.NewReader("new"), roomstore.OpenOptions{Exclusive: true})
	forbidden(t, "Upload of a new file", err, "upload new.txt: no write access")
	forbidden(t, "Delete", viewer.Delete(ctx, "a.txt"), "delete a.txt: no write access")
	forbidden(t, "RemoveAll", viewer.RemoveAll(ctx, "dir"), "delete dir: no write access")
	forbidden(t, "Move", viewer.Move(ctx, "a.txt", "c.txt", roomstore.MoveOptions{}), "move a.txt: no write access")
	// Nothing changed: the same files, the same bytes, no event.
	list, err := admin.List(ctx, "")
	must(t, err)
	if got := describe(list); got != "a.txt(false,16) dir(true,0) " {
		t.Fatalf("root after refusals: %s", got)
	}
	f, err := admin.Download(ctx, "a.txt")
	must(t, err)
	if string(f.Data) != "content of a.txt" {
		t.Fatalf("a.txt holds %q", f.Data)
	}
	_, err = admin.Upload(ctx, "marker", strings.NewReader(""), roomstore.OpenOptions{Overwrite: true})
	must(t, err)
	seen.expect(t, roomstore.EventFileUpdated, "marker", "", admin.ParticipantID())
	seen.none(t)
	// Reading works as for anyone.
	f, err = viewer.Download(ctx, "dir/b.txt")
	must(t, err)
	if string(f.Data) != "content of dir/b.txt" {
		t.Fatalf("viewer downloads %q", f.Data)
	}
	u, err := viewer.DownloadURL(ctx, "a.txt", roomclient.URLOptions{})
	must(t, err)
	if body, _ := get(t, e, u); body != "content of a.txt" {
		t.Fatalf("viewer's URL serves %q", body)
	}
}

func testFolderParticipant(t *testing.T, e *env) {
	ctx := deadline(t)
	admin := e.dial(t, "admin", "r1", roomclient.Options{})
	member := e.dialAs(t, "member", "r1", grantOf("team/"))
	seen := record(t, member)
	all := record(t, e.dialAs(t, "viewer", "r1", grantOf(":ro")))
	id := admin.ParticipantID()
	for _, p := range []string{"team/a", "other/b", "other/x", "top.txt", "teammates.txt"} {
		_, err := admin.Upload(ctx, p, strings.NewReader(p), roomstore.OpenOptions{Overwrite: true})
		must(t, err)
		all.expect(t, roomstore.EventFileUpdated, p, "", id)
	}
	seen.expect(t, roomstore.EventFileUpdated, "team/a", "", id)

	list, err := member.List(ctx, "")
	must(t, err)
	if got := describe(list); got != "team(true,0) " {
		t.Fatalf("the member's root: %s", got)
	}
	for _, p := range []string{"other/b", "top.txt", "teammates.txt"} {
		_, err := member.Exists(ctx, p)
		forbidden(t, "Exists "+p, err, "exists "+p+": no read access")
		_, err = member.Stat(ctx, p)
		forbidden(t, "Stat "+p, err, "stat "+p+": no read access")
		_, err = member.Download(ctx, p)
		forbidden(t, "Download "+p, err, "download "+p+": no read access")
		_, err = member.DownloadURL(ctx, p, roomclient.URLOptions{})
		forbidden(t, "DownloadURL "+p, err, "download_url "+p+": no read access")
	}
	_, err = member.List(ctx, "other")
	forbidden(t, "List other", err, "list other: no read access")

	// Changes outside reach the member only as the side it may read.
	_, err = admin.Upload(ctx, "other/y", strings.NewReader("y"), roomstore.OpenOptions{Overwrite: true})
	must(t, err)
	_, err = admin.Upload(ctx, "team/z", strings.NewReader("z"), roomstore.OpenOptions{Overwrite: true})
	must(t, err)
	must(t, admin.Move(ctx, "other/b", "team/b", roomstore.MoveOptions{}))
	must(t, admin.Move(ctx, "team/a", "other/a", roomstore.MoveOptions{}))
	must(t, admin.Delete(ctx, "other/x"))
	must(t, admin.Move(ctx, "team/z", "team/z2", roomstore.MoveOptions{}))
	_, err = admin.Upload(ctx, "team/end", strings.NewReader(""), roomstore.OpenOptions{Overwrite: true})
	must(t, err)
	seen.expect(t, roomstore.EventFileUpdated, "team/z", "", id)
	seen.expect(t, roomstore.EventFileUpdated, "team/b", "", id) // moved in from other/b
	seen.expect(t, roomstore.EventFileDeleted, "team/a", "", id) // moved out to other/a
	seen.expect(t, roomstore.EventFileMoved, "team/z2", "team/z", id)
	seen.expect(t, roomstore.EventFileUpdated, "team/end", "", id)
	seen.none(t)
	// A participant that may read everything sees every event whole.
	all.expect(t, roomstore.EventFileUpdated, "other/y", "", id)
	all.expect(t, roomstore.EventFileUpdated, "team/z", "", id)
	all.expect(t, roomstore.EventFileMoved, "team/b", "other/b", id)
	all.expect(t, roomstore.EventFileMoved, "other/a", "team/a", id)
	all.expect(t, roomstore.EventFileDeleted, "other/x", "", id)
	all.expect(t, roomstore.EventFileMoved, "team/z2", "team/z", id)
	all.expect(t, roomstore.EventFileUpdated, "team/end", "", id)
	all.none(t)

	// Inside its folder the member does everything.
	_, err = member.Upload(ctx, "team/mine", strings.NewReader("mine"), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	must(t, member.Move(ctx, "team/mine", "team/sub/mine", roomstore.MoveOptions{}))
	list, err = member.List(ctx, "team")
	must(t, err)
	if got := describe(list); got != "team/b(false,7) team/end(false,0) team/sub(true,0) team/z2(false,1) " {
		t.Fatalf("the member's team: %s", got)
	}
	must(t, member.RemoveAll(ctx, "team/sub"))
	_, err = member.Upload(ctx, "other/mine", strings.NewReader("mine"), roomstore.OpenOptions{Exclusive: true})
	forbidden(t, "Upload outside", err, "upload other/mine: no write access")
	forbidden(t, "Move out", member.Move(ctx, "team/b", "other/b", roomstore.MoveOptions{}), "move team/b: no write access to other/b")
	if ok, err := admin.Exists(ctx, "other/mine"); err != nil || ok {
		t.Fatalf("other/mine exists: %v, %v", ok, err)
	}
}

func testNoAPIGrant(t *testing.T, e *env) {
	ctx := deadline(t)
	admin := e.dial(t, "admin", "r1", roomclient.Options{})
	_, err := admin.Upload(ctx, "f", strings.NewReader("f"), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	// As MeshAgent's clients mint a token without an api grant.
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"name":    "bare",
		"grants":  []any{map[string]any{"name": "room", "scope": "r1"}, map[string]any{"name": "role", "scope": "user"}},
		"version": "0.39.9",
	}).SignedString(e.secret)
	must(t, err)
	bare := e.dial(t, "bare", "r1", roomclient.Options{Token: tok})
	_, err = bare.Exists(ctx, "f")
	forbidden(t, "Exists", err, "exists f: no read access")
	_, err = bare.List(ctx, "")
	forbidden(t, "List", err, "list /: no read access")
	_, err = bare.Upload(ctx, "g", strings.NewReader("g"), roomstore.OpenOptions{Exclusive: true})
	forbidden(t, "Upload", err, "upload g: no write access")
	forbidden(t, "Delete", bare.Delete(ctx, "f"), "delete f: no write access")
}

// roles is an embedder's own access rules, as a database would hold
// them: the folders each named participant may read and write, and a
// denylist of revoked participants that every call consults.
type roles struct {
	mu      sync.Mutex
	folders map[string][]string // participant name -> folders it owns
	revoked map[string]bool
}

// policy is one participant's view of the rules.
type policy struct {
	r    *roles
	name string
}

func (p policy) Allow(_ context.Context, _ roomstore.Right, path string) (bool, error) {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if p.r.revoked[p.name] {
		return false, nil
	}
	return slices.ContainsFunc(p.r.folders[p.name], func(f string) bool { return strings.HasPrefix(path, f+"/") }), nil
}

func (p policy) Beneath(_ context.Context, _ roomstore.Right, folder string) (roomstore.Scope, error) {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if p.r.revoked[p.name] {
		return roomstore.Scope{}, nil
	}
	var s roomstore.Scope
	for _, f := range p.r.folders[p.name] {
		switch {
		case folder == f || strings.HasPrefix(folder, f+"/"):
			return roomstore.Scope{All: true}, nil
		case folder == "" || strings.HasPrefix(f, folder+"/"):
			s.Within = append(s.Within, f+"/")
		}
	}
	return s, nil
}

// TestAnEmbeddersPolicyDecidesEveryCall plugs a Verifier of its own that
// keeps HS256's checks and replaces the policy with the embedder's rules,
// and revokes a participant while it is connected.
func TestAnEmbeddersPolicyDecidesEveryCall(t *testing.T) {
	r := &roles{folders: map[string][]string{"ann": {"projects/a"}, "bob": {"projects/b", "shared"}}, revoked: map[string]bool{}}
	e := newEnvWith(t, stores[0].url(t), func(o *roomserver.Options) {
		hs := o.Verify
		o.Verify = func(ctx context.Context, room, token string) (roomserver.Identity, error) {
			id, err := hs(ctx, room, token)
			if err != nil {
				return id, err
			}
			r.mu.Lock()
			revoked := r.revoked[id.Name]
			r.mu.Unlock()
			if revoked {
				return roomserver.Identity{}, errors.New("revoked")
			}
			id.Policy = policy{r, id.Name}
			return id, nil
		}
	})
	ctx := deadline(t)
	ann := e.dial(t, "ann", "r1", roomclient.Options{})
	bob := e.dial(t, "bob", "r1", roomclient.Options{})
	_, err := ann.Upload(ctx, "projects/a/plan", strings.NewReader("a"), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	_, err = bob.Upload(ctx, "projects/b/plan", strings.NewReader("b"), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	_, err = bob.Upload(ctx, "shared/notes", strings.NewReader("n"), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	_, err = ann.Upload(ctx, "projects/b/plan", strings.NewReader("x"), roomstore.OpenOptions{Overwrite: true})
	forbidden(t, "ann writing bob's project", err, "upload projects/b/plan: no write access")
	for who, want := range map[*roomclient.Client]string{ann: "projects(true,0) ", bob: "projects(true,0) shared(true,0) "} {
		list, err := who.List(ctx, "")
		must(t, err)
		if got := describe(list); got != want {
			t.Fatalf("root lists %s, want %s", got, want)
		}
	}
	list, err := ann.List(ctx, "projects")
	must(t, err)
	if got := describe(list); got != "projects/a(true,0) " {
		t.Fatalf("ann's projects: %s", got)
	}
	// Revoked while connected: the next call is refused, and a new
	// connection too.
	r.mu.Lock()
	r.revoked["bob"] = true
	r.mu.Unlock()
	_, err = bob.Download(ctx, "shared/notes")
	forbidden(t, "a revoked participant's download", err, "download shared/notes: no read access")
	_, err = roomclient.Dial(ctx, e.roomURL("r1"), roomclient.Options{Token: e.token(t, "bob", "r1"), Logger: quiet()})
	wantErr(t, "a revoked participant's new connection", err, roomclient.ErrForbidden)
}

// TestAnExpiringTokenEndsItsConnection gives the participant an identity
// that ends a moment after connecting: the connection is closed then, and
// the URLs it got expire with it. (roomserver's tests show an upload cut
// by the expiry leaving nothing.)
func TestAnExpiringTokenEndsItsConnection(t *testing.T) {
	const life = 1500 * time.Millisecond
	var (
		mu      sync.Mutex
		expires time.Time
	)
	e := newEnvWith(t, stores[0].url(t), func(o *roomserver.Options) {
		hs := o.Verify
		o.Verify = func(ctx context.Context, room, token string) (roomserver.Identity, error) {
			id, err := hs(ctx, room, token)
			if id.Name == "brief" {
				mu.Lock()
				id.Expires = time.Now().Add(life)
				expires = id.Expires
				mu.Unlock()
			}
			return id, err
		}
	})
	ctx := deadline(t)
	admin := e.dial(t, "admin", "r1", roomclient.Options{})
	_, err := admin.Upload(ctx, "f", strings.NewReader("old"), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	brief := e.dial(t, "brief", "r1", roomclient.Options{})
	mu.Lock()
	end := expires
	mu.Unlock()
	u, err := brief.DownloadURL(ctx, "f", roomclient.URLOptions{})
	must(t, err)
	parsed, err := url.Parse(u)
	must(t, err)
	exp, err := strconv.ParseInt(parsed.Query().Get("exp"), 10, 64)
	must(t, err)
	if valid := time.Unix(exp+1, 0); valid.After(end) {
		t.Fatalf("the URL is valid until %v, past the identity's end %v", valid, end)
	}
	// The connection ends with the identity: calls then fail, saying why.
	for {
		_, err = brief.Exists(ctx, "f")
		if err != nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the connection outlived its identity by %v", wait)
		}
		time.Sleep(10 * time.Millisecond) // polls a condition; each call waits for its answer
	}
	if now := time.Now(); now.Before(end) {
		t.Fatalf("the connection ended at %v, before its identity's end %v", now, end)
	}
	// The first call to fail either reached the server in the moment
	// between the expiry and the close (a 403) or found the connection
	// closed; both say why.
	if !(errors.Is(err, roomclient.ErrDisconnected) || errors.Is(err, fs.ErrPermission)) || !strings.Contains(err.Error(), "token expired") {
		t.Fatalf("a call after the expiry: %v, want a refusal or ErrDisconnected saying the token expired", err)
	}
	for ; err == nil || errors.Is(err, fs.ErrPermission); _, err = brief.Exists(ctx, "f") {
		if ctx.Err() != nil {
			t.Fatalf("the connection outlived its identity by %v", wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !errors.Is(err, roomclient.ErrDisconnected) || !strings.Contains(err.Error(), "token expired") {
		t.Fatalf("a call once the connection closed: %v, want ErrDisconnected saying the token expired", err)
	}
	f, err := admin.Download(ctx, "f")
	must(t, err)
	if string(f.Data) != "old" {
		t.Fatalf("f holds %q after the cut upload", f.Data)
	}
}

// TestARefusedRightIsTheEnginesAccessError checks that the client gives
// the refusal of a right as the Engine does, an *roomstore.AccessError
// naming the right and, where the server names one, the path.
func TestARefusedRightIsTheEnginesAccessError(t *testing.T) {
	e := newEnv(t, stores[0].url(t))
	ctx := deadline(t)
	admin := e.dial(t, "admin", "r1", roomclient.Options{})
	_, err := admin.Upload(ctx, "in/a", strings.NewReader("a"), roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	c := e.dialAs(t, "c", "r1", grantOf("in/", "out/:ro"))
	for _, tc := range []struct {
		what  string
		err   error
		right roomstore.Right
		path  string
	}{
		{"move out", c.Move(ctx, "in/a", "out/a", roomstore.MoveOptions{}), roomstore.Write, "out/a"},
		{"delete", c.Delete(ctx, "out/b"), roomstore.Write, ""},
		{"stat", func() error { _, err := c.Stat(ctx, "elsewhere"); return err }(), roomstore.Read, ""},
	} {
		var ae *roomstore.AccessError
		if !errors.As(tc.err, &ae) || ae.Right != tc.right || ae.Path != tc.path || !errors.Is(tc.err, fs.ErrPermission) {
			t.Errorf("%s: %v, want an AccessError for %v naming %q", tc.what, tc.err, tc.right, tc.path)
		}
	}
	_, err = admin.Upload(ctx, "in/a", strings.NewReader("again"), roomstore.OpenOptions{Exclusive: true})
	var ae *roomstore.AccessError
	if errors.As(err, &ae) {
		t.Errorf("a conflict is no AccessError: %v", err)
	}
}
