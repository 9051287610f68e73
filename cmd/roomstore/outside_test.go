package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/natstest"
	"github.com/roomstore/roomstore/internal/testserver"
	"github.com/roomstore/roomstore/roomclient"
)

// watcherP is a roomclient connected to one replica, recording every
// event it gets.
type watcherP struct {
	name   string
	c      *roomclient.Client
	mu     sync.Mutex
	got    []events.Event
	notify chan struct{}
}

func connect(t *testing.T, name, addr, room, token string) *watcherP {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, err := roomclient.Dial(ctx, "ws://"+addr+"/rooms/"+room, roomclient.Options{Token: token})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p := &watcherP{name: name, c: c, notify: make(chan struct{}, 1)}
	c.Subscribe(func(ev events.Event) {
		p.mu.Lock()
		p.got = append(p.got, ev)
		p.mu.Unlock()
		select {
		case p.notify <- struct{}{}:
		default:
		}
	})
	t.Cleanup(func() { c.Close() })
	return p
}

// line is how the test names an event: "type path[ from src] by who".
func line(ev events.Event) string {
	s := ev.Type + " " + ev.Path
	if ev.SourcePath != "" {
		s += " from " + ev.SourcePath
	}
	return s + " by " + ev.ParticipantID
}

// await waits until the participant has n events, failing t after d, and
// returns them.
func (p *watcherP) await(t *testing.T, n int, d time.Duration, what string) []string {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		got := slices.Clone(p.got)
		p.mu.Unlock()
		if len(got) >= n {
			var out []string
			for _, ev := range got {
				out = append(out, line(ev))
			}
			return out
		}
		select {
		case <-p.notify:
		case <-deadline.C:
			var out []string
			for _, ev := range got {
				out = append(out, line(ev))
			}
			t.Fatalf("%s: %s has %d events within %v, want %d: %q", what, p.name, len(got), d, n, out)
		}
	}
}

// TestEveryReplicaTellsEveryOutsideChangeOnce runs two replicas of serve
// on one file:// directory with a real nats-server, and changes the room's
// store from outside: a shell's plain system calls, and the roomstore
// command run on the directory itself. Every participant on both replicas
// gets each change once, with no participant, well within the scan
// interval (an hour: only the watch can have told it); a change made
// through a replica is told once too, with its participant, although the
// other replica's watch sees it as well.
func TestEveryReplicaTellsEveryOutsideChangeOnce(t *testing.T) {
	ns := natstest.Start(t)
	base := t.TempDir()
	args := []string{"--store", "file://" + base + "/{room}", "--events", ns.URL(), "--scan-interval", "1h"}
	_, addrA := startServe(t, testSecret, args...)
	_, addrB := startServe(t, testSecret, args...)
	tok := mustToken(t, testSecret, "r1")
	a := connect(t, "participant on replica A", addrA, "r1", tok)
	b := connect(t, "participant on replica B", addrB, "r1", tok)
	room := filepath.Join(base, "r1")
	sh := func(script string) func() {
		return func() {
			cmd := exec.Command("sh", "-ec", script)
			cmd.Dir = room
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sh %q: %v\n%s", script, err, out)
			}
		}
	}
	direct := procOptions{env: map[string]string{storeEnv: "file://" + room}}
	// The roomstore command on the room's directory succeeds, and warns
	// first that the directory lies inside a running server's rooms.
	runDirect := func(o procOptions, args ...string) {
		t.Helper()
		r := runCmd(t, o, args...)
		want := "roomstore: warning: --store file://" + room + " lies inside "
		if r.code != 0 || !strings.HasPrefix(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("roomstore %s on the room's directory: exit %d, stderr %q; want 0 and one line beginning %q", strings.Join(args, " "), r.code, r.stderr, want)
		}
	}
	const bound = 15 * time.Second // the watch's; the scan would take an hour
	st := newSteps(t, bound, func(name string) { sh("printf w > " + name)() }, a, b)
	step := st.step
	step("a new file", sh("printf one > a.txt"), "file.updated a.txt by ")
	step("an overwrite", sh("printf two > a.txt"), "file.updated a.txt by ")
	step("an append", sh("printf three >> a.txt"), "file.updated a.txt by ")
	step("a rename", sh("mv a.txt b.txt"), "file.deleted a.txt by ", "file.updated b.txt by ")
	step("a new folder", sh("mkdir -p d/e && printf deep > d/e/f.txt"), "file.updated d/e/f.txt by ")
	step("a folder renamed", sh("mv d g"), "file.deleted d/e/f.txt by ", "file.updated g/e/f.txt by ")
	step("a removal", sh("rm b.txt"), "file.deleted b.txt by ")
	step("a folder removed", sh("rm -r g"), "file.deleted g/e/f.txt by ")
	step("roomstore put on the directory", func() {
		o := direct
		o.stdin = strings.NewReader("put")
		runDirect(o, "put", "-", "p.txt")
	}, "file.updated p.txt by ")
	step("roomstore mv on the directory", func() { runDirect(direct, "mv", "p.txt", "q.txt") },
		"file.deleted p.txt by ", "file.updated q.txt by ")
	step("roomstore rm on the directory", func() { runDirect(direct, "rm", "q.txt") }, "file.deleted q.txt by ")
	step("an upload through replica A", func() {
		ctx := roomstore.WithParticipant(t.Context(), "x")
		if _, err := a.c.Upload(ctx, "mine.txt", strings.NewReader("mine"), roomstore.OpenOptions{Overwrite: true}); err != nil {
			t.Fatal(err)
		}
	}, "file.updated mine.txt by "+participantOf(t, a))
	step("a removal through replica B", func() {
		if err := b.c.Delete(t.Context(), "mine.txt"); err != nil {
			t.Fatal(err)
		}
	}, "file.deleted mine.txt by "+participantOf(t, b))
	// Nothing more comes: the last change's event is the next one.
	step("a last change", sh("printf end > ready.txt"), "file.updated ready.txt by ")
}

