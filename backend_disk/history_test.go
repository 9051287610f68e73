package backend_disk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_disk"
	"github.com/roomstore/roomstore/roompath"
)

// historyKinds are the stores the history tests run on: each kind of disk
// backend ("file" is the Linux fast path, with fsync off and, as
// "file+fsync", on) and an afero.NewMemMapFs store, which has no links and
// keeps copies.
var historyKinds = []string{"file", "file+fsync", "osroot", "basepath", "memmap"}

// historyStore is a store of kind: its backend, closed when t ends, and
// its directory ("" in memory).
type historyStore struct {
	*backend_disk.Afero
	kind string
	dir  string
}

func openHistoryStore(t *testing.T, kind string) historyStore {
	t.Helper()
	if kind == "memmap" {
		b := backend_disk.NewAfero(afero.NewMemMapFs())
		t.Cleanup(func() { b.Close() })
		return historyStore{Afero: b, kind: kind}
	}
	dir := t.TempDir()
	return historyStore{Afero: reopenHistoryStore(t, kind, dir), kind: kind, dir: dir}
}

// reopenHistoryStore opens another backend of kind on dir, as another
// process would.
func reopenHistoryStore(t *testing.T, kind, dir string) *backend_disk.Afero {
	t.Helper()
	fsync := strings.HasSuffix(kind, "+fsync")
	b, err := openDisk(strings.TrimSuffix(kind, "+fsync"), dir, fsync)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if kind == "file" && !backend_disk.UsesFastPath(b.Fs()) {
		t.Fatal("a file:// store on Linux does not use the openat2 path")
	}
	return b
}

// onEachHistoryStore runs test as a subtest on a new store of each kind.
func onEachHistoryStore(t *testing.T, test func(t *testing.T, s historyStore)) {
	for _, kind := range historyKinds {
		t.Run(kind, func(t *testing.T) { test(t, openHistoryStore(t, kind)) })
	}
}

// commit writes data to p through a writer that Create (or Append) made
// with opts and commits it.
func commit(ctx context.Context, b backend.Backend, p, data string, appending bool, opts backend.WriteOptions) (backend.Info, error) {
	open := b.Create
	if appending {
		open = b.Append
	}
	w, err := open(ctx, p, opts)
	if err != nil {
		return backend.Info{}, err
	}
	if err := w.Write(ctx, []byte(data)); err != nil {
		_ = w.Abort(ctx)
		return backend.Info{}, err
	}
	return w.Commit(ctx)
}

func mustCommit(t *testing.T, b backend.Backend, p, data string, appending bool, opts backend.WriteOptions) backend.Info {
	t.Helper()
	info, err := commit(t.Context(), b, p, data, appending, opts)
	if err != nil {
		t.Fatalf("commit of %s: %v", p, err)
	}
	return info
}

