package conformance

import (
	"bytes"
	"io/fs"
	"strings"
	"testing"

	"github.com/roomstore/roomstore"
)

// usage checks what the engine says the store holds.
func (e *env) usage(t *testing.T, bytes, files int64) {
	t.Helper()
	u, err := e.Usage(e.ctx)
	noErr(t, "Usage", err)
	if u.Bytes != bytes || u.Files != files {
		t.Fatalf("Usage = %d bytes in %d files, want %d in %d", u.Bytes, u.Files, bytes, files)
	}
	if st := e.Stats().Usage; st.Bytes != bytes || st.Files != files || st.Quota != u.Quota {
		t.Fatalf("Stats().Usage = %+v, want %d bytes in %d files under %+v", st, bytes, files, u.Quota)
	}
}

// noHistory keeps no past versions: the quota cases count files alone,
// and the history cases count kept versions with them.
var noHistory = roomstore.WithHistory(roomstore.History{})

// quotaCases check WithQuota: what a store may hold, and that a refusal
// changes nothing.
var quotaCases = []tcase{
	{"a store filled to its byte quota refuses one byte more and keeps every file", func(t *testing.T, h Harness) {
		e := fresh(t, h, noHistory, roomstore.WithQuota(roomstore.Quota{Bytes: 100}))
		e.put(t, "a.txt", pattern(60, 1), overwrite)
		e.put(t, "dir/b.txt", pattern(40, 2), overwrite)
		e.usage(t, 100, 2)
		e.barrier(t)
		before := len(e.rec.snapshot())
		wantErr(t, "a new file of one byte", e.write(e.ctx, "c.txt", []byte("c"), overwrite), roomstore.ErrQuotaExceeded)
		wantErr(t, "an overwrite one byte bigger", e.write(e.ctx, "a.txt", pattern(61, 3), overwrite), roomstore.ErrQuotaExceeded)
		wantErr(t, "an append of one byte", e.write(e.ctx, "dir/b.txt", []byte("b"), roomstore.OpenOptions{}), roomstore.ErrQuotaExceeded)
		_, err := e.Upload(e.ctx, "d.txt", strings.NewReader("d"), overwrite)
		wantErr(t, "an Upload of one byte", err, roomstore.ErrQuotaExceeded)
		e.mustContain(t, "a.txt", pattern(60, 1))
		e.mustContain(t, "dir/b.txt", pattern(40, 2))
		e.mustBeAbsent(t, "c.txt")
		e.mustBeAbsent(t, "d.txt")
		e.barrier(t)
		if evs := e.rec.snapshot(); len(evs) != before {
			t.Fatalf("refused commits published %+v", evs[before:])
		}
		e.usage(t, 100, 2)
		// An overwrite that frees room fits, and so does what it freed.
		e.put(t, "a.txt", pattern(59, 4), overwrite)
		e.put(t, "c.txt", []byte("c"), overwrite)
		e.usage(t, 100, 3)
	}},
	{"an announced size the quota cannot hold is refused at Open, and staging stops at the quota", func(t *testing.T, h Harness) {
		e := fresh(t, h, noHistory, roomstore.WithQuota(roomstore.Quota{Bytes: 1000}))
		e.put(t, "a.txt", pattern(500, 1), overwrite)
		_, err := e.Open(e.ctx, "big.bin", roomstore.OpenOptions{Overwrite: true, Size: 501})
		wantErr(t, "Open of 501 bytes into 500 free", err, roomstore.ErrQuotaExceeded)
		if n := e.Stats().OpenHandles; n != 0 {
			t.Fatalf("%d handles open after a refused Open", n)
		}
		// Replacing a.txt frees its 500 bytes.
		hd, err := e.Open(e.ctx, "a.txt", roomstore.OpenOptions{Overwrite: true, Size: 1000})
		noErr(t, "Open of a replacement of 1000 bytes", err)
		noErr(t, "Abort", e.Abort(e.ctx, hd))
		// Without a size, a handle stops taking bytes once they alone
		// could not fit.
		hd, err = e.Open(e.ctx, "big.bin", overwrite)
		noErr(t, "Open without a size", err)
		noErr(t, "Write of 500 bytes", e.Write(e.ctx, hd, pattern(500, 2)))
		wantErr(t, "Write of one more", e.Write(e.ctx, hd, []byte("x")), roomstore.ErrQuotaExceeded)
		wantErr(t, "Close of the discarded handle", e.Close(e.ctx, hd), fs.ErrClosed)
		e.mustBeAbsent(t, "big.bin")
		e.mustContain(t, "a.txt", pattern(500, 1))
		e.usage(t, 500, 1)
	}},
	{"the bytes staged in all open handles together stay within the quota", func(t *testing.T, h Harness) {
		e := fresh(t, h, noHistory, roomstore.WithQuota(roomstore.Quota{Bytes: 1000}))
		var hs []*roomstore.Handle
		for i := range 3 {
			hd := e.open(t, string(rune('a'+i))+".bin", overwrite)
			hs = append(hs, hd)
		}
		noErr(t, "Write 400 to the first", e.Write(e.ctx, hs[0], pattern(400, 1)))
		noErr(t, "Write 400 to the second", e.Write(e.ctx, hs[1], pattern(400, 2)))
		wantErr(t, "Write 400 to the third", e.Write(e.ctx, hs[2], pattern(400, 3)), roomstore.ErrQuotaExceeded)
		noErr(t, "Abort the first", e.Abort(e.ctx, hs[0]))
		hd, err := e.Open(e.ctx, "c.bin", overwrite)
		noErr(t, "Open again", err)
		noErr(t, "Write 400 once the first gave its bytes back", e.Write(e.ctx, hd, pattern(400, 3)))
		noErr(t, "Close", e.Close(e.ctx, hd))
		noErr(t, "Close the second", e.Close(e.ctx, hs[1]))
		e.usage(t, 800, 2)
	}},
	{"the file quota counts files, and deletes and moves free or keep what they should", func(t *testing.T, h Harness) {
		e := fresh(t, h, noHistory, roomstore.WithQuota(roomstore.Quota{Files: 3, Bytes: 30}))
		for _, p := range []string{"a", "d/b", "d/c"} {
			e.put(t, p, []byte("0123456789"), overwrite)
		}
		wantErr(t, "a fourth file", e.write(e.ctx, "e", nil, overwrite), roomstore.ErrQuotaExceeded)
		e.put(t, "a", []byte("9876543210"), overwrite) // the same file again
		noErr(t, "Move of a folder", e.Move(e.ctx, "d", "moved", roomstore.MoveOptions{}))
		e.usage(t, 30, 3)
		noErr(t, "Move over a file", e.Move(e.ctx, "moved/b", "a", roomstore.MoveOptions{Overwrite: true}))
		e.usage(t, 20, 2)
		e.put(t, "e", []byte("0123456789"), overwrite)
		noErr(t, "RemoveAll", e.RemoveAll(e.ctx, "moved"))
		noErr(t, "Delete", e.Delete(e.ctx, "e"))
		e.usage(t, 10, 1)
		e.put(t, "f/g", []byte("01234567890123456789"), overwrite)
		e.usage(t, 30, 2)
	}},
	{"the usage of a store that holds files is known at open", func(t *testing.T, h Harness) {
		b := h.New(t)
		first := newEnv(t, b)
		first.put(t, "x/a.bin", pattern(700, 1), overwrite)
		first.put(t, "b.bin", pattern(200, 2), overwrite)
		e := newEnv(t, h.Reopen(t, b), noHistory, roomstore.WithQuota(roomstore.Quota{Bytes: 1000, Files: 3}))
		e.usage(t, 900, 2)
		wantErr(t, "101 bytes more", e.write(e.ctx, "c.bin", pattern(101, 3), overwrite), roomstore.ErrQuotaExceeded)
		e.put(t, "c.bin", pattern(100, 3), overwrite)
		e.usage(t, 1000, 3)
		got := e.get(t, "x/a.bin")
		if !bytes.Equal(got, pattern(700, 1)) {
			t.Fatal("x/a.bin changed")
		}
	}},
}
