package conformance

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"testing/iotest"

	"github.com/roomstore/roomstore"
)

func streamCases(h Harness) []tcase {
	return []tcase{
		{"upload streams a large reader and returns the committed entry", func(t *testing.T, h Harness) {
			e := fresh(t, h)
			data := pattern(2*h.partSize()+12345, 7)
			got, err := e.Upload(e.ctx, "big/file.bin", iotest.HalfReader(bytes.NewReader(data)), overwrite)
			noErr(t, "Upload", err)
			e.mustContain(t, "big/file.bin", data)
			st, err := e.Stat(e.ctx, "big/file.bin")
			noErr(t, "Stat", err)
			if got.Path != "big/file.bin" || got.Name != "file.bin" || got.Size != int64(len(data)) || got.ETag != st.ETag || got.ETag == "" {
				t.Fatalf("Upload returned %+v, Stat says %+v", got, st)
			}
			if evs := e.await(t, roomstore.EventFileUpdated, "big/file.bin", 1); len(evs) != 1 || evs[0].Size != int64(len(data)) {
				t.Fatalf("events %+v, want one file.updated of %d bytes", evs, len(data))
			}
		}},
		{"upload of an empty reader creates an empty file and without overwrite appends", func(t *testing.T, h Harness) {
			e := fresh(t, h)
			got, err := e.Upload(e.ctx, "empty", strings.NewReader(""), roomstore.OpenOptions{Exclusive: true})
			noErr(t, "Upload", err)
			if got.Size != 0 {
				t.Fatalf("Upload returned %+v, want size 0", got)
			}
			e.mustContain(t, "empty", []byte{})
			_, err = e.Upload(e.ctx, "empty", strings.NewReader("x"), roomstore.OpenOptions{Exclusive: true})
			wantErr(t, "exclusive Upload onto a file", err, fs.ErrExist)
			for _, part := range []string{"one,", "two"} {
				_, err := e.Upload(e.ctx, "log", strings.NewReader(part), roomstore.OpenOptions{})
				noErr(t, "appending Upload", err)
			}
			e.mustContain(t, "log", []byte("one,two"))
			_, err = e.Upload(e.ctx, "nil", nil, overwrite)
			wantErr(t, "Upload of a nil reader", err, fs.ErrInvalid)
			e.mustBeAbsent(t, "nil")
		}},
		{"a failing reader aborts the upload and keeps the old content", func(t *testing.T, h Harness) {
			e := fresh(t, h)
			e.put(t, "f", []byte("old"), overwrite)
			e.await(t, roomstore.EventFileUpdated, "f", 1)
			broken := errors.New("the client went away")
			for _, o := range []roomstore.OpenOptions{overwrite, {}} {
				r := io.MultiReader(bytes.NewReader(pattern(h.partSize()+1, 3)), iotest.ErrReader(broken))
				_, err := e.Upload(e.ctx, "f", r, o)
				wantErr(t, "Upload from a failing reader", err, broken)
				e.mustContain(t, "f", []byte("old"))
			}
			_, err := e.Upload(e.ctx, "new", iotest.ErrReader(broken), overwrite)
			wantErr(t, "Upload of a new file from a failing reader", err, broken)
			e.mustBeAbsent(t, "new")
			e.barrier(t)
			if evs := e.rec.matching(roomstore.EventFileUpdated, "f"); len(evs) != 1 {
				t.Fatalf("failed uploads published %+v", evs[1:])
			}
		}},
		{"a reader's entry describes the version it reads while an append lands", func(t *testing.T, h Harness) {
			e := fresh(t, h)
			old := pattern(h.partSize()+999, 11)
			e.put(t, "f.bin", old, overwrite)
			st, err := e.Stat(e.ctx, "f.bin")
			noErr(t, "Stat", err)
			r, err := e.OpenReader(e.ctx, "f.bin", 0, -1)
			noErr(t, "OpenReader", err)
			e.put(t, "f.bin", []byte("appended"), roomstore.OpenOptions{})
			got := readAll(t, r)
			en := r.Entry()
			if !bytes.Equal(got, old) || en.Size != int64(len(got)) || en.ETag != st.ETag || !en.ModTime.Equal(st.ModTime) || en.Path != "f.bin" {
				t.Fatalf("reader gave %s with entry %+v; the version opened was %+v", show(got), en, st)
			}
			now, err := e.Stat(e.ctx, "f.bin")
			noErr(t, "Stat", err)
			if now.ETag == st.ETag || now.Size != st.Size+8 {
				t.Fatalf("after the append Stat says %+v, before %+v", now, st)
			}
			part, err := e.OpenReader(e.ctx, "f.bin", 10, 20)
			noErr(t, "ranged OpenReader", err)
			if b := readAll(t, part); !bytes.Equal(b, old[10:30]) || part.Entry().Size != now.Size || part.Entry().ETag != now.ETag {
				t.Fatalf("range read %q with entry %+v, want %q of a %d-byte file", b, part.Entry(), old[10:30], now.Size)
			}
		}},
		{"a reader reports the mime type as download does", func(t *testing.T, h Harness) {
			e := fresh(t, h)
			png := append([]byte("\x89PNG\r\n\x1a\n"), pattern(600, 2)...)
			e.put(t, "picture", png, overwrite)
			e.put(t, "data.json", []byte(`{"a":1}`), overwrite)
			for p, want := range map[string]string{"picture": "image/png", "data.json": "application/json"} {
				r, err := e.OpenReader(e.ctx, p, 0, -1)
				noErr(t, "OpenReader", err)
				if got := r.MimeType(); got != want {
					t.Fatalf("MimeType of %q = %q, want %q", p, got, want)
				}
				f, err := e.Download(e.ctx, p)
				noErr(t, "Download", err)
				if b := readAll(t, r); !bytes.Equal(b, f.Data) || f.MimeType != want {
					t.Fatalf("after MimeType the reader gave %s, Download %s (%s)", show(b), show(f.Data), f.MimeType)
				}
			}
		}},
		{"the etag changes with every commit and agrees across stat, list and reads", func(t *testing.T, h Harness) {
			e := fresh(t, h)
			seen := map[string]bool{}
			for i, step := range []struct {
				data []byte
				o    roomstore.OpenOptions
			}{{[]byte("one"), overwrite}, {[]byte("+two"), roomstore.OpenOptions{}}, {[]byte("three"), overwrite}, {[]byte("+four"), roomstore.OpenOptions{}}} {
				e.put(t, "d/f", step.data, step.o)
				st, err := e.Stat(e.ctx, "d/f")
				noErr(t, "Stat", err)
				if st.ETag == "" || seen[st.ETag] {
					t.Fatalf("commit %d: ETag %q is empty or was seen before (%v)", i, st.ETag, seen)
				}
				seen[st.ETag] = true
				list, err := e.List(e.ctx, "d")
				noErr(t, "List", err)
				r, err := e.OpenReader(e.ctx, "d/f", 0, -1)
				noErr(t, "OpenReader", err)
				r.Close()
				listed := st.ETag
				if h.ListOmitsETags {
					listed = ""
				}
				if len(list) != 1 || list[0].ETag != listed || r.Entry().ETag != st.ETag {
					t.Fatalf("commit %d: Stat ETag %q, List %+v, reader %q", i, st.ETag, list, r.Entry().ETag)
				}
			}
			if st, err := e.Stat(e.ctx, "d"); err != nil || st.ETag != "" {
				t.Fatalf("folder Stat = %+v, %v; want no ETag", st, err)
			}
		}},
		{"serve file answers ranges and conditional requests on the etag", func(t *testing.T, h Harness) {
			e := fresh(t, h)
			data := pattern(5000, 4)
			e.put(t, "docs/a.txt", data, overwrite)
			e.put(t, "docs/sub/b", []byte("b"), overwrite)
			st, err := e.Stat(e.ctx, "docs/a.txt")
			noErr(t, "Stat", err)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				e.ServeFile(w, r, r.URL.Query().Get("p"))
			}))
			defer srv.Close()
			get := func(method, p string, header http.Header) (*http.Response, []byte) {
				req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+"/?p="+p, nil)
				noErr(t, "request", err)
				for k, v := range header {
					req.Header[k] = v
				}
				resp, err := http.DefaultClient.Do(req)
				noErr(t, method+" "+p, err)
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				noErr(t, "read body", err)
				return resp, body
			}
			etag := `"` + st.ETag + `"`
			resp, body := get("GET", "docs/a.txt", nil)
			if resp.StatusCode != 200 || !bytes.Equal(body, data) || resp.Header.Get("ETag") != etag || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
				t.Fatalf("GET: %d %s, headers %v", resp.StatusCode, show(body), resp.Header)
			}
			if resp, body = get("GET", "docs/a.txt", http.Header{"Range": {"bytes=100-199"}}); resp.StatusCode != 206 || !bytes.Equal(body, data[100:200]) {
				t.Fatalf("range GET: %d %s", resp.StatusCode, show(body))
			}
			if resp, _ = get("GET", "docs/a.txt", http.Header{"If-None-Match": {etag}}); resp.StatusCode != 304 {
				t.Fatalf("If-None-Match on the current ETag: %d, want 304", resp.StatusCode)
			}
			if resp, body = get("GET", "docs/a.txt", http.Header{"Range": {"bytes=0-9"}, "If-Range": {`"stale"`}}); resp.StatusCode != 200 || !bytes.Equal(body, data) {
				t.Fatalf("If-Range on a stale ETag: %d %s, want the whole file", resp.StatusCode, show(body))
			}
			if resp, body = get("HEAD", "docs/a.txt", nil); resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len(data)) {
				t.Fatalf("HEAD: %d, %d bytes, length %d", resp.StatusCode, len(body), resp.ContentLength)
			}
			for p, want := range map[string]int{"docs/missing": 404, "docs/sub": 404, "docs/a.txt/x": 404, "..%2Fx": 400, "docs%2F": 400} {
				if resp, body = get("GET", p, nil); resp.StatusCode != want || bytes.Contains(body, data[:16]) {
					t.Fatalf("GET %s: %d %q, want %d", p, resp.StatusCode, body, want)
				}
			}
			if resp, _ = get("POST", "docs/a.txt", nil); resp.StatusCode != 405 {
				t.Fatalf("POST: %d, want 405", resp.StatusCode)
			}
		}},
		{"walk yields every entry depth-first in list order", func(t *testing.T, h Harness) {
			e := fresh(t, h)
			for _, p := range []string{"a/1", "a/b/2", "a-x", "t-/x", "t/y", "z"} {
				e.put(t, p, []byte(p), overwrite)
			}
			walk := func(dir string) ([]string, error) {
				var out []string
				for en, err := range e.Walk(e.ctx, dir) {
					if err != nil {
						return out, err
					}
					name := en.Path
					if en.IsFolder {
						name += "/"
					}
					out = append(out, name)
				}
				return out, nil
			}
			got, err := walk("")
			noErr(t, "Walk", err)
			want := []string{"a-x", "a/", "a/1", "a/b/", "a/b/2", "t-/", "t-/x", "t/", "t/y", "z"}
			if !slices.Equal(got, want) {
				t.Fatalf("Walk(root) = %v, want %v", got, want)
			}
			if got, err = walk("a/"); err != nil || !slices.Equal(got, []string{"a/1", "a/b/", "a/b/2"}) {
				t.Fatalf("Walk(a/) = %v, %v", got, err)
			}
			_, err = walk("nope")
			wantErr(t, "Walk of a missing folder", err, fs.ErrNotExist)
			_, err = walk("z")
			wantErr(t, "Walk of a file", err, roomstore.ErrNotFolder)
			_, err = walk("a/../b")
			wantErr(t, "Walk of an invalid path", err, fs.ErrInvalid)
			n := 0
			for range e.Walk(e.ctx, "") {
				if n++; n == 3 {
					break
				}
			}
			if n != 3 {
				t.Fatalf("breaking out of Walk after 3 entries saw %d", n)
			}
			noErr(t, "RemoveAll", e.RemoveAll(e.ctx, ""))
			if got, err = walk(""); err != nil || len(got) != 0 {
				t.Fatalf("Walk of an empty store = %v, %v", got, err)
			}
		}},
		{"the fs view passes testing/fstest", func(t *testing.T, h Harness) {
			e := fresh(t, h)
			files := []string{"a/1.txt", "a/b/2.txt", "a-b", "t-/x", "t/y", "space name.txt", "ü/é.md", "top.html"}
			for _, p := range files {
				e.put(t, p, []byte("content of "+p), overwrite)
			}
			e.put(t, "empty", nil, overwrite)
			fsys := e.FS(e.ctx)
			if err := fstest.TestFS(fsys, append(files, "empty")...); err != nil {
				t.Fatal(err)
			}
			sub, err := fs.Sub(fsys, "a")
			noErr(t, "Sub", err)
			if err := fstest.TestFS(sub, "1.txt", "b/2.txt"); err != nil {
				t.Fatal(err)
			}
			var walked []string
			noErr(t, "WalkDir", fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					walked = append(walked, p)
				}
				return err
			}))
			if want := append(slices.Clone(files), "empty"); !sameSet(walked, want) {
				t.Fatalf("WalkDir found %v, want %v", walked, want)
			}
			info, err := fs.Stat(fsys, "a/1.txt")
			noErr(t, "Stat", err)
			st, err := e.Stat(e.ctx, "a/1.txt")
			noErr(t, "engine Stat", err)
			if en, ok := info.Sys().(roomstore.Entry); !ok || en.ETag != st.ETag || info.Mode() != 0o444 {
				t.Fatalf("FileInfo %v (Sys %#v), want mode 0444 and the Entry", info, info.Sys())
			}
			if info, err := fs.Stat(fsys, "a"); err != nil || info.Mode() != fs.ModeDir|0o555 {
				t.Fatalf("folder FileInfo %v, %v", info, err)
			}
		}},
		{"the fs view serves http.FileServerFS and reports io/fs errors", func(t *testing.T, h Harness) {
			e := fresh(t, h)
			e.put(t, "site/index.txt", []byte("hello from the room"), overwrite)
			fsys := e.FS(e.ctx)
			srv := httptest.NewServer(http.FileServerFS(fsys))
			defer srv.Close()
			if body, status := fetch(t, srv.URL+"/site/index.txt", nil); status != 200 || string(body) != "hello from the room" {
				t.Fatalf("FileServerFS: %d %q", status, body)
			}
			if _, status := fetch(t, srv.URL+"/site/missing", nil); status != 404 {
				t.Fatalf("FileServerFS of a missing file: %d", status)
			}
			for name, target := range map[string]error{
				"missing": fs.ErrNotExist, "site/index.txt/x": fs.ErrNotExist,
				"../x": fs.ErrInvalid, "/site": fs.ErrInvalid, ".roomstore": fs.ErrInvalid, "bad\x00": fs.ErrInvalid,
			} {
				_, err := fsys.Open(name)
				var pe *fs.PathError
				if !errors.Is(err, target) || !errors.As(err, &pe) || pe.Path != name {
					t.Fatalf("Open(%q) = %v, want a *fs.PathError on the name matching %v", name, err, target)
				}
			}
			_, err := fs.ReadFile(fsys, "site")
			if err == nil {
				t.Fatal("ReadFile of a folder succeeded")
			}
			if _, err := fs.ReadDir(fsys, "site/index.txt"); !errors.Is(err, roomstore.ErrNotFolder) {
				t.Fatalf("ReadDir of a file = %v, want ErrNotFolder", err)
			}
		}},
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
