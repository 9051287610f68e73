package roomserver_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomserver"
)

// paths builds a grant's entries from "path" (read and write) and
// "path:ro" (read only).
func paths(specs ...string) []roomserver.StoragePathGrant {
	out := []roomserver.StoragePathGrant{}
	for _, s := range specs {
		p, ro := strings.CutSuffix(s, ":ro")
		out = append(out, roomserver.StoragePathGrant{Path: p, ReadOnly: ro})
	}
	return out
}

// TestStorageGrantDecidesAsMeshAgent checks the grant against the rules
// of MeshAgent's StorageGrant.canRead and canWrite: read when any entry
// is a prefix, write when the first entry that is a prefix is not read
// only, everything without paths, nothing with an empty list.
func TestStorageGrantDecidesAsMeshAgent(t *testing.T) {
	for _, c := range []struct {
		name        string
		grant       roomserver.StorageGrant
		path        string
		read, write bool
	}{
		{"no paths key: read", roomserver.StorageGrant{}, "anything/at/all", true, true},
		{"no paths key: the root", roomserver.StorageGrant{}, "", true, true},
		{"empty paths: nothing", roomserver.StorageGrant{Paths: paths()}, "a", false, false},
		{"prefix: inside", roomserver.StorageGrant{Paths: paths("team/")}, "team/a.txt", true, true},
		{"prefix: deep inside", roomserver.StorageGrant{Paths: paths("team/")}, "team/x/y/z", true, true},
		{"prefix: the folder itself is not below its slash", roomserver.StorageGrant{Paths: paths("team/")}, "team", false, false},
		{"prefix: outside", roomserver.StorageGrant{Paths: paths("team/")}, "other/a.txt", false, false},
		{"plain string prefix: no slash covers a longer name", roomserver.StorageGrant{Paths: paths("team")}, "teammates.txt", true, true},
		{"no wildcards", roomserver.StorageGrant{Paths: paths("team/*")}, "team/a", false, false},
		{"a wildcard matches itself only as text", roomserver.StorageGrant{Paths: paths("team/*")}, "team/*x", true, true},
		{"read only entry", roomserver.StorageGrant{Paths: paths("docs/:ro")}, "docs/a", true, false},
		{"first match decides write: read only first", roomserver.StorageGrant{Paths: paths("team/:ro", "team/drafts/")}, "team/drafts/a", true, false},
		{"first match decides write: writable first", roomserver.StorageGrant{Paths: paths("team/drafts/", "team/:ro")}, "team/drafts/a", true, true},
		{"first match decides write: the later entry elsewhere", roomserver.StorageGrant{Paths: paths("team/drafts/", "team/:ro")}, "team/notes", true, false},
		{"read: any entry", roomserver.StorageGrant{Paths: paths("a/:ro", "b/")}, "b/x", true, true},
		{"empty prefix: everything", roomserver.StorageGrant{Paths: paths(":ro")}, "x/y", true, false},
		{"a leading slash in the grant is ignored", roomserver.StorageGrant{Paths: paths("/team/")}, "team/a", true, true},
		{"the slash alone is everything", roomserver.StorageGrant{Paths: paths("/")}, "x", true, true},
		{"case sensitive", roomserver.StorageGrant{Paths: paths("Team/")}, "team/a", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.grant.CanRead(c.path); got != c.read {
				t.Errorf("CanRead(%q) = %v, want %v", c.path, got, c.read)
			}
			if got := c.grant.CanWrite(c.path); got != c.write {
				t.Errorf("CanWrite(%q) = %v, want %v", c.path, got, c.write)
			}
			// The Policy says the same as the methods MeshAgent's clients have.
			for r, want := range map[roomstore.Right]bool{roomstore.Read: c.read, roomstore.Write: c.write} {
				if got, err := c.grant.Allow(t.Context(), r, c.path); err != nil || got != want {
					t.Errorf("Allow(%v, %q) = %v, %v; want %v", r, c.path, got, err, want)
				}
			}
		})
	}
}

