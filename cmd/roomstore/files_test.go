package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/spf13/pflag"

	"github.com/roomstore/roomstore"
)

// runTimeout bounds one run of a file command.
const runTimeout = 60 * time.Second

// result is what one run of the command did.
type result struct {
	code           int
	stdout, stderr string
}

// runCmd runs `roomstore args...` to its end as o says.
func runCmd(t *testing.T, o procOptions, args ...string) result {
	t.Helper()
	p := startWith(t, o, args...)
	code := p.wait(t, runTimeout)
	return result{code, p.stdout.String(), p.stderr.String()}
}

// mustRun runs the command and fails the test unless it exits 0 with
// nothing on stderr (no progress either: stderr is not a terminal).
func mustRun(t *testing.T, o procOptions, args ...string) string {
	t.Helper()
	r := runCmd(t, o, args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("roomstore %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// failedWithOneLine fails the test unless r is a failure (exit 1) that
// printed nothing on stdout and one line "roomstore: ..." on stderr, and
// returns that line's text after the prefix.
func failedWithOneLine(t *testing.T, r result) string {
	t.Helper()
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	if r.stdout != "" {
		t.Errorf("printed %q on stdout", r.stdout)
	}
	line, ok := strings.CutPrefix(r.stderr, "roomstore: ")
	if !ok || strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		t.Fatalf("stderr %q, want one line roomstore: ...", r.stderr)
	}
	return strings.TrimSuffix(line, "\n")
}

// diskStore is a file:// store in a fresh directory: the options that
// name it through $ROOMSTORE_STORE, and the directory.
func diskStore(t *testing.T) (procOptions, string) {
	dir := filepath.Join(t.TempDir(), "store")
	return procOptions{env: map[string]string{storeEnv: "file://" + dir}}, dir
}

// room is a room of a `roomstore serve` on a disk store: the options that
// reach it through --store and $ROOMSTORE_TOKEN, the server's address,
// and the room's directory.
type room struct {
	opts procOptions
	addr string
	dir  string
	srv  *proc
}

func serveRoom(t *testing.T) room {
	t.Helper()
	base := t.TempDir()
	srv, addr := startServe(t, testSecret, "--store", "file://"+base+"/{room}")
	return room{
		opts: procOptions{env: map[string]string{
			storeEnv: "ws://" + addr + "/rooms/r1",
			tokenEnv: mustToken(t, testSecret, "r1"),
		}},
		addr: addr,
		dir:  filepath.Join(base, "r1"),
		srv:  srv,
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// onBothStores runs f as a subtest on a disk store opened directly, and
// on a room of a roomstore serve.
func onBothStores(t *testing.T, f func(t *testing.T, o procOptions)) {
	t.Run("file", func(t *testing.T) { o, _ := diskStore(t); f(t, o) })
	t.Run("room server", func(t *testing.T) { f(t, serveRoom(t).opts) })
}

func TestPutGetRoundTrip20MiBByteExact(t *testing.T) {
	data := randomBytes(t, 20<<20)
	local := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(local, data, 0o600); err != nil {
		t.Fatal(err)
	}
	onBothStores(t, func(t *testing.T, o procOptions) {
		mustRun(t, o, "put", local, "data/big.bin")
		in := o
		in.stdin = bytes.NewReader(data)
		mustRun(t, in, "put", "-", "data/piped.bin")

		if out := mustRun(t, o, "get", "data/big.bin", "-"); out != string(data) {
			t.Errorf("get to stdout: %d bytes, differ from the 20 MiB put", len(out))
		}
		if out := mustRun(t, o, "get", "data/piped.bin"); out != string(data) {
			t.Errorf("get of what put read from stdin: %d bytes, differ", len(out))
		}
		dst := filepath.Join(t.TempDir(), "copy.bin")
		mustRun(t, o, "get", "data/piped.bin", dst)
		if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, data) {
			t.Errorf("get to a local file: %d bytes, %v", len(got), err)
		}
		folder := t.TempDir()
		mustRun(t, o, "get", "data/big.bin", folder)
		if got, err := os.ReadFile(filepath.Join(folder, "big.bin")); err != nil || !bytes.Equal(got, data) {
			t.Errorf("get into a local folder: %d bytes, %v", len(got), err)
		}
		if ents, _ := os.ReadDir(folder); len(ents) != 1 {
			t.Errorf("get left %d entries in the folder, want the file alone", len(ents))
		}
		var e roomstore.Entry
		if err := json.Unmarshal([]byte(mustRun(t, o, "stat", "--json", "data/big.bin")), &e); err != nil || e.Size != int64(len(data)) || e.IsFolder || e.Path != "data/big.bin" || e.Name != "big.bin" || e.ModTime.IsZero() {
			t.Errorf("stat --json: %+v, %v", e, err)
		}
	})
}

// lsLine is one line of ls's text output: size (or -), time (or -), path.
var lsLine = regexp.MustCompile(`^ *(\d+|-)  (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ|- {19})  (\S+)$`)

// lsPaths runs ls with args and returns each line's path and size,
// checking the text format.
func lsPaths(t *testing.T, o procOptions, args ...string) []string {
	t.Helper()
	out := mustRun(t, o, append([]string{"ls"}, args...)...)
	var paths []string
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		m := lsLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("ls printed %q, not SIZE  TIME  PATH", line)
		}
		if folder := strings.HasSuffix(m[3], "/"); folder != (m[1] == "-") || folder != (m[2][0] == '-') {
			t.Errorf("ls line %q: a folder has - for size and time, a file numbers", line)
		}
		paths = append(paths, m[3]+" "+m[1])
	}
	return paths
}

func TestLsRecursiveMvAndRmRecursive(t *testing.T) {
	onBothStores(t, func(t *testing.T, o procOptions) {
		for p, size := range map[string]int{"a.txt": 1, "docs/b.txt": 22, "docs/sub/c.txt": 333, "docs/sub/d.txt": 4, "z/e.txt": 5} {
			in := o
			in.stdin = bytes.NewReader(bytes.Repeat([]byte("x"), size))
			mustRun(t, in, "put", "-", p)
		}
		want := []string{"a.txt 1", "docs/ -", "docs/b.txt 22", "docs/sub/ -", "docs/sub/c.txt 333", "docs/sub/d.txt 4", "z/ -", "z/e.txt 5"}
		if got := lsPaths(t, o, "-r"); !slices.Equal(got, want) {
			t.Errorf("ls -r:\n got %q\nwant %q", got, want)
		}
		if got := lsPaths(t, o); !slices.Equal(got, []string{"a.txt 1", "docs/ -", "z/ -"}) {
			t.Errorf("ls: %q", got)
		}
		if got := lsPaths(t, o, "docs/sub/c.txt"); !slices.Equal(got, []string{"docs/sub/c.txt 333"}) {
			t.Errorf("ls of a file: %q", got)
		}
		var objs []roomstore.Entry
		out := mustRun(t, o, "ls", "-r", "--json", "docs")
		if !strings.Contains(out, `{"path":"docs/sub/","name":"sub","type":"folder","size":0}`+"\n") {
			t.Errorf("ls -r --json docs shows the folder docs/sub otherwise:\n%s", out)
		}
		dec := json.NewDecoder(strings.NewReader(out))
		for {
			var e roomstore.Entry
			if err := dec.Decode(&e); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			objs = append(objs, e)
		}
		if len(objs) != 4 || objs[0].Path != "docs/b.txt" || !objs[1].IsFolder || objs[1].Path != "docs/sub" || objs[2].Size != 333 || objs[2].ModTime.IsZero() {
			t.Errorf("ls -r --json docs: %+v", objs)
		}

		mustRun(t, o, "mv", "docs/sub", "moved")
		mustRun(t, o, "mv", "a.txt", "moved/a.txt")
		want = []string{"docs/ -", "docs/b.txt 22", "moved/ -", "moved/a.txt 1", "moved/c.txt 333", "moved/d.txt 4", "z/ -", "z/e.txt 5"}
		if got := lsPaths(t, o, "-r"); !slices.Equal(got, want) {
			t.Errorf("ls -r after mv:\n got %q\nwant %q", got, want)
		}
		mustRun(t, o, "rm", "-r", "moved")
		mustRun(t, o, "rm", "z/e.txt")
		if got := lsPaths(t, o, "-r"); !slices.Equal(got, []string{"docs/ -", "docs/b.txt 22"}) {
			t.Errorf("ls -r after rm -r: %q", got)
		}
		mustRun(t, o, "rm", "-r", "/")
		if got := lsPaths(t, o, "-r"); len(got) != 0 {
			t.Errorf("ls -r after rm -r /: %q", got)
		}
	})
}

func TestURLIsFetchedWithAPlainHTTPGet(t *testing.T) {
	r := serveRoom(t)
	data := randomBytes(t, 100_000)
	in := r.opts
	in.stdin = bytes.NewReader(data)
	mustRun(t, in, "put", "-", "reports/q3.bin")
	for _, c := range []struct {
		args        []string
		disposition string
	}{
		{[]string{"url", "reports/q3.bin"}, ""},
		{[]string{"url", "--attachment", "reports/q3.bin"}, `attachment; filename=q3.bin`},
	} {
		out := mustRun(t, r.opts, c.args...)
		u := strings.TrimSuffix(out, "\n")
		if strings.Contains(u, "\n") || !strings.HasPrefix(u, "http://"+r.addr+"/files/") {
			t.Fatalf("%v printed %q, want one URL below http://%s/files/", c.args, out, r.addr)
		}
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Errorf("GET %v: %d, %d bytes, %v", c.args, resp.StatusCode, len(body), err)
		}
		if got := resp.Header.Get("Content-Disposition"); got != c.disposition {
			t.Errorf("GET %v: Content-Disposition %q, want %q", c.args, got, c.disposition)
		}
	}
}

