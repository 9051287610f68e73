package conformance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"testing"

	"github.com/roomstore/roomstore"
)

var writeCases = []tcase{
	{"nothing is visible before close", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		hd := e.open(t, "dir/new.txt", roomstore.OpenOptions{})
		noErr(t, "Write", e.Write(e.ctx, hd, []byte("draft")))
		e.mustBeAbsent(t, "dir/new.txt")
		e.mustBeAbsent(t, "dir")
		_, err := e.Stat(e.ctx, "dir/new.txt")
		wantErr(t, "Stat", err, fs.ErrNotExist)
		_, err = e.Download(e.ctx, "dir/new.txt")
		wantErr(t, "Download", err, fs.ErrNotExist)
		_, err = e.DownloadURL(e.ctx, "dir/new.txt")
		wantErr(t, "DownloadURL", err, fs.ErrNotExist)
		if got := e.names(t, ""); len(got) != 0 {
			t.Fatalf("root lists %v before close", got)
		}
		e.none(t, "before close")
		noErr(t, "Close", e.Close(e.ctx, hd))
		e.mustContain(t, "dir/new.txt", []byte("draft"))
	}},
	{"an overwrite shows the old content until close", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "f", []byte("old"), overwrite)
		hd := e.open(t, "f", overwrite)
		noErr(t, "Write", e.Write(e.ctx, hd, []byte("brand new")))
		e.mustContain(t, "f", []byte("old"))
		st, err := e.Stat(e.ctx, "f")
		noErr(t, "Stat", err)
		if st.Size != 3 {
			t.Fatalf("Stat size %d before close, want 3", st.Size)
		}
		noErr(t, "Close", e.Close(e.ctx, hd))
		e.mustContain(t, "f", []byte("brand new"))
	}},
	{"open without overwrite appends and creates a missing file", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "log", []byte("one\n"), roomstore.OpenOptions{})
		e.put(t, "log", []byte("two\n"), roomstore.OpenOptions{})
		e.mustContain(t, "log", []byte("one\ntwo\n"))
	}},
	{"overwrite replaces the content", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "f", []byte("a long old content"), overwrite)
		e.put(t, "f", []byte("short"), overwrite)
		e.mustContain(t, "f", []byte("short"))
	}},
	{"exclusive creates a new file and refuses an existing one", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "x", []byte("first"), roomstore.OpenOptions{Exclusive: true})
		_, err := e.Open(e.ctx, "x", roomstore.OpenOptions{Exclusive: true})
		wantErr(t, "exclusive Open of an existing file", err, fs.ErrExist)
		_, err = e.Open(e.ctx, "x", roomstore.OpenOptions{Exclusive: true, Overwrite: true})
		wantErr(t, "exclusive overwrite Open of an existing file", err, fs.ErrExist)
		e.mustContain(t, "x", []byte("first"))
	}},
	{"exclusive close fails when the file appeared meanwhile and keeps the other content", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		hd := e.open(t, "x", roomstore.OpenOptions{Exclusive: true})
		noErr(t, "Write", e.Write(e.ctx, hd, []byte("late")))
		e.put(t, "x", []byte("early"), overwrite)
		e.await(t, roomstore.EventFileUpdated, "x", 1)
		wantErr(t, "Close", e.Close(e.ctx, hd), fs.ErrExist)
		e.mustContain(t, "x", []byte("early"))
		if n := len(e.await(t, roomstore.EventFileUpdated, "x", 1)); n != 1 {
			t.Fatalf("%d file.updated events, want only the winner's", n)
		}
		wantErr(t, "Write after failed Close", e.Write(e.ctx, hd, []byte("x")), fs.ErrClosed)
	}},
	{"an empty file is created, read, listed and served", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		hd := e.open(t, "empty.txt", overwrite)
		noErr(t, "Close", e.Close(e.ctx, hd))
		f, err := e.Download(e.ctx, "empty.txt")
		noErr(t, "Download", err)
		if len(f.Data) != 0 || f.Size != 0 || f.Name != "empty.txt" {
			t.Fatalf("Download = %+v", f)
		}
		if got := e.names(t, ""); !slices.Equal(got, []string{"empty.txt"}) {
			t.Fatalf("List = %v", got)
		}
		if body, status := fetch(t, e.url(t, "empty.txt"), nil); status != 200 || len(body) != 0 {
			t.Fatalf("URL: %d %q", status, body)
		}
		e.put(t, "empty.txt", nil, roomstore.OpenOptions{}) // an empty append
		e.mustContain(t, "empty.txt", nil)
	}},
	{"abort keeps the old content and publishes nothing", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "f", []byte("old"), overwrite)
		e.await(t, roomstore.EventFileUpdated, "f", 1)
		for _, o := range []roomstore.OpenOptions{{}, overwrite} {
			hd := e.open(t, "f", o)
			noErr(t, "Write", e.Write(e.ctx, hd, []byte("new")))
			noErr(t, "Abort", e.Abort(e.ctx, hd))
		}
		hd := e.open(t, "new/file", overwrite)
		noErr(t, "Write", e.Write(e.ctx, hd, []byte("new")))
		noErr(t, "Abort", hd.Abort())
		e.mustContain(t, "f", []byte("old"))
		e.mustBeAbsent(t, "new/file")
		e.mustBeAbsent(t, "new")
		if n := len(e.await(t, roomstore.EventFileUpdated, "f", 1)); n != 1 {
			t.Fatalf("%d file.updated events, want 1", n)
		}
		if evs := e.rec.matching(roomstore.EventFileUpdated, "new/file"); len(evs) != 0 {
			t.Fatalf("aborted handle published %v", evs)
		}
	}},
	{"a cancelled write discards the handle and keeps the old content", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "f", []byte("old"), overwrite)
		hd := e.open(t, "f", overwrite)
		noErr(t, "Write", e.Write(e.ctx, hd, []byte("new")))
		ctx, cancel := context.WithCancel(e.ctx)
		cancel()
		if err := e.Write(ctx, hd, []byte("more")); err == nil {
			t.Fatal("Write with a cancelled context succeeded")
		}
		wantErr(t, "Close after cancelled Write", e.Close(e.ctx, hd), fs.ErrClosed)
		e.mustContain(t, "f", []byte("old"))
	}},
	{"a cancelled close keeps the old content and publishes nothing", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "f", []byte("old"), overwrite)
		e.await(t, roomstore.EventFileUpdated, "f", 1)
		hd := e.open(t, "f", roomstore.OpenOptions{})
		noErr(t, "Write", e.Write(e.ctx, hd, []byte("new")))
		ctx, cancel := context.WithCancel(e.ctx)
		cancel()
		if err := e.Close(ctx, hd); err == nil {
			t.Fatal("Close with a cancelled context succeeded")
		}
		wantErr(t, "Write after the failed Close", e.Write(e.ctx, hd, []byte("x")), fs.ErrClosed)
		e.mustContain(t, "f", []byte("old"))
		if n := len(e.await(t, roomstore.EventFileUpdated, "f", 1)); n != 1 {
			t.Fatalf("%d file.updated events, want 1", n)
		}
	}},
	{"a handle outlives the context that opened it", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		ctx, cancel := context.WithCancel(e.ctx)
		hd, err := e.Open(ctx, "f", overwrite)
		noErr(t, "Open", err)
		cancel()
		noErr(t, "Write", e.Write(e.ctx, hd, []byte("still here")))
		noErr(t, "Close", e.Close(e.ctx, hd))
		e.mustContain(t, "f", []byte("still here"))
	}},
	{"download gives the mime type from the extension or the content", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "page.html", []byte("<p>x</p>"), overwrite)
		e.put(t, "noext", []byte("%PDF-1.7 ..."), overwrite)
		e.put(t, "d/data.json", []byte("{}"), overwrite)
		for p, want := range map[string]string{"page.html": "text/html; charset=utf-8", "noext": "application/pdf", "d/data.json": "application/json"} {
			f, err := e.Download(e.ctx, p)
			noErr(t, "Download", err)
			if f.MimeType != want || f.Path != p || f.ModTime.IsZero() || f.Size != int64(len(f.Data)) {
				t.Fatalf("Download(%q) = %+v, want mime %q", p, f, want)
			}
		}
	}},
}

