package backend_gcs

import (
	"errors"
	"io"
	"io/fs"
	"slices"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
)

func TestRead(t *testing.T) {
	s := newStore(t, "", "p")
	data := randBytes(2*testChunk+100, 7)
	created := mustCreate(t, s, "f", data)
	mustCreate(t, s, "empty", nil)

	for _, c := range []struct {
		name           string
		offset, length int64
		want           []byte
	}{
		{"whole file", 0, -1, data},
		{"from an offset to the end", 1000, -1, data[1000:]},
		{"a range inside", 10, 100, data[10:110]},
		{"a range across a chunk boundary", testChunk - 5, 10, data[testChunk-5 : testChunk+5]},
		{"a length past the end is cut", int64(len(data)) - 3, 100, data[len(data)-3:]},
		{"offset equal to the size is empty", int64(len(data)), -1, nil},
		{"zero length is empty", 5, 0, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, info, err := s.Read(t.Context(), "f", c.offset, c.length)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, c.name, got, c.want)
			if info.Size != int64(len(data)) || info.ETag != created.ETag || info.Path != "f" || info.ModTime.IsZero() {
				t.Errorf("Info = %+v, want the file's (size %d, ETag %s)", info, len(data), created.ETag)
			}
		})
	}

	t.Run("offset past the end is ErrInvalid", func(t *testing.T) {
		if _, _, err := s.Read(t.Context(), "f", int64(len(data))+1, -1); !errors.Is(err, fs.ErrInvalid) {
			t.Fatalf("Read = %v, want fs.ErrInvalid", err)
		}
	})

	t.Run("an empty file reads empty", func(t *testing.T) {
		mustEqual(t, "empty", readAll(t, s, "empty"), nil)
		if _, _, err := s.Read(t.Context(), "empty", 1, -1); !errors.Is(err, fs.ErrInvalid) {
			t.Fatalf("Read past an empty file = %v, want fs.ErrInvalid", err)
		}
	})

	t.Run("a reader keeps serving the version it opened", func(t *testing.T) {
		mustCreate(t, s, "v", []byte("version one"))
		r, info, err := s.Read(t.Context(), "v", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		mustCreate(t, s, "v", []byte("version two, longer"))
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("read the older version: %v", err)
		}
		if string(got) != "version one" || info.Size != int64(len("version one")) {
			t.Fatalf("read %q with Info size %d, want version one", got, info.Size)
		}
	})

	t.Run("XML and JSON reads agree", func(t *testing.T) {
		// The test client reads through the XML API; the opener's emulator
		// client reads through the JSON API.
		jc, err := newEmulatorClient(t.Context(), s.endpoint)
		if err != nil {
			t.Fatal(err)
		}
		defer jc.Close()
		jb, err := New(jc, s.bucket, "p")
		if err != nil {
			t.Fatal(err)
		}
		r, _, err := jb.Read(t.Context(), "f", 3, 50)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatalf("JSON read: %v", err)
		}
		mustEqual(t, "JSON read", got, data[3:53])
	})
}