// lines is an io.Writer for a process's output that hands each line
// over as it is written.
type lines struct {
	mu    sync.Mutex
	buf   []byte
	all   strings.Builder
	lines chan string
}

func newLines() *lines { return &lines{lines: make(chan string, 1000)} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.lines <- string(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// next returns the next line, failing the test if none comes in time.
func (l *lines) next(t *testing.T, what string) string {
	t.Helper()
	select {
	case line := <-l.lines:
		return line
	case <-time.After(runTimeout):
		t.Fatalf("no %s within %v; output so far:\n%s", what, runTimeout, l.String())
	}
	return ""
}

// startWatch starts `roomstore watch args...` on o and returns once it
// says it is watching, with its output line by line.
func startWatch(t *testing.T, o procOptions, args ...string) (p *proc, out, errOut *lines) {
	t.Helper()
	out, errOut = newLines(), newLines()
	o.stdout, o.stderr = out, errOut
	p = startWith(t, o, append([]string{"watch"}, args...)...)
	if line := errOut.next(t, "watching line"); !strings.HasPrefix(line, "roomstore: watching ") {
		t.Fatalf("watch said %q first, want roomstore: watching ...", line)
	}
	return p, out, errOut
}

func TestWatchSeesAnotherProcessesChangesThroughServe(t *testing.T) {
	r := serveRoom(t)
	text, textOut, _ := startWatch(t, r.opts, "docs")
	js, jsOut, _ := startWatch(t, r.opts, "--json")

	in := r.opts
	in.stdin = strings.NewReader("hello")
	mustRun(t, in, "put", "-", "docs/a.txt")
	mustRun(t, r.opts, "put", "-", "other/b.txt") // not beneath docs
	mustRun(t, r.opts, "mv", "docs/a.txt", "docs/b.txt")
	mustRun(t, r.opts, "rm", "docs/b.txt")

	stamp := `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`
	for i, want := range []string{
		`^` + stamp + `  file\.updated  docs/a\.txt  alice$`,
		`^` + stamp + `  file\.moved    docs/b\.txt  alice  \(from docs/a\.txt\)$`,
		`^` + stamp + `  file\.deleted  docs/b\.txt  alice$`,
	} {
		if line := textOut.next(t, "event line"); !regexp.MustCompile(want).MatchString(line) {
			t.Errorf("watch docs, event %d: %q, want %s", i, line, want)
		}
	}
	want := []jsonEvent{
		{Type: "file.updated", Path: "docs/a.txt"},
		{Type: "file.updated", Path: "other/b.txt"},
		{Type: "file.moved", Path: "docs/b.txt", SourcePath: "docs/a.txt"},
		{Type: "file.deleted", Path: "docs/b.txt"},
	}
	for i, w := range want {
		line := jsOut.next(t, "JSON event")
		var e jsonEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("watch --json printed %q: %v", line, err)
		}
		// Each command is a participant of its own, with an id the server gives.
		if e.Type != w.Type || e.Path != w.Path || e.SourcePath != w.SourcePath || len(e.Participant) != 26 || e.Name != "alice" || time.Since(e.Time) > time.Minute {
			t.Errorf("watch --json, event %d: %+v, want %+v", i, e, w)
		}
	}

	// Ctrl-C ends it with status 0; a lost server with 1 and one line.
	if err := text.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := text.wait(t, runTimeout); code != 0 {
		t.Errorf("watch after SIGINT: exit %d", code)
	}
	if err := r.srv.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if code := js.wait(t, runTimeout); code != 1 {
		t.Errorf("watch after its server was killed: exit %d, want 1", code)
	}
	if got := strings.Split(js.stderrText(), "\n"); len(got) != 3 || got[2] != "" || !strings.HasPrefix(got[1], "roomstore: watch: lost the room server: ") {
		t.Errorf("watch after its server was killed said %q, want its watching line and one more", got)
	}
}

// snapshot returns every file beneath dir with a digest of its content,
// and every folder, so that a test can tell nothing changed.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == ".roomstore" {
			return filepath.SkipDir // the engine's own: locks, temporaries
		}
		if d.IsDir() {
			out[rel] = "folder"
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[rel] = fmt.Sprintf("%x", sha256.Sum256(b))
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

func TestFailuresExitOneWithOneLineAndChangeNothing(t *testing.T) {
	disk, dir := diskStore(t)
	in := disk
	in.stdin = strings.NewReader("kept")
	mustRun(t, in, "put", "-", "notes/a.txt")
	mustRun(t, in, "put", "-", "notes/b.txt")
	r := serveRoom(t)
	in = r.opts
	in.stdin = strings.NewReader("kept")
	mustRun(t, in, "put", "-", "notes/a.txt")
	local := filepath.Join(t.TempDir(), "local.txt")
	if err := os.WriteFile(local, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	missingDir := filepath.Join(t.TempDir(), "nothing-here")
	missing := procOptions{env: map[string]string{storeEnv: "file://" + missingDir}}
	noToken := procOptions{env: map[string]string{storeEnv: r.opts.env[storeEnv]}}
	badToken := procOptions{env: map[string]string{storeEnv: r.opts.env[storeEnv], tokenEnv: mustToken(t, "another secret, 32 bytes or longer", "r1")}}
	otherRoom := procOptions{env: map[string]string{storeEnv: "ws://" + r.addr + "/rooms/r2", tokenEnv: r.opts.env[tokenEnv]}}
	gone := procOptions{env: map[string]string{storeEnv: "ws://127.0.0.1:1/rooms/r1", tokenEnv: r.opts.env[tokenEnv]}}
	withStore := func(store string) procOptions { return procOptions{env: map[string]string{storeEnv: store}} }

	folder := t.TempDir()
	ws := r.opts.env[storeEnv]
	for _, c := range []struct {
		name string
		o    procOptions
		args []string
		want string // the whole line, less "roomstore: " and the newline
	}{
		{"get of a missing file", disk, []string{"get", "notes/x.txt"}, "get notes/x.txt: file does not exist"},
		{"get of a missing file in a room", r.opts, []string{"get", "notes/x.txt"}, "get notes/x.txt: file does not exist"},
		{"get of a folder", disk, []string{"get", "notes"}, "get notes: is a folder"},
		{"get of a folder in a room", r.opts, []string{"get", "notes"}, "get notes: is a folder"},
		{"get of an invalid path", disk, []string{"get", "../x"}, "get ../x: invalid path: path has an empty, '.' or '..' element"},
		{"get of the root", disk, []string{"get", "/"}, "get /: invalid path: the root is not a file"},
		{"get of an empty path", disk, []string{"get", ""}, "get: an empty path (the root is /)"},
		{"put of a missing local file", disk, []string{"put", "no-such.txt", "notes/a.txt"}, "put no-such.txt: no such local file"},
		{"put of a local folder", disk, []string{"put", folder, "notes/c.txt"}, "put " + folder + ": is a folder (put uploads one file)"},
		{"put to an invalid path", disk, []string{"put", local, "notes/.roomstore/x"}, `put notes/.roomstore/x: invalid path: element starts with the reserved prefix ".roomstore"`},
		{"put of a control character", disk, []string{"put", local, "notes/a\x07"}, `put "notes/a\a": invalid path: path contains control character U+0007`},
		{"put over a file", disk, []string{"put", local, "notes/a.txt"}, "put notes/a.txt: file already exists (--overwrite replaces it)"},
		{"put over a file in a room", r.opts, []string{"put", local, "notes/a.txt"}, "put notes/a.txt: file already exists (--overwrite replaces it)"},
		{"put --exclusive over a file", disk, []string{"put", "--exclusive", local, "notes/a.txt"}, "put notes/a.txt: file already exists (--overwrite replaces it)"},
		{"put over a folder", disk, []string{"put", "--overwrite", local, "notes"}, "put notes: is a folder"},
		{"put through a file", disk, []string{"put", local, "notes/a.txt/c"}, "put notes/a.txt/c: not a folder"},
		{"rm of a folder", disk, []string{"rm", "notes"}, "rm notes: is a folder (rm -r removes a folder and everything in it)"},
		{"rm of a missing file", disk, []string{"rm", "notes/x.txt"}, "rm notes/x.txt: file does not exist"},
		{"rm -r of a missing folder", r.opts, []string{"rm", "-r", "nothing"}, "rm nothing: file does not exist"},
		{"rm -r of an empty path", disk, []string{"rm", "-r", ""}, "rm: an empty path (the root is /)"},
		{"rm -r of an empty path in a room", r.opts, []string{"rm", "-r", ""}, "rm: an empty path (the root is /)"},
		{"mv onto a file", disk, []string{"mv", "notes/a.txt", "notes/b.txt"}, "mv notes/a.txt notes/b.txt: file already exists (--overwrite replaces it)"},
		{"mv of a name with a space", disk, []string{"mv", "notes/my file.txt", "notes/b.txt"}, `mv "notes/my file.txt" notes/b.txt: file does not exist`},
		{"mv into itself in a room", r.opts, []string{"mv", "notes/a.txt", "notes/a.txt/b"}, "mv notes/a.txt notes/a.txt/b: a folder cannot move into itself"},
		{"mv of a missing file", disk, []string{"mv", "notes/x.txt", "y.txt"}, "mv notes/x.txt y.txt: file does not exist"},
		{"stat of a missing file", disk, []string{"stat", "x"}, "stat x: file does not exist"},
		{"ls of a file's child", disk, []string{"ls", "notes/a.txt/x"}, "ls notes/a.txt/x: file does not exist: path runs through a file"},
		{"ls of a missing folder", disk, []string{"ls", "nothing"}, "ls nothing: file does not exist"},
		{"url of a disk store", disk, []string{"url", "notes/a.txt"}, "url notes/a.txt: " + errNoURLs.Error()},
		{"url of a memory store", withStore("mem://"), []string{"url", "notes/a.txt"}, "url notes/a.txt: " + errNoURLs.Error()},
		{"url of a missing file", r.opts, []string{"url", "notes/x.txt"}, "url notes/x.txt: file does not exist"},
		{"watch of a disk store", disk, []string{"watch"}, "watch: a store opened directly shows only this command's own changes; watch a room server's room (--store ws://HOST:PORT/rooms/ROOM)"},
		{"sweep of a room", r.opts, []string{"sweep"}, "sweep: a room server expires its rooms' past versions itself (roomstore serve --history-versions, --history-age), and its stores' temporaries are swept where it runs"},
		{"sweep of an unknown scheme", withStore("ftp://host/x"), []string{"sweep"}, `--store ftp://host/x: unknown scheme "ftp" (known: file, gs, mem, s3, ws)`},
		{"sweep of a missing store directory", missing, []string{"sweep"}, "--store file://" + missingDir + ": no store there (its directory does not exist; put creates it)"},
		{"versions of a missing file", disk, []string{"versions", "notes/x.txt"}, "versions notes/x.txt: no file and no past version there (roomstore deleted lists what restore can bring back)"},
		{"restore of a missing file in a room", r.opts, []string{"restore", "notes/x.txt"}, "restore notes/x.txt: no file and no past version there (roomstore deleted lists what restore can bring back)"},
		{"restore of the root", disk, []string{"restore", "/"}, "restore /: invalid path: the root is not a file"},
		{"an unknown scheme", withStore("ftp://host/x"), []string{"ls"}, `--store ftp://host/x: unknown scheme "ftp" (known: file, gs, mem, s3, ws)`},
		{"a store that is no URL", withStore("just-a-name"), []string{"ls"}, "--store just-a-name: want a store URL (file, gs, mem, s3, ws) or a room server's ws://HOST:PORT/rooms/ROOM"},
		{"a missing store directory", missing, []string{"ls"}, "--store file://" + missingDir + ": no store there (its directory does not exist; put creates it)"},
		{"a missing store directory for get", missing, []string{"get", "a.txt"}, "--store file://" + missingDir + ": no store there (its directory does not exist; put creates it)"},
		{"a bad file URL parameter", withStore("file://" + dir + "?fsyncc=false"), []string{"ls"}, "--store file://" + dir + `?fsyncc=false: unknown parameter "fsyncc" in file URL (known: fsync)`},
		{"a ws URL without a token", noToken, []string{"ls"}, "--store " + ws + ": a room server needs a participant token: give --token or set ROOMSTORE_TOKEN (see roomstore token)"},
		{"a token in the ws URL", withStore(ws + "?token=" + r.opts.env[tokenEnv]), []string{"ls"}, "--store " + ws + ": give the token with --token or ROOMSTORE_TOKEN, not in the URL"},
		{"a token of another secret", badToken, []string{"ls"}, "--store " + ws + ": the room server refused the token (bad, expired, or for another room)"},
		{"a token for another room", otherRoom, []string{"ls"}, "--store ws://" + r.addr + "/rooms/r2: the room server refused the token (bad, expired, or for another room)"},
		{"a room server that is not there", gone, []string{"ls"}, "--store ws://127.0.0.1:1/rooms/r1: cannot reach the room server: dial tcp 127.0.0.1:1: connect: connection refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, beforeRoom, beforeMissing := snapshot(t, dir), snapshot(t, r.dir), snapshot(t, missingDir)
			line := failedWithOneLine(t, runCmd(t, c.o, c.args...))
			if c.want != "" && line != c.want {
				t.Errorf("said %q\n    want %q", line, c.want)
			}
			// No host path but those the command was given (its store URL
			// and local file) may show.
			rest := line
			for _, given := range append([]string{c.o.env[storeEnv]}, c.args...) {
				if given != "" {
					rest = strings.ReplaceAll(rest, given, "")
				}
			}
			if strings.Contains(rest, os.TempDir()) {
				t.Errorf("the message names a host path: %q", line)
			}
			if after := snapshot(t, dir); !maps.Equal(before, after) {
				t.Errorf("the disk store changed:\n%v\n%v", before, after)
			}
			if after := snapshot(t, r.dir); !maps.Equal(beforeRoom, after) {
				t.Errorf("the room's store changed:\n%v\n%v", beforeRoom, after)
			}
			if after := snapshot(t, missingDir); !maps.Equal(beforeMissing, after) || len(after) != 0 {
				t.Errorf("the missing store was created: %v", after)
			}
		})
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	o, dir := diskStore(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{}, "a command is needed"},
		{[]string{"bogus"}, `unknown command "bogus" for "roomstore"`},
		{[]string{"ls", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"get"}, "get: accepts between 1 and 2 arg(s), received 0"},
		{[]string{"put", "x"}, "put: accepts 2 arg(s), received 1"},
		{[]string{"put", "--overwrite", "--exclusive", "x", "y"}, "--overwrite and --exclusive exclude each other"},
		{[]string{"sweep", "x"}, `unknown command "x" for "roomstore sweep"`},
		{[]string{"sweep", "--history-versions", "-1"}, "sweep: --history-versions and --history-age must not be negative"},
		{[]string{"put", "--exclusive", "--if-match", "e", "x", "y"}, "--exclusive and --if-match or --if-none-match exclude each other"},
		{[]string{"put", "--if-match", "", "x", "y"}, "put: --if-match needs an ETag (stat or ls -l show a file's)"},
		{[]string{"rm", "--if-match", "*", "y"}, `rm: --if-match takes an ETag, not "*"`},
		{[]string{"mv", "--if-none-match", "*", "x", "y"}, "unknown flag: --if-none-match"},
		{[]string{"restore", "-r", "d", "v1"}, "restore: -r restores each deleted file to its newest version, and takes no VERSION"},
		{[]string{"restore", "a", "v1", "v2"}, "restore: accepts between 1 and 2 arg(s), received 3"},
		{[]string{"get", "a", "--version", ""}, "get: --version needs a version ID"},
		{[]string{"versions"}, "versions: accepts 1 arg(s), received 0"},
		{[]string{"token", "--room", "r1"}, `required flag(s) "name" not set`},
		{[]string{"--token", "x", "serve"}, "serve: --token is for the file commands"},
		{[]string{"token", "--store", "mem://", "--name", "a", "--room", "r1"}, "token: --store is for the file commands"},
		{[]string{"--timeout", "-1s", "ls"}, "--timeout -1s is negative"},
	} {
		res := runCmd(t, o, c.args...)
		if res.code != 2 || !strings.Contains(res.stderr, c.want) || res.stdout != "" {
			t.Errorf("roomstore %q: exit %d, stdout %q, stderr %q; want 2 and %q", c.args, res.code, res.stdout, res.stderr, c.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("roomstore %q created the store", c.args)
		}
	}
}

func TestHelpOfEveryCommandIsComplete(t *testing.T) {
	root := runCmd(t, procOptions{}, "--help")
	if root.code != 0 {
		t.Fatalf("--help: exit %d", root.code)
	}
	for _, c := range newRootCmd().Commands() {
		if c.Name() == "help" {
			continue
		}
		if !strings.Contains(root.stdout, "\n  "+c.Name()+" ") {
			t.Errorf("roomstore --help does not list %s", c.Name())
		}
		res := runCmd(t, procOptions{}, c.Name(), "--help")
		if res.code != 0 || res.stderr != "" {
			t.Errorf("%s --help: exit %d, %q", c.Name(), res.code, res.stderr)
		}
		if c.Long == "" || c.Short == "" || !strings.Contains(res.stdout, strings.TrimSpace(strings.SplitN(c.Long, "\n", 2)[0])) {
			t.Errorf("%s --help lacks its description:\n%s", c.Name(), res.stdout)
		}
		if !strings.Contains(res.stdout, "Usage:\n  roomstore "+c.Name()) {
			t.Errorf("%s --help lacks its usage line:\n%s", c.Name(), res.stdout)
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Usage == "" || !strings.Contains(res.stdout, "--"+f.Name) {
				t.Errorf("%s --help does not describe --%s", c.Name(), f.Name)
			}
		})
		if c.Name() != "serve" && c.Name() != "token" && !strings.Contains(res.stdout, "--store") {
			t.Errorf("%s --help does not show the global --store", c.Name())
		}
	}
}

func TestProgressOnATerminalOnly(t *testing.T) {
	o, _ := diskStore(t)
	local := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(local, randomBytes(t, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"put", local, "big.bin"}, {"get", "big.bin", filepath.Join(t.TempDir(), "copy.bin")}} {
		ptm, tty, err := pty.Open()
		if err != nil {
			t.Fatal(err)
		}
		out := newLines()
		copied := make(chan struct{})
		go func() {
			defer close(copied)
			_, _ = io.Copy(out, ptm) // ends with EIO once the last tty is closed
		}()
		po := o
		po.stderr = tty
		p := startWith(t, po, args...)
		code := p.wait(t, runTimeout)
		tty.Close()
		select {
		case <-copied:
		case <-time.After(runTimeout):
			t.Fatal("the terminal's output did not end")
		}
		ptm.Close()
		if code != 0 {
			t.Fatalf("%v on a terminal: exit %d: %q", args, code, out.String())
		}
		shown := out.String()
		// The bar ends at 100% of 8.0 MiB with a rate and the time taken.
		for _, want := range []string{args[0] + " big.bin", "100%", "8.0/8.0 MiB", "iB/s", "["} {
			if !strings.Contains(shown, want) {
				t.Errorf("%v: the terminal shows no %q:\n%q", args, want, shown)
			}
		}
		if p.stdout.String() != "" {
			t.Errorf("%v: the progress went to stdout too", args)
		}
	}
}

// feedingPut starts `put - big.bin` on the disk store o in dir, its
// stdin a pipe that is fed 1 MiB at a time until the command has gone,
// and returns once some of its bytes are staged in the store's
// temporaries' folder (tmp).
func feedingPut(t *testing.T, o procOptions, dir string) (p *proc, tmp string) {
	t.Helper()
	mustRun(t, o, "put", "-", "seed.txt") // creates the store
	return feedPut(t, o, dir)
}

// feedPut is feedingPut on a store that exists.
func feedPut(t *testing.T, o procOptions, dir string) (p *proc, tmp string) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	o.stdin = pr // an *os.File: the child reads it itself
	p = startWith(t, o, "put", "-", "big.bin")
	pr.Close()
	tmp = filepath.Join(dir, ".roomstore", "tmp")
	staged := make(chan struct{})
	go func() {
		defer pw.Close()
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		seen := false
		for {
			if _, err := pw.Write(chunk); err != nil {
				return // the command has gone
			}
			if !seen && stagedBytes(tmp) {
				seen = true
				close(staged)
			}
		}
	}()
	select {
	case <-staged:
	case <-p.done:
		t.Fatalf("put exited with %d before staging anything: %s", p.code, p.stderr.String())
	case <-time.After(runTimeout):
		t.Fatal("put staged nothing")
	}
	return p, tmp
}

