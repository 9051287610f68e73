package main

import (
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/roomstore/roomstore/backend_disk"
)

// roomOf is the options that reach room of the server at addr, with a
// token for it.
func roomOf(t *testing.T, addr, room string) procOptions {
	return procOptions{env: map[string]string{
		storeEnv: "ws://" + addr + "/rooms/" + room,
		tokenEnv: mustToken(t, testSecret, room),
	}}
}

// putString runs `roomstore put - p` with content on stdin.
func putString(t *testing.T, o procOptions, content, p string, args ...string) {
	t.Helper()
	o.stdin = strings.NewReader(content)
	mustRun(t, o, append(args, "put", "-", p)...)
}

// killed ends p with SIGKILL and waits until it has gone: the kernel has
// dropped its locks by then.
func killed(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, runTimeout)
}

func TestTheDefaultStoresOfTheFileCommandsAndOfServeDoNotNest(t *testing.T) {
	u, err := url.Parse(defaultStore)
	if err != nil {
		t.Fatal(err)
	}
	files, err := backend_disk.FileDir(u)
	if err != nil {
		t.Fatal(err)
	}
	serveDefault := newServeCmd().Flags().Lookup("store").DefValue
	st, err := parseStoreTemplate(serveDefault)
	if err != nil {
		t.Fatal(err)
	}
	rooms, _, err := st.diskFolders()
	if err != nil {
		t.Fatal(err)
	}
	files, rooms = filepath.Clean(files), filepath.Clean(rooms)
	if strings.HasPrefix(files+"/", rooms+"/") || strings.HasPrefix(rooms+"/", files+"/") {
		t.Fatalf("the file commands' default store %s (%s) and serve's %s (rooms in %s) nest", defaultStore, files, serveDefault, rooms)
	}

	// Both on their defaults in one directory: the file commands' rm -r /
	// leaves the rooms alone. The file commands' store, whose folders
	// are no rooms, does not stop serve from starting.
	wd := t.TempDir()
	mine := procOptions{dir: wd}
	putString(t, mine, "mine", "docs/mine.txt")
	srv, addr := startServeWith(t, procOptions{secret: testSecret, dir: wd})
	if want := "store=" + serveDefault; !strings.Contains(srv.stderr.String(), want) {
		t.Errorf("serve's listening line lacks %q:\n%s", want, srv.stderr.String())
	}
	room := roomOf(t, addr, "r1")
	putString(t, room, "theirs", "notes/theirs.txt")

	mustRun(t, mine, "rm", "-r", "/") // and no warning: nothing overlaps
	left := snapshot(t, filepath.Join(wd, files))
	delete(left, ".") // the store's own directory stays
	if len(left) != 0 {
		t.Errorf("rm -r / left %v in the file commands' store", left)
	}
	if got := lsPaths(t, room, "-r"); !slices.Equal(got, []string{"notes/ -", "notes/theirs.txt 6"}) {
		t.Errorf("the room after the file commands' rm -r /: %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(wd, rooms, "r1", "notes", "theirs.txt")); err != nil || string(b) != "theirs" {
		t.Errorf("the room's file on disk: %q, %v", b, err)
	}
	if logs := srv.stderr.String(); strings.Contains(logs, "level=WARN") {
		t.Errorf("serve warned on the defaults:\n%s", logs)
	}
}

func TestServeOnItsDefaultRefusesTheFormerDefaultsRoomsUntilTheyAreMoved(t *testing.T) {
	wd := t.TempDir()
	if err := os.Mkdir(filepath.Join(wd, "roomstore-data"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A room as serve's former default left it.
	putString(t, procOptions{dir: wd}, "kept", "a.txt", "--store", "file://./roomstore-data/r1")

	p := startWith(t, procOptions{secret: testSecret, dir: wd}, "serve", "--listen", "127.0.0.1:0")
	code := p.wait(t, runTimeout)
	line := failedWithOneLine(t, result{code, p.stdout.String(), p.stderr.String()})
	want := "./roomstore-data holds the rooms of serve's former default store, file://./roomstore-data/{room}, which lies inside the file commands' default store; serve's default is now file://./roomstore-rooms/{room}: move them (mv ./roomstore-data ./roomstore-rooms) or pass --store 'file://./roomstore-data/{room}'"
	if line != want {
		t.Errorf("serve on its default beside the former default's rooms said\n%q\nwant\n%q", line, want)
	}
	if _, err := os.Stat(filepath.Join(wd, "roomstore-rooms")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("serve created its default directory before refusing (%v)", err)
	}

	// Kept where they were: served, with a warning of the overlap.
	srv, addr := startServeWith(t, procOptions{secret: testSecret, dir: wd}, "--store", formerRoomsStore)
	if got := mustRun(t, roomOf(t, addr, "r1"), "get", "a.txt"); got != "kept" {
		t.Errorf("the room on the former default: %q", got)
	}
	const warning = `level=WARN msg="the rooms' directory overlaps the file commands' default store: a file command run here without --store works on the rooms (rm -r / removes them)" dir=./roomstore-data store=file://./roomstore-data`
	if !strings.Contains(srv.stderr.String(), warning+"\n") {
		t.Errorf("serve on the former default did not warn %q:\n%s", warning, srv.stderr.String())
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := srv.wait(t, runTimeout); code != 0 {
		t.Fatalf("serve after SIGTERM: exit %d", code)
	}

	// Moved: served on the default, without a warning.
	if err := os.Rename(filepath.Join(wd, "roomstore-data"), filepath.Join(wd, "roomstore-rooms")); err != nil {
		t.Fatal(err)
	}
	srv, addr = startServeWith(t, procOptions{secret: testSecret, dir: wd})
	if got := mustRun(t, roomOf(t, addr, "r1"), "get", "a.txt"); got != "kept" {
		t.Errorf("the room moved to the default: %q", got)
	}
	if logs := srv.stderr.String(); strings.Contains(logs, "level=WARN") {
		t.Errorf("serve warned on the moved rooms:\n%s", logs)
	}
}

func TestFileCommandsWarnOfARunningServeWhoseRoomsTheirStoreOverlaps(t *testing.T) {
	top := t.TempDir()
	rooms := filepath.Join(top, "rooms")
	store := "file://" + rooms + "/{room}"
	srv, addr := startServe(t, testSecret, "--store", store)
	putString(t, roomOf(t, addr, "r1"), "x", "a.txt")
	other, _ := diskStore(t)
	putString(t, other, "x", "a.txt")

	real, err := filepath.EvalSymlinks(rooms) // as the warning names it
	if err != nil {
		t.Fatal(err)
	}
	lsOn := func(dir string) string {
		t.Helper()
		r := runCmd(t, procOptions{}, "--store", "file://"+dir, "ls")
		if r.code != 0 {
			t.Fatalf("ls --store file://%s: exit %d, %q", dir, r.code, r.stderr)
		}
		return r.stderr
	}
	warns := func(pid int) {
		t.Helper()
		by := real + ", the rooms' directory of a running roomstore serve (pid " + strconv.Itoa(pid) + ")"
		const tail = ": what this command changes there changes those rooms\n"
		for _, c := range []struct{ what, dir, want string }{
			{"its parent", top, "holds " + by},
			{"the rooms' directory", rooms, "is " + strings.TrimPrefix(by, real+", ")},
			{"a room", filepath.Join(rooms, "r1"), "lies inside " + by},
		} {
			want := "roomstore: warning: --store file://" + c.dir + " " + c.want + tail
			if got := lsOn(c.dir); got != want {
				t.Errorf("ls on %s said\n%q\nwant\n%q", c.what, got, want)
			}
		}
	}
	warns(srv.cmd.Process.Pid)
	if got := lsOn(strings.TrimPrefix(other.env[storeEnv], "file://")); got != "" {
		t.Errorf("ls on an unrelated store said %q", got)
	}

	// A replica on the same rooms holds the mark with it: the first one
	// killed, the warning names the second.
	second, _ := startServe(t, testSecret, "--store", store)
	killed(t, srv)
	warns(second.cmd.Process.Pid)

	// Killed too: no server runs, and nothing warns, though the lock file
	// stays.
	killed(t, second)
	for _, dir := range []string{top, rooms, filepath.Join(rooms, "r1")} {
		if got := lsOn(dir); got != "" {
			t.Errorf("ls on %s after its server was killed said %q", dir, got)
		}
	}
	if _, err := os.Stat(filepath.Join(rooms, filepath.FromSlash(servedLock))); err != nil {
		t.Errorf("the lock file: %v", err)
	}
}

// The warning comes before a command acts, whatever the command: put into
// a new store inside a running server's rooms' directory warns too, and
// succeeds.
func TestPutIntoANewStoreInsideARunningServesRoomsWarnsAndWrites(t *testing.T) {
	rooms := filepath.Join(t.TempDir(), "rooms")
	srv, _ := startServe(t, testSecret, "--store", "file://"+rooms+"/{room}")
	dir := filepath.Join(rooms, "r9")
	res := runCmd(t, procOptions{stdin: strings.NewReader("x")}, "--store", "file://"+dir, "put", "-", "a.txt")
	want := "roomstore: warning: --store file://" + dir + " lies inside "
	if res.code != 0 || !strings.HasPrefix(res.stderr, want) || strings.Count(res.stderr, "\n") != 1 || !strings.Contains(res.stderr, "(pid "+strconv.Itoa(srv.cmd.Process.Pid)+")") {
		t.Errorf("put into a new store inside the rooms: exit %d, %q; want 0 and one line beginning %q naming the server's pid", res.code, res.stderr, want)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a.txt")); err != nil || string(b) != "x" {
		t.Errorf("the file put: %q, %v", b, err)
	}
}
