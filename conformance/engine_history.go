package conformance

import (
	"bytes"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
)

// etag returns the ETag Stat reports for the file at p.
func (e *env) etag(t *testing.T, p string) string {
	t.Helper()
	en, err := e.Stat(e.ctx, p)
	noErr(t, "Stat "+p, err)
	if en.ETag == "" {
		t.Fatalf("Stat(%q) has no ETag", p)
	}
	return en.ETag
}

// versions lists p's past versions, failing t on an error.
func (e *env) versions(t *testing.T, p string) []roomstore.Version {
	t.Helper()
	vs, err := e.Versions(e.ctx, p)
	noErr(t, "Versions "+p, err)
	return vs
}

// reasons returns the reasons of vs, in order.
func reasons(vs []roomstore.Version) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Reason
	}
	return out
}

// versionBytes reads the past version v of its path.
func (e *env) versionBytes(t *testing.T, v roomstore.Version) []byte {
	t.Helper()
	r, err := e.OpenVersion(e.ctx, v.Path, v.ID)
	noErr(t, "OpenVersion "+v.Path+" "+v.ID, err)
	if en := r.Entry(); en.ETag != v.ETag || en.Size != v.Size || en.Path != v.Path {
		t.Fatalf("OpenVersion's Entry = %+v, want the version %+v", en, v)
	}
	return readAll(t, r)
}

// mustHold checks that p's past versions are, newest first, want (their
// bytes) for the reasons given.
func (e *env) mustHold(t *testing.T, p string, want [][]byte, why []string) []roomstore.Version {
	t.Helper()
	vs := e.versions(t, p)
	if got := reasons(vs); !slices.Equal(got, why) {
		t.Fatalf("Versions(%q) reasons = %q, want %q", p, got, why)
	}
	for i, v := range vs {
		if v.Path != p || v.ID == "" || v.ParticipantID != "alice" || v.Size != int64(len(want[i])) || v.Replaced.IsZero() || v.ModTime.IsZero() {
			t.Fatalf("Versions(%q)[%d] = %+v, want path, id, participant alice, size %d and times", p, i, v, len(want[i]))
		}
		if i > 0 && v.Replaced.After(vs[i-1].Replaced) {
			t.Fatalf("Versions(%q) not newest first: %+v", p, vs)
		}
		if got := e.versionBytes(t, v); !bytes.Equal(got, want[i]) {
			t.Fatalf("version %d of %q holds %s, want %s", i, p, show(got), show(want[i]))
		}
	}
	return vs
}