// stagedBytes reports whether a temporary in tmp holds bytes.
func stagedBytes(tmp string) bool {
	ents, _ := os.ReadDir(tmp)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Size() > 0 {
			return true
		}
	}
	return false
}

func TestSweepRemovesWhatAKilledPutLeft(t *testing.T) {
	o, dir := diskStore(t)
	p, tmp := feedingPut(t, o, dir)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, runTimeout)
	if out := mustRun(t, o, "sweep"); out != "1 stale temporary removed\n0 past versions expired\n" {
		t.Errorf("sweep printed %q", out)
	}
	if ents, err := os.ReadDir(tmp); err != nil || len(ents) != 0 {
		t.Errorf("after sweep the temporaries' folder holds %d entries (%v)", len(ents), err)
	}
	if out := mustRun(t, o, "sweep"); out != "0 stale temporaries removed\n0 past versions expired\n" {
		t.Errorf("a second sweep printed %q", out)
	}
	if got := lsPaths(t, o, "-r"); !slices.Equal(got, []string{"seed.txt 0"}) {
		t.Errorf("the killed put left %q", got)
	}
}

func TestAnInterruptedPutLeavesNothing(t *testing.T) {
	o, dir := diskStore(t)
	p, tmp := feedingPut(t, o, dir) // fed on after the signal, so that the read it waits in returns
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, runTimeout); code != 1 {
		t.Errorf("an interrupted put: exit %d, want 1", code)
	}
	if got := p.stderr.String(); got != "roomstore: put big.bin: interrupted\n" {
		t.Errorf("an interrupted put said %q", got)
	}
	if ents, err := os.ReadDir(tmp); err != nil || len(ents) != 0 {
		t.Errorf("an interrupted put left %d temporaries (%v)", len(ents), err)
	}
	if got := lsPaths(t, o, "-r"); !slices.Equal(got, []string{"seed.txt 0"}) {
		t.Errorf("an interrupted put left %q", got)
	}
}