// TestStorageGrantBeneathAgreesWithAllow checks Beneath against Allow on
// every path of a small tree: All only when Allow grants every path
// beneath the folder, and no path granted outside Within.
func TestStorageGrantBeneathAgreesWithAllow(t *testing.T) {
	tree := []string{"a", "ab", "team/a", "team/drafts/x", "team/drafts/y/z", "team/notes/n", "teammates", "other/q", "other/team/r"}
	folders := []string{"", "team", "team/drafts", "team/drafts/y", "team/notes", "other", "other/team"}
	grants := [][]roomserver.StoragePathGrant{
		nil, paths(), paths("team/"), paths("team"), paths("team/:ro", "team/drafts/"),
		paths("team/drafts/", "team/:ro"), paths("team/drafts/:ro", "team/"), paths("team/d", "other/"),
		paths(":ro", "team/"), paths("team/", ":ro"), paths("team/drafts/y/"), paths("/other/team/"),
	}
	for _, ps := range grants {
		g := roomserver.StorageGrant{Paths: ps}
		for _, r := range []roomstore.Right{roomstore.Read, roomstore.Write} {
			for _, folder := range folders {
				s, err := g.Beneath(t.Context(), r, folder)
				if err != nil {
					t.Fatal(err)
				}
				dir := folder + "/"
				if folder == "" {
					dir = ""
				}
				all := true
				for _, p := range tree {
					if !strings.HasPrefix(p, dir) {
						continue
					}
					ok, _ := g.Allow(t.Context(), r, p)
					all = all && ok
					within := slices.ContainsFunc(s.Within, func(pre string) bool { return strings.HasPrefix(p, pre) })
					if ok && !s.All && !within {
						t.Errorf("grant %v, %v beneath %q: %q is granted but outside %q", ps, r, folder, p, s.Within)
					}
				}
				if s.All && !all {
					t.Errorf("grant %v, %v beneath %q: All, but a path beneath is refused", ps, r, folder)
				}
				for _, pre := range s.Within {
					if !strings.HasPrefix(pre, dir) {
						t.Errorf("grant %v, %v beneath %q: %q does not lie beneath it", ps, r, folder, pre)
					}
				}
			}
		}
	}
	// All is exact where the grant makes it so.
	g := roomserver.StorageGrant{Paths: paths("team/drafts/", "team/")}
	if s, _ := g.Beneath(t.Context(), roomstore.Write, "team"); !s.All {
		t.Errorf("two writable entries: Beneath(team) = %+v, want All", s)
	}
	g = roomserver.StorageGrant{Paths: paths("team/drafts/:ro", "team/")}
	if s, _ := g.Beneath(t.Context(), roomstore.Write, "team"); s.All {
		t.Errorf("a read-only entry inside: Beneath(team) = %+v, want not All", s)
	}
	if s, _ := g.Beneath(t.Context(), roomstore.Read, "team"); !s.All {
		t.Errorf("reading: Beneath(team) = %+v, want All", s)
	}
}

