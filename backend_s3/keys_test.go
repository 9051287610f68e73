package backend_s3_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_s3"
	"github.com/roomstore/roomstore/roompath"
)

// weirdNames are paths that must round-trip byte for byte (SPEC 2).
var weirdNames = []string{
	"with space.txt",
	`quote"s and 'apostrophes'`,
	"%41 percent",
	"what?.txt",
	"hash#tag",
	"plus+sign",
	`back\slash`,
	"emoji 😀 🎉",
	"ünïcödé/ñ.txt",
	"amp&eq=semi;colon",
	"[brackets]{braces}(parens)",
	"star*caret^pipe|tilde~",
	"t-/beside",
	"t/beside",
	"dir with space/nested %2F/file",
}

func TestWeirdKeys(t *testing.T) {
	g := startGateway(t)
	s := g.newStore(t)
	for i, name := range weirdNames {
		t.Run(name, func(t *testing.T) {
			data := content(uint64(i), 100+i)
			put(t, s, name, data)
			assertContent(t, s, name, data)
			info, err := s.Stat(t.Context(), name)
			if err != nil || info.Path != name || info.Size != int64(len(data)) {
				t.Fatalf("Stat = %+v, %v", info, err)
			}
			found := false
			for info, err := range s.List(t.Context(), roompath.Parent(name)) {
				if err != nil {
					t.Fatal(err)
				}
				if info.Path == name && !info.IsFolder {
					found = true
				}
			}
			if !found {
				t.Errorf("List(%q) misses %q", roompath.Parent(name), name)
			}
			u, err := s.Presign(t.Context(), name, backend.PresignOptions{Expiry: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if status, body, _ := fetch(t, u); status != http.StatusOK || !bytes.Equal(body, data) {
				t.Errorf("presigned GET = %d with %d bytes, want 200 with %d", status, len(body), len(data))
			}
			more := []byte("+more")
			appendData(t, s, name, more)
			assertContent(t, s, name, append(data, more...))
		})
	}

	t.Run("t-/ and t/ are two folders", func(t *testing.T) {
		got := names(t, s, "")
		for _, want := range []string{"t-/", "t/"} {
			found := false
			for _, n := range got {
				found = found || n == want
			}
			if !found {
				t.Errorf("List root = %q, misses %q", got, want)
			}
		}
		for _, dir := range []string{"t", "t-"} {
			if info, err := s.Stat(t.Context(), dir); err != nil || !info.IsFolder {
				t.Errorf("Stat(%q) = %+v, %v; want a folder", dir, info, err)
			}
		}
	})

	t.Run("large appends copy weird source keys on the server", func(t *testing.T) {
		for i, name := range []string{"plus+sign %41 #?.bin", `back\slash 😀.bin`, "space & more/é+é.bin"} {
			old := content(uint64(50+i), part+1)
			put(t, s, name, old)
			added := content(uint64(60+i), 10)
			appendData(t, s, name, added)
			assertContent(t, s, name, append(old, added...))
			if err := s.Remove(t.Context(), name, backend.RemoveOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("every name can be removed", func(t *testing.T) {
		for _, name := range weirdNames {
			if err := s.Remove(t.Context(), name, backend.RemoveOptions{}); err != nil {
				t.Fatalf("Remove %q: %v", name, err)
			}
			if _, err := s.Stat(t.Context(), name); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat after Remove %q: %v", name, err)
			}
		}
		if got := names(t, s, ""); len(got) != 0 {
			t.Errorf("List root after removing everything = %q", got)
		}
	})
}

func TestStatAndList(t *testing.T) {
	g := startGateway(t)

	t.Run("folders are implicit and vanish with their last file", func(t *testing.T) {
		s := g.newStore(t)
		put(t, s, "a/b/c.txt", []byte("c"))
		put(t, s, "a/d.txt", []byte("dd"))
		for _, dir := range []string{"a", "a/b"} {
			info, err := s.Stat(t.Context(), dir)
			if err != nil || !info.IsFolder || info.Path != dir || info.Size != 0 || info.ETag != "" {
				t.Errorf("Stat(%q) = %+v, %v; want a bare folder", dir, info, err)
			}
		}
		info, err := s.Stat(t.Context(), "a/d.txt")
		if err != nil || info.IsFolder || info.Size != 2 || info.ETag == "" || info.ModTime.IsZero() {
			t.Errorf("Stat file = %+v, %v", info, err)
		}
		if got, want := names(t, s, "a"), []string{"b/", "d.txt"}; !sameSet(got, want) {
			t.Errorf("List a = %q, want %q", got, want)
		}
		if err := s.Remove(t.Context(), "a/b/c.txt", backend.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(t.Context(), "a/b"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat of an emptied folder: %v, want fs.ErrNotExist", err)
		}
		if got, want := names(t, s, "a"), []string{"d.txt"}; !sameSet(got, want) {
			t.Errorf("List a = %q, want %q", got, want)
		}
		if err := s.Remove(t.Context(), "a/d.txt", backend.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := names(t, s, ""); len(got) != 0 {
			t.Errorf("List root = %q, want nothing", got)
		}
	})

	t.Run("a missing folder and a file list nothing", func(t *testing.T) {
		s := g.newStore(t)
		put(t, s, "f", []byte("x"))
		for _, dir := range []string{"missing", "f"} {
			if got := names(t, s, dir); len(got) != 0 {
				t.Errorf("List(%q) = %q, want nothing", dir, got)
			}
		}
		assertIs(t, s.Remove(t.Context(), "missing", backend.RemoveOptions{}), fs.ErrNotExist)
	})

	t.Run("reserved names never show", func(t *testing.T) {
		s := g.newStore(t)
		put(t, s, "visible", []byte("x"))
		raw := []string{"room/.roomstore/tmp/x", "room/.roomstore-lock", "room/sub/.roomstore.y", "room/sub/z"}
		for _, key := range raw {
			if _, err := g.client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key), Body: bytes.NewReader(nil)}); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := names(t, s, ""), []string{"visible", "sub/"}; !sameSet(got, want) {
			t.Errorf("List root = %q, want %q", got, want)
		}
		if got, want := names(t, s, "sub"), []string{"z"}; !sameSet(got, want) {
			t.Errorf("List sub = %q, want %q", got, want)
		}
		for _, key := range raw {
			if _, err := g.client.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("stores under other prefixes are invisible", func(t *testing.T) {
		bucket := g.NewBucket(t)
		one := g.storeIn(t, bucket, "one", g.client)
		two := g.storeIn(t, bucket, "two", g.client)
		whole := g.storeIn(t, bucket, "", g.client)
		put(t, one, "f", []byte("1"))
		put(t, two, "g", []byte("2"))
		if got := names(t, one, ""); joinNames(got) != "f" {
			t.Errorf("List one = %q", got)
		}
		if _, err := two.Stat(t.Context(), "f"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat f in two: %v", err)
		}
		if got, want := names(t, whole, ""), []string{"one/", "two/"}; !sameSet(got, want) {
			t.Errorf("List of the whole bucket = %q, want %q", got, want)
		}
	})

	t.Run("listing pages through large folders", func(t *testing.T) {
		var lists atomic.Int64
		bucket := g.NewBucket(t)
		client := g.hookedClient(func(_ context.Context, op string) error {
			if op == "ListObjectsV2" {
				lists.Add(1)
			}
			return nil
		})
		s := g.storeIn(t, bucket, "room", client, backend_s3.WithListPageSize(2))
		var want []string
		for _, p := range []string{"a", "b", "c", "d/x", "e/y", "f", "g/z"} {
			put(t, s, p, []byte(p))
			if d := roompath.Parent(p); d != "" {
				want = append(want, d+"/")
			} else {
				want = append(want, p)
			}
		}
		lists.Store(0)
		if got := names(t, s, ""); !sameSet(got, want) {
			t.Errorf("List = %q, want %q", got, want)
		}
		if lists.Load() < 3 {
			t.Errorf("%d ListObjectsV2 pages, want at least 3 with page size 2", lists.Load())
		}
	})
}
