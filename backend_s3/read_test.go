package backend_s3_test

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/roomstore/roomstore/backend"
	"io"
	"io/fs"
	"testing"
)

func TestRead(t *testing.T) {
	g := startGateway(t)
	s := g.newStore(t)
	data := content(1, part+100)
	size := int64(len(data))
	put(t, s, "f", data)
	put(t, s, "empty", nil)
	st, err := s.Stat(t.Context(), "f")
	if err != nil {
		t.Fatal(err)
	}

	ranges := []struct {
		path           string
		offset, length int64
		want           []byte
	}{
		{"f", 0, -1, data},
		{"f", 10, 100, data[10:110]},
		{"f", 0, 1, data[:1]},
		{"f", 5, 0, nil},
		{"f", size - 1, -1, data[size-1:]},
		{"f", size - 10, 100, data[size-10:]},
		{"f", size, -1, nil},
		{"f", size, 5, nil},
		{"f", size, 0, nil},
		{"empty", 0, -1, nil},
		{"empty", 0, 10, nil},
		{"empty", 0, 0, nil},
	}
	for _, r := range ranges {
		t.Run(fmt.Sprintf("%s from %d length %d", r.path, r.offset, r.length), func(t *testing.T) {
			rc, info, err := s.Read(t.Context(), r.path, r.offset, r.length)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, r.want) {
				t.Errorf("read %d bytes, want %d", len(got), len(r.want))
			}
			if r.path == "f" && (info.Size != size || info.ETag != st.ETag || !info.ModTime.Equal(st.ModTime)) {
				t.Errorf("Info = %+v, want the Stat %+v", info, st)
			}
		})
	}

	for _, r := range []struct {
		path           string
		offset, length int64
	}{
		{"f", size + 1, -1},
		{"f", size + 1, 10},
		{"f", size + 1, 0},
		{"empty", 1, -1},
	} {
		t.Run(fmt.Sprintf("%s from %d length %d is invalid", r.path, r.offset, r.length), func(t *testing.T) {
			_, _, err := s.Read(t.Context(), r.path, r.offset, r.length)
			assertIs(t, err, fs.ErrInvalid)
		})
	}

	t.Run("a missing file is ErrNotExist", func(t *testing.T) {
		for _, length := range []int64{-1, 0, 5} {
			_, _, err := s.Read(t.Context(), "nope", 0, length)
			assertIs(t, err, fs.ErrNotExist)
		}
	})

	t.Run("a folder is not a file", func(t *testing.T) {
		put(t, s, "dir/x", []byte("x"))
		_, _, err := s.Read(t.Context(), "dir", 0, -1)
		if !errors.Is(err, backend.ErrIsFolder) {
			t.Errorf("Read of a folder: %v, want backend.ErrIsFolder", err)
		}
		if err := s.Remove(t.Context(), "dir/x", backend.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
	})
}