// TestFileURLsThatNameAnotherDirectoryAreRefused runs put on file:// URLs
// whose directory is not the one their writer meant: each is refused with
// one line naming the right forms, and creates nothing anywhere. A new
// store's directory is created only when its parent exists.
func TestFileURLsThatNameAnotherDirectoryAreRefused(t *testing.T) {
	base := t.TempDir()
	wd := t.TempDir()
	local := filepath.Join(t.TempDir(), "x.txt")
	if err := os.WriteFile(local, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(base, "s")     // where a misread URL would write
	rel := strings.TrimPrefix(abs, "/") // the same, relative: what "./" meant
	const forms = "(use file:///abs/dir for an absolute directory, file://./rel/dir for one relative to the working directory)"
	for _, c := range []struct{ store, want string }{
		{"file:/./" + rel, "a file URL needs // after file: " + forms},
		{"file:" + abs, "a file URL needs // after file: " + forms},
		{"file:./" + rel, "a file URL needs // after file: " + forms},
		{"file:///./" + rel, "the path /./" + rel + " is not clean: it names " + abs + " " + forms},
		{"file://" + base + "/typo/s", "the directory that would hold the store does not exist (only the store's own directory is created)"},
	} {
		res := runCmd(t, procOptions{dir: wd, env: map[string]string{storeEnv: c.store}}, "put", local, "a")
		if want := "roomstore: --store " + c.store + ": " + c.want + "\n"; res.code != 1 || res.stderr != want {
			t.Errorf("put on %s: exit %d, %q; want 1, %q", c.store, res.code, res.stderr, want)
		}
		for _, d := range []string{abs, filepath.Join(wd, rel), filepath.Join(base, "typo")} {
			if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("put on %s created %s (%v)", c.store, d, err)
			}
		}
	}
	// The forms meant: put creates the store's own directory.
	for _, store := range []string{"file://" + abs, "file://./s"} {
		mustRun(t, procOptions{dir: wd, env: map[string]string{storeEnv: store}}, "put", local, "a")
	}
	for _, f := range []string{filepath.Join(abs, "a"), filepath.Join(wd, "s", "a")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("put did not write %s: %v", f, err)
		}
	}
}

