package backend_gcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/roomstore/roomstore/backend"
)

// keepBy is the Keep of the history tests' changes.
var keepBy = &backend.Keep{Participant: "alice"}

// Sizes that take both ways of a guarded Create: bytes held to the
// commit and sent in one request, and an upload begun before it.
var createSizes = []struct {
	name string
	size int
}{
	{"one request", 10},
	{"resumable", 2*testChunk + 5},
}

// create writes data to path with opts and commits, retrying lost races
// as the engine does; it returns the Commit's outcome.
func create(t *testing.T, b backend.Backend, path string, data []byte, opts backend.WriteOptions) (backend.Info, error) {
	t.Helper()
	w := openWriter(t, b, path, false, opts)
	write(t, w, data, 64<<10)
	return commitWithBackoff(callCtx(t), w)
}

// appendWith appends data to path with opts, retrying lost races.
func appendWith(t *testing.T, b backend.Backend, path string, data []byte, opts backend.WriteOptions) (backend.Info, error) {
	t.Helper()
	w := openWriter(t, b, path, true, opts)
	write(t, w, data, 64<<10)
	return commitWithBackoff(callCtx(t), w)
}

// versions collects the versions of path, oldest replaced first.
func versions(t *testing.T, b backend.Backend, path string) []backend.Version {
	t.Helper()
	var out []backend.Version
	for v, err := range b.Versions(t.Context(), path) {
		if err != nil {
			t.Fatalf("Versions %q: %v", path, err)
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b backend.Version) int { return a.Replaced.Compare(b.Replaced) })
	return out
}

// keptIn collects Kept(dir), by path and then oldest replaced first.
func keptIn(t *testing.T, b backend.Backend, dir string) []backend.Version {
	t.Helper()
	var out []backend.Version
	for v, err := range b.Kept(t.Context(), dir) {
		if err != nil {
			t.Fatalf("Kept %q: %v", dir, err)
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b backend.Version) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return a.Replaced.Compare(b.Replaced)
	})
	return out
}

func paths(vs []backend.Version) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Path)
	}
	return out
}

func etags(vs []backend.Version) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.ETag)
	}
	return out
}

// readVersion reads length bytes of version id of path from offset.
func readVersion(t *testing.T, b backend.Backend, path, id string, offset, length int64) ([]byte, backend.Version) {
	t.Helper()
	r, v, err := b.ReadVersion(t.Context(), path, id, offset, length)
	if err != nil {
		t.Fatalf("ReadVersion %q %s [%d,%d): %v", path, id, offset, length, err)
	}
	defer r.Close()
	p, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("ReadVersion %q %s: %v", path, id, err)
	}
	return p, v
}

// keptObjects lists the objects of kept versions in s's bucket.
func (s *store) keptObjects(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, n := range s.objects(t) {
		if strings.HasPrefix(n, s.versionsBase()) {
			out = append(out, n)
		}
	}
	return out
}

// noStrays fails t if s keeps anything of its own but kept versions: a
// claim, a temporary, a clock probe.
func (s *store) noStrays(t *testing.T) {
	t.Helper()
	var out []string
	for _, n := range s.reserved(t) {
		if !strings.HasPrefix(n, s.versionsBase()) {
			out = append(out, n)
		}
	}
	if len(out) != 0 {
		t.Errorf("reserved objects left behind: %q", out)
	}
}

// isKeepCopy reports whether r copies a version of the object key to a
// kept version.
func (s *store) isKeepCopy(r *http.Request, path string) bool {
	return isCopy(r) && strings.Contains(r.URL.Path, "/o/"+s.key(path)+"/rewriteTo/") &&
		strings.Contains(r.URL.Path, "/o/"+s.versionsBase())
}

func wantIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s = %v, want %v", what, err, want)
	}
}

