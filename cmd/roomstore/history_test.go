package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_mem"
)

// putText runs put of content to p, with args, and fails the test unless
// it succeeds.
func putText(t *testing.T, o procOptions, content, p string, args ...string) {
	t.Helper()
	o.stdin = strings.NewReader(content)
	mustRun(t, o, append([]string{"put", "-", p}, args...)...)
}

// etagOf is the ETag stat --json reports of the file at p.
func etagOf(t *testing.T, o procOptions, p string) string {
	t.Helper()
	var e roomstore.Entry
	if err := json.Unmarshal([]byte(mustRun(t, o, "stat", "--json", p)), &e); err != nil {
		t.Fatal(err)
	}
	if e.ETag == "" {
		t.Fatalf("stat %s reports no ETag", p)
	}
	return e.ETag
}

// content is the file at p, as get prints it.
func content(t *testing.T, o procOptions, p string, args ...string) string {
	t.Helper()
	return mustRun(t, o, append([]string{"get", p}, args...)...)
}

// refusedByPrecondition fails the test unless r is a failed precondition:
// exit status 3, nothing on stdout, and the one line want on stderr.
func refusedByPrecondition(t *testing.T, r result, want string) {
	t.Helper()
	if r.code != exitPrecondition || r.stdout != "" || r.stderr != "roomstore: "+want+"\n" {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d and the line %q", r.code, r.stdout, r.stderr, exitPrecondition, want)
	}
}

func TestPutRmAndMvChangeOnlyTheVersionTheirPreconditionNames(t *testing.T) {
	onBothStores(t, func(t *testing.T, o procOptions) {
		putText(t, o, "one", "a.txt")
		e1 := etagOf(t, o, "a.txt")
		// A room's listing carries no ETags ("-"); its stat does.
		listed := e1
		if !strings.HasPrefix(o.env[storeEnv], "file:") {
			listed = "-"
		}
		if ls, want := mustRun(t, o, "ls", "-l"), fmt.Sprintf("%12d  %-20s  %s  a.txt\n", 3, lsTime(t, o, "a.txt"), listed); ls != want {
			t.Errorf("ls -l printed %q, want %q", ls, want)
		}

		putText(t, o, "two", "a.txt", "--if-match", e1)
		e2 := etagOf(t, o, "a.txt")
		if e2 == e1 || content(t, o, "a.txt") != "two" {
			t.Fatalf("put --if-match of the current version: ETag %s (was %s), content %q", e2, e1, content(t, o, "a.txt"))
		}

		o3 := o
		o3.stdin = strings.NewReader("three")
		refusedByPrecondition(t, runCmd(t, o3, "put", "-", "a.txt", "--if-match", e1),
			"put a.txt: changed since "+e1+", now "+e2+" (precondition failed)")
		o3.stdin = strings.NewReader("three")
		refusedByPrecondition(t, runCmd(t, o3, "put", "-", "a.txt", "--if-none-match", "*"),
			"put a.txt: a file is there (precondition failed: --if-none-match *)")
		o3.stdin = strings.NewReader("three")
		refusedByPrecondition(t, runCmd(t, o3, "put", "-", "a.txt", "--if-none-match", e2),
			"put a.txt: still "+e2+" (precondition failed: --if-none-match)")
		o3.stdin = strings.NewReader("three")
		refusedByPrecondition(t, runCmd(t, o3, "put", "-", "new.txt", "--if-match", e2),
			"put new.txt: no file there, not "+e2+" (precondition failed)")
		refusedByPrecondition(t, runCmd(t, o, "rm", "a.txt", "--if-match", e1),
			"rm a.txt: changed since "+e1+", now "+e2+" (precondition failed)")
		refusedByPrecondition(t, runCmd(t, o, "rm", "-r", "a.txt", "--if-match", e1),
			"rm a.txt: changed since "+e1+", now "+e2+" (precondition failed)")
		refusedByPrecondition(t, runCmd(t, o, "mv", "a.txt", "b.txt", "--if-match", e1),
			"mv a.txt b.txt: changed since "+e1+", now "+e2+" (precondition failed)")
		if got := content(t, o, "a.txt"); got != "two" || etagOf(t, o, "a.txt") != e2 {
			t.Fatalf("after the refusals a.txt holds %q, want two, unchanged", got)
		}
		if paths := lsPaths(t, o, "-r"); !slices.Equal(paths, []string{"a.txt 3"}) {
			t.Fatalf("after the refusals the store holds %v, want a.txt alone", paths)
		}

		putText(t, o, "new", "new.txt", "--if-none-match", "*")
		putText(t, o, "newer", "new.txt", "--if-none-match", e2) // not that version: it holds
		if got := content(t, o, "new.txt"); got != "newer" {
			t.Errorf("new.txt holds %q after put --if-none-match, want newer", got)
		}
		mustRun(t, o, "mv", "a.txt", "b.txt", "--if-match", e2)
		e3 := etagOf(t, o, "b.txt")
		// rm of a missing file fails as without --if-match (as the
		// Engine's Delete does: fs.ErrNotExist).
		for _, args := range [][]string{{"rm", "a.txt"}, {"rm", "-r", "a.txt"}} {
			if line := failedWithOneLine(t, runCmd(t, o, append(args, "--if-match", e2)...)); line != "rm a.txt: file does not exist" {
				t.Errorf("%q --if-match of a missing file said %q", args, line)
			}
		}
		mustRun(t, o, "rm", "b.txt", "--if-match", e3)
		if paths := lsPaths(t, o, "-r"); !slices.Equal(paths, []string{"new.txt 5"}) {
			t.Errorf("the store holds %v, want new.txt alone", paths)
		}
	})
}