// TestOneCtrlCDeliveredTwiceIsOneInterruption sends SIGINT to the put and
// then to its process group, as a terminal or timeout(1) can: the put is
// interrupted once, says so in one line and exits 1, and leaves nothing.
// The second delivery follows the first by 0 to 38 ms (2 ms more each
// run): not a wait for anything, but the spread between the two
// deliveries of one Ctrl-C on a busy machine, so that some come before
// the command has acted on the first and some after.
func TestOneCtrlCDeliveredTwiceIsOneInterruption(t *testing.T) {
	o, dir := diskStore(t)
	o.group = true
	mustRun(t, o, "put", "-", "seed.txt") // creates the store
	for i := range 20 {
		p, tmp := feedPut(t, o, dir)
		pid := p.cmd.Process.Pid
		if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i) * 2 * time.Millisecond) // the spread, see above
		// The put may have finished already: then the group is gone.
		if err := syscall.Kill(-pid, syscall.SIGINT); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Fatal(err)
		}
		code := p.wait(t, runTimeout)
		if got := p.stderr.String(); code != 1 || got != "roomstore: put big.bin: interrupted\n" {
			t.Fatalf("run %d: SIGINT to the put and its group: exit %d and %q, want 1 and one line", i, code, got)
		}
		if ents, err := os.ReadDir(tmp); err != nil || len(ents) != 0 {
			t.Fatalf("run %d: the interrupted put left %d temporaries (%v)", i, len(ents), err)
		}
	}
	if got := lsPaths(t, o, "-r"); !slices.Equal(got, []string{"seed.txt 0"}) {
		t.Errorf("the interrupted puts left %q", got)
	}
}

