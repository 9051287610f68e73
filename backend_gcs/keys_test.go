package backend_gcs

import (
	"errors"
	"io/fs"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/roomstore/roomstore/backend"
)

// weirdNames are names that must round-trip byte for byte (SPEC 2).
var weirdNames = []string{
	"with space",
	"%41",
	"100%",
	"q?x=1&y=2",
	"hash#frag",
	"a+b",
	`back\slash`,
	`quote"and'apos`,
	"emoji 😀",
	"ünïcödé",
	"semi;colon,comma",
	"tilde~star*",
	"dots...",
	"brackets[]{}<>|^`",
}

func TestWeirdKeys(t *testing.T) {
	_, keyPEM := throwawayKey(t)
	s := newStore(t, "", "p q", WithSigner(testSigner, keyPEM))

	for _, name := range weirdNames {
		for _, path := range []string{name, "dir " + name + "/" + name} {
			t.Run(path, func(t *testing.T) {
				data := []byte("content of " + path)
				mustCreate(t, s, path, data)
				mustAppend(t, s, path, []byte("+more"))
				want := append(data, "+more"...)
				mustEqual(t, path, readAll(t, s, path), want)

				info, err := s.Stat(t.Context(), path)
				if err != nil || info.Path != path || info.Size != int64(len(want)) {
					t.Fatalf("Stat = %+v, %v", info, err)
				}
				dir := ""
				if path != name {
					dir = "dir " + name
				}
				if got := list(t, s, dir); !slices.Contains(got, name) {
					t.Fatalf("List %q = %q, lacks %q", dir, got, name)
				}

				cd := "attachment; filename*=UTF-8''" + url.PathEscape(name)
				u, err := s.Presign(t.Context(), path, backend.PresignOptions{Expiry: time.Minute, ContentDisposition: cd})
				if err != nil {
					t.Fatal(err)
				}
				code, h, body := httpGetHeader(t, u)
				if code != 200 || string(body) != string(want) {
					t.Fatalf("GET %s = %d %q, want %q", u, code, body, want)
				}
				if got := h.Get("Content-Disposition"); got != cd {
					t.Fatalf("GET %s: Content-Disposition = %q, want %q", u, got, cd)
				}

				if err := s.Remove(t.Context(), path, backend.RemoveOptions{}); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Stat(t.Context(), path); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("Stat after Remove = %v", err)
				}
			})
		}
	}

	t.Run("t-/ beside t/ stay apart", func(t *testing.T) {
		mustCreate(t, s, "t-/a", []byte("dash"))
		mustCreate(t, s, "t/a", []byte("slash"))
		if got, want := list(t, s, "t"), []string{"a"}; !slices.Equal(got, want) {
			t.Errorf("List t = %q, want %q", got, want)
		}
		if got, want := list(t, s, "t-"), []string{"a"}; !slices.Equal(got, want) {
			t.Errorf("List t- = %q, want %q", got, want)
		}
		mustEqual(t, "t-/a", readAll(t, s, "t-/a"), []byte("dash"))
		mustEqual(t, "t/a", readAll(t, s, "t/a"), []byte("slash"))
		if err := s.Remove(t.Context(), "t/a", backend.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(t.Context(), "t"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat t after its only file went = %v, want fs.ErrNotExist", err)
		}
		if info, err := s.Stat(t.Context(), "t-"); err != nil || !info.IsFolder {
			t.Errorf("Stat t- = %+v, %v; want the folder", info, err)
		}
	})
}