func TestPreconditions(t *testing.T) {
	ep := newServer(t)

	for _, sz := range createSizes {
		t.Run("create, "+sz.name+": IfMatch holds only while the file is the version named", func(t *testing.T) {
			s := newStore(t, ep, "room")
			old := mustCreate(t, s, "f", []byte("old"))
			data := randBytes(sz.size, 1)
			for _, etag := range []string{"1", "0", "-1", "007", "x", old.ETag + "0", " " + old.ETag} {
				_, err := create(t, s, "f", data, backend.WriteOptions{Precondition: backend.Precondition{IfMatch: etag}})
				wantIs(t, "Commit IfMatch "+etag, err, backend.ErrPrecondition)
			}
			mustEqual(t, "f after refused commits", readAll(t, s, "f"), []byte("old"))
			info, err := create(t, s, "f", data, backend.WriteOptions{Precondition: backend.Precondition{IfMatch: old.ETag}})
			if err != nil {
				t.Fatalf("Commit IfMatch the current ETag: %v", err)
			}
			mustEqual(t, "f", readAll(t, s, "f"), data)
			if st, _ := s.Stat(t.Context(), "f"); !sameInfo(st, info) {
				t.Errorf("Stat = %+v, Commit said %+v", st, info)
			}
			_, err = create(t, s, "f", []byte("late"), backend.WriteOptions{Precondition: backend.Precondition{IfMatch: old.ETag}})
			wantIs(t, "Commit IfMatch a replaced ETag", err, backend.ErrPrecondition)
			mustEqual(t, "f", readAll(t, s, "f"), data)
			_, err = create(t, s, "missing", data, backend.WriteOptions{Precondition: backend.Precondition{IfMatch: old.ETag}})
			wantIs(t, "Commit IfMatch on a missing file", err, backend.ErrPrecondition)
			assertMissing(t, s, "missing")
			s.noStrays(t)
		})

		t.Run("create, "+sz.name+": IfMatch loses to a commit made while the writer was open", func(t *testing.T) {
			s := newStore(t, ep, "room")
			old := mustCreate(t, s, "f", []byte("old"))
			w := openWriter(t, s, "f", false, backend.WriteOptions{Precondition: backend.Precondition{IfMatch: old.ETag}, Keep: keepBy})
			write(t, w, randBytes(sz.size, 2), 64<<10)
			mustCreate(t, s.reopen(t), "f", []byte("theirs"))
			_, err := w.Commit(callCtx(t))
			wantIs(t, "Commit", err, backend.ErrPrecondition)
			mustEqual(t, "f", readAll(t, s, "f"), []byte("theirs"))
			if _, err := w.Commit(t.Context()); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Commit after ErrPrecondition = %v, want fs.ErrClosed", err)
			}
			if v := versions(t, s, "f"); len(v) != 0 {
				t.Errorf("versions after a refused commit: %+v", v)
			}
			s.noStrays(t)
		})

		t.Run("create, "+sz.name+`: IfNoneMatch "*" refuses a file with ErrPrecondition, Exclusive or not`, func(t *testing.T) {
			s := newStore(t, ep, "room")
			mustCreate(t, s, "f", []byte("old"))
			data := randBytes(sz.size, 3)
			for _, exclusive := range []bool{false, true} {
				_, err := create(t, s, "f", data, backend.WriteOptions{Exclusive: exclusive, Precondition: backend.Precondition{IfNoneMatch: "*"}})
				wantIs(t, fmt.Sprintf("Commit (Exclusive %v)", exclusive), err, backend.ErrPrecondition)
			}
			mustEqual(t, "f", readAll(t, s, "f"), []byte("old"))

			w := openWriter(t, s, "new", false, backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: "*"}})
			write(t, w, data, 64<<10)
			mustCreate(t, s.reopen(t), "new", []byte("theirs"))
			_, err := w.Commit(callCtx(t))
			wantIs(t, "Commit over a file that appeared", err, backend.ErrPrecondition)
			mustEqual(t, "new", readAll(t, s, "new"), []byte("theirs"))

			if _, err := create(t, s, "fresh", data, backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: "*"}, Keep: keepBy}); err != nil {
				t.Fatalf("Commit of a new file: %v", err)
			}
			mustEqual(t, "fresh", readAll(t, s, "fresh"), data)
			s.noStrays(t)
		})

		t.Run("create, "+sz.name+": IfNoneMatch of an ETag refuses only that version", func(t *testing.T) {
			s := newStore(t, ep, "room")
			old := mustCreate(t, s, "f", []byte("old"))
			data := randBytes(sz.size, 4)
			_, err := create(t, s, "f", data, backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: old.ETag}})
			wantIs(t, "Commit IfNoneMatch the current ETag", err, backend.ErrPrecondition)
			mustEqual(t, "f", readAll(t, s, "f"), []byte("old"))
			if _, err := create(t, s, "f", data, backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: "12345"}}); err != nil {
				t.Fatalf("Commit IfNoneMatch another ETag: %v", err)
			}
			mustEqual(t, "f", readAll(t, s, "f"), data)
			if _, err := create(t, s, "g", data, backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: old.ETag}}); err != nil {
				t.Fatalf("Commit IfNoneMatch on a missing file: %v", err)
			}
			mustEqual(t, "g", readAll(t, s, "g"), data)
			s.noStrays(t)
		})
	}

	t.Run("append: IfMatch appends to the version named and refuses others with ErrPrecondition", func(t *testing.T) {
		s := newStore(t, ep, "room")
		old := mustCreate(t, s, "f", []byte("old,"))
		if _, err := appendWith(t, s, "f", []byte("one"), backend.WriteOptions{Precondition: backend.Precondition{IfMatch: old.ETag}}); err != nil {
			t.Fatalf("append IfMatch the current ETag: %v", err)
		}
		mustEqual(t, "f", readAll(t, s, "f"), []byte("old,one"))
		w := openWriter(t, s, "f", true, backend.WriteOptions{Precondition: backend.Precondition{IfMatch: old.ETag}})
		write(t, w, []byte("two"), 10)
		_, err := w.Commit(callCtx(t))
		wantIs(t, "append IfMatch a replaced ETag", err, backend.ErrPrecondition)
		if errors.Is(err, backend.ErrConflict) {
			t.Errorf("append IfMatch a replaced ETag = %v, also ErrConflict", err)
		}
		if _, err := w.Commit(t.Context()); !errors.Is(err, fs.ErrClosed) {
			t.Errorf("Commit after ErrPrecondition = %v, want fs.ErrClosed", err)
		}
		_, err = appendWith(t, s, "missing", []byte("x"), backend.WriteOptions{Precondition: backend.Precondition{IfMatch: old.ETag}})
		wantIs(t, "append IfMatch to a missing file", err, backend.ErrPrecondition)
		assertMissing(t, s, "missing")
		mustEqual(t, "f", readAll(t, s, "f"), []byte("old,one"))
		s.noStrays(t)
	})

	t.Run("append: a file changed after a lost race is ErrPrecondition", func(t *testing.T) {
		s := newStore(t, ep, "room")
		old := mustCreate(t, s, "f", []byte("old,"))
		release := s.holdClaim(t, "f", old.ETag)
		w := openWriter(t, s, "f", true, backend.WriteOptions{Precondition: backend.Precondition{IfMatch: old.ETag}, Keep: keepBy})
		write(t, w, []byte("mine"), 10)
		// Busy, not changed: the engine may try again.
		commitConflicts(t, w)
		mustCreate(t, s.reopen(t), "f", []byte("theirs"))
		release()
		_, err := w.Commit(callCtx(t))
		wantIs(t, "Commit after the file changed", err, backend.ErrPrecondition)
		mustEqual(t, "f", readAll(t, s, "f"), []byte("theirs"))
		if v := versions(t, s, "f"); len(v) != 0 {
			t.Errorf("versions after a refused append: %+v", v)
		}
		s.noStrays(t)
	})

	t.Run(`append: IfNoneMatch "*" creates a missing file and refuses a present one`, func(t *testing.T) {
		s := newStore(t, ep, "room")
		pre := backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: "*"}}
		if _, err := appendWith(t, s, "f", []byte("first"), pre); err != nil {
			t.Fatal(err)
		}
		_, err := appendWith(t, s, "f", []byte("second"), pre)
		wantIs(t, "second append", err, backend.ErrPrecondition)
		mustEqual(t, "f", readAll(t, s, "f"), []byte("first"))
		s.noStrays(t)
	})

	t.Run("remove: IfMatch removes only the version named; a missing file is ErrNotExist first", func(t *testing.T) {
		s := newStore(t, ep, "room")
		old := mustCreate(t, s, "f", []byte("old"))
		cur := mustCreate(t, s, "f", []byte("current"))
		for _, etag := range []string{old.ETag, "x", "0"} {
			wantIs(t, "Remove IfMatch "+etag, s.Remove(callCtx(t), "f", backend.RemoveOptions{IfMatch: etag}), backend.ErrPrecondition)
		}
		mustEqual(t, "f", readAll(t, s, "f"), []byte("current"))
		wantIs(t, "Remove of a missing file", s.Remove(callCtx(t), "nope", backend.RemoveOptions{IfMatch: old.ETag, Keep: keepBy}), fs.ErrNotExist)
		mustCreate(t, s, "dir/x", []byte("x"))
		wantIs(t, "Remove of a folder", s.Remove(callCtx(t), "dir", backend.RemoveOptions{IfMatch: old.ETag}), backend.ErrIsFolder)
		if err := s.Remove(callCtx(t), "f", backend.RemoveOptions{IfMatch: cur.ETag}); err != nil {
			t.Fatalf("Remove IfMatch the current ETag: %v", err)
		}
		assertMissing(t, s, "f")
		s.noStrays(t)
	})

	t.Run("remove: a file rewritten between the read and the delete is ErrPrecondition and stays", func(t *testing.T) {
		var s *store
		var once sync.Once
		var putErr error
		s = hookedStore(t, ep, func(r *http.Request) {
			if isDeleteOf(r, s.key("f")) {
				once.Do(func() { putErr = s.put(r.Context(), s.key("f"), []byte("newer")) })
			}
		})
		old := mustCreate(t, s, "f", []byte("old"))
		err := s.Remove(callCtx(t), "f", backend.RemoveOptions{IfMatch: old.ETag, Keep: keepBy})
		if putErr != nil {
			t.Fatal(putErr)
		}
		wantIs(t, "Remove", err, backend.ErrPrecondition)
		mustEqual(t, "f", readAll(t, s, "f"), []byte("newer"))
		if v := versions(t, s, "f"); len(v) != 0 {
			t.Errorf("versions after a refused removal: %+v", v)
		}
		s.noStrays(t)
	})

	t.Run("move: IfMatch moves only the version named; a missing src is ErrNotExist first", func(t *testing.T) {
		s := newStore(t, ep, "room")
		old := mustCreate(t, s, "src", []byte("old"))
		cur := mustCreate(t, s, "src", []byte("current"))
		_, err := s.Move(callCtx(t), "src", "dst", backend.MoveOptions{IfMatch: old.ETag, Keep: keepBy})
		wantIs(t, "Move IfMatch a replaced ETag", err, backend.ErrPrecondition)
		mustEqual(t, "src", readAll(t, s, "src"), []byte("current"))
		assertMissing(t, s, "dst")
		_, err = s.Move(callCtx(t), "nope", "dst", backend.MoveOptions{IfMatch: old.ETag})
		wantIs(t, "Move of a missing src", err, fs.ErrNotExist)
		if _, err := s.Move(callCtx(t), "src", "dst", backend.MoveOptions{IfMatch: cur.ETag}); err != nil {
			t.Fatalf("Move IfMatch the current ETag: %v", err)
		}
		mustEqual(t, "dst", readAll(t, s, "dst"), []byte("current"))
		assertMissing(t, s, "src")
		s.noStrays(t)
	})

	t.Run("move: src rewritten before the delete is ErrPrecondition; src keeps the new bytes", func(t *testing.T) {
		var s *store
		var once sync.Once
		var putErr error
		s = hookedStore(t, ep, func(r *http.Request) {
			if isDeleteOf(r, s.key("src")) {
				once.Do(func() { putErr = s.put(r.Context(), s.key("src"), []byte("newer")) })
			}
		})
		old := mustCreate(t, s, "src", []byte("old"))
		_, err := s.Move(callCtx(t), "src", "dst", backend.MoveOptions{IfMatch: old.ETag, Keep: keepBy})
		if putErr != nil {
			t.Fatal(putErr)
		}
		wantIs(t, "Move", err, backend.ErrPrecondition)
		mustEqual(t, "src", readAll(t, s, "src"), []byte("newer"))
		assertMissing(t, s, "dst")
		if v := versions(t, s, "src"); len(v) != 0 {
			t.Errorf("versions of src after a refused move: %+v", v)
		}
		s.noStrays(t)
	})
}