func TestWatchBehindABlockedOutputCountsEveryEventAndStopsOnCtrlC(t *testing.T) {
	r := serveRoom(t)
	const n = 6000 // far more lines than a pipe and watch's queue hold
	bulk := filepath.Join(r.dir, "bulk")
	if err := os.MkdirAll(bulk, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := os.WriteFile(filepath.Join(bulk, fmt.Sprintf("f%04d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	blocked := func() (*proc, *os.File, *lines) {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pr.Close() })
		errOut := newLines()
		o := r.opts
		o.stdout, o.stderr = pw, errOut
		p := startWith(t, o, "watch", "--json")
		pw.Close() // the child has its own
		if line := errOut.next(t, "watching line"); !strings.HasPrefix(line, "roomstore: watching ") {
			t.Fatalf("watch said %q first", line)
		}
		return p, pr, errOut
	}
	counted, countedOut, countedErr := blocked()
	stopped, _, _ := blocked()

	mustRun(t, r.opts, "rm", "-r", "bulk") // n events, while neither watch's output is read

	// Ctrl-C ends a watch whose output is blocked.
	if err := stopped.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := stopped.wait(t, runTimeout); code != 0 {
		t.Errorf("watch blocked on its output, after SIGINT: exit %d, want 0", code)
	}

	// Every event is printed, or counted in a loss report.
	type result struct {
		printed, lost uint64
		err           error
	}
	done := make(chan result, 1)
	go func() {
		var res result
		dec := json.NewDecoder(countedOut)
		for res.printed+res.lost < n {
			var e jsonEvent
			if res.err = dec.Decode(&e); res.err != nil {
				break
			}
			switch e.Type {
			case "file.deleted":
				res.printed++
			case "events.overflow":
				res.lost += e.Dropped
			default:
				res.err = fmt.Errorf("an event %+v", e)
			}
		}
		done <- res
	}()
	select {
	case res := <-done:
		if res.err != nil || res.printed+res.lost != n {
			t.Fatalf("watch printed %d events and reported %d lost, want %d in all (%v); it said %q", res.printed, res.lost, n, res.err, countedErr.String())
		}
		if res.lost == 0 {
			t.Errorf("no loss reported, with %d events behind a blocked pipe", n)
		}
		if !strings.Contains(countedErr.String(), " events were lost here (the output could not keep up)\n") {
			t.Errorf("no loss line on stderr: %q", countedErr.String())
		}
		t.Logf("%d events printed, %d reported lost", res.printed, res.lost)
	case <-time.After(runTimeout):
		t.Fatal("watch's output did not account for every event in time")
	}
	if err := counted.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := counted.wait(t, runTimeout); code != 0 {
		t.Errorf("watch after SIGINT: exit %d", code)
	}
}