// lsTime is the time column ls prints for the file at p.
func lsTime(t *testing.T, o procOptions, p string) string {
	t.Helper()
	var e roomstore.Entry
	if err := json.Unmarshal([]byte(mustRun(t, o, "stat", "--json", p)), &e); err != nil {
		t.Fatal(err)
	}
	return e.ModTime.UTC().Format(time.RFC3339)
}

// versionsOf is what versions --json lists of p.
func versionsOf(t *testing.T, o procOptions, args ...string) []versionJSON {
	t.Helper()
	var out []versionJSON
	dec := json.NewDecoder(strings.NewReader(mustRun(t, o, append(args, "--json")...)))
	for dec.More() {
		var v versionJSON
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// reasons are the reasons and sizes of vs, in order.
func reasons(vs []versionJSON) []string {
	var out []string
	for _, v := range vs {
		out = append(out, fmt.Sprintf("%s %d", v.Reason, v.Size))
	}
	return out
}

func TestVersionsListRestoreBringsBackAndGetReadsThem(t *testing.T) {
	onBothStores(t, func(t *testing.T, o procOptions) {
		putText(t, o, "1", "a.txt")
		putText(t, o, "22", "a.txt", "--overwrite")
		putText(t, o, "333", "a.txt", "--overwrite")

		vs := versionsOf(t, o, "versions", "a.txt")
		if got := reasons(vs); !slices.Equal(got, []string{"overwritten 2", "overwritten 1"}) {
			t.Fatalf("versions: %v, want the two versions replaced, newest first", got)
		}
		for _, v := range vs {
			if v.Path != "a.txt" || v.ID == "" || v.ETag == "" || v.Participant == "" || v.Replaced.Before(v.Modified) {
				t.Errorf("versions --json: %+v", v)
			}
		}
		if strings.HasPrefix(o.env[storeEnv], "file:") && vs[0].Participant != participant() {
			t.Errorf("the command's changes are %q's, want %q", vs[0].Participant, participant())
		}
		line := regexp.MustCompile(`^(\S+) +(\d+)  (\S+)  (\S+) +(\S+)$`)
		lines := strings.Split(strings.TrimSuffix(mustRun(t, o, "versions", "a.txt"), "\n"), "\n")
		for i, l := range lines {
			m := line.FindStringSubmatch(l)
			if m == nil || i >= len(vs) || m[1] != vs[i].ID || m[2] != fmt.Sprint(vs[i].Size) || m[3] != vs[i].Replaced.Format(time.RFC3339) || m[4] != "overwritten" || m[5] != shown(vs[i].Participant) {
				t.Errorf("versions line %d: %q, want %+v", i, l, vs)
			}
		}
		if len(lines) != 2 {
			t.Errorf("versions printed %d lines, want 2", len(lines))
		}

		if got := content(t, o, "a.txt", "--version", vs[1].ID); got != "1" {
			t.Errorf("get --version of the first version: %q", got)
		}
		if got := content(t, o, "a.txt"); got != "333" {
			t.Errorf("get --version changed the file: %q", got)
		}

		// Without VERSION: the newest past version.
		want := fmt.Sprintf("restored a.txt from version %s (2 bytes, overwritten %s by %s)\n", vs[0].ID, vs[0].Replaced.Format(time.RFC3339), shown(vs[0].Participant))
		if out := mustRun(t, o, "restore", "a.txt"); out != want {
			t.Errorf("restore printed %q, want %q", out, want)
		}
		if got := content(t, o, "a.txt"); got != "22" {
			t.Errorf("after restore a.txt holds %q, want 22", got)
		}
		// The restore kept what it replaced: undone by another.
		if got := reasons(versionsOf(t, o, "versions", "a.txt")); !slices.Equal(got, []string{"overwritten 3", "overwritten 2", "overwritten 1"}) {
			t.Errorf("versions after a restore: %v", got)
		}
		mustRun(t, o, "restore", "a.txt", vs[1].ID)
		if got := content(t, o, "a.txt"); got != "1" {
			t.Errorf("after restore of the first version a.txt holds %q, want 1", got)
		}

		mustRun(t, o, "rm", "a.txt")
		gone := versionsOf(t, o, "versions", "a.txt")
		if len(gone) == 0 || gone[0].Reason != "deleted" || gone[0].Size != 1 {
			t.Fatalf("versions of the deleted file: %v", reasons(gone))
		}
		if out := mustRun(t, o, "restore", "a.txt"); !strings.HasPrefix(out, "restored a.txt from version "+gone[0].ID+" (1 bytes, deleted ") {
			t.Errorf("restore of the deleted file printed %q", out)
		}
		if got := content(t, o, "a.txt"); got != "1" {
			t.Errorf("the restored file holds %q, want 1", got)
		}

		putText(t, o, "x", "d/x.txt")
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"restore", "a.txt", "no-such-version"}, "restore a.txt: no past version no-such-version (roomstore versions lists them)"},
			{[]string{"restore", "nothing.txt"}, "restore nothing.txt: no file and no past version there (roomstore deleted lists what restore can bring back)"},
			{[]string{"versions", "nothing.txt"}, "versions nothing.txt: no file and no past version there (roomstore deleted lists what restore can bring back)"},
			{[]string{"restore", "d"}, "restore d: is a folder (restore -r restores the files deleted beneath it)"},
			{[]string{"restore", "d/x.txt"}, "restore d/x.txt: no past version kept"},
			{[]string{"get", "a.txt", "--version", "no-such-version"}, "get a.txt: no past version no-such-version (roomstore versions lists them)"},
		} {
			if line := failedWithOneLine(t, runCmd(t, o, c.args...)); line != c.want {
				t.Errorf("%q said %q\n    want %q", c.args, line, c.want)
			}
		}
		if out := mustRun(t, o, "versions", "d/x.txt"); out != "" {
			t.Errorf("versions of a file never replaced printed %q", out)
		}
	})
}