// participantOf is the participant id a replica gave p's connection, as
// its own changes' events carry it.
func participantOf(t *testing.T, p *watcherP) string {
	t.Helper()
	id := p.c.ParticipantID()
	if id == "" {
		t.Fatalf("%s has no participant id", p.name)
	}
	return id
}

// steps checks, change by change, that every participant is told of each
// change as the events it names, once.
type steps struct {
	t     *testing.T
	ps    []*watcherP
	seen  map[*watcherP]int
	bound time.Duration
}

// newSteps waits until the room's engines watch: they take their first
// view of the store when the room opens, and a change made while they
// take it is part of that view, not an event. So it makes a new file
// (with write) until every participant has been told of one; what it told
// then is left out of the steps.
func newSteps(t *testing.T, bound time.Duration, write func(name string), ps ...*watcherP) *steps {
	t.Helper()
	st := &steps{t: t, ps: ps, seen: map[*watcherP]int{}, bound: bound}
	deadline := time.Now().Add(time.Minute)
	for i := 0; ; i++ {
		name := fmt.Sprintf("warm-%d.txt", i)
		write(name)
		all := true
		for _, p := range ps {
			if !p.toldOf(name, 5*time.Second) {
				all = false
			}
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the room's engines did not tell a change within a minute")
		}
	}
	for _, p := range ps {
		p.mu.Lock()
		st.seen[p] = len(p.got)
		p.mu.Unlock()
	}
	return st
}

// toldOf waits up to d for an event of path.
func (p *watcherP) toldOf(path string, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		found := slices.ContainsFunc(p.got, func(ev events.Event) bool { return ev.Path == path })
		p.mu.Unlock()
		if found {
			return true
		}
		select {
		case <-p.notify:
		case <-deadline.C:
			return false
		}
	}
}