// preconditionCases check IfMatch and IfNoneMatch on every change.
var preconditionCases = []tcase{
	{"a save under the ETag it read lands, one under a stale ETag fails and changes nothing", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "doc.txt", []byte("v1"), overwrite)
		v1 := e.etag(t, "doc.txt")
		e.put(t, "doc.txt", []byte("v2"), roomstore.OpenOptions{Overwrite: true, IfMatch: v1})
		v2 := e.etag(t, "doc.txt")
		if v2 == v1 {
			t.Fatal("an overwrite kept the ETag")
		}
		e.barrier(t)
		before := len(e.rec.snapshot())
		_, err := e.Open(e.ctx, "doc.txt", roomstore.OpenOptions{Overwrite: true, IfMatch: v1})
		wantErr(t, "Open under a stale ETag", err, roomstore.ErrPrecondition)
		_, err = e.Upload(e.ctx, "doc.txt", strings.NewReader("lost"), roomstore.OpenOptions{Overwrite: true, IfMatch: v1})
		wantErr(t, "Upload under a stale ETag", err, roomstore.ErrPrecondition)
		wantErr(t, "an append under a stale ETag", e.write(e.ctx, "doc.txt", []byte("+"), roomstore.OpenOptions{IfMatch: v1}), roomstore.ErrPrecondition)
		_, err = e.Open(e.ctx, "missing.txt", roomstore.OpenOptions{Overwrite: true, IfMatch: v1})
		wantErr(t, "IfMatch on a missing file", err, roomstore.ErrPrecondition)
		e.mustContain(t, "doc.txt", []byte("v2"))
		e.mustBeAbsent(t, "missing.txt")
		e.barrier(t)
		if evs := e.rec.snapshot(); len(evs) != before {
			t.Fatalf("refused saves published %+v", evs[before:])
		}
		// An append under the ETag it read lands.
		e.put(t, "doc.txt", []byte("+"), roomstore.OpenOptions{IfMatch: v2})
		e.mustContain(t, "doc.txt", []byte("v2+"))
		_, err = e.Upload(e.ctx, "doc.txt", strings.NewReader("v3"), roomstore.OpenOptions{Overwrite: true, IfMatch: e.etag(t, "doc.txt")})
		noErr(t, "Upload under the current ETag", err)
		e.mustContain(t, "doc.txt", []byte("v3"))
	}},
	{"a change between Open and Close fails the IfMatch save at Close, keeping the other's edit", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "doc.txt", []byte("base"), overwrite)
		tag := e.etag(t, "doc.txt")
		for _, over := range []bool{true, false} {
			hd := e.open(t, "doc.txt", roomstore.OpenOptions{Overwrite: over, IfMatch: tag})
			noErr(t, "Write", e.Write(e.ctx, hd, []byte("mine")))
			e.put(t, "doc.txt", []byte("theirs"), overwrite)
			wantErr(t, "Close after another's save", e.Close(e.ctx, hd), roomstore.ErrPrecondition)
			wantErr(t, "Close again", e.Close(e.ctx, hd), fs.ErrClosed)
			e.mustContain(t, "doc.txt", []byte("theirs"))
			e.put(t, "doc.txt", []byte("base"), overwrite)
			tag = e.etag(t, "doc.txt")
		}
		if n := e.Stats().OpenHandles; n != 0 {
			t.Fatalf("%d handles open after failed saves", n)
		}
	}},
	{"IfNoneMatch * creates only a missing file, also when one appears before Close", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		star := roomstore.OpenOptions{Overwrite: true, IfNoneMatch: "*"}
		e.put(t, "new.txt", []byte("first"), star)
		wantErr(t, "a second create", e.write(e.ctx, "new.txt", []byte("second"), star), roomstore.ErrPrecondition)
		_, err := e.Upload(e.ctx, "new.txt", strings.NewReader("third"), star)
		wantErr(t, "an Upload create over a file", err, roomstore.ErrPrecondition)
		_, err = e.Upload(e.ctx, "up.txt", strings.NewReader("up"), star)
		noErr(t, "an Upload create", err)
		e.mustContain(t, "up.txt", []byte("up"))
		hd := e.open(t, "late.txt", star)
		noErr(t, "Write", e.Write(e.ctx, hd, []byte("mine")))
		e.put(t, "late.txt", []byte("theirs"), overwrite)
		wantErr(t, "Close after the file appeared", e.Close(e.ctx, hd), roomstore.ErrPrecondition)
		e.mustContain(t, "new.txt", []byte("first"))
		e.mustContain(t, "late.txt", []byte("theirs"))
	}},
	{"IfNoneMatch with an ETag refuses only that version", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "a.txt", []byte("one"), overwrite)
		one := e.etag(t, "a.txt")
		wantErr(t, "a write while the file is that version", e.write(e.ctx, "a.txt", []byte("x"), roomstore.OpenOptions{Overwrite: true, IfNoneMatch: one}), roomstore.ErrPrecondition)
		e.put(t, "a.txt", []byte("two"), overwrite)
		e.put(t, "a.txt", []byte("three"), roomstore.OpenOptions{Overwrite: true, IfNoneMatch: one})
		e.put(t, "b.txt", []byte("new"), roomstore.OpenOptions{Overwrite: true, IfNoneMatch: one})
		e.mustContain(t, "a.txt", []byte("three"))
		e.mustContain(t, "b.txt", []byte("new"))
		_, err := e.Open(e.ctx, "a.txt", roomstore.OpenOptions{Exclusive: true, IfMatch: one})
		wantErr(t, "IfMatch with Exclusive", err, fs.ErrInvalid)
	}},
	{"Delete, RemoveAll and Move with IfMatch change only the version named", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "d.txt", []byte("d1"), overwrite)
		stale := e.etag(t, "d.txt")
		e.put(t, "d.txt", []byte("d2"), overwrite)
		wantErr(t, "Delete under a stale ETag", e.Delete(e.ctx, "d.txt", roomstore.DeleteOptions{IfMatch: stale}), roomstore.ErrPrecondition)
		wantErr(t, "RemoveAll under a stale ETag", e.RemoveAll(e.ctx, "d.txt", roomstore.DeleteOptions{IfMatch: stale}), roomstore.ErrPrecondition)
		wantErr(t, "Move under a stale ETag", e.Move(e.ctx, "d.txt", "moved.txt", roomstore.MoveOptions{IfMatch: stale}), roomstore.ErrPrecondition)
		e.mustContain(t, "d.txt", []byte("d2"))
		e.mustBeAbsent(t, "moved.txt")
		cur := e.etag(t, "d.txt")
		noErr(t, "Move under the current ETag", e.Move(e.ctx, "d.txt", "moved.txt", roomstore.MoveOptions{IfMatch: cur}))
		e.mustContain(t, "moved.txt", []byte("d2"))
		moved := e.etag(t, "moved.txt")
		noErr(t, "Delete under the current ETag", e.Delete(e.ctx, "moved.txt", roomstore.DeleteOptions{IfMatch: moved}))
		e.mustBeAbsent(t, "moved.txt")
		wantErr(t, "Delete of a missing file under an ETag", e.Delete(e.ctx, "moved.txt", roomstore.DeleteOptions{IfMatch: moved}), fs.ErrNotExist)
		wantErr(t, "RemoveAll of a missing file under an ETag", e.RemoveAll(e.ctx, "moved.txt", roomstore.DeleteOptions{IfMatch: moved}), roomstore.ErrPrecondition)
		e.put(t, "dir/f.txt", []byte("f"), overwrite)
		wantErr(t, "RemoveAll of a folder under an ETag", e.RemoveAll(e.ctx, "dir", roomstore.DeleteOptions{IfMatch: e.etag(t, "dir/f.txt")}), roomstore.ErrPrecondition)
		wantErr(t, "Move of a folder under an ETag", e.Move(e.ctx, "dir", "dir2", roomstore.MoveOptions{IfMatch: e.etag(t, "dir/f.txt")}), roomstore.ErrPrecondition)
		e.mustContain(t, "dir/f.txt", []byte("f"))
		noErr(t, "RemoveAll of a file under its ETag", e.RemoveAll(e.ctx, "dir/f.txt", roomstore.DeleteOptions{IfMatch: e.etag(t, "dir/f.txt")}))
		e.mustBeAbsent(t, "dir/f.txt")
	}},
	{"two engines racing an IfMatch save of one version: exactly one wins", func(t *testing.T, h Harness) {
		e1 := fresh(t, h)
		e2 := newEnv(t, h.Reopen(t, e1.b))
		for round := range 3 {
			e1.put(t, "race.txt", []byte("base"), overwrite)
			tag := e1.etag(t, "race.txt")
			o := roomstore.OpenOptions{Overwrite: true, IfMatch: tag}
			h1, h2 := e1.open(t, "race.txt", o), e2.open(t, "race.txt", o)
			one, two := pattern(3000, uint64(2*round+1)), pattern(2000, uint64(2*round+2))
			noErr(t, "Write 1", e1.Write(e1.ctx, h1, one))
			noErr(t, "Write 2", e2.Write(e2.ctx, h2, two))
			var wg sync.WaitGroup
			errs := make([]error, 2)
			wg.Go(func() { errs[0] = e1.Close(e1.ctx, h1) })
			wg.Go(func() { errs[1] = e2.Close(e2.ctx, h2) })
			wg.Wait()
			var won []byte
			switch {
			case errs[0] == nil && errors.Is(errs[1], roomstore.ErrPrecondition):
				won = one
			case errs[1] == nil && errors.Is(errs[0], roomstore.ErrPrecondition):
				won = two
			default:
				t.Fatalf("round %d: Close errors %v and %v, want one nil and one ErrPrecondition", round, errs[0], errs[1])
			}
			e1.mustContain(t, "race.txt", won)
			e2.mustContain(t, "race.txt", won)
		}
	}},
}