func TestRestoreRecursiveBringsBackADeletedFolder(t *testing.T) {
	onBothStores(t, func(t *testing.T, o procOptions) {
		files := map[string]string{"d/x.txt": "x", "d/e/y.txt": "yy", "d/e/f/z.txt": "zzz", "keep.txt": "k"}
		for p, c := range files {
			putText(t, o, c, p)
		}
		putText(t, o, "yy2", "d/e/y.txt", "--overwrite") // its newest version is the one deleted
		files["d/e/y.txt"] = "yy2"
		mustRun(t, o, "rm", "-r", "d")
		if paths := lsPaths(t, o, "-r"); !slices.Equal(paths, []string{"keep.txt 1"}) {
			t.Fatalf("after rm -r: %v", paths)
		}

		gone := versionsOf(t, o, "deleted", "d")
		var listed []string
		for _, v := range gone {
			listed = append(listed, fmt.Sprintf("%s %s %d", v.Path, v.Reason, v.Size))
		}
		if want := []string{"d/e/f/z.txt deleted 3", "d/e/y.txt deleted 3", "d/x.txt deleted 1"}; !slices.Equal(listed, want) {
			t.Fatalf("deleted d: %v, want %v", listed, want)
		}
		if all := versionsOf(t, o, "deleted"); len(all) != len(gone) {
			t.Errorf("deleted of the whole store lists %d files, want %d", len(all), len(gone))
		}
		if out := mustRun(t, o, "deleted", "d"); !strings.HasSuffix(out, "  d/x.txt\n") || strings.Count(out, "\n") != 3 || !strings.Contains(out, gone[0].ID+"  ") {
			t.Errorf("deleted printed %q", out)
		}

		want := "restored d/e/f/z.txt (3 bytes)\nrestored d/e/y.txt (3 bytes)\nrestored d/x.txt (1 bytes)\n"
		if out := mustRun(t, o, "restore", "-r", "d"); out != want {
			t.Errorf("restore -r printed %q, want %q", out, want)
		}
		for p, c := range files {
			if got := content(t, o, p); got != c {
				t.Errorf("%s holds %q, want %q", p, got, c)
			}
		}
		if out := mustRun(t, o, "deleted"); out != "" {
			t.Errorf("deleted after restore -r printed %q", out)
		}
		if out := mustRun(t, o, "restore", "-r", "/"); out != "" {
			t.Errorf("restore -r of a store with nothing deleted printed %q", out)
		}
	})
}