// TestRacingIfMatch races two Backends over one bucket, as two processes
// would, committing changes conditional on the same version: exactly one
// wins, and the loser leaves nothing, neither its bytes nor a kept
// version.
func TestRacingIfMatch(t *testing.T) {
	ep := newServer(t)
	const rounds = 4
	kinds := []struct {
		name      string
		size      int
		appending bool
	}{
		{"create, one request", 100, false},
		{"create, resumable", 2*testChunk + 7, false},
		{"append", 100, true},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			wins := [2]int{}
			for round := range rounds {
				s := newStore(t, ep, "room")
				racers := []*store{s, s.reopen(t)}
				base := []byte("base,")
				old := mustCreate(t, s, "f", base)
				opts := backend.WriteOptions{Precondition: backend.Precondition{IfMatch: old.ETag}, Keep: keepBy}
				data := make([][]byte, 2)
				ws := make([]backend.Writer, 2)
				for i, r := range racers {
					data[i] = randBytes(k.size, uint64(10*round+i+1))
					ws[i] = openWriter(t, r, "f", k.appending, opts)
					write(t, ws[i], data[i], 64<<10)
				}
				start := make(chan struct{})
				errs := make([]error, 2)
				var wg sync.WaitGroup
				for i := range ws {
					wg.Go(func() {
						<-start
						_, errs[i] = commitWithBackoff(callCtx(t), ws[i])
					})
				}
				close(start)
				wg.Wait()

				winner := slices.IndexFunc(errs, func(err error) bool { return err == nil })
				if winner < 0 || errs[1-winner] == nil {
					t.Fatalf("round %d: commits = %v; want exactly one to succeed", round, errs)
				}
				loser := 1 - winner
				wantIs(t, "the losing commit", errs[loser], backend.ErrPrecondition)
				wins[winner]++
				want := data[winner]
				if k.appending {
					want = append(slices.Clone(base), want...)
				}
				mustEqual(t, "f", readAll(t, s, "f"), want)
				for _, name := range s.objects(t) {
					r, err := s.client.Bucket(s.bucket).Object(name).NewReader(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					p, err := io.ReadAll(r)
					r.Close()
					if err != nil {
						t.Fatal(err)
					}
					if bytes.Contains(p, data[loser]) {
						t.Errorf("round %d: the loser's bytes are in %s", round, name)
					}
				}
				if v := versions(t, s, "f"); len(v) != 1 || v[0].ETag != old.ETag {
					t.Errorf("round %d: versions %+v; want only the one the winner replaced (%s)", round, v, old.ETag)
				}
				if got := s.keptObjects(t); len(got) != 1 {
					t.Errorf("round %d: kept objects %q, want the winner's only", round, got)
				}
				s.noStrays(t)
			}
			t.Logf("wins by racer: %v", wins)
		})
	}
}

