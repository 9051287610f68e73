package backend_disk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
)

// crashHistoryEnv, set to 1 in the crash child's environment, makes it
// commit with a history (crashHistoryChild).
const crashHistoryEnv = "ROOMSTORE_CRASH_HISTORY"

// crashHistoryKills is how many times the history's crash test kills its
// child, and crashHistory what the child's engine keeps.
const crashHistoryKills = 50

var crashHistory = roomstore.History{Versions: 5}

// crashHistoryChild commits, through an engine with a history and each
// change conditional on the version it read (IfMatch), overwrites of
// ow/0..3, appends to log, deletes of ow/*, and moves of ow/* onto mv/0..2
// (never moved away, so that no moved version's file comes back to its
// path), until it is killed. After each change it prints "kept <path>
// <etag>" for each version the change replaced.
func crashHistoryChild(dir string) {
	ctx := roomstore.WithParticipant(context.Background(), "crash-child")
	b, err := openDisk(os.Getenv("ROOMSTORE_CRASH_STORE"), dir, os.Getenv("ROOMSTORE_CRASH_FSYNC") == "1")
	if err != nil {
		panic(err)
	}
	e, err := roomstore.New(b, roomstore.WithHistory(crashHistory))
	if err != nil {
		panic(err)
	}
	etag := func(p string) string {
		en, err := e.Stat(ctx, p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return ""
		case err != nil:
			panic(err)
		}
		return en.ETag
	}
	kept := func(p, etag string) {
		if etag != "" {
			fmt.Printf("kept %s %s\n", p, etag) // one write: whole, or cut by the kill
		}
	}
	save := func(p string, overwrite bool, was string, parts ...[]byte) {
		opts := roomstore.OpenOptions{Overwrite: overwrite, IfMatch: was}
		if was == "" {
			opts.IfNoneMatch = "*"
		}
		h, err := e.Open(ctx, p, opts)
		if err != nil {
			panic(err)
		}
		for _, part := range parts {
			if err := e.Write(ctx, h, part); err != nil {
				panic(err)
			}
		}
		if err := e.Close(ctx, h); err != nil {
			panic(err)
		}
		kept(p, was)
	}
	next := 0
	if f, err := e.Download(ctx, "log"); err == nil {
		next = len(bytes.Split(bytes.TrimSuffix(f.Data, []byte{'\n'}), []byte{'\n'}))
	}
	r := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	fmt.Println("committing") // the parent kills only from here on
	for v := r.IntN(1 << 20); ; v++ {
		p := fmt.Sprintf("ow/%d", v%4)
		content := version(v)
		cut := r.IntN(len(content))
		save(p, true, etag(p), content[:cut], content[cut:])
		rec := record(next)
		cut = r.IntN(len(rec))
		save("log", false, etag("log"), rec[:cut], rec[cut:])
		next++
		if v%7 == 0 {
			p := fmt.Sprintf("ow/%d", (v+1)%4)
			if was := etag(p); was != "" {
				if err := e.Delete(ctx, p, roomstore.DeleteOptions{IfMatch: was}); err != nil {
					panic(err)
				}
				kept(p, was)
			}
		}
		if v%5 == 0 {
			src, dst := fmt.Sprintf("ow/%d", (v+2)%4), fmt.Sprintf("mv/%d", v%3)
			if was := etag(src); was != "" {
				over := etag(dst)
				if err := e.Move(ctx, src, dst, roomstore.MoveOptions{Overwrite: true, IfMatch: was}); err != nil {
					panic(err)
				}
				kept(src, was)
				kept(dst, over)
			}
		}
	}
}

// TestCrashesNeverLoseAKeptVersion kills, at random moments, a process
// that commits through an engine with a history, and checks after each
// kill that every file and every kept version is a whole version that was
// written, that every change the child saw succeed kept the version it
// replaced (the latest crashHistory.Versions-1 of each path: the engine
// trims the rest, and a change the kill cut may have kept one more
// unreported), and that a kept version with its path's current ETag (one
// kept for a change that did not happen) comes of the one change the
// kill interrupted, if any. Those are then forgotten, as the engine does
// after their grace.
func TestCrashesNeverLoseAKeptVersion(t *testing.T) {
	dir := t.TempDir()
	r := killMoments(t)
	reported, checked, pending := 0, 0, 0
	seen := map[string]backend.Version{}
	for kill := range crashHistoryKills {
		// Fsync off and on, on each kind of disk backend in turn.
		kind := diskKinds[kill/2%len(diskKinds)]
		lines := killChild(t, r, kill, dir, crashHistoryEnv+"=1", fmt.Sprintf("ROOMSTORE_CRASH_FSYNC=%d", kill%2), "ROOMSTORE_CRASH_STORE="+kind)
		checkCrashedStore(t, dir, kind, kill)
		c, p := checkCrashedHistory(t, dir, kind, kill, lines, seen)
		reported += len(lines)
		checked += c
		pending += p
	}
	t.Logf("%d crashes survived: %d kept versions checked whole, %d reported kept versions found, %d kept for an interrupted change and forgotten", crashHistoryKills, checked, reported, pending)
	if reported < crashHistoryKills {
		t.Fatalf("only %d kept versions reported across %d runs: the child barely ran", reported, crashHistoryKills)
	}
}