func TestSweepExpiresThePastVersionsBeyondItsRetention(t *testing.T) {
	o, _ := diskStore(t)
	for _, c := range []string{"1", "22", "333"} {
		putText(t, o, c, "a.txt", "--overwrite")
	}
	putText(t, o, "b", "b.txt")
	mustRun(t, o, "rm", "b.txt")
	if out := mustRun(t, o, "usage"); out != "/: 3 bytes in 1 files, 4 bytes in past versions\n" {
		t.Errorf("usage printed %q", out)
	}
	if out := mustRun(t, o, "sweep"); out != "0 stale temporaries removed\n0 past versions expired\n" {
		t.Errorf("sweep of a young store printed %q", out)
	}
	if got := reasons(versionsOf(t, o, "versions", "a.txt")); !slices.Equal(got, []string{"overwritten 2", "overwritten 1"}) {
		t.Fatalf("versions after sweep: %v", got)
	}
	if out := mustRun(t, o, "sweep", "--history-versions", "1"); out != "0 stale temporaries removed\n1 past version expired\n" {
		t.Errorf("sweep --history-versions 1 printed %q", out)
	}
	if got := reasons(versionsOf(t, o, "versions", "a.txt")); !slices.Equal(got, []string{"overwritten 2"}) {
		t.Errorf("versions after sweep --history-versions 1: %v, want the newest alone", got)
	}
	if out := mustRun(t, o, "sweep", "--history-versions", "0"); out != "0 stale temporaries removed\n2 past versions expired\n" {
		t.Errorf("sweep --history-versions 0 printed %q", out)
	}
	if out := mustRun(t, o, "deleted"); out != "" {
		t.Errorf("deleted after every version expired: %q", out)
	}
	if out := mustRun(t, o, "usage", "--json"); out != `{"path":"/","bytes":3,"files":1,"kept":0}`+"\n" {
		t.Errorf("usage --json after every version expired: %q", out)
	}
	if line := failedWithOneLine(t, runCmd(t, o, "restore", "b.txt")); line != "restore b.txt: no file and no past version there (roomstore deleted lists what restore can bring back)" {
		t.Errorf("restore of an expired file said %q", line)
	}

	if out := mustRun(t, procOptions{env: map[string]string{storeEnv: "mem://"}}, "sweep"); out != "0 past versions expired\n" {
		t.Errorf("sweep of a memory store printed %q", out)
	}
}