// historyCases check the versions kept by WithHistory.
var historyCases = []tcase{
	{"overwrite, append, delete and move keep the version each replaced, and each restores", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "doc.txt", []byte("one"), overwrite)
		first := e.etag(t, "doc.txt")
		if vs := e.versions(t, "doc.txt"); len(vs) != 0 {
			t.Fatalf("a new file has past versions %+v", vs)
		}
		e.put(t, "doc.txt", []byte("two"), overwrite)
		e.put(t, "doc.txt", []byte("+"), roomstore.OpenOptions{})
		vs := e.mustHold(t, "doc.txt", [][]byte{[]byte("two"), []byte("one")}, []string{"appended", "overwritten"})
		if vs[1].ETag != first {
			t.Fatalf("the first version's ETag is %q, it was %q", vs[1].ETag, first)
		}
		e.put(t, "other.txt", []byte("other"), overwrite)
		noErr(t, "Move over other.txt", e.Move(e.ctx, "doc.txt", "other.txt", roomstore.MoveOptions{Overwrite: true}))
		e.mustHold(t, "doc.txt", [][]byte{[]byte("two+"), []byte("two"), []byte("one")}, []string{"moved", "appended", "overwritten"})
		e.mustHold(t, "other.txt", [][]byte{[]byte("other")}, []string{"overwritten"})
		noErr(t, "Delete", e.Delete(e.ctx, "other.txt"))
		ov := e.mustHold(t, "other.txt", [][]byte{[]byte("two+"), []byte("other")}, []string{"deleted", "overwritten"})

		// Each restores: the deleted file, then an older version over it.
		e.barrier(t)
		before := len(e.rec.matching(roomstore.EventFileUpdated, "other.txt"))
		en, err := e.Restore(e.ctx, "other.txt", ov[0].ID)
		noErr(t, "Restore of a deleted file", err)
		e.mustContain(t, "other.txt", []byte("two+"))
		if en.Path != "other.txt" || en.Size != 4 || en.ETag == "" || en.ETag != e.etag(t, "other.txt") {
			t.Fatalf("Restore returned %+v", en)
		}
		_, err = e.Restore(e.ctx, "other.txt", ov[1].ID)
		noErr(t, "Restore of an overwritten version", err)
		e.mustContain(t, "other.txt", []byte("other"))
		if evs := e.await(t, roomstore.EventFileUpdated, "other.txt", before+2); len(evs) != before+2 {
			t.Fatalf("two restores published %d file.updated, want 2", len(evs)-before)
		}
		// A restore is itself undone by restoring what it replaced.
		ov = e.versions(t, "other.txt")
		if ov[0].Reason != "overwritten" || ov[0].Size != 4 {
			t.Fatalf("the restore kept %+v, want the 4-byte version it replaced", ov[0])
		}
		_, err = e.Restore(e.ctx, "other.txt", ov[0].ID)
		noErr(t, "undo of a restore", err)
		e.mustContain(t, "other.txt", []byte("two+"))
		// doc.txt was moved away: each of its versions restores, the moved
		// one, the appended one and the overwritten one.
		dv := e.versions(t, "doc.txt")
		for _, want := range []struct{ reason, data string }{{"moved", "two+"}, {"appended", "two"}, {"overwritten", "one"}} {
			i := slices.IndexFunc(dv, func(v roomstore.Version) bool { return v.Reason == want.reason })
			if i < 0 {
				t.Fatalf("no %s version of doc.txt in %+v", want.reason, dv)
			}
			_, err = e.Restore(e.ctx, "doc.txt", dv[i].ID)
			noErr(t, "Restore of the "+want.reason+" version", err)
			e.mustContain(t, "doc.txt", []byte(want.data))
		}
	}},
	{"a deleted folder's files are listed and restored together", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		files := map[string][]byte{"reports/a.txt": []byte("a"), "reports/q/b.txt": []byte("bb"), "reports/c.txt": []byte("ccc")}
		for p, b := range files {
			e.put(t, p, b, overwrite)
		}
		e.put(t, "keep/x.txt", []byte("x"), overwrite)
		noErr(t, "RemoveAll", e.RemoveAll(e.ctx, "reports"))
		e.mustBeAbsent(t, "reports")
		gone, err := e.Deleted(e.ctx, "reports")
		noErr(t, "Deleted", err)
		var paths []string
		for _, v := range gone {
			paths = append(paths, v.Path)
			if v.Reason != "deleted" || v.ParticipantID != "alice" || v.Size != int64(len(files[v.Path])) {
				t.Fatalf("Deleted listed %+v", v)
			}
		}
		if want := []string{"reports/a.txt", "reports/c.txt", "reports/q/b.txt"}; !slices.Equal(paths, want) {
			t.Fatalf("Deleted(reports) = %q, want %q", paths, want)
		}
		if got, err := e.DeletedMax(e.ctx, "reports", 3); err != nil || len(got) != 3 {
			t.Fatalf("DeletedMax(reports, 3) = %+v, %v; want the 3 files", got, err)
		}
		_, err = e.DeletedMax(e.ctx, "reports", 2)
		wantErr(t, "DeletedMax of 3 paths with a max of 2", err, roomstore.ErrTooManyEntries)
		e.barrier(t)
		before := len(e.rec.snapshot())
		restored, err := e.RestoreAll(e.ctx, "reports")
		noErr(t, "RestoreAll", err)
		if len(restored) != 3 {
			t.Fatalf("RestoreAll restored %+v", restored)
		}
		for p, b := range files {
			e.mustContain(t, p, b)
		}
		e.barrier(t)
		var updated int
		for _, ev := range e.rec.snapshot()[before:] {
			if ev.Type == roomstore.EventFileUpdated && strings.HasPrefix(ev.Path, "reports/") {
				updated++
			}
		}
		if updated != 3 {
			t.Fatalf("RestoreAll published %d file.updated under reports/, want 3", updated)
		}
		if gone, err := e.Deleted(e.ctx, "reports"); err != nil || len(gone) != 0 {
			t.Fatalf("Deleted after RestoreAll = %+v, %v; want none", gone, err)
		}
	}},
	{"a path with neither a file nor a version is missing, and a bad version id is refused", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		_, err := e.Versions(e.ctx, "never.txt")
		wantErr(t, "Versions of a path never written", err, fs.ErrNotExist)
		e.put(t, "f.txt", []byte("f"), overwrite)
		_, err = e.OpenVersion(e.ctx, "f.txt", "no-such-version")
		wantErr(t, "OpenVersion of an unknown id", err, fs.ErrNotExist)
		_, err = e.Restore(e.ctx, "f.txt", "no-such-version")
		wantErr(t, "Restore of an unknown id", err, fs.ErrNotExist)
		for _, id := range []string{"", "../x", "a/b", ".hidden", strings.Repeat("v", 256)} {
			_, err = e.OpenVersion(e.ctx, "f.txt", id)
			wantErr(t, "OpenVersion of id "+id, err, fs.ErrInvalid)
		}
		_, err = e.Versions(e.ctx, "../x")
		wantErr(t, "Versions of a bad path", err, fs.ErrInvalid)
		e.mustContain(t, "f.txt", []byte("f"))
	}},
	{"the count and the age of the retention bound what is kept", func(t *testing.T, h Harness) {
		now := time.Now()
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		e := fresh(t, h, roomstore.WithHistory(roomstore.History{Versions: 3, MaxAge: time.Hour}), roomstore.WithHistoryClock(clock))
		for i := range 6 {
			e.put(t, "f.txt", []byte{byte('0' + i)}, overwrite)
		}
		e.mustHold(t, "f.txt", [][]byte{[]byte("4"), []byte("3"), []byte("2")}, []string{"overwritten", "overwritten", "overwritten"})
		e.put(t, "gone.txt", []byte("g"), overwrite)
		noErr(t, "Delete", e.Delete(e.ctx, "gone.txt"))
		n, err := e.Expire(e.ctx)
		noErr(t, "Expire", err)
		if n != 0 {
			t.Fatalf("Expire removed %d young versions", n)
		}
		mu.Lock()
		now = now.Add(2 * time.Hour)
		mu.Unlock()
		n, err = e.Expire(e.ctx)
		noErr(t, "Expire", err)
		if n < 4 {
			t.Fatalf("Expire removed %d versions two hours on, want at least the 4 of f.txt and gone.txt", n)
		}
		if vs := e.versions(t, "f.txt"); len(vs) != 0 {
			t.Fatalf("versions past the age kept: %+v", vs)
		}
		_, err = e.Versions(e.ctx, "gone.txt")
		wantErr(t, "Versions of a deleted file whose versions expired", err, fs.ErrNotExist)
		e.mustContain(t, "f.txt", []byte("5"))
	}},
	{"History{} keeps nothing", func(t *testing.T, h Harness) {
		e := fresh(t, h, roomstore.WithHistory(roomstore.History{}))
		e.put(t, "f.txt", []byte("1"), overwrite)
		e.put(t, "f.txt", []byte("2"), overwrite)
		noErr(t, "Delete", e.Delete(e.ctx, "f.txt"))
		_, err := e.Versions(e.ctx, "f.txt")
		wantErr(t, "Versions without a history", err, fs.ErrNotExist)
	}},
	{"kept versions never show in List, Walk, FS or events", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "dir/a.txt", []byte("a1"), overwrite)
		e.put(t, "dir/a.txt", []byte("a2"), overwrite)
		e.put(t, "dir/b.txt", []byte("b"), overwrite)
		noErr(t, "Delete", e.Delete(e.ctx, "dir/b.txt"))
		e.put(t, "solo/c.txt", []byte("c"), overwrite)
		noErr(t, "RemoveAll", e.RemoveAll(e.ctx, "solo"))
		e.barrier(t)
		var types []string
		for _, ev := range e.rec.snapshot() {
			if !strings.HasPrefix(ev.Path, barrierDir) {
				types = append(types, ev.Type+" "+ev.Path)
			}
		}
		want := []string{"file.updated dir/a.txt", "file.updated dir/a.txt", "file.updated dir/b.txt", "file.deleted dir/b.txt", "file.updated solo/c.txt", "file.deleted solo/c.txt"}
		if !slices.Equal(types, want) {
			t.Fatalf("events %q, want %q", types, want)
		}
		if got := e.listNames(t, e.ctx, ""); slices.Contains(got, "solo/") || !slices.Contains(got, "dir/") {
			t.Fatalf("List of the root = %q", got)
		}
		if got := e.listNames(t, e.ctx, "dir"); !slices.Equal(got, []string{"a.txt"}) {
			t.Fatalf("List(dir) = %q, want [a.txt]", got)
		}
		var walked []string
		for en, err := range e.Walk(e.ctx, "") {
			noErr(t, "Walk", err)
			if !strings.HasPrefix(en.Path, barrierDir) {
				walked = append(walked, en.Path)
			}
		}
		if want := []string{"dir", "dir/a.txt"}; !slices.Equal(walked, want) {
			t.Fatalf("Walk = %q, want %q", walked, want)
		}
		var seen []string
		noErr(t, "fs.WalkDir", fs.WalkDir(e.FS(e.ctx), ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !strings.HasPrefix(p, barrierDir) && p != "." {
				seen = append(seen, p)
			}
			return nil
		}))
		if want := []string{"dir", "dir/a.txt"}; !slices.Equal(seen, want) {
			t.Fatalf("FS walk = %q, want %q", seen, want)
		}
		_, err := e.Stat(e.ctx, "solo")
		wantErr(t, "Stat of a folder that holds only kept versions", err, fs.ErrNotExist)
	}},
	{"kept versions count against the byte quota until they expire", func(t *testing.T, h Harness) {
		now := time.Now()
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		e := fresh(t, h, roomstore.WithQuota(roomstore.Quota{Bytes: 100}), roomstore.WithHistory(roomstore.History{Versions: 10, MaxAge: time.Hour}), roomstore.WithHistoryClock(clock))
		e.put(t, "a.txt", pattern(60, 1), overwrite)
		e.put(t, "a.txt", pattern(30, 2), overwrite)
		u, err := e.Usage(e.ctx)
		noErr(t, "Usage", err)
		if u.Bytes != 30 || u.Kept != 60 || u.Files != 1 {
			t.Fatalf("Usage = %+v, want 30 bytes in 1 file and 60 kept", u)
		}
		wantErr(t, "an overwrite past the quota with what is kept", e.write(e.ctx, "a.txt", pattern(11, 3), overwrite), roomstore.ErrQuotaExceeded)
		noErr(t, "Delete", e.Delete(e.ctx, "a.txt"))
		wantErr(t, "a new file once the delete kept its bytes", e.write(e.ctx, "b.txt", pattern(11, 4), overwrite), roomstore.ErrQuotaExceeded)
		mu.Lock()
		now = now.Add(2 * time.Hour)
		mu.Unlock()
		_, err = e.Expire(e.ctx)
		noErr(t, "Expire", err)
		if u, err := e.Usage(e.ctx); err != nil || u.Kept != 0 || u.Bytes != 0 {
			t.Fatalf("Usage after Expire = %+v, %v; want nothing", u, err)
		}
		e.put(t, "b.txt", pattern(100, 5), overwrite)
		e.mustContain(t, "b.txt", pattern(100, 5))
	}},
}
