package events_nats_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/events_nats"
	"github.com/roomstore/roomstore/internal/testserver"
)

// childEnv, when set, makes the test binary a child of
// TestTwoProcessesSeeEveryChangeOnce instead of running tests: its value
// is "STORE_URL NATS_URL PARTICIPANT SEED".
const childEnv = "ROOMSTORE_EVENTS_NATS_CHILD"

// TestTwoProcessesSeeEveryChangeOnce runs two real processes (this test
// binary, re-executed) on one store with a nats-server child process;
// each makes 500 mixed changes at once, and when the first is halfway
// nats-server is killed (SIGKILL) and started again on its data while
// both go on; each process's subscriber sees every change of both exactly
// once.
func TestTwoProcessesSeeEveryChangeOnce(t *testing.T) {
	s3Store := s3Stores(t)
	for _, st := range []struct {
		name string
		url  func() string
	}{{"file", func() string { return fileStore(t) }}, {"s3", s3Store}} {
		t.Run(st.name, func(t *testing.T) {
			srv := testserver.StartNATS(t)
			store := st.url()
			kids := []*child{startChild(t, store, srv.URL, "alice", 1), startChild(t, store, srv.URL, "bob", 2)}
			for _, k := range kids {
				k.expect(t, "READY")
			}
			for _, k := range kids {
				k.send(t, "GO")
			}
			kids[0].expect(t, "HALFWAY")
			if err := srv.Restart(); err != nil { // SIGKILL, then the same data
				t.Fatalf("restart nats-server: %v", err)
			}
			kids[1].expect(t, "HALFWAY") // it says so too, and goes on
			counts := make([]int, len(kids))
			for i, k := range kids {
				counts[i] = k.expectCount(t, "DONE")
			}
			for _, k := range kids {
				k.waitUntil(t, func(evs []events.Event) bool {
					return countFrom(evs, kids[0].id) >= counts[0] && countFrom(evs, kids[1].id) >= counts[1]
				})
			}
			streams := make([]stream, len(kids))
			for i, k := range kids {
				k.send(t, "QUIT")
				k.wait(t)
				streams[i] = stream{origin: k.id, events: k.snapshot()}
			}
			checkStreams(t, streams...)
			if counts[0] < 200 || counts[1] < 200 {
				t.Fatalf("only %v of the changes made events", counts)
			}
			t.Logf("events: %v", counts)
		})
	}
}

// child is a child process and what it printed.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	id    string // its engine's

	mu     sync.Mutex
	events []events.Event
	lines  chan string // every other line
	grew   chan struct{}
	stop   chan struct{} // closed at cleanup: the reader stops waiting on lines
	done   chan error    // the child's exit, once its output is read
	exited bool          // done was received (the test's goroutine only)
}

func startChild(t *testing.T, store, natsURL, participant string, seed int) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join([]string{store, natsURL, participant, strconv.Itoa(seed)}, " "))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	k := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 16), grew: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan error, 1)}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if data, ok := strings.CutPrefix(line, "EVENT "); ok {
				var e events.Event
				if err := json.Unmarshal([]byte(data), &e); err == nil {
					k.mu.Lock()
					k.events = append(k.events, e)
					k.mu.Unlock()
					select {
					case k.grew <- struct{}{}:
					default:
					}
					continue
				}
			}
			select {
			case k.lines <- line:
			case <-k.stop:
			}
		}
	}()
	go func() { <-read; k.done <- cmd.Wait() }()
	t.Cleanup(func() {
		close(k.stop)
		if k.exited {
			return
		}
		_ = cmd.Process.Kill()
		select {
		case <-k.done:
		case <-time.After(wait):
			t.Errorf("child %d did not exit after SIGKILL", cmd.Process.Pid)
		}
	})
	return k
}

func (k *child) send(t *testing.T, line string) {
	t.Helper()
	if _, err := fmt.Fprintln(k.stdin, line); err != nil {
		t.Fatalf("to the child: %v", err)
	}
}

// expect waits for the child's next line, which must start with word,
// and returns the rest.
func (k *child) expect(t *testing.T, word string) string {
	t.Helper()
	select {
	case line := <-k.lines:
		rest, ok := strings.CutPrefix(line, word+" ")
		if !ok {
			t.Fatalf("the child said %q, want %s", line, word)
		}
		if word == "READY" {
			k.id = rest
		}
		return rest
	case err := <-k.done:
		k.exited = true
		t.Fatalf("the child exited (%v) before saying %s", err, word)
	case <-time.After(wait):
		t.Fatalf("timed out waiting for the child to say %s", word)
	}
	return ""
}

func (k *child) expectCount(t *testing.T, word string) int {
	t.Helper()
	n, err := strconv.Atoi(k.expect(t, word))
	if err != nil {
		t.Fatalf("%s: %v", word, err)
	}
	return n
}

func (k *child) snapshot() []events.Event {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]events.Event(nil), k.events...)
}

func (k *child) waitUntil(t *testing.T, ok func([]events.Event) bool) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for !ok(k.snapshot()) {
		select {
		case <-k.grew:
		case <-deadline.C:
			t.Fatalf("timed out waiting for the child's events; it has %d", len(k.snapshot()))
		}
	}
}

// wait waits for the child to exit 0.
func (k *child) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-k.done:
		k.exited = true
		if err != nil {
			t.Fatalf("the child failed: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("timed out waiting for the child to exit")
	}
}

// runChild is the child's side: open the store with a transport, print
// every event its subscriber gets, make 250 changes at each GO, and shut
// down at QUIT. It returns the exit code.
func runChild(spec string) int {
	f := strings.Fields(spec)
	if len(f) != 4 {
		fmt.Fprintf(os.Stderr, "child: bad spec %q\n", spec)
		return 2
	}
	storeURL, natsURL, participant := f[0], f[1], f[2]
	seed, err := strconv.ParseUint(f[3], 10, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: bad seed in spec %q: %v\n", spec, err)
		return 2
	}
	nc, err := nats.Connect(natsURL, events_nats.ConnOptions()...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer nc.Close()
	tr, err := events_nats.New(nc, events_nats.WithLogger(quiet))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	ctx := context.Background()
	eng, err := roomstore.OpenURL(ctx, storeURL, roomstore.WithEventTransport(tr))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	out := bufio.NewWriter(os.Stdout)
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
	}
	eng.Subscribe(func(e events.Event) {
		data, _ := json.Marshal(e)
		say("EVENT %s", data)
	})
	say("READY %s", eng.ID())
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() || in.Text() != "GO" {
		fmt.Fprintln(os.Stderr, "child: want GO")
		return 1
	}
	n, err := churnWith(ctx, eng, participant, 500, seed, 250, func() { say("HALFWAY 250") })
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	say("DONE %d", n)
	if !in.Scan() || in.Text() != "QUIT" {
		fmt.Fprintln(os.Stderr, "child: want QUIT")
		return 1
	}
	sctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := eng.Shutdown(sctx); err != nil {
		fmt.Fprintln(os.Stderr, "child: shutdown:", err)
		return 1
	}
	if err := tr.Close(sctx); err != nil {
		fmt.Fprintln(os.Stderr, "child: transport close:", err)
		return 1
	}
	return 0
}