// TestSweepExpiresByAge runs sweep's expiry on a store whose versions a
// clock a month ahead finds old, in-process, since a command cannot wait
// a month.
func TestSweepExpiresByAge(t *testing.T) {
	ctx := t.Context()
	b := backend_mem.New()
	defer b.Close()
	e, err := roomstore.New(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"1", "22", "333"} {
		if _, err := e.Upload(ctx, "a.txt", strings.NewReader(c), roomstore.OpenOptions{Overwrite: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	keep := roomstore.WithHistory(roomstore.History{Versions: 10, MaxAge: 30 * 24 * time.Hour})
	var out bytes.Buffer
	if err := expire(ctx, b, &out, keep); err != nil || out.String() != "0 past versions expired\n" {
		t.Fatalf("expire now: %v, %q", err, out.String())
	}
	out.Reset()
	later := roomstore.WithHistoryClock(func() time.Time { return time.Now().Add(31 * 24 * time.Hour) })
	if err := expire(ctx, b, &out, keep, later); err != nil || out.String() != "2 past versions expired\n" {
		t.Fatalf("expire a month later: %v, %q", err, out.String())
	}
	n := 0
	for _, err := range b.Kept(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 0 {
		t.Errorf("%d versions kept after they expired", n)
	}
}

func TestServeKeepsWhatItsHistoryFlagsSay(t *testing.T) {
	base := t.TempDir()
	_, addr := startServe(t, testSecret, "--store", "file://"+base+"/{room}", "--history-versions", "0")
	o := procOptions{env: map[string]string{storeEnv: "ws://" + addr + "/rooms/r1", tokenEnv: mustToken(t, testSecret, "r1")}}
	putText(t, o, "1", "a.txt")
	putText(t, o, "22", "a.txt", "--overwrite")
	if out := mustRun(t, o, "versions", "a.txt"); out != "" {
		t.Errorf("a room served with --history-versions 0 lists versions: %q", out)
	}
	mustRun(t, o, "rm", "a.txt")
	if line := failedWithOneLine(t, runCmd(t, o, "restore", "a.txt")); line != "restore a.txt: no file and no past version there (roomstore deleted lists what restore can bring back)" {
		t.Errorf("restore in a room without history said %q", line)
	}
	if out := mustRun(t, o, "deleted"); out != "" {
		t.Errorf("deleted in a room without history: %q", out)
	}
	// Nothing is kept on disk either.
	var kept []string
	err := filepath.WalkDir(filepath.Join(base, "r1", ".roomstore"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(p, "versions") {
			kept = append(kept, p)
		}
		return err
	})
	if err != nil || len(kept) != 0 {
		t.Errorf("the room's store keeps %v (%v), want nothing", kept, err)
	}

	_, addr = startServe(t, testSecret, "--store", "file://"+base+"/{room}", "--history-versions", "2", "--history-age", "1h")
	o.env[storeEnv] = "ws://" + addr + "/rooms/r2"
	o.env[tokenEnv] = mustToken(t, testSecret, "r2")
	for _, c := range []string{"1", "22", "333", "4444"} {
		putText(t, o, c, "a.txt", "--overwrite")
	}
	if got := reasons(versionsOf(t, o, "versions", "a.txt")); !slices.Equal(got, []string{"overwritten 3", "overwritten 2"}) {
		t.Errorf("a room served with --history-versions 2 keeps %v", got)
	}

	for _, args := range [][]string{{"--history-versions", "-1"}, {"--history-age", "-1h"}} {
		p := start(t, testSecret, append([]string{"serve", "--listen", "127.0.0.1:0", "--store", "mem://"}, args...)...)
		if code := p.wait(t, 20*time.Second); code != 1 || p.stderr.String() != "roomstore: --history-versions and --history-age must not be negative (0 keeps no past versions, or keeps them without an age limit)\n" {
			t.Errorf("serve %v: exit %d, %q", args, code, p.stderr.String())
		}
	}
}