func TestKeep(t *testing.T) {
	ep := newServer(t)

	for _, sz := range createSizes {
		for _, ifMatch := range []bool{false, true} {
			t.Run(fmt.Sprintf("create, %s, IfMatch %v: an overwrite keeps the version it replaced", sz.name, ifMatch), func(t *testing.T) {
				s := newStore(t, ep, "room")
				oldData := randBytes(sz.size+3, 5)
				old := mustCreate(t, s, "d/f", oldData)
				opts := backend.WriteOptions{Keep: keepBy}
				if ifMatch {
					opts.IfMatch = old.ETag
				}
				data := randBytes(sz.size, 6)
				before := time.Now()
				info, err := create(t, s, "d/f", data, opts)
				after := time.Now()
				if err != nil {
					t.Fatalf("Commit: %v", err)
				}
				mustEqual(t, "d/f", readAll(t, s, "d/f"), data)
				vs := versions(t, s, "d/f")
				if len(vs) != 1 {
					t.Fatalf("versions %+v, want one", vs)
				}
				v := vs[0]
				if v.Path != "d/f" || v.ETag != old.ETag || v.Size != old.Size || !v.ModTime.Equal(old.ModTime) ||
					v.Reason != backend.ReasonOverwritten || v.Participant != "alice" ||
					v.Replaced.Before(before) || v.Replaced.After(after) || !validID(v.ID) {
					t.Errorf("version %+v; want the Info %+v, overwritten by alice between %v and %v", v, old, before, after)
				}
				got, rv := readVersion(t, s, "d/f", v.ID, 0, -1)
				mustEqual(t, "the kept version", got, oldData)
				if rv != v {
					t.Errorf("ReadVersion describes %+v, Versions %+v", rv, v)
				}
				if v.ETag == info.ETag {
					t.Errorf("the kept version has the new file's ETag %s", info.ETag)
				}
				s.noStrays(t)
			})
		}

		t.Run("create, "+sz.name+": a new file keeps nothing", func(t *testing.T) {
			s := newStore(t, ep, "room")
			data := randBytes(sz.size, 7)
			if _, err := create(t, s, "f", data, backend.WriteOptions{Keep: keepBy}); err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "f", readAll(t, s, "f"), data)
			if got := s.keptObjects(t); len(got) != 0 {
				t.Errorf("kept %q for a new file", got)
			}
			s.noStrays(t)
		})
	}

	t.Run("append keeps the version it appends to, and nothing when it creates the file", func(t *testing.T) {
		s := newStore(t, ep, "room")
		if _, err := appendWith(t, s, "log", []byte("a,"), backend.WriteOptions{Keep: keepBy}); err != nil {
			t.Fatal(err)
		}
		if got := s.keptObjects(t); len(got) != 0 {
			t.Fatalf("kept %q for a new file", got)
		}
		first, err := s.Stat(t.Context(), "log")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := appendWith(t, s, "log", []byte("b,"), backend.WriteOptions{Keep: keepBy}); err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "log", readAll(t, s, "log"), []byte("a,b,"))
		vs := versions(t, s, "log")
		if len(vs) != 1 || vs[0].ETag != first.ETag || vs[0].Reason != backend.ReasonAppended || vs[0].Size != 2 {
			t.Fatalf("versions %+v; want %s, appended, 2 bytes", vs, first.ETag)
		}
		got, _ := readVersion(t, s, "log", vs[0].ID, 0, -1)
		mustEqual(t, "the kept version", got, []byte("a,"))
		s.noStrays(t)
	})

	t.Run("a removal keeps the removed version, which outlives the file", func(t *testing.T) {
		s := newStore(t, ep, "room")
		data := randBytes(testChunk+9, 8)
		old := mustCreate(t, s, "gone", data)
		if err := s.Remove(callCtx(t), "gone", backend.RemoveOptions{Keep: keepBy}); err != nil {
			t.Fatal(err)
		}
		assertMissing(t, s, "gone")
		vs := versions(t, s, "gone")
		if len(vs) != 1 || vs[0].ETag != old.ETag || vs[0].Reason != backend.ReasonDeleted || vs[0].Size != old.Size {
			t.Fatalf("versions %+v; want %s, deleted", vs, old.ETag)
		}
		got, _ := readVersion(t, s, "gone", vs[0].ID, 0, -1)
		mustEqual(t, "the kept version", got, data)
		s.noStrays(t)
	})

	t.Run("a move keeps src's version under src and a replaced dst's under dst", func(t *testing.T) {
		s := newStore(t, ep, "room")
		src := mustCreate(t, s, "a/src", []byte("source"))
		dst := mustCreate(t, s, "b/dst", []byte("destination"))
		if _, err := s.Move(callCtx(t), "a/src", "b/dst", backend.MoveOptions{Overwrite: true, Keep: keepBy}); err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "b/dst", readAll(t, s, "b/dst"), []byte("source"))
		assertMissing(t, s, "a/src")
		vs := versions(t, s, "a/src")
		if len(vs) != 1 || vs[0].ETag != src.ETag || vs[0].Reason != backend.ReasonMoved {
			t.Errorf("versions of src %+v; want %s, moved", vs, src.ETag)
		}
		vd := versions(t, s, "b/dst")
		if len(vd) != 1 || vd[0].ETag != dst.ETag || vd[0].Reason != backend.ReasonOverwritten {
			t.Fatalf("versions of dst %+v; want %s, overwritten", vd, dst.ETag)
		}
		got, _ := readVersion(t, s, "b/dst", vd[0].ID, 0, -1)
		mustEqual(t, "dst's kept version", got, []byte("destination"))

		if _, err := s.Move(callCtx(t), "b/dst", "c/new", backend.MoveOptions{Keep: keepBy}); err != nil {
			t.Fatal(err)
		}
		if vs := versions(t, s, "c/new"); len(vs) != 0 {
			t.Errorf("a move onto no file kept %+v under dst", vs)
		}
		if vs := versions(t, s, "b/dst"); len(vs) != 2 || vs[1].Reason != backend.ReasonMoved {
			t.Errorf("versions of b/dst %+v; want the overwritten one, then the moved one", vs)
		}
		s.noStrays(t)
	})

	t.Run("every change keeps its version: one path's history", func(t *testing.T) {
		s := newStore(t, ep, "room")
		var want []string
		var contents [][]byte
		remember := func(p []byte) {
			info, err := s.Stat(t.Context(), "h")
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, info.ETag)
			contents = append(contents, p)
		}
		mustCreate(t, s, "h", []byte("v1"))
		remember([]byte("v1"))
		if _, err := create(t, s, "h", []byte("v2"), backend.WriteOptions{Keep: keepBy}); err != nil {
			t.Fatal(err)
		}
		remember([]byte("v2"))
		if _, err := appendWith(t, s, "h", []byte("+3"), backend.WriteOptions{Keep: keepBy}); err != nil {
			t.Fatal(err)
		}
		remember([]byte("v2+3"))
		if err := s.Remove(callCtx(t), "h", backend.RemoveOptions{Keep: keepBy}); err != nil {
			t.Fatal(err)
		}
		if _, err := create(t, s, "h", []byte("v4"), backend.WriteOptions{Keep: keepBy}); err != nil {
			t.Fatal(err)
		}
		vs := versions(t, s, "h")
		if got := etags(vs); !slices.Equal(got, want) {
			t.Fatalf("versions %v, want %v", got, want)
		}
		for i, v := range vs {
			got, _ := readVersion(t, s, "h", v.ID, 0, -1)
			mustEqual(t, "version "+v.ID, got, contents[i])
		}
		reasons := []string{backend.ReasonOverwritten, backend.ReasonAppended, backend.ReasonDeleted}
		for i, v := range vs {
			if v.Reason != reasons[i] {
				t.Errorf("version %d: reason %q, want %q", i, v.Reason, reasons[i])
			}
		}
	})

	t.Run("a participant longer than the limit is cut at a character", func(t *testing.T) {
		s := newStore(t, ep, "room")
		mustCreate(t, s, "f", []byte("old"))
		long := strings.Repeat("é", backend.MaxKeptParticipant) // twice the limit in bytes
		if _, err := create(t, s, "f", []byte("new"), backend.WriteOptions{Keep: &backend.Keep{Participant: long}}); err != nil {
			t.Fatal(err)
		}
		vs := versions(t, s, "f")
		if len(vs) != 1 || vs[0].Participant != backend.KeptParticipant(long) || len(vs[0].Participant) != backend.MaxKeptParticipant || !utf8.ValidString(vs[0].Participant) {
			t.Errorf("versions %+v; want the participant cut to %d bytes", vs, backend.MaxKeptParticipant)
		}
	})
}