func sizeCases(h Harness) []tcase {
	part := h.partSize()
	var out []tcase
	for _, n := range []int{0, 1, part - 1, part, part + 1, 2*part + 1, 64 << 20} {
		out = append(out, tcase{fmt.Sprintf("a file of %d bytes round-trips", n), func(t *testing.T, h Harness) {
			e := fresh(t, h)
			data := pattern(n, 1)
			writeChunked(t, e, "big.bin", data, overwrite)
			checkContent(t, e, "big.bin", data)
		}})
	}
	for _, c := range [][2]int{{part - 1, 2}, {part, 1}, {1, part}, {part + 1, part + 1}, {3, 2*part + 1}} {
		out = append(out, tcase{fmt.Sprintf("appending %d bytes to %d bytes keeps both", c[1], c[0]), func(t *testing.T, h Harness) {
			e := fresh(t, h)
			a, b := pattern(c[0], 2), pattern(c[1], 3)
			writeChunked(t, e, "f", a, overwrite)
			writeChunked(t, e, "f", b, roomstore.OpenOptions{})
			checkContent(t, e, "f", append(a, b...))
		}})
	}
	return out
}

// writeChunked writes data through one handle in uneven chunks.
func writeChunked(t *testing.T, e *env, p string, data []byte, o roomstore.OpenOptions) {
	t.Helper()
	hd := e.open(t, p, o)
	for i, chunk := 0, 1<<20+7; len(data) > 0; i++ {
		n := min(chunk, len(data))
		if i%3 == 1 {
			n = min(64<<10+3, len(data))
		}
		noErr(t, "Write", e.Write(e.ctx, hd, data[:n]))
		data = data[n:]
	}
	noErr(t, "Close", e.Close(e.ctx, hd))
}