func TestStatAndList(t *testing.T) {
	ep := newServer(t)

	t.Run("files and implicit folders", func(t *testing.T) {
		s := newStore(t, ep, "p")
		for _, p := range []string{"a.txt", "dir/b.txt", "dir/sub/c.txt", "t-/x", "t/y", "z"} {
			mustCreate(t, s, p, []byte(p))
		}
		if got, want := list(t, s, ""), []string{"a.txt", "dir/", "t-/", "t/", "z"}; !slices.Equal(got, want) {
			t.Errorf("List root = %q, want %q", got, want)
		}
		if got, want := list(t, s, "dir"), []string{"b.txt", "sub/"}; !slices.Equal(got, want) {
			t.Errorf("List dir = %q, want %q", got, want)
		}
		if got, want := list(t, s, "t"), []string{"y"}; !slices.Equal(got, want) {
			t.Errorf("List t = %q, want %q (t-/ must not leak in)", got, want)
		}
		for info, err := range s.List(t.Context(), "dir") {
			if err != nil {
				t.Fatal(err)
			}
			if info.Path == "dir/b.txt" && (info.Size != int64(len("dir/b.txt")) || info.ETag == "" || info.ModTime.IsZero()) {
				t.Errorf("file entry %+v lacks size, ETag or time", info)
			}
			if info.Path == "dir/sub" && (info.Size != 0 || info.ETag != "" || !info.ModTime.IsZero()) {
				t.Errorf("folder entry %+v is not zero apart from its path", info)
			}
		}
		st, err := s.Stat(t.Context(), "dir/sub")
		if err != nil || !st.IsFolder || st.Path != "dir/sub" {
			t.Errorf("Stat dir/sub = %+v, %v; want a folder", st, err)
		}
		st, err = s.Stat(t.Context(), "dir/b.txt")
		if err != nil || st.IsFolder {
			t.Errorf("Stat dir/b.txt = %+v, %v; want a file", st, err)
		}
		if _, err := s.Stat(t.Context(), "di"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat of a name prefix = %v, want fs.ErrNotExist", err)
		}
	})

	t.Run("a missing folder or a file lists nothing", func(t *testing.T) {
		s := newStore(t, ep, "p")
		mustCreate(t, s, "file", []byte("x"))
		if got := list(t, s, "nowhere"); len(got) != 0 {
			t.Errorf("List missing = %q", got)
		}
		if got := list(t, s, "file"); len(got) != 0 {
			t.Errorf("List of a file = %q", got)
		}
	})

	t.Run("a folder vanishes with its last file", func(t *testing.T) {
		s := newStore(t, ep, "p")
		mustCreate(t, s, "d/e/f", []byte("x"))
		if err := s.Remove(t.Context(), "d/e/f", backend.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"d", "d/e"} {
			if _, err := s.Stat(t.Context(), p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat %q after its last file went = %v, want fs.ErrNotExist", p, err)
			}
		}
		if got := list(t, s, ""); len(got) != 0 {
			t.Errorf("List root = %q, want empty", got)
		}
	})

	t.Run("reserved objects and other prefixes stay out", func(t *testing.T) {
		s := newStore(t, ep, "p")
		mustCreate(t, s, "f", []byte("x"))
		w := openWriter(t, s, "f", true, backend.WriteOptions{})
		write(t, w, []byte("staged"), 10)
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		w = openWriter(t, s, "f", true, backend.WriteOptions{})
		write(t, w, []byte("staged"), 10)
		defer w.Abort(t.Context())
		s.holdClaim(t, "f", "1")
		for _, name := range []string{"p2/x", "px", "other/p/y", "p/.roomstore/stray"} {
			ow := s.client.Bucket(s.bucket).Object(name).NewWriter(t.Context())
			if _, err := ow.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if err := ow.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if got := list(t, s, ""); !slices.Equal(got, []string{"f"}) {
			t.Fatalf("List root = %q, want [f]", got)
		}
	})

	t.Run("without a prefix the store is the whole bucket", func(t *testing.T) {
		s := newStore(t, ep, "")
		mustCreate(t, s, "top", []byte("x"))
		mustAppend(t, s, "top", []byte("y"))
		if got := s.objects(t); !slices.Equal(got, []string{"top"}) {
			t.Fatalf("bucket holds %q, want [top]", got)
		}
		if got := list(t, s, ""); !slices.Equal(got, []string{"top"}) {
			t.Fatalf("List root = %q", got)
		}
	})

	t.Run("prefix slashes are trimmed", func(t *testing.T) {
		s := newStore(t, ep, "/deep/pre/")
		mustCreate(t, s, "f", []byte("x"))
		if got := s.objects(t); !slices.Equal(got, []string{"deep/pre/f"}) {
			t.Fatalf("bucket holds %q, want [deep/pre/f]", got)
		}
	})

	t.Run("list reports a missing bucket", func(t *testing.T) {
		s := newStore(t, ep, "p")
		b, err := New(s.client, "no-such-bucket", "")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range b.List(t.Context(), "") {
			err = e
		}
		if err == nil || !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, storage.ErrBucketNotExist) {
			t.Fatalf("List in a missing bucket: %v, want fs.ErrNotExist", err)
		}
	})
}
