package conformance

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
)

// staged lists the uploads the store holds, each by its id.
func staged(t *testing.T, b backend.Backend) []string {
	t.Helper()
	var ids []string
	for st, err := range b.ListStaged(t.Context()) {
		noErr(t, "ListStaged", err)
		ids = append(ids, st.ID)
	}
	return ids
}

// cutReader yields data and then fails with errCut, as a request body
// does when its connection drops.
type cutReader struct {
	data []byte
	done bool
}

var errCut = errors.New("connection reset")

func (r *cutReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		r.done = true
		return 0, errCut
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// create starts an upload of size bytes to p, failing t on an error.
func (e *env) create(t *testing.T, p string, size int64, o roomstore.ResumableOptions) roomstore.Resumable {
	t.Helper()
	o.Size = size
	r, err := e.CreateResumable(e.ctx, p, o)
	noErr(t, "CreateResumable "+p, err)
	if r.ID == "" || r.Path != p || r.Size != size || r.Offset != 0 || r.Participant != "alice" || !r.Expires.After(r.Created) {
		t.Fatalf("CreateResumable(%q) = %+v", p, r)
	}
	return r
}

// send writes data to upload id at offset, failing t on an error.
func (e *env) send(t *testing.T, id string, offset int64, data []byte) roomstore.Resumable {
	t.Helper()
	r, err := e.WriteResumable(e.ctx, id, offset, bytes.NewReader(data))
	noErr(t, "WriteResumable", err)
	if r.Offset != offset+int64(len(data)) {
		t.Fatalf("WriteResumable at %d of %d bytes: Offset %d", offset, len(data), r.Offset)
	}
	return r
}

// invisible checks that nothing of the store shows an upload: no entry
// listed, walked or served, no file counted, no event.
func (e *env) invisible(t *testing.T, p string) {
	t.Helper()
	if names := e.names(t, ""); len(names) != 0 {
		t.Fatalf("List of the root = %q, want nothing", names)
	}
	for en, err := range e.Walk(e.ctx, "") {
		t.Fatalf("Walk yields %+v, %v; want nothing", en, err)
	}
	if _, err := e.Stat(e.ctx, p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat(%q) = %v, want fs.ErrNotExist", p, err)
	}
	des, err := fs.ReadDir(e.FS(e.ctx), ".")
	if err != nil || len(des) != 0 {
		t.Fatalf("FS ReadDir(.) = %v, %v; want nothing", des, err)
	}
	u, err := e.Usage(e.ctx)
	noErr(t, "Usage", err)
	if u.Files != 0 || u.Bytes != 0 {
		t.Fatalf("Usage = %+v, want no file", u)
	}
	e.none(t, "before the commit")
}

// resumableCases check resumable uploads (CreateResumable and after).
var resumableCases = []tcase{
	{"parts written over cut requests commit byte-exact, invisible until then, with one event", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		data := pattern(300<<10, 1)
		r := e.create(t, "up/a.bin", int64(len(data)), roomstore.ResumableOptions{Metadata: map[string]string{"filename": "a.bin"}})
		r = e.send(t, r.ID, 0, data[:1000])
		r = e.send(t, r.ID, r.Offset, nil)
		cut := &cutReader{data: data[1000 : 150<<10]}
		got, err := e.WriteResumable(e.ctx, r.ID, r.Offset, cut)
		if !errors.Is(err, errCut) || !cut.done {
			t.Fatalf("a cut write: %v, want the reader's error", err)
		}
		if got.Offset != 150<<10 {
			t.Fatalf("a cut write kept %d bytes, want %d", got.Offset, 150<<10)
		}
		st, err := e.Resumable(e.ctx, r.ID)
		noErr(t, "Resumable", err)
		if st.Offset != 150<<10 || st.Metadata["filename"] != "a.bin" || st.Path != "up/a.bin" {
			t.Fatalf("Resumable = %+v", st)
		}
		e.invisible(t, "up/a.bin")
		_, err = e.CommitResumable(e.ctx, r.ID)
		wantErr(t, "CommitResumable of an incomplete upload", err, roomstore.ErrConflict)
		e.send(t, r.ID, st.Offset, data[st.Offset:])
		en, err := e.CommitResumable(e.ctx, r.ID)
		noErr(t, "CommitResumable", err)
		if en.Path != "up/a.bin" || en.Size != int64(len(data)) || en.ETag == "" {
			t.Fatalf("CommitResumable = %+v", en)
		}
		e.mustContain(t, "up/a.bin", data)
		if evs := e.await(t, roomstore.EventFileUpdated, "up/a.bin", 1); len(evs) != 1 || evs[0].Size != int64(len(data)) || evs[0].ParticipantID != "alice" {
			t.Fatalf("events = %+v, want one file.updated", evs)
		}
		if n := len(e.rec.snapshot()); n != 1 {
			t.Fatalf("%d events, want 1", n)
		}
		_, err = e.Resumable(e.ctx, r.ID)
		wantErr(t, "Resumable of a committed upload", err, fs.ErrNotExist)
		if ids := staged(t, e.b); len(ids) != 0 {
			t.Fatalf("the store still holds uploads %q", ids)
		}
	}},
	{"a write at another offset conflicts, bytes past the size are refused", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		r := e.create(t, "f.txt", 10, roomstore.ResumableOptions{})
		e.send(t, r.ID, 0, []byte("hello"))
		_, err := e.WriteResumable(e.ctx, r.ID, 3, strings.NewReader("xx"))
		wantErr(t, "a write at a stale offset", err, roomstore.ErrConflict)
		_, err = e.WriteResumable(e.ctx, r.ID, 7, strings.NewReader("xx"))
		wantErr(t, "a write past the offset", err, roomstore.ErrConflict)
		got, err := e.WriteResumable(e.ctx, r.ID, 5, strings.NewReader("world and more"))
		wantErr(t, "a write past the size", err, fs.ErrInvalid)
		if got.Offset != 10 {
			t.Fatalf("a write past the size kept up to %d, want what fits (10)", got.Offset)
		}
		_, err = e.WriteResumable(e.ctx, r.ID, 10, strings.NewReader("x"))
		wantErr(t, "a write to a full upload", err, fs.ErrInvalid)
		_, err = e.CommitResumable(e.ctx, r.ID)
		noErr(t, "CommitResumable", err)
		e.mustContain(t, "f.txt", []byte("helloworld"))
	}},
	{"an upload of several parts written in pieces across part bounds commits byte-exact", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		part := h.partSize()
		data := pattern(2*part+12345, 5)
		r := e.create(t, "big.bin", int64(len(data)), roomstore.ResumableOptions{})
		r = e.send(t, r.ID, 0, data[:part+7])
		cut := &cutReader{data: data[part+7 : part+7+100<<10]}
		got, err := e.WriteResumable(e.ctx, r.ID, r.Offset, cut)
		if !errors.Is(err, errCut) || got.Offset != int64(part+7+100<<10) {
			t.Fatalf("a cut write: %+v, %v", got, err)
		}
		e.send(t, r.ID, got.Offset, data[got.Offset:])
		en, err := e.CommitResumable(e.ctx, r.ID)
		noErr(t, "CommitResumable", err)
		if en.Size != int64(len(data)) {
			t.Fatalf("CommitResumable = %+v", en)
		}
		e.mustContain(t, "big.bin", data)
	}},
	{"an empty upload commits an empty file", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		r := e.create(t, "empty", 0, roomstore.ResumableOptions{})
		_, err := e.CommitResumable(e.ctx, r.ID)
		noErr(t, "CommitResumable", err)
		e.mustContain(t, "empty", nil)
	}},
	{"without overwrite an existing file fails the creation, and one that appears the commit", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "f.txt", []byte("old"), overwrite)
		_, err := e.CreateResumable(e.ctx, "f.txt", roomstore.ResumableOptions{Size: 3})
		wantErr(t, "CreateResumable over a file", err, fs.ErrExist)
		_, err = e.CreateResumable(e.ctx, "f.txt/below", roomstore.ResumableOptions{Size: 3})
		wantErr(t, "CreateResumable below a file", err, roomstore.ErrNotFolder)
		e.put(t, "dir/x", []byte("x"), overwrite)
		_, err = e.CreateResumable(e.ctx, "dir", roomstore.ResumableOptions{Size: 3})
		wantErr(t, "CreateResumable on a folder", err, roomstore.ErrIsFolder)
		r := e.create(t, "g.txt", 3, roomstore.ResumableOptions{})
		e.send(t, r.ID, 0, []byte("new"))
		e.put(t, "g.txt", []byte("theirs"), overwrite)
		_, err = e.CommitResumable(e.ctx, r.ID)
		wantErr(t, "CommitResumable over a file that appeared", err, fs.ErrExist)
		e.mustContain(t, "g.txt", []byte("theirs"))
		if st, err := e.Resumable(e.ctx, r.ID); err != nil || st.Offset != 3 {
			t.Fatalf("the upload after a refused commit: %+v, %v; want it kept", st, err)
		}
		noErr(t, "AbortResumable", e.AbortResumable(e.ctx, r.ID))
	}},
	{"an overwrite keeps the replaced version in the history", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "f.txt", []byte("old"), overwrite)
		r := e.create(t, "f.txt", 3, roomstore.ResumableOptions{Overwrite: true})
		e.send(t, r.ID, 0, []byte("new"))
		_, err := e.CommitResumable(e.ctx, r.ID)
		noErr(t, "CommitResumable", err)
		e.mustContain(t, "f.txt", []byte("new"))
		e.mustHold(t, "f.txt", [][]byte{[]byte("old")}, []string{"overwritten"})
	}},
	{"the quota counts the bytes of unfinished uploads", func(t *testing.T, h Harness) {
		e := fresh(t, h, roomstore.WithQuota(roomstore.Quota{Bytes: 100}))
		r := e.create(t, "a", 60, roomstore.ResumableOptions{})
		_, err := e.CreateResumable(e.ctx, "b", roomstore.ResumableOptions{Size: 60})
		wantErr(t, "a second upload past the quota", err, roomstore.ErrQuotaExceeded)
		err = e.write(e.ctx, "c", pattern(50, 1), overwrite)
		wantErr(t, "a write past the quota with the upload pending", err, roomstore.ErrQuotaExceeded)
		u, err := e.Usage(e.ctx)
		noErr(t, "Usage", err)
		if u.Pending != 60 || u.Bytes != 0 {
			t.Fatalf("Usage = %+v, want 60 bytes pending", u)
		}
		noErr(t, "AbortResumable", e.AbortResumable(e.ctx, r.ID))
		r = e.create(t, "b", 60, roomstore.ResumableOptions{})
		e.send(t, r.ID, 0, pattern(60, 2))
		_, err = e.CommitResumable(e.ctx, r.ID)
		noErr(t, "CommitResumable", err)
		u, err = e.Usage(e.ctx)
		noErr(t, "Usage", err)
		if u.Pending != 0 || u.Bytes != 60 || u.Files != 1 {
			t.Fatalf("Usage = %+v, want the file's 60 bytes and nothing pending", u)
		}
		_, err = e.CreateResumable(e.ctx, "c", roomstore.ResumableOptions{Size: 41})
		wantErr(t, "an upload past what is left", err, roomstore.ErrQuotaExceeded)
	}},
	{"one participant holds at most its limit of uploads", func(t *testing.T, h Harness) {
		e := fresh(t, h, roomstore.WithResumable(roomstore.ResumableLimits{MaxAge: time.Hour, PerParticipant: 2}))
		a := e.create(t, "a", 1, roomstore.ResumableOptions{})
		e.create(t, "b", 1, roomstore.ResumableOptions{})
		_, err := e.CreateResumable(e.ctx, "c", roomstore.ResumableOptions{Size: 1})
		wantErr(t, "a third upload", err, roomstore.ErrTooManyHandles)
		bob := roomstore.WithParticipant(t.Context(), "bob")
		rb, err := e.CreateResumable(bob, "c", roomstore.ResumableOptions{Size: 1})
		noErr(t, "another participant's upload", err)
		if rb.Participant != "bob" {
			t.Fatalf("bob's upload belongs to %q", rb.Participant)
		}
		noErr(t, "AbortResumable", e.AbortResumable(e.ctx, a.ID))
		e.create(t, "c", 1, roomstore.ResumableOptions{})
		if n := len(staged(t, e.b)); n != 3 {
			t.Fatalf("the store holds %d uploads, want 3", n)
		}
		for _, id := range staged(t, e.b) {
			noErr(t, "AbortResumable", e.AbortResumable(e.ctx, id))
		}
	}},
	{"the policy refuses a creation, and a write or commit it no longer allows", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		denied := roomstore.WithPolicy(e.ctx, roomstore.NoAccess)
		_, err := e.CreateResumable(denied, "f.txt", roomstore.ResumableOptions{Size: 3})
		wantErr(t, "CreateResumable without the right", err, fs.ErrPermission)
		if n := len(staged(t, e.b)); n != 0 {
			t.Fatalf("a refused creation staged %d uploads", n)
		}
		r := e.create(t, "f.txt", 3, roomstore.ResumableOptions{})
		_, err = e.WriteResumable(denied, r.ID, 0, strings.NewReader("abc"))
		wantErr(t, "WriteResumable without the right", err, fs.ErrNotExist)
		_, err = e.Resumable(denied, r.ID)
		wantErr(t, "Resumable without the right", err, fs.ErrNotExist)
		e.send(t, r.ID, 0, []byte("abc"))
		_, err = e.CommitResumable(denied, r.ID)
		wantErr(t, "CommitResumable without the right", err, fs.ErrNotExist)
		wantErr(t, "AbortResumable without the right", e.AbortResumable(denied, r.ID), fs.ErrNotExist)
		e.invisible(t, "f.txt")
		_, err = e.CommitResumable(e.ctx, r.ID)
		noErr(t, "CommitResumable", err)
		e.mustContain(t, "f.txt", []byte("abc"))
	}},
	{"an abort removes the upload and its bytes", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		r := e.create(t, "f.txt", 1<<20, roomstore.ResumableOptions{})
		e.send(t, r.ID, 0, pattern(100<<10, 3))
		noErr(t, "AbortResumable", e.AbortResumable(e.ctx, r.ID))
		if ids := staged(t, e.b); len(ids) != 0 {
			t.Fatalf("the store still holds uploads %q", ids)
		}
		_, err := e.WriteResumable(e.ctx, r.ID, 100<<10, strings.NewReader("x"))
		wantErr(t, "a write after the abort", err, fs.ErrNotExist)
		wantErr(t, "a second abort", e.AbortResumable(e.ctx, r.ID), fs.ErrNotExist)
		e.invisible(t, "f.txt")
	}},
	{"expiry removes an abandoned upload and its bytes, and a write pushes it back", func(t *testing.T, h Harness) {
		now := time.Now()
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
		e := fresh(t, h, roomstore.WithHistoryClock(clock), roomstore.WithResumable(roomstore.ResumableLimits{MaxAge: time.Hour, PerParticipant: 4}))
		old := e.create(t, "old", 10, roomstore.ResumableOptions{})
		e.send(t, old.ID, 0, []byte("abc"))
		kept := e.create(t, "kept", 10, roomstore.ResumableOptions{})
		advance(50 * time.Minute)
		if st := e.send(t, kept.ID, 0, []byte("x")); !st.Expires.Equal(clock().Add(time.Hour)) {
			t.Fatalf("a write set Expires %v, want an hour from now", st.Expires)
		}
		advance(20 * time.Minute)
		_, err := e.Resumable(e.ctx, old.ID)
		wantErr(t, "Resumable of an expired upload", err, fs.ErrNotExist)
		_, err = e.Expire(e.ctx)
		noErr(t, "Expire", err)
		if ids := staged(t, e.b); len(ids) != 1 || ids[0] != kept.ID {
			t.Fatalf("after Expire the store holds uploads %q, want only %q", ids, kept.ID)
		}
		st, err := e.Resumable(e.ctx, kept.ID)
		if err != nil || st.Offset != 1 {
			t.Fatalf("the upload written to: %+v, %v", st, err)
		}
		advance(2 * time.Hour)
		_, err = e.Expire(e.ctx)
		noErr(t, "Expire", err)
		if ids := staged(t, e.b); len(ids) != 0 {
			t.Fatalf("after the second Expire the store holds uploads %q", ids)
		}
		e.invisible(t, "kept")
	}},
	{"two engines over one store continue each other's upload", func(t *testing.T, h Harness) {
		b := h.New(t)
		e1 := newEnv(t, b)
		e2 := newEnv(t, h.Reopen(t, b))
		data := pattern(200<<10, 4)
		r := e1.create(t, "shared.bin", int64(len(data)), roomstore.ResumableOptions{})
		st, err := e2.Resumable(e2.ctx, r.ID)
		if err != nil || st.Path != "shared.bin" || st.Size != int64(len(data)) {
			t.Fatalf("the other engine's Resumable = %+v, %v", st, err)
		}
		e2.send(t, r.ID, 0, data[:70<<10])
		e1.send(t, r.ID, 70<<10, data[70<<10:150<<10])
		e2.send(t, r.ID, 150<<10, data[150<<10:])
		_, err = e1.CommitResumable(e1.ctx, r.ID)
		noErr(t, "CommitResumable on the first engine", err)
		e2.mustContain(t, "shared.bin", data)
		_, err = e2.CommitResumable(e2.ctx, r.ID)
		wantErr(t, "a second commit on the other engine", err, fs.ErrNotExist)
	}},
	{"of two engines writing at one offset, one keeps its bytes and the other conflicts", func(t *testing.T, h Harness) {
		b := h.New(t)
		e1 := newEnv(t, b)
		e2 := newEnv(t, h.Reopen(t, b))
		a, c := pattern(64<<10, 6), pattern(64<<10, 7)
		r := e1.create(t, "race.bin", int64(len(a)), roomstore.ResumableOptions{})
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, w := range []struct {
			e    *env
			data []byte
		}{{e1, a}, {e2, c}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = w.e.WriteResumable(w.e.ctx, r.ID, 0, bytes.NewReader(w.data))
			}()
		}
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if won >= 0 {
					t.Fatalf("both writes at offset 0 succeeded")
				}
				won = i
			case !errors.Is(err, roomstore.ErrConflict):
				t.Fatalf("the losing write: %v, want ErrConflict", err)
			}
		}
		if won < 0 {
			t.Fatalf("no write won: %v", errs)
		}
		_, err := e2.CommitResumable(e2.ctx, r.ID)
		noErr(t, "CommitResumable", err)
		e1.mustContain(t, "race.bin", [][]byte{a, c}[won])
	}},
	{"a scan never tells of an upload, and its commit is told once", func(t *testing.T, h Harness) {
		e := watched(t, h)
		r := e.create(t, "w/f.txt", 3, roomstore.ResumableOptions{})
		e.send(t, r.ID, 0, []byte("abc"))
		other := newEnv(t, h.Reopen(t, e.b))
		o := other.create(t, "w/g.txt", 1, roomstore.ResumableOptions{})
		other.send(t, o.ID, 0, []byte("g"))
		noErr(t, "Scan", e.Scan(t.Context()))
		e.none(t, "a scan with uploads in the store")
		_, err := e.CommitResumable(e.ctx, r.ID)
		noErr(t, "CommitResumable", err)
		noErr(t, "Scan", e.Scan(t.Context()))
		e.barrier(t)
		if got, want := fileEvents(e), []string{"file.updated w/f.txt by alice"}; !slices.Equal(got, want) {
			t.Fatalf("events %q, want %q", got, want)
		}
		noErr(t, "AbortResumable", other.AbortResumable(other.ctx, o.ID))
	}},
	{"a bad id names no upload", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		r := e.create(t, "f.txt", 1, roomstore.ResumableOptions{})
		for _, id := range []string{"", "..", "a/b", "../" + r.ID, r.ID + "/..", strings.Repeat("a", 5000), r.ID[:len(r.ID)-1], r.ID + "x", "." + r.ID[1:]} {
			_, err := e.Resumable(e.ctx, id)
			wantErr(t, "Resumable("+show([]byte(id))+")", err, fs.ErrNotExist)
			_, err = e.WriteResumable(e.ctx, id, 0, strings.NewReader("x"))
			wantErr(t, "WriteResumable", err, fs.ErrNotExist)
			_, err = e.CommitResumable(e.ctx, id)
			wantErr(t, "CommitResumable", err, fs.ErrNotExist)
			wantErr(t, "AbortResumable", e.AbortResumable(e.ctx, id), fs.ErrNotExist)
		}
		if st, err := e.Resumable(e.ctx, r.ID); err != nil || st.Offset != 0 {
			t.Fatalf("the upload after the bad ids: %+v, %v", st, err)
		}
		noErr(t, "AbortResumable", e.AbortResumable(e.ctx, r.ID))
		_, err := e.CreateResumable(e.ctx, "../x", roomstore.ResumableOptions{Size: 1})
		wantErr(t, "CreateResumable of a bad path", err, fs.ErrInvalid)
		_, err = e.CreateResumable(e.ctx, ".roomstore/uploads/x", roomstore.ResumableOptions{Size: 1})
		wantErr(t, "CreateResumable of a reserved path", err, fs.ErrInvalid)
		_, err = e.CreateResumable(e.ctx, "x", roomstore.ResumableOptions{Size: -1})
		wantErr(t, "CreateResumable of a negative size", err, fs.ErrInvalid)
		_, err = e.CreateResumable(e.ctx, "x", roomstore.ResumableOptions{Size: 1, Metadata: map[string]string{"k": strings.Repeat("v", roomstore.MaxResumableMetadata)}})
		wantErr(t, "CreateResumable with too much metadata", err, fs.ErrInvalid)
		if ids := staged(t, e.b); len(ids) != 0 {
			t.Fatalf("the store holds uploads %q", ids)
		}
	}},
	{"an ended context changes nothing, and Shutdown closes every call", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		r := e.create(t, "f.txt", 3, roomstore.ResumableOptions{})
		ended, cancel := context.WithCancel(e.ctx)
		cancel()
		_, err := e.CreateResumable(ended, "g.txt", roomstore.ResumableOptions{Size: 3})
		wantErr(t, "CreateResumable with an ended context", err, context.Canceled)
		_, err = e.WriteResumable(ended, r.ID, 0, strings.NewReader("abc"))
		wantErr(t, "WriteResumable with an ended context", err, context.Canceled)
		_, err = e.CommitResumable(ended, r.ID)
		wantErr(t, "CommitResumable with an ended context", err, context.Canceled)
		if st, err := e.Resumable(e.ctx, r.ID); err != nil || st.Offset != 0 {
			t.Fatalf("the upload after ended calls: %+v, %v", st, err)
		}
		if ids := staged(t, e.b); len(ids) != 1 {
			t.Fatalf("the store holds uploads %q, want one", ids)
		}
		e.send(t, r.ID, 0, []byte("abc"))
		ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
		defer stop()
		noErr(t, "Shutdown", e.Shutdown(ctx))
		_, err = e.Resumable(e.ctx, r.ID)
		wantErr(t, "Resumable after Shutdown", err, fs.ErrClosed)
		_, err = e.WriteResumable(e.ctx, r.ID, 3, strings.NewReader(""))
		wantErr(t, "WriteResumable after Shutdown", err, fs.ErrClosed)
		_, err = e.CommitResumable(e.ctx, r.ID)
		wantErr(t, "CommitResumable after Shutdown", err, fs.ErrClosed)
		wantErr(t, "AbortResumable after Shutdown", e.AbortResumable(e.ctx, r.ID), fs.ErrClosed)
		_, err = e.CreateResumable(e.ctx, "g.txt", roomstore.ResumableOptions{Size: 1})
		wantErr(t, "CreateResumable after Shutdown", err, fs.ErrClosed)
		// The upload outlives the engine: another one commits it.
		e2 := newEnv(t, h.Reopen(t, e.b))
		_, err = e2.CommitResumable(e2.ctx, r.ID)
		noErr(t, "CommitResumable on another engine", err)
		e2.mustContain(t, "f.txt", []byte("abc"))
	}},
}