func TestHistory(t *testing.T) {
	ep := newServer(t)

	t.Run("ReadVersion is byte-exact, ranges included", func(t *testing.T) {
		s := newStore(t, ep, "room")
		data := randBytes(2*testChunk+77, 9)
		size := int64(len(data))
		mustCreate(t, s, "f", data)
		if _, err := create(t, s, "f", []byte("new"), backend.WriteOptions{Keep: keepBy}); err != nil {
			t.Fatal(err)
		}
		vs := versions(t, s, "f")
		if len(vs) != 1 {
			t.Fatalf("versions %+v", vs)
		}
		id := vs[0].ID
		for _, rg := range [][2]int64{
			{0, -1}, {0, 0}, {0, 1}, {1, 10}, {testChunk - 1, 3}, {testChunk, testChunk},
			{size - 1, 10}, {5, size}, {size, -1}, {size, 5},
		} {
			got, v := readVersion(t, s, "f", id, rg[0], rg[1])
			end := size
			if rg[1] >= 0 {
				end = min(size, rg[0]+rg[1])
			}
			mustEqual(t, fmt.Sprintf("range %v", rg), got, data[rg[0]:end])
			if v != vs[0] {
				t.Errorf("range %v: ReadVersion describes %+v, Versions %+v", rg, v, vs[0])
			}
		}
		if _, _, err := s.ReadVersion(t.Context(), "f", id, size+1, -1); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("ReadVersion past the end = %v, want fs.ErrInvalid", err)
		}
	})

	t.Run("Forget removes a version; an unknown id is ErrNotExist", func(t *testing.T) {
		s := newStore(t, ep, "room")
		mustCreate(t, s, "f", []byte("one"))
		mustCreate(t, s, "g", []byte("other"))
		for _, p := range []string{"f", "g"} {
			if _, err := create(t, s, p, []byte("two"), backend.WriteOptions{Keep: keepBy}); err != nil {
				t.Fatal(err)
			}
		}
		vs := versions(t, s, "f")
		if len(vs) != 1 {
			t.Fatalf("versions %+v", vs)
		}
		id := vs[0].ID
		for _, bad := range []string{"", ".x", "..", "../g/" + id, "a/b", strings.Repeat("a", 256), "nope", versions(t, s, "g")[0].ID} {
			if _, _, err := s.ReadVersion(t.Context(), "f", bad, 0, -1); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("ReadVersion %q = %v, want fs.ErrNotExist", bad, err)
			}
			if err := s.Forget(t.Context(), "f", bad); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Forget %q = %v, want fs.ErrNotExist", bad, err)
			}
		}
		if err := s.Forget(t.Context(), "g", id); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Forget of f's id under g = %v, want fs.ErrNotExist", err)
		}
		if err := s.Forget(t.Context(), "f", id); err != nil {
			t.Fatalf("Forget: %v", err)
		}
		if vs := versions(t, s, "f"); len(vs) != 0 {
			t.Errorf("versions after Forget: %+v", vs)
		}
		if err := s.Forget(t.Context(), "f", id); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("second Forget = %v, want fs.ErrNotExist", err)
		}
		if _, _, err := s.ReadVersion(t.Context(), "f", id, 0, -1); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadVersion of a forgotten version = %v, want fs.ErrNotExist", err)
		}
		if vs := versions(t, s, "g"); len(vs) != 1 {
			t.Errorf("g's versions %+v after forgetting f's", vs)
		}
	})

	t.Run("a reader opened before Forget reads on", func(t *testing.T) {
		s := newStore(t, ep, "room")
		data := randBytes(testChunk+100, 10)
		mustCreate(t, s, "f", data)
		if err := s.Remove(callCtx(t), "f", backend.RemoveOptions{Keep: keepBy}); err != nil {
			t.Fatal(err)
		}
		id := versions(t, s, "f")[0].ID
		r, _, err := s.ReadVersion(t.Context(), "f", id, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		head := make([]byte, 10)
		if _, err := io.ReadFull(r, head); err != nil {
			t.Fatal(err)
		}
		if err := s.Forget(t.Context(), "f", id); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("reading on after Forget: %v", err)
		}
		mustEqual(t, "the version read across Forget", append(head, rest...), data)
	})

	t.Run("a store with a missing bucket says so", func(t *testing.T) {
		s := newStore(t, ep, "room")
		b, err := New(s.client, "no-such-bucket-history", "room")
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range b.Versions(t.Context(), "f") {
			wantIs(t, "Versions", err, backend.ErrStoreUnavailable)
		}
		for _, err := range b.Kept(t.Context(), "") {
			wantIs(t, "Kept", err, backend.ErrStoreUnavailable)
		}
		_, _, err = b.ReadVersion(t.Context(), "f", "1-2-3", 0, -1)
		wantIs(t, "ReadVersion", err, backend.ErrStoreUnavailable)
		wantIs(t, "Forget", b.Forget(t.Context(), "f", "1-2-3"), backend.ErrStoreUnavailable)
	})

	t.Run("Kept yields the versions at or beneath a folder, every field set", func(t *testing.T) {
		s := newStore(t, ep, "room")
		all := []string{"a", "a/b", "a/b/c", "ab", "z/y"}
		for _, p := range all {
			if p == "a" {
				// A file once at a, now a folder.
				mustCreate(t, s, p, []byte("file a"))
				if err := s.Remove(callCtx(t), p, backend.RemoveOptions{Keep: keepBy}); err != nil {
					t.Fatal(err)
				}
				continue
			}
			mustCreate(t, s, p, []byte("old "+p))
			if _, err := create(t, s, p, []byte("new "+p), backend.WriteOptions{Keep: keepBy}); err != nil {
				t.Fatal(err)
			}
		}
		for dir, want := range map[string][]string{
			"":        all,
			"a":       {"a", "a/b", "a/b/c"},
			"a/b":     {"a/b", "a/b/c"},
			"a/b/c":   {"a/b/c"},
			"ab":      {"ab"},
			"z":       {"z/y"},
			"nothing": nil,
		} {
			got := keptIn(t, s, dir)
			if !slices.Equal(paths(got), want) {
				t.Errorf("Kept(%q) = %q, want %q", dir, paths(got), want)
			}
			for _, v := range got {
				if vs := versions(t, s, v.Path); len(vs) != 1 || vs[0] != v {
					t.Errorf("Kept(%q) yields %+v, Versions(%q) %+v", dir, v, v.Path, vs)
				}
			}
		}
		if vs := versions(t, s, "a"); len(vs) != 1 || vs[0].Reason != backend.ReasonDeleted {
			t.Errorf("Versions(a) = %+v; want a's own version only, not those beneath it", vs)
		}
	})

	t.Run("long paths keep their versions under names within the limit", func(t *testing.T) {
		s := newStore(t, ep, "room")
		elem := func(c byte) string { return strings.Repeat(string(c), 100) }
		var dir8 []string
		for c := byte('a'); c < 'a'+8; c++ {
			dir8 = append(dir8, elem(c))
		}
		d8 := strings.Join(dir8, "/")                                     // 807 bytes
		d9 := d8 + "/" + elem('i')                                        // 908 bytes: past headLimit
		long := d9 + "/" + elem('j')                                      // 1009 bytes
		sibling := d8 + "/" + elem('x') + "/" + elem('y')                 // under d8, not d9
		plain := d8 + "/" + strings.Repeat("p", s.plainLimit()-len(d8)-1) // the longest plain path
		hashed := plain + "q"
		if len(plain) != s.plainLimit() || len(s.key(long)) > maxObjectName {
			t.Fatalf("bad lengths: plain %d (limit %d), long key %d", len(plain), s.plainLimit(), len(s.key(long)))
		}
		if len(d9) <= s.headLimit() {
			t.Fatalf("d9 (%d bytes) within headLimit %d tests nothing", len(d9), s.headLimit())
		}
		ps := []string{long, sibling, plain, hashed}
		for _, p := range ps {
			mustCreate(t, s, p, []byte("old"))
			if _, err := create(t, s, p, []byte("new"), backend.WriteOptions{Keep: keepBy}); err != nil {
				t.Fatalf("overwrite of a %d-byte path: %v", len(p), err)
			}
			if err := s.Remove(callCtx(t), p, backend.RemoveOptions{Keep: keepBy}); err != nil {
				t.Fatalf("removal of a %d-byte path: %v", len(p), err)
			}
			vs := versions(t, s, p)
			if len(vs) != 2 {
				t.Fatalf("%d-byte path: versions %+v, want 2", len(p), vs)
			}
			got, _ := readVersion(t, s, p, vs[0].ID, 0, -1)
			mustEqual(t, "the kept version of a long path", got, []byte("old"))
		}
		names := s.keptObjects(t)
		hashedNames := 0
		for _, n := range names {
			if len(n) > maxObjectName {
				t.Errorf("a %d-byte object name", len(n))
			}
			if strings.Contains(n, "/"+hashedMark) {
				hashedNames++
			}
		}
		if len(names) != 8 || hashedNames != 6 {
			t.Errorf("%d kept objects, %d hashed; want 8, of which 6 hashed (all but the plain path's)", len(names), hashedNames)
		}
		for dir, want := range map[string][]string{
			"":   {long, long, sibling, sibling, plain, plain, hashed, hashed},
			d8:   {long, long, sibling, sibling, plain, plain, hashed, hashed},
			d9:   {long, long},
			long: {long, long},
		} {
			got := paths(keptIn(t, s, dir))
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("Kept of a %d-byte folder: %d versions, want %d", len(dir), len(got), len(want))
			}
		}
		id := versions(t, s, long)[0].ID
		if err := s.Forget(t.Context(), long, id); err != nil {
			t.Fatal(err)
		}
		if vs := versions(t, s, long); len(vs) != 1 {
			t.Errorf("versions after Forget: %d, want 1", len(vs))
		}
	})

	t.Run("kept versions never show in List, Stat or folders", func(t *testing.T) {
		for _, prefix := range []string{"room", ""} {
			s := newStore(t, ep, prefix)
			mustCreate(t, s, "keep.txt", []byte("1"))
			if _, err := create(t, s, "keep.txt", []byte("2"), backend.WriteOptions{Keep: keepBy}); err != nil {
				t.Fatal(err)
			}
			mustCreate(t, s, "d/e/only", []byte("x"))
			if err := s.Remove(callCtx(t), "d/e/only", backend.RemoveOptions{Keep: keepBy}); err != nil {
				t.Fatal(err)
			}
			if got := s.keptObjects(t); len(got) != 2 {
				t.Fatalf("prefix %q: kept objects %q, want 2", prefix, got)
			}
			if got := list(t, s, ""); !slices.Equal(got, []string{"keep.txt"}) {
				t.Errorf("prefix %q: List = %q, want [keep.txt]", prefix, got)
			}
			for _, p := range []string{"d", "d/e", "d/e/only"} {
				assertMissing(t, s, p)
				if got := list(t, s, p); len(got) != 0 {
					t.Errorf("prefix %q: List(%q) = %q, want nothing", prefix, p, got)
				}
			}
			if info, err := s.Stat(t.Context(), ""); err != nil || !info.IsFolder {
				t.Errorf("prefix %q: Stat of the root = %+v, %v", prefix, info, err)
			}
		}
	})
}