// checkCrashedHistory checks the store in dir after a kill, as
// TestCrashesNeverLoseAKeptVersion says, given the lines the child
// printed; it returns how many kept versions it read, and how many were
// kept for the change the kill interrupted. A version is read once, and
// recorded in seen (by path and id): after later kills it must be as it
// was.
func checkCrashedHistory(t *testing.T, dir, kind string, kill int, lines []string, seen map[string]backend.Version) (checked, pending int) {
	t.Helper()
	ctx := t.Context()
	b, err := openDisk(kind, dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range 3 {
		p := fmt.Sprintf("mv/%d", i)
		if data, err := readAll(b.Read(ctx, p, 0, -1)); err == nil {
			if err := checkVersion(data); err != nil {
				t.Fatalf("after kill %d: %s: %v", kill, p, err)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	keptETags := map[string]map[string]bool{}
	var interrupted []backend.Version
	for v, err := range b.Kept(ctx, "") {
		if err != nil {
			t.Fatalf("after kill %d: Kept: %v", kill, err)
		}
		if was, ok := seen[v.Path+"\x00"+v.ID]; ok {
			if was.ETag != v.ETag || was.Size != v.Size || !was.Replaced.Equal(v.Replaced) || was.Reason != v.Reason {
				t.Fatalf("after kill %d: version %s of %s changed from %+v to %+v", kill, v.ID, v.Path, was, v)
			}
		} else if err := checkKeptVersion(ctx, b, v); err != nil {
			t.Fatalf("after kill %d: %v", kill, err)
		} else {
			checked++
		}
		if cur, err := b.Stat(ctx, v.Path); err == nil && cur.ETag == v.ETag {
			interrupted = append(interrupted, v)
			continue
		}
		seen[v.Path+"\x00"+v.ID] = v
		if keptETags[v.Path] == nil {
			keptETags[v.Path] = map[string]bool{}
		}
		keptETags[v.Path][v.ETag] = true
	}
	// One change was cut at most: one version kept for it, or two for a
	// move (its source's and its destination's).
	switch reasons := versionReasons(interrupted); {
	case len(interrupted) <= 1, reasons == "moved overwritten":
	default:
		t.Fatalf("after kill %d: %d versions with their path's current ETag (%s): more than one change was cut", kill, len(interrupted), reasons)
	}
	for _, v := range interrupted {
		if err := b.Forget(ctx, v.Path, v.ID); err != nil {
			t.Fatal(err)
		}
	}
	byPath := map[string][]string{}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 || f[0] != "kept" {
			t.Fatalf("after kill %d: the child printed %q", kill, l)
		}
		byPath[f[1]] = append(byPath[f[1]], f[2])
	}
	for p, etags := range byPath {
		for _, etag := range etags[max(0, len(etags)-(crashHistory.Versions-1)):] {
			if !keptETags[p][etag] {
				t.Fatalf("after kill %d: the version %s of %s that a reported change replaced is not kept (kept: %v)", kill, etag, p, keptETags[p])
			}
		}
	}
	return checked, len(interrupted)
}

// checkKeptVersion reads the kept version v of b whole and checks it is
// one the crash child wrote.
func checkKeptVersion(ctx context.Context, b backend.Backend, v backend.Version) error {
	data, err := readAll(b.ReadVersion(ctx, v.Path, v.ID, 0, -1))
	if err != nil {
		return fmt.Errorf("version %s of %s: %w", v.ID, v.Path, err)
	}
	if int64(len(data)) != v.Size {
		return fmt.Errorf("version %s of %s reads %d bytes of %d", v.ID, v.Path, len(data), v.Size)
	}
	if v.Path == "log" {
		err = checkRecords(data)
	} else {
		err = checkVersion(data)
	}
	if err != nil {
		return fmt.Errorf("version %s of %s (%s): %w", v.ID, v.Path, v.Reason, err)
	}
	return nil
}

// versionReasons returns the reasons of vs, sorted, space-separated.
func versionReasons(vs []backend.Version) string {
	var rs []string
	for _, v := range vs {
		rs = append(rs, v.Reason)
	}
	if len(rs) == 2 && rs[0] > rs[1] {
		rs[0], rs[1] = rs[1], rs[0]
	}
	return strings.Join(rs, " ")
}

// checkRecords checks that data holds records 0..n-1, each whole.
func checkRecords(data []byte) error {
	lines := bytes.SplitAfter(data, []byte{'\n'})
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	for i, line := range lines {
		if !bytes.Equal(line, record(i)) {
			return fmt.Errorf("line %d is not record %d whole: %q", i, i, line)
		}
	}
	return nil
}

// readAll reads what an opened reader holds and closes it.
func readAll[D any](rc io.ReadCloser, _ D, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