// checkContent compares a file with want by streaming it (and downloading
// it whole when it is small).
func checkContent(t *testing.T, e *env, p string, want []byte) {
	t.Helper()
	r, err := e.OpenReader(e.ctx, p, 0, -1)
	noErr(t, "OpenReader", err)
	hash := sha256.New()
	n, err := io.Copy(hash, r)
	r.Close()
	noErr(t, "read", err)
	if n != int64(len(want)) || !bytes.Equal(hash.Sum(nil), sha256Of(want)) {
		t.Fatalf("%q streams %d bytes (sha256 %x), want %s", p, n, hash.Sum(nil), show(want))
	}
	st, err := e.Stat(e.ctx, p)
	noErr(t, "Stat", err)
	if st.Size != int64(len(want)) {
		t.Fatalf("Stat size %d, want %d", st.Size, len(want))
	}
	if len(want) <= 16<<20 {
		e.mustContain(t, p, want)
	}
}

func sha256Of(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

var readCases = []tcase{
	{"range reads cut at the end and refuse bad offsets", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "r.txt", []byte("0123456789"), overwrite)
		for _, c := range []struct {
			off, n int64
			want   string
		}{{0, -1, "0123456789"}, {3, 4, "3456"}, {3, -1, "3456789"}, {8, 100, "89"}, {10, -1, ""}, {0, 0, ""}, {9, 1, "9"}} {
			r, err := e.OpenReader(e.ctx, "r.txt", c.off, c.n)
			noErr(t, fmt.Sprintf("OpenReader(%d, %d)", c.off, c.n), err)
			if got := readAll(t, r); string(got) != c.want {
				t.Fatalf("OpenReader(%d, %d) = %q, want %q", c.off, c.n, got, c.want)
			}
		}
		for _, off := range []int64{-1, 11, 1 << 40} {
			_, err := e.OpenReader(e.ctx, "r.txt", off, -1)
			wantErr(t, fmt.Sprintf("OpenReader at %d", off), err, fs.ErrInvalid)
		}
	}},
	{"a reader keeps reading the version it opened", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		old := pattern(1<<20, 4)
		e.put(t, "f", old, overwrite)
		r, err := e.OpenReader(e.ctx, "f", 0, -1)
		noErr(t, "OpenReader", err)
		first := make([]byte, 1000)
		_, err = io.ReadFull(r, first)
		noErr(t, "read", err)
		e.put(t, "f", []byte("replaced"), overwrite)
		rest := readAll(t, r)
		if got := append(first, rest...); !bytes.Equal(got, old) {
			t.Fatalf("reader mixed versions: got %s", show(got))
		}
	}},
}