// sign signs claims with the test secret.
func sign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHS256BuildsThePolicyFromTheGrants reads tokens as the MeshAgent
// clients serialise them and checks the policy each one gives.
func TestHS256BuildsThePolicyFromTheGrants(t *testing.T) {
	verify := roomserver.HS256(secret)
	room := map[string]any{"name": "room", "scope": "r1"}
	api := func(scope any) map[string]any { return map[string]any{"name": "api", "scope": scope} }
	for _, c := range []struct {
		name        string
		grants      []any
		version     any
		read, write map[string]bool // path -> allowed
		bad         bool
	}{
		{name: "storage {} is every path", grants: []any{room, api(map[string]any{"storage": map[string]any{}})},
			read: map[string]bool{"a": true, "x/y": true}, write: map[string]bool{"a": true}},
		{name: "paths, read_only as the clients write it", grants: []any{room, api(map[string]any{"storage": map[string]any{"paths": []any{
			map[string]any{"path": "team/"}, map[string]any{"path": "docs/", "read_only": true}}}})},
			read: map[string]bool{"team/a": true, "docs/a": true, "x": false}, write: map[string]bool{"team/a": true, "docs/a": false, "x": false}},
		{name: "readOnly in camel case is read too", grants: []any{room, api(map[string]any{"storage": map[string]any{"paths": []any{
			map[string]any{"path": "docs/", "readOnly": true}}}})},
			read: map[string]bool{"docs/a": true}, write: map[string]bool{"docs/a": false}},
		{name: "paths null is every path", grants: []any{room, api(map[string]any{"storage": map[string]any{"paths": nil}})},
			read: map[string]bool{"a": true}, write: map[string]bool{"a": true}},
		{name: "an empty paths list is nothing", grants: []any{room, api(map[string]any{"storage": map[string]any{"paths": []any{}}})},
			read: map[string]bool{"a": false}, write: map[string]bool{"a": false}},
		{name: "an api grant without storage: no storage", grants: []any{room, api(map[string]any{"messaging": map[string]any{}})},
			read: map[string]bool{"a": false}, write: map[string]bool{"a": false}},
		{name: "storage null: no storage", grants: []any{room, api(map[string]any{"storage": nil})},
			read: map[string]bool{"a": false}, write: map[string]bool{"a": false}},
		{name: "no api grant, current version: no storage", grants: []any{room}, version: "0.39.9",
			read: map[string]bool{"a": false}, write: map[string]bool{"a": false}},
		{name: "no api grant, no version: no storage", grants: []any{room},
			read: map[string]bool{"a": false}, write: map[string]bool{"a": false}},
		{name: "no api grant, 0.3.5: every path", grants: []any{room}, version: "0.3.5",
			read: map[string]bool{"a": true}, write: map[string]bool{"a": true}},
		{name: "no api grant, 0.2.10: every path", grants: []any{room}, version: "0.2.10",
			read: map[string]bool{"a": true}, write: map[string]bool{"a": true}},
		{name: "no api grant, 0.3.6: no storage", grants: []any{room}, version: "0.3.6",
			read: map[string]bool{"a": false}, write: map[string]bool{"a": false}},
		{name: "no api grant, 0.10.0 is newer than 0.3.5 (not by string order)", grants: []any{room}, version: "0.10.0",
			read: map[string]bool{"a": false}, write: map[string]bool{"a": false}},
		{name: "no api grant, a version that is not one: no storage", grants: []any{room}, version: "latest",
			read: map[string]bool{"a": false}, write: map[string]bool{"a": false}},
		{name: "the api grant decides whatever the version", grants: []any{room, api(map[string]any{})}, version: "0.1.0",
			read: map[string]bool{"a": false}, write: map[string]bool{"a": false}},
		{name: "an api scope that is not an object", grants: []any{room, api("everything")}, bad: true},
		{name: "a storage grant that is not an object", grants: []any{room, api(map[string]any{"storage": "all"})}, bad: true},
		{name: "a path entry without a path", grants: []any{room, api(map[string]any{"storage": map[string]any{"paths": []any{map[string]any{"read_only": true}}}})}, bad: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			claims := jwt.MapClaims{"name": "alice", "grants": c.grants}
			if c.version != nil {
				claims["version"] = c.version
			}
			id, err := verify(t.Context(), "r1", sign(t, claims))
			if c.bad {
				if !errors.Is(err, roomserver.ErrBadToken) {
					t.Fatalf("verify: %v, want ErrBadToken", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Policy == nil {
				t.Fatal("HS256 gave no policy")
			}
			for r, m := range map[roomstore.Right]map[string]bool{roomstore.Read: c.read, roomstore.Write: c.write} {
				for p, want := range m {
					if got, err := id.Policy.Allow(t.Context(), r, p); err != nil || got != want {
						t.Errorf("%v %q: %v, %v; want %v", r, p, got, err, want)
					}
				}
			}
		})
	}
}

// TestNewTokenMintsWhatHS256Reads checks the tokens NewToken makes: every
// path by default, the storage grant given, and the claims as MeshAgent
// writes them ("storage":{} for every path, an empty paths list kept).
func TestNewTokenMintsWhatHS256Reads(t *testing.T) {
	verify := roomserver.HS256(secret)
	for _, c := range []struct {
		name     string
		opts     []roomserver.TokenOption
		storage  string // the storage grant's JSON
		readable string
		denied   string
	}{
		{"every path by default", nil, `{}`, "x/y", ""},
		{"a grant", []roomserver.TokenOption{roomserver.WithStorage(roomserver.StorageGrant{Paths: paths("team/:ro")})},
			`{"paths":[{"path":"team/","read_only":true}]}`, "team/a", "x"},
		{"an empty list", []roomserver.TokenOption{roomserver.WithStorage(roomserver.StorageGrant{Paths: paths()})},
			`{"paths":[]}`, "", "x"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok, err := roomserver.NewToken(secret, "alice", "r1", time.Hour, c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			var claims roomserver.Claims
			if _, _, err := jwt.NewParser().ParseUnverified(tok, &claims); err != nil {
				t.Fatal(err)
			}
			var storage json.RawMessage
			for _, g := range claims.Grants {
				if g.Name == "api" {
					b, _ := json.Marshal(g.Scope.(map[string]any)["storage"])
					storage = b
				}
			}
			if string(storage) != c.storage {
				t.Errorf("storage grant %s, want %s", storage, c.storage)
			}
			id, err := verify(t.Context(), "r1", tok)
			if err != nil {
				t.Fatal(err)
			}
			if c.readable != "" {
				if ok, _ := id.Policy.Allow(t.Context(), roomstore.Read, c.readable); !ok {
					t.Errorf("%q is not readable", c.readable)
				}
			}
			if ok, _ := id.Policy.Allow(t.Context(), roomstore.Write, c.denied); c.denied != "" && ok {
				t.Errorf("%q is writable", c.denied)
			}
			if exp := claims.ExpiresAt.Time; !id.Expires.Equal(exp.Add(roomserver.Leeway)) {
				t.Errorf("Expires %v, want exp %v plus the leeway", id.Expires, exp)
			}
		})
	}
	if tok, err := roomserver.NewToken(secret, "alice", "r1", 0); err != nil {
		t.Fatal(err)
	} else if id, err := verify(t.Context(), "r1", tok); err != nil || !id.Expires.IsZero() {
		t.Errorf("a token without exp: Expires %v, %v; want never", id.Expires, err)
	}
}

// TestSecretsShorterThan32BytesAreRefused checks both ends of the bound.
func TestSecretsShorterThan32BytesAreRefused(t *testing.T) {
	short := []byte(strings.Repeat("s", roomserver.MinSecretLen-1))
	if _, err := roomserver.NewToken(short, "a", "r1", time.Hour); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("NewToken with %d bytes: %v", len(short), err)
	}
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(r.(string), "at least 32") {
				t.Errorf("HS256 with %d bytes: recovered %v, want a panic naming the bound", len(short), r)
			}
		}()
		roomserver.HS256(short)
	}()
	ok := append(short, 's')
	if _, err := roomserver.NewToken(ok, "a", "r1", time.Hour); err != nil {
		t.Errorf("NewToken with %d bytes: %v", len(ok), err)
	}
	_ = roomserver.HS256(ok)
}