// step makes a change with do and checks that every participant gets
// exactly the events want (in any order) next.
func (st *steps) step(what string, do func(), want ...string) {
	st.t.Helper()
	do()
	for _, p := range st.ps {
		got := p.await(st.t, st.seen[p]+len(want), st.bound, what)
		if !slices.Equal(sortedCopy(got[st.seen[p]:]), sortedCopy(want)) {
			st.t.Fatalf("%s: %s got %q, want %q", what, p.name, got[st.seen[p]:], want)
		}
		st.seen[p] += len(want)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// TestNoChangeIsLostToAReplicaKilledWhileItCommits kills a replica of
// serve 30 times at random points while a participant uploads and
// deletes through it, and checks the surviving replica's participant:
// the files whose last event says they exist are exactly the files in
// the store, and no change was told twice.
func TestNoChangeIsLostToAReplicaKilledWhileItCommits(t *testing.T) {
	ns := natstest.Start(t)
	base := t.TempDir()
	args := []string{"--store", "file://" + base + "/{room}", "--events", ns.URL(), "--scan-interval", "1h"}
	_, addrS := startServe(t, testSecret, args...)
	tok := mustToken(t, testSecret, "r1")
	s := connect(t, "participant on the surviving replica", addrS, "r1", tok)
	room := filepath.Join(base, "r1")
	newSteps(t, 30*time.Second, func(name string) {
		if err := os.WriteFile(filepath.Join(room, name), []byte("w"), 0o644); err != nil {
			t.Fatal(err)
		}
	}, s)

	const kills = 30
	commits := 0
	for i := range kills {
		w, addrW := startServe(t, testSecret, args...)
		ctx, cancel := context.WithCancel(t.Context())
		c, err := roomclient.Dial(ctx, "ws://"+addrW+"/rooms/r1", roomclient.Options{Token: tok, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		var made atomic.Int64
		progress := make(chan struct{}, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			tell := func() {
				made.Add(1)
				select {
				case progress <- struct{}{}:
				default:
				}
			}
			for j := 0; ; j++ {
				p := fmt.Sprintf("w/%02d-%03d", i, j)
				if _, err := c.Upload(ctx, p, strings.NewReader(p), roomstore.OpenOptions{Overwrite: true}); err != nil {
					return
				}
				tell()
				if j%3 == 2 {
					if err := c.Delete(ctx, fmt.Sprintf("w/%02d-%03d", i, j-2)); err != nil {
						return
					}
					tell()
				}
			}
		}()
		// A random point: after 1 to 12 changes, and 0 to 3 ms into what
		// follows them (a commit takes about that long).
		for want := 1 + rand.Int64N(12); made.Load() < want; {
			select {
			case <-progress:
			case <-done:
				t.Fatalf("the writer stopped after %d changes", made.Load())
			case <-time.After(30 * time.Second):
				t.Fatalf("the writer made %d changes in 30s", made.Load())
			}
		}
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		if err := w.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-w.done
		cancel()
		select {
		case <-done:
			commits += int(made.Load())
		case <-time.After(30 * time.Second):
			t.Fatal("the writer did not notice its replica's death")
		}
		c.Close()
	}
	if commits < kills {
		t.Fatalf("only %d changes were made through the killed replicas", commits)
	}
	// A last change: its event comes after those of every earlier one.
	if err := os.WriteFile(filepath.Join(room, "end.txt"), []byte("e"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	var got []events.Event
	for {
		s.mu.Lock()
		got = slices.Clone(s.got)
		s.mu.Unlock()
		if len(got) > 0 && got[len(got)-1].Path == "end.txt" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the last change's event did not come within a minute (%d events)", len(got))
		}
		select {
		case <-s.notify:
		case <-time.After(time.Until(deadline)):
		}
	}
	told := map[string][]string{}
	rescued := 0
	for _, ev := range got {
		if ev.ParticipantID == "" && strings.HasPrefix(ev.Path, "w/") {
			rescued++ // its replica died before its event reached the survivor
		}
		if ev.Type == roomstore.EventOverflow {
			t.Fatalf("overflow: %+v", ev)
		}
		if !strings.HasPrefix(ev.Path, "w/") {
			continue // the markers
		}
		told[ev.Path] = append(told[ev.Path], ev.Type)
	}
	exists := map[string]bool{}
	for p, types := range told {
		switch strings.Join(types, ",") {
		case "file.updated":
			exists[p] = true
		case "file.updated,file.deleted":
		default:
			t.Errorf("%s: told %v, want one update and at most one deletion after it", p, types)
		}
	}
	inStore := map[string]bool{}
	err := filepath.WalkDir(room, func(name string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".roomstore" {
			return filepath.SkipDir
		}
		if rel, _ := filepath.Rel(room, name); !d.IsDir() && strings.HasPrefix(filepath.ToSlash(rel), "w/") {
			inStore[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range inStore {
		if !exists[p] {
			t.Errorf("%s is in the store, but its events say %v", p, told[p])
		}
	}
	for p := range exists {
		if !inStore[p] {
			t.Errorf("%s is not in the store, but its events say it exists", p)
		}
	}
	t.Logf("%d changes through %d killed replicas, %d events (%d told by the survivor's watch), %d files", commits, kills, len(got), rescued, len(inStore))
}

// TestEveryReplicaTellsEveryOutsideS3ChangeOnce runs two replicas of serve
// on one s3:// store of versitygw, which publishes its bucket
// notifications to the same nats-server as the replicas' events, and
// changes the room's objects with the raw aws-sdk-go-v2 client. Every
// participant on both replicas gets each change once, with no
// participant, well within the scan interval (an hour: only the
// notifications can have told it).
func TestEveryReplicaTellsEveryOutsideS3ChangeOnce(t *testing.T) {
	ns := natstest.Start(t)
	gw := testserver.StartVersityGWWithEvents(t, ns.URL(), "s3.events")
	gw.SetCredentialEnv(t)
	bucket := gw.NewBucket(t)
	store := "s3://" + bucket + "/rooms/{room}?endpoint=" + gw.Endpoint + "&path_style=true&region=" + testserver.VersityGWRegion
	args := []string{"--store", store, "--events", ns.URL(), "--s3-events", ns.URL(), "--s3-events-subject", "s3.events", "--scan-interval", "1h"}
	_, addrA := startServe(t, testSecret, args...)
	_, addrB := startServe(t, testSecret, args...)
	tok := mustToken(t, testSecret, "r1")
	client := gw.Client()
	key := func(p string) *string { return aws.String("rooms/r1/" + p) }
	putObject := func(p, body string) func() {
		return func() {
			if _, err := client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: key(p), Body: strings.NewReader(body)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The room must exist before a read-only participant could open it;
	// these participants may write, which opens it.
	putObject("ready.txt", "r")()
	a := connect(t, "participant on replica A", addrA, "r1", tok)
	b := connect(t, "participant on replica B", addrB, "r1", tok)
	st := newSteps(t, 15*time.Second, func(name string) { putObject(name, "w")() }, a, b)
	step := st.step
	step("a new object", putObject("a.txt", "one"), "file.updated a.txt by ")
	step("an overwrite", putObject("a.txt", "two"), "file.updated a.txt by ")
	step("a copy", func() {
		if _, err := client.CopyObject(t.Context(), &s3.CopyObjectInput{Bucket: &bucket, Key: key("d/b.txt"), CopySource: aws.String(bucket + "/rooms/r1/a.txt")}); err != nil {
			t.Fatal(err)
		}
	}, "file.updated d/b.txt by ")
	step("a deletion", func() {
		if _, err := client.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: &bucket, Key: key("a.txt")}); err != nil {
			t.Fatal(err)
		}
	}, "file.deleted a.txt by ")
	// Another room's object is no change of this room: the next step
	// would see its event.
	step("an object of another room", func() {
		if _, err := client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("rooms/r2/x.txt"), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
	})
	step("an upload through replica A", func() {
		if _, err := a.c.Upload(t.Context(), "mine.txt", strings.NewReader("mine"), roomstore.OpenOptions{Overwrite: true}); err != nil {
			t.Fatal(err)
		}
	}, "file.updated mine.txt by "+participantOf(t, a))
	step("a last change", putObject("ready.txt", "end"), "file.updated ready.txt by ")
}

// TestEveryReplicaTellsEveryOutsideGCSChangeOnceThroughTheScan is the same
// on a gs:// store of fake-gcs-server, which has no notifications here:
// the replicas' scan (every second) tells each change, once on each.
func TestEveryReplicaTellsEveryOutsideGCSChangeOnceThroughTheScan(t *testing.T) {
	ns := natstest.Start(t)
	endpoint := testserver.StartFakeGCS(t)
	bucket := testserver.NewFakeGCSBucket(t, endpoint)
	store := "gs://" + bucket + "/rooms/{room}?endpoint=" + endpoint
	args := []string{"--store", store, "--events", ns.URL(), "--scan-interval", "1s"}
	_, addrA := startServe(t, testSecret, args...)
	_, addrB := startServe(t, testSecret, args...)
	tok := mustToken(t, testSecret, "r1")
	gcs := testserver.FakeGCSClient(t, endpoint)
	obj := func(p string) *storage.ObjectHandle { return gcs.Bucket(bucket).Object("rooms/r1/" + p) }
	write := func(p, body string) func() {
		return func() {
			w := obj(p).NewWriter(t.Context())
			if _, err := io.WriteString(w, body); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("ready.txt", "r")()
	a := connect(t, "participant on replica A", addrA, "r1", tok)
	b := connect(t, "participant on replica B", addrB, "r1", tok)
	st := newSteps(t, 30*time.Second, func(name string) { write(name, "w")() }, a, b)
	step := st.step
	step("a new object", write("a.txt", "one"), "file.updated a.txt by ")
	step("an overwrite", write("a.txt", "two"), "file.updated a.txt by ")
	step("a deletion", func() {
		if err := obj("a.txt").Delete(t.Context()); err != nil {
			t.Fatal(err)
		}
	}, "file.deleted a.txt by ")
	step("an upload through replica B", func() {
		if _, err := b.c.Upload(t.Context(), "mine.txt", strings.NewReader("mine"), roomstore.OpenOptions{Overwrite: true}); err != nil {
			t.Fatal(err)
		}
	}, "file.updated mine.txt by "+participantOf(t, b))
	step("a last change", write("ready.txt", "end"), "file.updated ready.txt by ")
}