// TestKeptForFailedChanges makes a change fail right after it kept the
// version it meant to replace, by changing the file behind its back in
// that instant: what it kept is forgotten, and what the retry keeps is
// the version the retry replaced.
func TestKeptForFailedChanges(t *testing.T) {
	ep := newServer(t)

	// racedStore returns a store whose first kept copy of path is followed
	// by a rewrite of path to newer by another writer.
	racedStore := func(t *testing.T, path string, newer []byte) (*store, *error) {
		var s *store
		var once sync.Once
		var putErr error
		s = storeWith(t, ep, roundTripper(func(r *http.Request) (*http.Response, error) {
			res, err := http.DefaultTransport.RoundTrip(r)
			if err == nil && res.StatusCode == http.StatusOK && s.isKeepCopy(r, path) {
				once.Do(func() { putErr = s.put(r.Context(), s.key(path), newer) })
			}
			return res, err
		}))
		return s, &putErr
	}
	newer := []byte("newer")

	for _, sz := range createSizes {
		for _, ifMatch := range []bool{false, true} {
			t.Run(fmt.Sprintf("create, %s, IfMatch %v", sz.name, ifMatch), func(t *testing.T) {
				s, putErr := racedStore(t, "f", newer)
				old := mustCreate(t, s, "f", []byte("old"))
				opts := backend.WriteOptions{Keep: keepBy}
				if ifMatch {
					opts.IfMatch = old.ETag
				}
				w := openWriter(t, s, "f", false, opts)
				data := randBytes(sz.size, 11)
				write(t, w, data, 64<<10)
				_, err := w.Commit(callCtx(t))
				if *putErr != nil {
					t.Fatal(*putErr)
				}
				after, _ := s.Stat(t.Context(), "f")
				switch {
				case !ifMatch && sz.size < testChunk:
					// The bytes are still held: the retry lands on newer.
					wantIs(t, "Commit", err, backend.ErrConflict)
					if _, err := commitWithBackoff(callCtx(t), w); err != nil {
						t.Fatalf("Commit again: %v", err)
					}
					mustEqual(t, "f", readAll(t, s, "f"), data)
					if got := etags(versions(t, s, "f")); !slices.Equal(got, []string{after.ETag}) {
						t.Errorf("versions %v, want only newer's, %s", got, after.ETag)
					}
				default:
					wantIs(t, "Commit", err, backend.ErrPrecondition)
					mustEqual(t, "f", readAll(t, s, "f"), newer)
					if got := s.keptObjects(t); len(got) != 0 {
						t.Errorf("kept %q for a change that did not happen", got)
					}
				}
				s.noStrays(t)
			})
		}
	}

	// The emulator's compose ignores its preconditions and the generations
	// of its sources, and composes whatever the sources hold by then; so
	// here the file changes on the way to the compose, which is answered
	// as Cloud Storage answers a compose whose destination changed.
	composeRaced := func(t *testing.T, path string, newer []byte) (*store, *error) {
		var s *store
		var once sync.Once
		var putErr error
		s = storeWith(t, ep, roundTripper(func(r *http.Request) (*http.Response, error) {
			raced := false
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/o/"+s.key(path)+"/compose") {
				once.Do(func() { raced, putErr = true, s.put(r.Context(), s.key(path), newer) })
			}
			if !raced {
				return http.DefaultTransport.RoundTrip(r)
			}
			if r.Body != nil {
				r.Body.Close()
			}
			return &http.Response{
				StatusCode: http.StatusPreconditionFailed, Status: "412 Precondition Failed", Request: r,
				Header: http.Header{"Content-Type": {"application/json"}},
				Body:   io.NopCloser(strings.NewReader(`{"error":{"code":412,"message":"conditionNotMet"}}`)),
			}, nil
		}))
		return s, &putErr
	}
	for _, ifMatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("append, IfMatch %v", ifMatch), func(t *testing.T) {
			s, putErr := composeRaced(t, "f", newer)
			old := mustCreate(t, s, "f", []byte("old"))
			opts := backend.WriteOptions{Keep: keepBy}
			if ifMatch {
				opts.IfMatch = old.ETag
			}
			w := openWriter(t, s, "f", true, opts)
			write(t, w, []byte("+add"), 10)
			_, err := commitWithBackoff(callCtx(t), w)
			if *putErr != nil {
				t.Fatal(*putErr)
			}
			if ifMatch {
				wantIs(t, "Commit", err, backend.ErrPrecondition)
				mustEqual(t, "f", readAll(t, s, "f"), newer)
				if got := s.keptObjects(t); len(got) != 0 {
					t.Errorf("kept %q for an append that did not happen", got)
				}
			} else {
				if err != nil {
					t.Fatalf("Commit: %v", err)
				}
				mustEqual(t, "f", readAll(t, s, "f"), []byte("newer+add"))
				vs := versions(t, s, "f")
				if len(vs) != 1 || vs[0].Size != int64(len(newer)) {
					t.Errorf("versions %+v; want newer's only", vs)
				}
			}
			s.noStrays(t)
		})
	}

	for _, ifMatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("remove, IfMatch %v", ifMatch), func(t *testing.T) {
			s, putErr := racedStore(t, "f", newer)
			old := mustCreate(t, s, "f", []byte("old"))
			opts := backend.RemoveOptions{Keep: keepBy}
			if ifMatch {
				opts.IfMatch = old.ETag
			}
			err := s.Remove(callCtx(t), "f", opts)
			if *putErr != nil {
				t.Fatal(*putErr)
			}
			if ifMatch {
				wantIs(t, "Remove", err, backend.ErrPrecondition)
				mustEqual(t, "f", readAll(t, s, "f"), newer)
				if got := s.keptObjects(t); len(got) != 0 {
					t.Errorf("kept %q for a removal that did not happen", got)
				}
			} else {
				if err != nil {
					t.Fatalf("Remove: %v", err)
				}
				assertMissing(t, s, "f")
				vs := versions(t, s, "f")
				if len(vs) != 1 || vs[0].Size != int64(len(newer)) {
					t.Errorf("versions %+v; want newer's only", vs)
				}
			}
			s.noStrays(t)
		})
	}

	t.Run("move", func(t *testing.T) {
		s, putErr := racedStore(t, "src", newer)
		mustCreate(t, s, "src", []byte("old"))
		mustCreate(t, s, "dst", []byte("destination"))
		_, err := s.Move(callCtx(t), "src", "dst", backend.MoveOptions{Overwrite: true, Keep: keepBy})
		if *putErr != nil {
			t.Fatal(*putErr)
		}
		wantIs(t, "Move", err, backend.ErrConflict)
		mustEqual(t, "src", readAll(t, s, "src"), newer)
		mustEqual(t, "dst", readAll(t, s, "dst"), []byte("destination"))
		if got := s.keptObjects(t); len(got) != 0 {
			t.Errorf("kept %q for a move that did not happen", got)
		}
		if _, err := s.Move(callCtx(t), "src", "dst", backend.MoveOptions{Overwrite: true, Keep: keepBy}); err != nil {
			t.Fatalf("Move again: %v", err)
		}
		mustEqual(t, "dst", readAll(t, s, "dst"), newer)
		if vs, vd := versions(t, s, "src"), versions(t, s, "dst"); len(vs) != 1 || len(vd) != 1 || vs[0].Size != int64(len(newer)) {
			t.Errorf("versions of src %+v, of dst %+v; want newer's and destination's", vs, vd)
		}
		s.noStrays(t)
	})

	t.Run("a version kept for a change that failed has the file's current ETag", func(t *testing.T) {
		// The upload is refused for good after the keep, as a crash would
		// end it, and may have landed for all the store can tell.
		s := storeWith(t, ep, roundTripper(func(r *http.Request) (*http.Response, error) {
			if g := r.URL.Query().Get("ifGenerationMatch"); r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/upload/") && g != "" && g != "0" {
				if r.Body != nil {
					r.Body.Close()
				}
				return &http.Response{
					StatusCode: http.StatusForbidden, Status: "403 Forbidden", Request: r,
					Header: http.Header{"Content-Type": {"application/json"}},
					Body:   io.NopCloser(strings.NewReader(`{"error":{"code":403,"message":"refused by the test"}}`)),
				}, nil
			}
			return http.DefaultTransport.RoundTrip(r)
		}))
		old := mustCreate(t, s, "f", []byte("old"))
		_, err := create(t, s, "f", []byte("new"), backend.WriteOptions{Precondition: backend.Precondition{IfMatch: old.ETag}, Keep: keepBy})
		wantIs(t, "Commit", err, fs.ErrPermission)
		cur, err := s.Stat(t.Context(), "f")
		if err != nil || cur.ETag != old.ETag {
			t.Fatalf("Stat = %+v, %v; want the old version", cur, err)
		}
		if vs := versions(t, s, "f"); len(vs) != 1 || vs[0].ETag != cur.ETag {
			t.Errorf("versions %+v; want one with the current ETag %s", vs, cur.ETag)
		}
	})
}

