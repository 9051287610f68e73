package backend_gcs

import (
	"errors"
	"io/fs"
	"net/url"
	"slices"
	"testing"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/testserver"
)

func TestOpenURL(t *testing.T) {
	ep := newServer(t)

	t.Run("the gs scheme is registered", func(t *testing.T) {
		if !slices.Contains(backend.Schemes(), "gs") {
			t.Fatalf("schemes %q lack gs", backend.Schemes())
		}
	})

	t.Run("gs://bucket/prefix?endpoint= talks to the emulator under the prefix", func(t *testing.T) {
		bucket := testserver.NewFakeGCSBucket(t, ep)
		raw := "gs://" + bucket + "/rooms/one?endpoint=" + url.QueryEscape(ep)
		b, err := backend.Open(t.Context(), raw)
		if err != nil {
			t.Fatalf("Open(%s): %v", raw, err)
		}
		gb, ok := b.(*Backend)
		if !ok {
			t.Fatalf("Open returned %T, want *Backend", b)
		}
		mustCreate(t, b, "a/b.txt", []byte("via URL"))
		mustAppend(t, b, "a/b.txt", []byte(", appended"))
		mustEqual(t, "a/b.txt", readAll(t, b, "a/b.txt"), []byte("via URL, appended"))

		raw2 := &store{Backend: gb, client: testserver.FakeGCSClient(t, ep), bucket: bucket}
		if got := raw2.objects(t); !slices.Equal(got, []string{"rooms/one/a/b.txt"}) {
			t.Fatalf("bucket holds %q, want [rooms/one/a/b.txt]", got)
		}
		if err := gb.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := gb.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})

	t.Run("bad URLs are ErrInvalid", func(t *testing.T) {
		for _, raw := range []string{
			"gs:///prefix?endpoint=" + url.QueryEscape(ep),
			"gs://bucket/prefix?endpoint=" + url.QueryEscape(ep) + "&region=x",
			"gs://bucket/prefix?endpoint=ftp://127.0.0.1:1",
			"gs://bucket?endpoint=127.0.0.1:1",
			"gs://bucket/a/../b?endpoint=" + url.QueryEscape(ep), // a prefix that leads into another store
			"gs://bucket/a//b?endpoint=" + url.QueryEscape(ep),
			"gs://bucket/.roomstore?endpoint=" + url.QueryEscape(ep),
		} {
			if _, err := backend.Open(t.Context(), raw); !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("Open(%s) = %v, want fs.ErrInvalid", raw, err)
			}
		}
	})

	t.Run("Close of a Backend from New leaves the caller's client open", func(t *testing.T) {
		s := newStore(t, ep, "p")
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, s, "still", []byte("works"))
	})
}
