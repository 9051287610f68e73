package backend_disk_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/roompath"
)

const crashChildEnv = "ROOMSTORE_CRASH_CHILD_DIR"

// crashSeedEnv, when set, gives the seed that picks the moments of the
// kills, so that a failure the test logs can be replayed:
// ROOMSTORE_CRASH_SEED=<seed> go test -run TestCrashesNeverTearFiles (or
// TestCrashesNeverLoseAKeptVersion).
const crashSeedEnv = "ROOMSTORE_CRASH_SEED"

// crashKills is how many times the crash test kills its child.
const crashKills = 60

// crashChild commits overwrites and appends to the store in dir until it
// is killed. Every version it writes can be checked on its own, so a torn
// file shows.
func crashChild(dir string) {
	if os.Getenv(crashHistoryEnv) == "1" {
		crashHistoryChild(dir)
		return
	}
	if os.Getenv("ROOMSTORE_CRASH_RESUMABLE") == "1" {
		crashUploadChild(dir)
		return
	}
	ctx := context.Background()
	fsync := os.Getenv("ROOMSTORE_CRASH_FSYNC") == "1"
	b, err := openDisk(os.Getenv("ROOMSTORE_CRASH_STORE"), dir, fsync)
	if err != nil {
		panic(err)
	}
	e, err := roomstore.New(b)
	if err != nil {
		panic(err)
	}
	next := 0
	if f, err := e.Download(ctx, "log"); err == nil {
		next = len(bytes.Split(bytes.TrimSuffix(f.Data, []byte{'\n'}), []byte{'\n'}))
	}
	r := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	fmt.Println("committing") // the parent kills only from here on
	for v := r.IntN(1 << 20); ; v++ {
		// An overwrite of one of four files, in several writes.
		h, err := e.Open(ctx, fmt.Sprintf("ow/%d", v%4), roomstore.OpenOptions{Overwrite: true})
		if err != nil {
			panic(err)
		}
		content := version(v)
		for len(content) > 0 {
			n := min(len(content), 1+r.IntN(64<<10))
			if err := e.Write(ctx, h, content[:n]); err != nil {
				panic(err)
			}
			content = content[n:]
		}
		if err := e.Close(ctx, h); err != nil {
			panic(err)
		}
		// An append of one whole record, sometimes in two writes.
		h, err = e.Open(ctx, "log", roomstore.OpenOptions{})
		if err != nil {
			panic(err)
		}
		rec := record(next)
		cut := r.IntN(len(rec))
		if err := e.Write(ctx, h, rec[:cut]); err != nil {
			panic(err)
		}
		if err := e.Write(ctx, h, rec[cut:]); err != nil {
			panic(err)
		}
		if err := e.Close(ctx, h); err != nil {
			panic(err)
		}
		next++
		if v%7 == 0 { // and now and then a delete, so folders come and go
			if err := e.Delete(ctx, fmt.Sprintf("ow/%d", (v+1)%4)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				panic(err)
			}
		}
	}
}

// version is the self-describing content of overwrite number v.
func version(v int) []byte {
	size := 1 + (v*7919)%(200<<10)
	body := bytes.Repeat([]byte{byte('a' + v%26)}, size)
	return fmt.Appendf(nil, "v=%d;len=%d;%s;end", v, size, body)
}

func checkVersion(b []byte) error {
	var v, size int
	if _, err := fmt.Sscanf(string(b), "v=%d;len=%d;", &v, &size); err != nil {
		return fmt.Errorf("no header in %d bytes", len(b))
	}
	if !bytes.Equal(b, version(v)) {
		return fmt.Errorf("version %d torn: %d bytes", v, len(b))
	}
	return nil
}

func record(n int) []byte {
	return fmt.Appendf(nil, "record %d %s\n", n, strings.Repeat(strconv.Itoa(n%10), 100+n%300))
}

// TestCrashesNeverTearFiles kills a writing process at random moments and
// checks after each kill that every file holds a whole version, the log
// holds whole records 0..n each once, and no temporary shows or lingers.
func TestCrashesNeverTearFiles(t *testing.T) {
	dir := t.TempDir()
	r := killMoments(t)
	records, versions := 0, 0
	for kill := range crashKills {
		// Fsync off and on, on each kind of disk backend in turn.
		kind := diskKinds[kill/2%len(diskKinds)]
		killChild(t, r, kill, dir, fmt.Sprintf("ROOMSTORE_CRASH_FSYNC=%d", kill%2), "ROOMSTORE_CRASH_STORE="+kind)
		var v int
		records, v = checkCrashedStore(t, dir, kind, kill)
		versions += v
	}
	t.Logf("%d crashes survived, 0 torn: %d appended records and %d overwritten files checked whole", crashKills, records, versions)
	if records < crashKills {
		t.Fatalf("only %d records committed across %d runs: the child barely ran", records, crashKills)
	}
}

// killMoments returns the source of the moments of the kills, seeded
// from crashSeedEnv or the clock, and logs the seed.
func killMoments(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(crashSeedEnv); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", crashSeedEnv, v, err)
		}
	}
	t.Logf("kill moments from seed %d (replay with %s=%d and -run %s)", seed, crashSeedEnv, seed, t.Name())
	return rand.New(rand.NewPCG(1, seed))
}