// TestHistoryCosts counts the requests of each change with and without
// history, so that what history costs is known and stays so.
func TestHistoryCosts(t *testing.T) {
	ep := newServer(t)
	var counting atomic.Bool
	var requests atomic.Int64
	s := hookedStore(t, ep, func(*http.Request) {
		if counting.Load() {
			requests.Add(1)
		}
	})
	count := func(f func() error) int64 {
		t.Helper()
		requests.Store(0)
		counting.Store(true)
		err := f()
		counting.Store(false)
		if err != nil {
			t.Fatal(err)
		}
		return requests.Load()
	}
	small, large := []byte("small"), randBytes(2*testChunk+1, 12)
	n := 0
	fresh := func(data []byte) string {
		n++
		p := fmt.Sprintf("f%d", n)
		if data != nil {
			mustCreate(t, s, p, data)
		}
		return p
	}
	createCost := func(data []byte, existing bool, opts func(etag string) backend.WriteOptions) int64 {
		var p string
		if existing {
			p = fresh([]byte("old"))
		} else {
			p = fresh(nil)
		}
		etag := ""
		if info, err := s.Stat(t.Context(), p); err == nil {
			etag = info.ETag
		}
		return count(func() error {
			w, err := s.Create(t.Context(), p, opts(etag))
			if err != nil {
				return err
			}
			if err := w.Write(t.Context(), data); err != nil {
				return err
			}
			_, err = w.Commit(t.Context())
			return err
		})
	}
	plain := func(string) backend.WriteOptions { return backend.WriteOptions{} }
	keep := func(string) backend.WriteOptions { return backend.WriteOptions{Keep: keepBy} }
	ifMatch := func(etag string) backend.WriteOptions {
		return backend.WriteOptions{Precondition: backend.Precondition{IfMatch: etag}}
	}
	ifMatchKeep := func(etag string) backend.WriteOptions {
		return backend.WriteOptions{Precondition: backend.Precondition{IfMatch: etag}, Keep: keepBy}
	}
	appendCost := func(existing bool, opts backend.WriteOptions) int64 {
		p := fresh(nil)
		if existing {
			mustCreate(t, s, p, []byte("old"))
		}
		return count(func() error {
			w, err := s.Append(t.Context(), p, opts)
			if err != nil {
				return err
			}
			if err := w.Write(t.Context(), small); err != nil {
				return err
			}
			_, err = w.Commit(t.Context())
			return err
		})
	}
	removeCost := func(opts func(etag string) backend.RemoveOptions) int64 {
		p := fresh([]byte("old"))
		info, _ := s.Stat(t.Context(), p)
		return count(func() error { return s.Remove(t.Context(), p, opts(info.ETag)) })
	}
	moveCost := func(overwrite bool, opts backend.MoveOptions) int64 {
		src, dst := fresh([]byte("src")), fresh(nil)
		if overwrite {
			mustCreate(t, s, dst, []byte("dst"))
		}
		opts.Overwrite = overwrite
		return count(func() error { _, err := s.Move(t.Context(), src, dst, opts); return err })
	}

	cases := []struct {
		what        string
		base, after int64
		extra       int64
	}{
		{"new file, one request", createCost(small, false, plain), createCost(small, false, keep), 0},
		{"new file, resumable", createCost(large, false, plain), createCost(large, false, keep), 1},
		{"overwrite, one request", createCost(small, true, plain), createCost(small, true, keep), 3},
		{"overwrite, one request, IfMatch", createCost(small, true, plain), createCost(small, true, ifMatch), 0},
		{"overwrite, one request, IfMatch and Keep", createCost(small, true, plain), createCost(small, true, ifMatchKeep), 2},
		{"overwrite, resumable", createCost(large, true, plain), createCost(large, true, keep), 2},
		{"overwrite, resumable, IfMatch and Keep", createCost(large, true, plain), createCost(large, true, ifMatchKeep), 2},
		{"append to a new file", appendCost(false, backend.WriteOptions{}), appendCost(false, backend.WriteOptions{Keep: keepBy}), 0},
		{"append", appendCost(true, backend.WriteOptions{}), appendCost(true, backend.WriteOptions{Keep: keepBy}), 1},
		{"remove", removeCost(func(string) backend.RemoveOptions { return backend.RemoveOptions{} }),
			removeCost(func(string) backend.RemoveOptions { return backend.RemoveOptions{Keep: keepBy} }), 2},
		{"remove, IfMatch", removeCost(func(string) backend.RemoveOptions { return backend.RemoveOptions{} }),
			removeCost(func(e string) backend.RemoveOptions { return backend.RemoveOptions{IfMatch: e} }), 1},
		{"move", moveCost(false, backend.MoveOptions{}), moveCost(false, backend.MoveOptions{Keep: keepBy}), 1},
		{"move over a file", moveCost(true, backend.MoveOptions{}), moveCost(true, backend.MoveOptions{Keep: keepBy}), 2},
	}
	for _, c := range cases {
		t.Logf("%-40s %2d requests, %2d with history (%+d)", c.what, c.base, c.after, c.after-c.base)
		if c.after-c.base != c.extra {
			t.Errorf("%s: %d extra requests, want %d", c.what, c.after-c.base, c.extra)
		}
	}
	s.noStrays(t)
}