func content(t *testing.T, b backend.Backend, p string) string {
	t.Helper()
	r, _, err := b.Read(t.Context(), p, 0, -1)
	if err != nil {
		t.Fatalf("Read(%s): %v", p, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// versionsOf returns the kept versions of p, oldest first.
func versionsOf(t *testing.T, b backend.History, p string) []backend.Version {
	t.Helper()
	var out []backend.Version
	for v, err := range b.Versions(t.Context(), p) {
		if err != nil {
			t.Fatalf("Versions(%s): %v", p, err)
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(x, y backend.Version) int { return strings.Compare(x.ID, y.ID) })
	return out
}

func readVersion(t *testing.T, b backend.History, p, id string, offset, length int64) (string, backend.Version) {
	t.Helper()
	r, v, err := b.ReadVersion(t.Context(), p, id, offset, length)
	if err != nil {
		t.Fatalf("ReadVersion(%s, %s): %v", p, id, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(data), v
}

// noLeftovers fails t when a temporary is left in the store.
func noLeftovers(t *testing.T, s historyStore) {
	t.Helper()
	if l := leftovers(t, s.Afero); len(l) != 0 {
		t.Fatalf("temporaries left: %v", l)
	}
}

var idForm = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$`)

// checkKept fails t unless v is the version was of p, kept for reason by
// participant between from and to, with the bytes data.
func checkKept(t *testing.T, b backend.History, v backend.Version, p string, was backend.Info, reason, participant string, from, to time.Time, data string) {
	t.Helper()
	switch {
	case v.Path != p, !idForm.MatchString(v.ID):
		t.Fatalf("kept version of %s: path %q, id %q", p, v.Path, v.ID)
	case v.ETag != was.ETag, v.Size != was.Size, !v.ModTime.Equal(was.ModTime):
		t.Fatalf("kept version of %s: ETag %q size %d mod %v; it was %q %d %v while current", p, v.ETag, v.Size, v.ModTime, was.ETag, was.Size, was.ModTime)
	case v.Reason != reason, v.Participant != participant:
		t.Fatalf("kept version of %s: reason %q participant %q, want %q %q", p, v.Reason, v.Participant, reason, participant)
	case v.Replaced.Before(from.Truncate(time.Microsecond)), v.Replaced.After(to):
		t.Fatalf("kept version of %s replaced at %v, outside the change's [%v, %v]", p, v.Replaced, from, to)
	}
	got, rv := readVersion(t, b, p, v.ID, 0, -1)
	if got != data {
		t.Fatalf("version %s of %s reads %q, want %q", v.ID, p, got, data)
	}
	if !sameVersion(rv, v) {
		t.Fatalf("ReadVersion describes %+v, Versions %+v", rv, v)
	}
}

// sameVersion reports whether x and y describe a version alike.
func sameVersion(x, y backend.Version) bool {
	return x.Path == y.Path && x.ID == y.ID && x.ETag == y.ETag && x.Size == y.Size && x.ModTime.Equal(y.ModTime) &&
		x.Replaced.Equal(y.Replaced) && x.Participant == y.Participant && x.Reason == y.Reason
}

// Each change's precondition holds or fails, and a failed one changes
// nothing: no file, no folder, no temporary, no kept version.
func TestPreconditionsHoldOrChangeNothing(t *testing.T) {
	onEachHistoryStore(t, func(t *testing.T, s historyStore) {
		ctx := t.Context()
		keep := &backend.Keep{Reason: backend.ReasonOverwritten}
		failed := 0
		fails := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, backend.ErrPrecondition) {
				t.Fatalf("%s: %v, want ErrPrecondition", what, err)
			}
			failed++
		}
		// Create.
		one := mustCommit(t, s, "f", "one", false, backend.WriteOptions{})
		two := mustCommit(t, s, "f", "two", false, backend.WriteOptions{Precondition: backend.Precondition{IfMatch: one.ETag}})
		big := strings.Repeat("b", 200<<10) // staged in a temporary
		_, err := commit(ctx, s, "f", big, false, backend.WriteOptions{Precondition: backend.Precondition{IfMatch: one.ETag}, Keep: keep})
		fails("Create IfMatch of a replaced version", err)
		_, err = commit(ctx, s, "f", "x", false, backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: "*"}})
		fails("Create IfNoneMatch * over a file", err)
		_, err = commit(ctx, s, "f", "x", false, backend.WriteOptions{Exclusive: true, Precondition: backend.Precondition{IfNoneMatch: "*"}})
		fails("exclusive Create IfNoneMatch * over a file", err)
		_, err = commit(ctx, s, "f", "x", false, backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: two.ETag}})
		fails("Create IfNoneMatch of the current version", err)
		_, err = commit(ctx, s, "new/g", big, false, backend.WriteOptions{Precondition: backend.Precondition{IfMatch: two.ETag}, Keep: keep})
		fails("Create IfMatch of a missing file", err)
		if _, err := s.Stat(ctx, "new"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a failed Create left its folder: %v", err)
		}
		if got := content(t, s, "f"); got != "two" {
			t.Fatalf("f holds %q after failed preconditions, want two", got)
		}
		three := mustCommit(t, s, "f", "three", false, backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: one.ETag}})
		mustCommit(t, s, "h", "h", false, backend.WriteOptions{Exclusive: true, Precondition: backend.Precondition{IfNoneMatch: "*"}})
		// A folder is no version: IfNoneMatch passes, and the folder refuses.
		mustCommit(t, s, "dir/x", "x", false, backend.WriteOptions{})
		if _, err := commit(ctx, s, "dir", "x", false, backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: "*"}}); !errors.Is(err, backend.ErrIsFolder) {
			t.Fatalf("Create IfNoneMatch * over a folder: %v, want ErrIsFolder", err)
		}

		// Append.
		four := mustCommit(t, s, "f", "+4", true, backend.WriteOptions{Precondition: backend.Precondition{IfMatch: three.ETag}})
		_, err = commit(ctx, s, "f", "+x", true, backend.WriteOptions{Precondition: backend.Precondition{IfMatch: three.ETag}, Keep: keep})
		fails("Append IfMatch of a replaced version", err)
		_, err = commit(ctx, s, "log", "+x", true, backend.WriteOptions{Precondition: backend.Precondition{IfMatch: three.ETag}})
		fails("Append IfMatch of a missing file", err)
		_, err = commit(ctx, s, "f", "+x", true, backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: "*"}})
		fails("Append IfNoneMatch * over a file", err)
		mustCommit(t, s, "log", "1", true, backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: "*"}})
		if got := content(t, s, "f"); got != "three+4" {
			t.Fatalf("f holds %q, want three+4", got)
		}

		// Remove: a missing file is fs.ErrNotExist first.
		if err := s.Remove(ctx, "nothing", backend.RemoveOptions{IfMatch: four.ETag}); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Remove IfMatch of a missing file: %v, want fs.ErrNotExist", err)
		}
		fails("Remove IfMatch of a replaced version", s.Remove(ctx, "f", backend.RemoveOptions{IfMatch: three.ETag, Keep: keep}))
		if got := content(t, s, "f"); got != "three+4" {
			t.Fatalf("f holds %q after a failed Remove", got)
		}

		// Move.
		if _, err := s.Move(ctx, "nothing", "m", backend.MoveOptions{IfMatch: four.ETag}); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Move IfMatch of a missing file: %v, want fs.ErrNotExist", err)
		}
		_, err = s.Move(ctx, "f", "h", backend.MoveOptions{IfMatch: three.ETag, Overwrite: true, Keep: keep})
		fails("Move IfMatch of a replaced version", err)
		if content(t, s, "f") != "three+4" || content(t, s, "h") != "h" {
			t.Fatal("a failed Move changed its files")
		}
		for _, p := range []string{"f", "h", "new/g", "log"} {
			if v := versionsOf(t, s, p); len(v) != 0 {
				t.Fatalf("failed preconditions kept %d versions of %s", len(v), p)
			}
		}
		moved, err := s.Move(ctx, "f", "m", backend.MoveOptions{IfMatch: four.ETag})
		if err != nil || moved.ETag != four.ETag {
			t.Fatalf("Move IfMatch of the current version: %+v %v", moved, err)
		}
		if err := s.Remove(ctx, "m", backend.RemoveOptions{IfMatch: four.ETag}); err != nil {
			t.Fatalf("Remove IfMatch of the current version: %v", err)
		}
		noLeftovers(t, s)
		if failed != 10 {
			t.Fatalf("%d preconditions failed, want 10", failed)
		}
	})
}

// Of commits racing to replace one version with IfMatch, from two
// backends over one store (two processes), exactly one wins; the losers
// get ErrPrecondition and their bytes are gone. Each round keeps exactly
// the version replaced.
func TestRacingIfMatchCommitsOneWins(t *testing.T) {
	for _, kind := range []string{"file", "basepath", "memmap"} {
		t.Run(kind, func(t *testing.T) {
			s := openHistoryStore(t, kind)
			other := s.Afero
			if kind == "memmap" {
				other = backend_disk.NewAfero(s.Fs()) // shares the Fs, as a second engine in the process
				t.Cleanup(func() { other.Close() })
			} else {
				other = reopenHistoryStore(t, kind, s.dir)
			}
			backends := []*backend_disk.Afero{s.Afero, other}
			const rounds, racers = 12, 6
			for round := range rounds {
				appending := round%2 == 1
				base := mustCommit(t, s, "race", fmt.Sprintf("base %d;", round), false, backend.WriteOptions{})
				start := make(chan struct{})
				type result struct {
					i    int
					info backend.Info
					err  error
				}
				results := make(chan result, racers)
				var wg sync.WaitGroup
				for i := range racers {
					wg.Go(func() {
						b := backends[i%2]
						data := fmt.Sprintf("racer %d of round %d;", i, round)
						if i%3 == 0 {
							data += strings.Repeat("s", 100<<10) // staged in a temporary
						}
						open := b.Create
						if appending {
							open = b.Append
						}
						opts := backend.WriteOptions{Precondition: backend.Precondition{IfMatch: base.ETag}, Keep: &backend.Keep{Participant: fmt.Sprint(i)}}
						w, err := open(t.Context(), "race", opts)
						if err == nil {
							err = w.Write(t.Context(), []byte(data))
						}
						<-start
						var info backend.Info
						if err == nil {
							info, err = w.Commit(t.Context())
						}
						results <- result{i, info, err}
					})
				}
				close(start)
				wg.Wait()
				close(results)
				winner := -1
				for r := range results {
					switch {
					case r.err == nil && winner >= 0:
						t.Fatalf("round %d: racers %d and %d both won", round, winner, r.i)
					case r.err == nil:
						winner = r.i
					case !errors.Is(r.err, backend.ErrPrecondition):
						t.Fatalf("round %d: racer %d: %v, want ErrPrecondition", round, r.i, r.err)
					}
				}
				if winner < 0 {
					t.Fatalf("round %d: nobody won", round)
				}
				want := fmt.Sprintf("racer %d of round %d;", winner, round)
				if winner%3 == 0 {
					want += strings.Repeat("s", 100<<10)
				}
				if appending {
					want = fmt.Sprintf("base %d;", round) + want
				}
				if got := content(t, s, "race"); got != want {
					t.Fatalf("round %d: race holds %d bytes, not the winner's %d", round, len(got), len(want))
				}
				var kept []backend.Version
				for _, v := range versionsOf(t, s, "race") {
					if v.ETag == base.ETag {
						kept = append(kept, v)
					}
				}
				if len(kept) != 1 || kept[0].Participant != fmt.Sprint(winner) {
					t.Fatalf("round %d: %d versions kept of the version replaced (%+v), want the winner's one", round, len(kept), kept)
				}
				noLeftovers(t, s)
			}
			if n := len(versionsOf(t, s, "race")); n != rounds {
				t.Fatalf("%d versions kept, want %d (each round's base)", n, rounds)
			}
		})
	}
}

// Every change keeps the version it replaces, byte for byte, with the
// ETag, size and commit time it had while current, the reason and the
// participant; a change that replaces nothing keeps nothing.
func TestChangesKeepTheVersionsTheyReplace(t *testing.T) {
	onEachHistoryStore(t, func(t *testing.T, s historyStore) {
		ctx := t.Context()
		// A participant cut to 128 bytes, inside a character.
		long := strings.Repeat("é", 100)
		cut := backend.KeptParticipant(long)
		if len(cut) != 128 {
			t.Fatalf("KeptParticipant cut to %d bytes", len(cut))
		}
		keep := func(p string) *backend.Keep { return &backend.Keep{Reason: backend.ReasonOverwritten, Participant: p} }
		big := strings.Repeat("0123456789", 20<<10) // past what a writer stages in memory
		v1 := mustCommit(t, s, "doc/a.txt", big, false, backend.WriteOptions{Keep: keep("alice")})
		if v := versionsOf(t, s, "doc/a.txt"); len(v) != 0 {
			t.Fatalf("creating a file kept %d versions", len(v))
		}
		type change struct {
			path, reason, participant, data string
			was                             backend.Info
			from, to                        time.Time
		}
		var changes []change
		do := func(path string, was backend.Info, data, reason, participant string, fn func()) {
			from := time.Now()
			fn()
			changes = append(changes, change{path, reason, backend.KeptParticipant(participant), data, was, from, time.Now()})
		}
		var v2, v3 backend.Info
		do("doc/a.txt", v1, big, backend.ReasonOverwritten, "alice", func() {
			v2 = mustCommit(t, s, "doc/a.txt", "second", false, backend.WriteOptions{Keep: keep("alice")})
		})
		do("doc/a.txt", v2, "second", backend.ReasonAppended, long, func() {
			v3 = mustCommit(t, s, "doc/a.txt", "+third", true, backend.WriteOptions{Keep: keep(long)})
		})
		do("doc/a.txt", v3, "second+third", backend.ReasonDeleted, "", func() {
			if err := s.Remove(ctx, "doc/a.txt", backend.RemoveOptions{Keep: keep("")}); err != nil {
				t.Fatal(err)
			}
		})
		// The file is gone; its versions stay.
		if _, err := s.Stat(ctx, "doc/a.txt"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Stat after Remove: %v", err)
		}
		// Move: the source's version under the source, the destination's
		// under the destination.
		src := mustCommit(t, s, "m/src", "source", false, backend.WriteOptions{})
		dst := mustCommit(t, s, "m/dst", "destination", false, backend.WriteOptions{})
		do("m/dst", dst, "destination", backend.ReasonOverwritten, "bob", func() {
			moved, err := s.Move(ctx, "m/src", "m/dst", backend.MoveOptions{Overwrite: true, Keep: &backend.Keep{Reason: backend.ReasonMoved, Participant: "bob"}})
			if err != nil || moved.ETag != src.ETag {
				t.Fatalf("Move: %+v %v", moved, err)
			}
		})
		changes = append(changes, change{"m/src", backend.ReasonMoved, "bob", "source", src, changes[len(changes)-1].from, changes[len(changes)-1].to})
		// A move onto nothing keeps the source's version only.
		do("m/dst", src, "source", backend.ReasonMoved, "carol", func() {
			if _, err := s.Move(ctx, "m/dst", "n/new", backend.MoveOptions{Keep: &backend.Keep{Participant: "carol"}}); err != nil {
				t.Fatal(err)
			}
		})
		if v := versionsOf(t, s, "n/new"); len(v) != 0 {
			t.Fatalf("a move onto nothing kept %d versions of its destination", len(v))
		}
		byPath := map[string][]change{}
		for _, c := range changes {
			byPath[c.path] = append(byPath[c.path], c)
		}
		checked := 0
		for p, want := range byPath {
			got := versionsOf(t, s, p)
			if len(got) != len(want) {
				t.Fatalf("%s has %d kept versions, want %d", p, len(got), len(want))
			}
			for i, c := range want {
				checkKept(t, s, got[i], p, c.was, c.reason, c.participant, c.from, c.to, c.data)
				checked++
			}
		}
		if checked != 6 {
			t.Fatalf("%d kept versions checked, want 6", checked)
		}
		// Parts of a version, and what is no version.
		v := versionsOf(t, s, "doc/a.txt")[0]
		if part, _ := readVersion(t, s, "doc/a.txt", v.ID, 5, 7); part != big[5:12] {
			t.Fatalf("ReadVersion(5, 7) = %q", part)
		}
		if rest, _ := readVersion(t, s, "doc/a.txt", v.ID, v.Size-3, 100); rest != big[len(big)-3:] {
			t.Fatalf("ReadVersion to past the end = %q", rest)
		}
		if _, _, err := s.ReadVersion(ctx, "doc/a.txt", v.ID, v.Size+1, -1); !errors.Is(err, fs.ErrInvalid) {
			t.Fatalf("ReadVersion past the end: %v, want fs.ErrInvalid", err)
		}
		for _, id := range []string{"0000000000000000-00000000.o.", "../a.txt", ".roomstore.v", "", v.ID + "/x"} {
			if _, _, err := s.ReadVersion(ctx, "doc/a.txt", id, 0, -1); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("ReadVersion of id %q: %v, want fs.ErrNotExist", id, err)
			}
		}
		if _, _, err := s.ReadVersion(ctx, "m/src", v.ID, 0, -1); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("ReadVersion of another path's id: %v, want fs.ErrNotExist", err)
		}
		noLeftovers(t, s)
	})
}

// Forget removes one version, and with a path's last the folders that
// held it; an unknown version is fs.ErrNotExist.
func TestForgetRemovesVersionsAndTheirFolders(t *testing.T) {
	onEachHistoryStore(t, func(t *testing.T, s historyStore) {
		ctx := t.Context()
		keep := &backend.Keep{}
		for _, p := range []string{"a/b/c", "a/d"} {
			for i := range 3 {
				mustCommit(t, s, p, fmt.Sprint(i), false, backend.WriteOptions{Keep: keep})
			}
		}
		kept := versionsOf(t, s, "a/b/c")
		if len(kept) != 2 {
			t.Fatalf("%d versions kept of a/b/c, want 2", len(kept))
		}
		if err := s.Forget(ctx, "a/b/c", kept[0].ID); err != nil {
			t.Fatal(err)
		}
		if err := s.Forget(ctx, "a/b/c", kept[0].ID); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Forget of a forgotten version: %v, want fs.ErrNotExist", err)
		}
		if err := s.Forget(ctx, "a/d", kept[1].ID); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Forget of another path's version: %v, want fs.ErrNotExist", err)
		}
		if err := s.Forget(ctx, "a/b/c", "../../d/.roomstore.v/x"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Forget of an id with slashes: %v, want fs.ErrNotExist", err)
		}
		if v := versionsOf(t, s, "a/b/c"); len(v) != 1 || v[0].ID != kept[1].ID {
			t.Fatalf("after Forget: %+v", v)
		}
		reserved := func(p string) error {
			_, err := s.Fs().Stat(filepath.ToSlash(filepath.Join(roompath.ReservedPrefix, "versions", p)))
			return err
		}
		if err := reserved("a/b/c"); err != nil {
			t.Fatalf("the folder of a path with a version left: %v", err)
		}
		if err := s.Forget(ctx, "a/b/c", kept[1].ID); err != nil {
			t.Fatal(err)
		}
		if err := reserved("a/b"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the folders of a path without versions: %v", err)
		}
		if err := reserved("a/d"); err != nil {
			t.Fatalf("the folder of another path's versions: %v", err)
		}
		if got := len(versionsOf(t, s, "a/d")); got != 2 {
			t.Fatalf("a/d has %d versions, want 2", got)
		}
		// The folders go, and come again with the next version.
		mustCommit(t, s, "a/b/c", "3", false, backend.WriteOptions{Keep: keep})
		if got := versionsOf(t, s, "a/b/c"); len(got) != 1 || content(t, s, "a/b/c") != "3" {
			t.Fatalf("a version kept after its folders went: %+v", got)
		}
	})
}

// Kept walks every path at or beneath a folder, whatever became of the
// files (a path that was a file and is now a folder included), and no
// path that merely starts with the folder's name.
func TestKeptYieldsEveryPathBeneath(t *testing.T) {
	onEachHistoryStore(t, func(t *testing.T, s historyStore) {
		ctx := t.Context()
		keep := &backend.Keep{Participant: "p"}
		twice := func(p string) {
			mustCommit(t, s, p, "1", false, backend.WriteOptions{})
			mustCommit(t, s, p, "2", false, backend.WriteOptions{Keep: keep})
		}
		twice("a") // a file, then removed, then a folder
		if err := s.Remove(ctx, "a", backend.RemoveOptions{Keep: keep}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"a/b", "a/c/d", "ab", "x/y"} {
			twice(p)
		}
		kept := func(dir string) []string {
			var out []string
			for v, err := range s.Kept(ctx, dir) {
				if err != nil {
					t.Fatalf("Kept(%q): %v", dir, err)
				}
				for _, w := range versionsOf(t, s, v.Path) {
					if w.ID == v.ID && !sameVersion(w, v) {
						t.Fatalf("Kept describes %+v, Versions %+v", v, w)
					}
				}
				out = append(out, v.Path)
			}
			slices.Sort(out)
			return out
		}
		for dir, want := range map[string][]string{
			"":     {"a", "a", "a/b", "a/c/d", "ab", "x/y"},
			"a":    {"a", "a", "a/b", "a/c/d"},
			"a/c":  {"a/c/d"},
			"ab":   {"ab"},
			"x":    {"x/y"},
			"nope": nil,
			"a/b":  {"a/b"},
		} {
			if got := kept(dir); !slices.Equal(got, want) {
				t.Fatalf("Kept(%q) = %v, want %v", dir, got, want)
			}
		}
		n := 0
		for range s.Kept(ctx, "") {
			if n++; n == 2 {
				break
			}
		}
		if n != 2 {
			t.Fatalf("Kept went on for %d after a break", n)
		}
	})
}

// Kept versions show nowhere: not in List, nor as a folder (a folder
// whose only files went with their versions kept does not exist), and the
// sweep of temporaries, at open or called, leaves every one.
func TestKeptVersionsAreInvisibleAndSurviveTheSweep(t *testing.T) {
	onEachHistoryStore(t, func(t *testing.T, s historyStore) {
		ctx := t.Context()
		keep := &backend.Keep{}
		mustCommit(t, s, "d/e/f", "1", false, backend.WriteOptions{})
		mustCommit(t, s, "d/e/f", "2", false, backend.WriteOptions{Keep: keep})
		if err := s.Remove(ctx, "d/e/f", backend.RemoveOptions{Keep: keep}); err != nil {
			t.Fatal(err)
		}
		mustCommit(t, s, "g", "1", false, backend.WriteOptions{})
		mustCommit(t, s, "g", "2", false, backend.WriteOptions{Keep: keep})
		if got := listed(t, s, ""); !slices.Equal(got, []string{"g"}) {
			t.Fatalf("the root lists %v", got)
		}
		for _, p := range []string{"d", "d/e", "d/e/f"} {
			if _, err := s.Stat(ctx, p); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Stat(%s) with only kept versions beneath: %v", p, err)
			}
			if got := listed(t, s, p); len(got) != 0 {
				t.Fatalf("List(%s) = %v", p, got)
			}
		}
		// Nor through the reserved folder's own names.
		g := versionsOf(t, s, "g")[0]
		for _, p := range []string{roompath.ReservedPrefix, roompath.ReservedPrefix + "/versions", roompath.ReservedPrefix + "/versions/g"} {
			if _, err := s.Stat(ctx, p); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Stat(%s): %v", p, err)
			}
			if got := listed(t, s, p); len(got) != 0 {
				t.Fatalf("List(%s) = %v", p, got)
			}
		}
		if _, _, err := s.Read(ctx, roompath.ReservedPrefix+"/versions/g/"+roompath.ReservedPrefix+".v/"+g.ID, 0, -1); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Read of a kept version's file: %v", err)
		}
		count := func() int {
			n := 0
			for _, err := range s.Kept(ctx, "") {
				if err != nil {
					t.Fatal(err)
				}
				n++
			}
			return n
		}
		if n := count(); n != 3 {
			t.Fatalf("%d versions kept, want 3", n)
		}
		if s.dir == "" {
			return // no other process, no sweep
		}
		// A temporary of a dead owner, for the sweep to find.
		host, _ := os.Hostname()
		stale := filepath.Join(s.dir, roompath.ReservedPrefix, "tmp", fmt.Sprintf("%x-1-00000000000000aa-bb", host))
		if err := os.WriteFile(stale, []byte("stale"), 0o644); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Sweep(ctx); err != nil || n != 1 {
			t.Fatalf("Sweep = %d, %v; want the dead owner's temporary", n, err)
		}
		reopenHistoryStore(t, s.kind, s.dir) // sweeps at open
		if n := count(); n != 3 {
			t.Fatalf("%d versions kept after the sweeps, want 3", n)
		}
	})
}

// A watch of a file:// store reports the changes to files, and nothing of
// the versions that they keep or that Forget removes.
func TestWatchNeverReportsKeptVersions(t *testing.T) {
	s := openHistoryStore(t, "file")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	changes := make(chan backend.Change, 1000)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, func() { close(ready) }, func(c backend.Change) { changes <- c })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Watch: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready within 10s")
	}
	keep := &backend.Keep{}
	mustCommit(t, s, "w", "1", false, backend.WriteOptions{})
	mustCommit(t, s, "w", "2", false, backend.WriteOptions{Keep: keep})
	mustCommit(t, s, "w", "3", true, backend.WriteOptions{Keep: keep})
	if _, err := s.Move(t.Context(), "w", "m", backend.MoveOptions{Keep: keep}); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(t.Context(), "m", backend.RemoveOptions{Keep: keep}); err != nil {
		t.Fatal(err)
	}
	forgot := 0
	for v, err := range s.Kept(t.Context(), "") {
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Forget(t.Context(), v.Path, v.ID); err != nil {
			t.Fatal(err)
		}
		forgot++
	}
	if forgot != 4 {
		t.Fatalf("forgot %d versions, want 4", forgot)
	}
	mustCommit(t, s, "end", "x", false, backend.WriteOptions{}) // the marker of the end
	var got []backend.Change
	timeout := time.After(10 * time.Second)
	for len(got) == 0 || got[len(got)-1].Path != "end" {
		select {
		case c := <-changes:
			got = append(got, c)
		case <-timeout:
			t.Fatalf("end not reported within 10s; got %+v", got)
		}
	}
	seen := map[string]bool{}
	for _, c := range got {
		if c.Folder || (c.Path != "w" && c.Path != "m" && c.Path != "end") {
			t.Fatalf("reported %+v", c)
		}
		seen[c.Path] = true
	}
	if len(seen) != 3 {
		t.Fatalf("reported %v, want w, m and end", seen)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not end within 10s of its context")
	}
}

// On disk a kept version is the replaced file itself, under a second
// name: no byte is copied. An overwrite's and an append's kept version
// has the replaced file's inode, a removal's is the file renamed, and a
// move's source version shares its inode with the moved file.
func TestAKeptVersionIsTheReplacedFileNotACopy(t *testing.T) {
	for _, kind := range []string{"file", "file+fsync", "osroot", "basepath"} {
		t.Run(kind, func(t *testing.T) {
			s := openHistoryStore(t, kind)
			ctx := t.Context()
			keep := &backend.Keep{}
			host := func(p string) string { return filepath.Join(s.dir, filepath.FromSlash(p)) }
			hostKept := func(p string) (ino uint64, links uint64) {
				t.Helper()
				v := versionsOf(t, s, p)
				fi, err := os.Lstat(filepath.Join(s.dir, roompath.ReservedPrefix, "versions", filepath.FromSlash(p), roompath.ReservedPrefix+".v", v[len(v)-1].ID))
				if err != nil {
					t.Fatalf("the newest kept version of %s on disk: %v", p, err)
				}
				st := fi.Sys().(*syscall.Stat_t)
				return st.Ino, uint64(st.Nlink)
			}
			big := strings.Repeat("x", 4<<20)
			mustCommit(t, s, "f", big, false, backend.WriteOptions{})
			ino := inode(t, host("f"))
			usedBefore := diskUsed(t, s.dir)
			mustCommit(t, s, "f", "small", false, backend.WriteOptions{Keep: keep})
			if got, links := hostKept("f"); got != ino || links != 1 {
				t.Fatalf("overwrite: the kept version is inode %d with %d links; the replaced file was %d", got, links, ino)
			}
			// No 4 MiB copy: the store grew by the new file at most (and
			// folder blocks), whatever the file system's block size.
			if grew := diskUsed(t, s.dir) - usedBefore; grew >= 1<<20 {
				t.Fatalf("keeping a 4 MiB version took %d more bytes on disk", grew)
			}
			ino = inode(t, host("f"))
			mustCommit(t, s, "f", "+more", true, backend.WriteOptions{Keep: keep})
			if got, _ := hostKept("f"); got != ino {
				t.Fatalf("append: the kept version is inode %d, the replaced file %d", got, ino)
			}
			ino = inode(t, host("f"))
			if _, err := s.Move(ctx, "f", "g", backend.MoveOptions{Keep: keep}); err != nil {
				t.Fatal(err)
			}
			if got, links := hostKept("f"); got != ino || inode(t, host("g")) != ino || links != 2 {
				t.Fatalf("move: the kept version is inode %d with %d links; the moved file is %d", got, links, inode(t, host("g")))
			}
			if err := s.Remove(ctx, "g", backend.RemoveOptions{Keep: keep}); err != nil {
				t.Fatal(err)
			}
			if got, links := hostKept("g"); got != ino || links != 2 {
				t.Fatalf("remove: the kept version is inode %d with %d links, want the removed %d with 2 (g's and f's versions)", got, links, ino)
			}
		})
	}
}

// diskUsed returns the bytes the files and folders under dir take on
// disk (their blocks).
func diskUsed(t *testing.T, dir string) int64 {
	t.Helper()
	var used int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		used += fi.Sys().(*syscall.Stat_t).Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return used
}

// In memory (an afero.Fs without links) a kept version is a copy, which
// still has the ETag of the version it copies.
func TestWithoutLinksAKeptVersionIsACopyWithItsETag(t *testing.T) {
	s := openHistoryStore(t, "memmap")
	was := mustCommit(t, s, "f", "one", false, backend.WriteOptions{})
	mustCommit(t, s, "f", "two", false, backend.WriteOptions{Keep: &backend.Keep{}})
	v := versionsOf(t, s, "f")
	if len(v) != 1 || v[0].ETag != was.ETag || !v[0].ModTime.Equal(was.ModTime) || v[0].Size != 3 {
		t.Fatalf("kept %+v of %+v", v, was)
	}
	if data, _ := readVersion(t, s, "f", v[0].ID, 0, -1); data != "one" {
		t.Fatalf("the copy reads %q", data)
	}
	if !bytes.Contains([]byte(v[0].ID), []byte(was.ETag)) {
		t.Fatalf("the copy's id %q does not record the ETag %q", v[0].ID, was.ETag)
	}
}

// renameRefusingFs is an afero.Fs whose renames onto a path of the store
// (outside the reserved folder) fail while refuse is set.
type renameRefusingFs struct {
	afero.Fs
	refuse  *bool
	refused *int
}

func (f renameRefusingFs) Rename(from, to string) error {
	if *f.refuse && !roompath.IsReserved(to) {
		*f.refused++
		return &fs.PathError{Op: "rename", Path: to, Err: syscall.EIO}
	}
	return f.Fs.Rename(from, to)
}

// A change that fails after it kept the version it would replace forgets
// that version again: nothing changed, nothing is kept.
func TestAFailedChangeForgetsWhatItKept(t *testing.T) {
	refuse, refused := false, 0
	b := backend_disk.NewAfero(renameRefusingFs{afero.NewMemMapFs(), &refuse, &refused})
	defer b.Close()
	ctx := t.Context()
	keep := &backend.Keep{}
	mustCommit(t, b, "f", "one", false, backend.WriteOptions{})
	mustCommit(t, b, "g", "gee", false, backend.WriteOptions{})
	refuse = true
	if _, err := commit(ctx, b, "f", "two", false, backend.WriteOptions{Keep: keep}); err == nil {
		t.Fatal("an overwrite committed with renames refused")
	}
	if _, err := commit(ctx, b, "f", "+two", true, backend.WriteOptions{Keep: keep}); err == nil {
		t.Fatal("an append committed with renames refused")
	}
	if _, err := b.Move(ctx, "f", "g", backend.MoveOptions{Overwrite: true, Keep: keep}); err == nil {
		t.Fatal("a move succeeded with renames refused")
	}
	refuse = false
	if refused != 3 {
		t.Fatalf("%d renames refused, want 3", refused)
	}
	if content(t, b, "f") != "one" || content(t, b, "g") != "gee" {
		t.Fatal("a failed change changed a file")
	}
	for v, err := range b.Kept(ctx, "") {
		t.Fatalf("a failed change left a kept version: %+v %v", v, err)
	}
	noLeftovers(t, historyStore{Afero: b})
}

// TestRetainTrimsEachPathToItsNewestVersions shows Keep.Retain applied
// by the change itself: overwrites, appends, removals and moves each
// leave their paths' newest versions, and a change that fails trims
// nothing.
func TestRetainTrimsEachPathToItsNewestVersions(t *testing.T) {
	onEachHistoryStore(t, func(t *testing.T, s historyStore) {
		if !s.RetainsKept() {
			t.Fatal("a disk store does not retain")
		}
		ctx := t.Context()
		keep := &backend.Keep{Reason: backend.ReasonOverwritten, Participant: "p", Retain: 3}
		for i := range 6 {
			mustCommit(t, s, "f", strconv.Itoa(i), false, backend.WriteOptions{Keep: keep})
		}
		mustCommit(t, s, "f", "+", true, backend.WriteOptions{Keep: keep})
		var got []string
		for _, v := range versionsOf(t, s, "f") {
			data, _ := readVersion(t, s, "f", v.ID, 0, -1)
			got = append(got, data)
		}
		if want := []string{"3", "4", "5"}; !slices.Equal(got, want) {
			t.Fatalf("versions after 7 changes with Retain 3 = %q, want %q", got, want)
		}
		// A change refused by its precondition keeps and trims nothing.
		if _, err := commit(ctx, s, "f", "x", false, backend.WriteOptions{Keep: keep, Precondition: backend.Precondition{IfMatch: "stale"}}); !errors.Is(err, backend.ErrPrecondition) {
			t.Fatalf("a stale IfMatch commit: %v", err)
		}
		if n := len(versionsOf(t, s, "f")); n != 3 {
			t.Fatalf("%d versions after a refused change, want 3", n)
		}
		mustCommit(t, s, "g", "g1", false, backend.WriteOptions{})
		mustCommit(t, s, "g", "g2", false, backend.WriteOptions{Keep: keep})
		if err := s.Remove(ctx, "g", backend.RemoveOptions{Keep: &backend.Keep{Reason: backend.ReasonDeleted, Retain: 1}}); err != nil {
			t.Fatal(err)
		}
		if vs := versionsOf(t, s, "g"); len(vs) != 1 || vs[0].Reason != backend.ReasonDeleted {
			t.Fatalf("versions of g after a removal with Retain 1 = %+v", vs)
		}
		mustCommit(t, s, "h", "h", false, backend.WriteOptions{})
		if _, err := s.Move(ctx, "h", "g", backend.MoveOptions{Keep: &backend.Keep{Retain: 1}}); err != nil {
			t.Fatal(err)
		}
		if vs := versionsOf(t, s, "g"); len(vs) != 1 || vs[0].Reason != backend.ReasonDeleted {
			t.Fatalf("versions of g after a move onto it = %+v", vs)
		}
		if vs := versionsOf(t, s, "h"); len(vs) != 1 || vs[0].Reason != backend.ReasonMoved {
			t.Fatalf("versions of h after its move = %+v", vs)
		}
	})
}
