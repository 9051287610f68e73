package objstore_test

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/objstore"
)

// keys is a Store over a fixed set of object names.
type keys []string

func (k keys) StatFile(_ context.Context, path string) (backend.Info, error) {
	if slices.Contains(k, path) {
		return backend.Info{Path: path, Size: 1}, nil
	}
	return backend.Info{}, backend.Errorf(fs.ErrNotExist, nil, "")
}

func (k keys) HasChildren(_ context.Context, path string) (bool, error) {
	return slices.ContainsFunc(k, func(key string) bool { return strings.HasPrefix(key, path+"/") }), nil
}

// gone is a Store whose bucket is missing.
type gone struct{}

func (gone) StatFile(context.Context, string) (backend.Info, error) {
	return backend.Info{}, backend.Errorf(fs.ErrNotExist, nil, "")
}

func (gone) HasChildren(context.Context, string) (bool, error) {
	return false, backend.ErrStoreUnavailable
}

func TestStat(t *testing.T) {
	s := keys{"f", "dir/x"}
	for _, c := range []struct {
		path   string
		folder bool
		err    error
	}{{"", true, nil}, {"f", false, nil}, {"dir", true, nil}, {"nope", false, fs.ErrNotExist}, {"di", false, fs.ErrNotExist}} {
		info, err := objstore.Stat(t.Context(), s, c.path)
		if !errors.Is(err, c.err) || (err == nil && info.IsFolder != c.folder) {
			t.Errorf("Stat(%q) = %+v, %v; want folder %v, error %v", c.path, info, err, c.folder, c.err)
		}
	}
	if _, err := objstore.Stat(t.Context(), gone{}, "f"); !errors.Is(err, backend.ErrStoreUnavailable) || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat in a missing bucket = %v, want backend.ErrStoreUnavailable alone", err)
	}
}

func TestCheckMoveTarget(t *testing.T) {
	s := keys{"f", "dir/x"}
	for _, c := range []struct {
		dst       string
		overwrite bool
		want      error
	}{
		{"new", false, nil}, {"f", true, nil}, {"f", false, fs.ErrExist},
		{"dir", false, backend.ErrIsFolder}, {"dir", true, backend.ErrIsFolder},
	} {
		if err := objstore.CheckMoveTarget(t.Context(), s, c.dst, c.overwrite); !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("CheckMoveTarget(%q, overwrite %v) = %v, want %v", c.dst, c.overwrite, err, c.want)
		}
	}
	if err := objstore.CheckMoveTarget(t.Context(), gone{}, "new", false); !errors.Is(err, backend.ErrStoreUnavailable) {
		t.Errorf("CheckMoveTarget in a missing bucket = %v, want backend.ErrStoreUnavailable", err)
	}
}

func TestListSkipsWhatNoPathNames(t *testing.T) {
	entries := func(yield func(objstore.Entry, error) bool) {
		for _, e := range []objstore.Entry{
			{Key: "room/d/", Prefix: true},            // the folder marker
			{Key: "room/d/sub/", Prefix: true},        // a folder
			{Key: "room/d//", Prefix: true},           // "d//x": an empty name
			{Key: "room/d/.roomstore/", Prefix: true}, // reserved
			{Key: "room/d/f", Size: 3, ETag: "e"},     // a file
			{Key: "room/d/.roomstore-x", Size: 1},     // reserved
			{Key: "room/d/deeper/g", Size: 1},         // not a direct child
		} {
			if !yield(e, nil) {
				return
			}
		}
		yield(objstore.Entry{}, backend.ErrStoreUnavailable)
	}
	var got []backend.Info
	var errs []error
	for info, err := range objstore.List("d", "room/d/", entries) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, info)
	}
	want := []backend.Info{{Path: "d/sub", IsFolder: true}, {Path: "d/f", Size: 3, ETag: "e"}}
	if !slices.Equal(got, want) {
		t.Errorf("List = %+v, want %+v", got, want)
	}
	if len(errs) != 1 || !errors.Is(errs[0], backend.ErrStoreUnavailable) {
		t.Errorf("List errors = %v, want the listing's one", errs)
	}

	n := 0
	for range objstore.List("d", "room/d/", entries) {
		n++
		break // yield must not be called again: the range would panic
	}
	if n != 1 {
		t.Errorf("stopping early yielded %d entries", n)
	}
}