// TestHeldCreateRetries shows that a Create with Keep whose bytes are
// held to the commit follows a file that changes under it: the commit
// that lost keeps its bytes, and the next one keeps the version it then
// replaces.
func TestHeldCreateRetries(t *testing.T) {
	ep := newServer(t)
	var s, other *store
	var once sync.Once
	var theirsErr error
	s = hookedStore(t, ep, func(r *http.Request) {
		if g := r.URL.Query().Get("ifGenerationMatch"); r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/upload/") &&
			r.URL.Query().Get("name") == s.key("f") && g != "" && g != "0" {
			once.Do(func() {
				theirsErr = commitOnce(r.Context(), other, "f", []byte("theirs"), backend.WriteOptions{Keep: keepBy})
			})
		}
	})
	other = s.reopen(t)
	v0 := mustCreate(t, s, "f", []byte("v0"))
	w := openWriter(t, s, "f", false, backend.WriteOptions{Keep: keepBy})
	write(t, w, []byte("mine"), 10)
	commitConflicts(t, w)
	if theirsErr != nil {
		t.Fatal(theirsErr)
	}
	theirs, err := s.Stat(t.Context(), "f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(callCtx(t)); err != nil {
		t.Fatalf("Commit again: %v", err)
	}
	mustEqual(t, "f", readAll(t, s, "f"), []byte("mine"))
	if got, want := etags(versions(t, s, "f")), []string{v0.ETag, theirs.ETag}; !slices.Equal(got, want) {
		t.Errorf("versions %v, want v0's (kept by theirs) and theirs (kept by mine): %v", got, want)
	}
	s.noStrays(t)
}

// commitOnce writes data to path with opts and commits, retrying lost
// races, for a writer that is not the test's goroutine.
func commitOnce(ctx context.Context, b backend.Backend, path string, data []byte, opts backend.WriteOptions) error {
	w, err := b.Create(ctx, path, opts)
	if err != nil {
		return err
	}
	if err := w.Write(ctx, data); err != nil {
		return errors.Join(err, w.Abort(ctx))
	}
	_, err = commitWithBackoff(ctx, w)
	return err
}

// TestHistoryCallsHonourTheirContext checks that the history calls end
// with their context.
func TestHistoryCallsHonourTheirContext(t *testing.T) {
	ep := newServer(t)
	s := newStore(t, ep, "room")
	mustCreate(t, s, "f", []byte("old"))
	if err := s.Remove(callCtx(t), "f", backend.RemoveOptions{Keep: keepBy}); err != nil {
		t.Fatal(err)
	}
	id := versions(t, s, "f")[0].ID
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, err := range s.Versions(ctx, "f") {
		wantIs(t, "Versions", err, context.Canceled)
	}
	for _, err := range s.Kept(ctx, "") {
		wantIs(t, "Kept", err, context.Canceled)
	}
	_, _, err := s.ReadVersion(ctx, "f", id, 0, -1)
	wantIs(t, "ReadVersion", err, context.Canceled)
	wantIs(t, "Forget", s.Forget(ctx, "f", id), context.Canceled)
	if vs := versions(t, s, "f"); len(vs) != 1 {
		t.Errorf("versions %+v after cancelled calls", vs)
	}
}