// killChild runs the crash child on the store in dir, with env added to
// its environment, kills it at a random moment (drawn from r) of its
// commits, and returns the whole lines it printed after "committing".
func killChild(t *testing.T, r *rand.Rand, kill int, dir string, env ...string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), crashChildEnv+"="+dir), env...)
	var out bytes.Buffer
	cmd.Stderr = &out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// The child dies with this process, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan string, 1)
	printed := make(chan []string, 1)
	go func() {
		br := bufio.NewReader(stdout)
		line, _ := br.ReadString('\n')
		started <- line
		var lines []string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				break // the end, and a line the kill cut
			}
			lines = append(lines, strings.TrimSuffix(l, "\n"))
		}
		printed <- lines
	}()
	var line string
	select {
	case line = <-started:
	case <-time.After(30 * time.Second):
		line = "(nothing within 30s)"
	}
	if line != "committing\n" {
		cmd.Process.Kill()
		<-printed // the kill closes the pipe
		cmd.Wait()
		t.Fatalf("kill %d: child did not start: %q\n%s", kill, line, out.String())
	}
	time.Sleep(time.Duration(r.IntN(100)) * time.Millisecond) // a random moment of the child's commits
	_ = cmd.Process.Signal(syscall.SIGKILL)
	var lines []string
	select {
	case lines = <-printed:
	case <-time.After(30 * time.Second):
		t.Fatalf("kill %d: the child's output did not end within 30s of the kill", kill)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("kill %d: child ended with %v, not by SIGKILL:\n%s", kill, err, out.String())
	}
	return lines
}

func checkCrashedStore(t *testing.T, dir, kind string, kill int) (records, versions int) {
	t.Helper()
	ctx := t.Context()
	b, err := openDisk(kind, dir, true) // sweeps the dead child's temporaries
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	e, err := roomstore.New(b)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	if f, err := e.Download(ctx, "log"); err == nil {
		lines := bytes.SplitAfter(f.Data, []byte{'\n'})
		if len(lines[len(lines)-1]) == 0 {
			lines = lines[:len(lines)-1]
		}
		for i, line := range lines {
			if !bytes.Equal(line, record(i)) {
				t.Fatalf("after kill %d: log line %d is %q, want record %d whole", kill, i, line, i)
			}
		}
		records = len(lines)
	} else if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	entries, err := e.List(ctx, "ow")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, x := range entries {
		f, err := e.Download(ctx, x.Path)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkVersion(f.Data); err != nil {
			t.Fatalf("after kill %d: %s: %v", kill, x.Path, err)
		}
		versions++
	}
	root, err := e.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range root {
		if strings.HasPrefix(x.Name, roompath.ReservedPrefix) {
			t.Fatalf("after kill %d: List shows %q", kill, x.Name)
		}
	}
	tmp, err := os.ReadDir(filepath.Join(dir, roompath.ReservedPrefix, "tmp"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after kill %d: %v", kill, err)
	}
	if len(tmp) != 0 {
		t.Fatalf("after kill %d: %d temporaries of the dead child survived the sweep", kill, len(tmp))
	}
	return records, versions
}

// TestSweepLeavesLiveTemporariesAlone checks that opening a second backend
// on a directory removes the temporaries of owners that are gone and
// nothing else: not those of a write in progress, of another live owner,
// or of another host.
func TestSweepLeavesLiveTemporariesAlone(t *testing.T) {
	onEachDisk(t, testSweepLeavesLiveTemporariesAlone)
}

func testSweepLeavesLiveTemporariesAlone(t *testing.T, kind string) {
	dir := t.TempDir()
	b := diskBackend(t, kind, dir)
	w, err := b.Create(t.Context(), "f", backend.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	staged := bytes.Repeat([]byte("s"), 100<<10) // past what stays in memory
	if err := w.Write(t.Context(), staged); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	owner := func(n int) string { return fmt.Sprintf("%s-%d-%016x", hex.EncodeToString([]byte(host)), n, n) }
	tmpDir := filepath.Join(dir, roompath.ReservedPrefix, "tmp")
	liveDir := filepath.Join(dir, roompath.ReservedPrefix, "live")
	put := func(p string) {
		t.Helper()
		if err := os.WriteFile(p, []byte("stale"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Owner 1 is gone without a trace; owner 2 left its liveness file
	// unlocked (its process died); owner 3 is alive (this test holds its
	// lock, as its process would); the last temporary is another host's.
	noLive := filepath.Join(tmpDir, owner(1)+"-aa")
	unlocked := filepath.Join(tmpDir, owner(2)+"-bb")
	put(filepath.Join(liveDir, owner(2)))
	held := filepath.Join(tmpDir, owner(3)+"-cc")
	put(filepath.Join(liveDir, owner(3)))
	lock, err := os.Open(filepath.Join(liveDir, owner(3)))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(tmpDir, "6f74686572-1-0000000000000001-dd")
	for _, p := range []string{noLive, unlocked, held, foreign} {
		put(p)
	}
	other := diskBackend(t, kind, dir) // sweeps on creation
	for _, p := range []string{noLive, unlocked, filepath.Join(liveDir, owner(2))} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s of a gone owner survived NewAfero: %v", filepath.Base(p), err)
		}
	}
	for _, p := range []string{held, foreign, filepath.Join(liveDir, owner(3))} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s was removed: %v", filepath.Base(p), err)
		}
	}
	put(noLive)
	if n, err := other.Sweep(t.Context()); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 (the gone owner's)", n, err)
	}
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("Commit after another backend swept: %v", err)
	}
	if info.Size != int64(len(staged)) {
		t.Fatalf("committed %d bytes, want %d", info.Size, len(staged))
	}
}
