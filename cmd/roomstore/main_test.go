package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomserver"
)

// runAsMain makes the test binary act as the roomstore command, so that
// the tests run it as a real subprocess (built with the test's flags, the
// race detector included) without a separate go build.
const runAsMain = "ROOMSTORE_TEST_RUN_AS_MAIN"

// TestMain runs the command when re-executed by a test, and otherwise
// fails the package if any goroutine outlives its tests.
func TestMain(m *testing.M) {
	if os.Getenv(runAsMain) == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

const testSecret = "cmd-roomstore-test-secret-0123456789"

// syncBuffer is a bytes.Buffer safe to read while the command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is one run of the command.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	code           int
}

// start runs `roomstore args...` with ROOMSTORE_TOKEN_SECRET set to secret
// (unset when empty); the process is killed when the test ends.
func start(t *testing.T, secret string, args ...string) *proc {
	t.Helper()
	return startWith(t, procOptions{secret: secret}, args...)
}

// procOptions say how startWith runs the command.
type procOptions struct {
	secret string            // ROOMSTORE_TOKEN_SECRET, unset when empty
	env    map[string]string // more variables (ROOMSTORE_STORE, ROOMSTORE_TOKEN...)
	dir    string            // working directory (default the test's)
	stdin  io.Reader         // default none
	stdout io.Writer         // default a buffer (p.stdout)
	stderr io.Writer         // default a buffer (p.stderr)
	group  bool              // a process group of its own, which the test may signal
}

// cleanEnv is the test's environment without the variables the command
// reads, so that none leaks in from the shell that runs the tests.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case secretEnv, runAsMain, storeEnv, tokenEnv, "GORACE":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// startWith runs `roomstore args...` as o says; the process is killed
// when the test ends.
func startWith(t *testing.T, o procOptions, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(os.Args[0], args...), done: make(chan struct{})}
	// Under the race detector a process waits a second at exit unless told
	// not to: the tests run the command hundreds of times.
	env := append(cleanEnv(), runAsMain+"=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	if o.secret != "" {
		env = append(env, secretEnv+"="+o.secret)
	}
	for k, v := range o.env {
		env = append(env, k+"="+v)
	}
	p.cmd.Env = env
	p.cmd.Dir = o.dir
	if o.group {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	p.cmd.Stdin = o.stdin
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if o.stdout != nil {
		p.cmd.Stdout = o.stdout
	}
	if o.stderr != nil {
		p.cmd.Stderr = o.stderr
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
		case err != nil:
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// stderrText is what the process wrote to stderr, wherever it went.
func (p *proc) stderrText() string {
	if s, ok := p.cmd.Stderr.(fmt.Stringer); ok {
		return s.String()
	}
	return ""
}

// wait returns the exit code, failing the test if the process runs
// longer than d.
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		t.Fatalf("%v still running after %v; stderr:\n%s", p.cmd.Args[1:], d, p.stderr.String())
		return 0
	}
}

// startServe starts `roomstore serve` on a free port (on mem:// unless
// args give --store) and returns it with the address it listens on, read
// from --addr-file.
func startServe(t *testing.T, secret string, args ...string) (*proc, string) {
	t.Helper()
	return startServeWith(t, procOptions{secret: secret}, append([]string{"--store", "mem://"}, args...)...)
}

// startServeWith is startServe run as o says, on serve's default store
// unless args give --store.
func startServeWith(t *testing.T, o procOptions, args ...string) (*proc, string) {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addr")
	args = append([]string{"serve", "--listen", "127.0.0.1:0", "--addr-file", addrFile}, args...)
	p := startWith(t, o, args...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(addrFile); err == nil {
			addr := strings.TrimSpace(string(b))
			// The line is logged before the file is written, but reaches
			// p.stderr through a pipe that the test reads in its own time.
			for logs := ""; !strings.Contains(logs, "msg=listening addr="+addr) && !strings.Contains(logs, `"msg":"listening","addr":"`+addr+`"`); logs = p.stderr.String() {
				if time.Now().After(deadline) {
					t.Errorf("no listening log line for %s:\n%s", addr, p.stderr.String())
					break
				}
				select {
				case <-p.done:
				case <-time.After(5 * time.Millisecond):
				}
			}
			return p, addr
		}
		select {
		case <-p.done:
			t.Fatalf("serve exited with %d before listening:\n%s", p.code, p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not write --addr-file within 20s:\n%s", p.stderr.String())
		}
	}
}

// join connects to a room and reads until the server has sent both
// room_ready and connected, the two messages a MeshAgent client waits for.
func join(t *testing.T, addr, room, token string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	u := "ws://" + addr + "/rooms/" + room
	if token != "" {
		u += "?token=" + token
	}
	ws, resp, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("join %s: %v (HTTP %d)", room, err, status)
	}
	seen := map[string]bool{}
	for !seen["room_ready"] || !seen["connected"] {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("join %s: reading the greeting: %v (got %v)", room, err, seen)
		}
		if len(b) >= 16 && binary.BigEndian.Uint32(b[8:12]) == 0 { // a header frame
			seen[string(b[16:])] = true
		}
	}
	return ws
}

func TestServeRefusesToStartWithoutATokenSecret(t *testing.T) {
	p := start(t, "", "serve", "--listen", "127.0.0.1:0", "--store", "mem://")
	if code := p.wait(t, 20*time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1; stderr:\n%s", code, p.stderr.String())
	}
	msg := p.stderr.String()
	for _, want := range []string{"ROOMSTORE_TOKEN_SECRET is not set", "--insecure-dev"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stderr lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "listening") {
		t.Errorf("serve listened without a secret:\n%s", msg)
	}
}

func TestServeRefusesATokenSecretShorterThan32Bytes(t *testing.T) {
	p := start(t, strings.Repeat("s", 31), "serve", "--listen", "127.0.0.1:0", "--store", "mem://")
	if code := p.wait(t, 20*time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1; stderr:\n%s", code, p.stderr.String())
	}
	msg := p.stderr.String()
	if want := "roomstore: ROOMSTORE_TOKEN_SECRET holds 31 bytes; a token secret needs at least 32"; !strings.HasPrefix(msg, want) || strings.Count(msg, "\n") != 1 {
		t.Errorf("stderr %q, want one line beginning %q", msg, want)
	}
	if strings.Contains(msg, "listening") {
		t.Errorf("serve listened with a short secret:\n%s", msg)
	}
}

// TestTokenReadAndWriteNarrowTheStorageGrant mints restricted tokens and
// checks what HS256 makes of them, path by path.
func TestTokenReadAndWriteNarrowTheStorageGrant(t *testing.T) {
	verify := roomserver.HS256([]byte(testSecret))
	for _, c := range []struct {
		name        string
		args        []string
		read, write map[string]bool
	}{
		{"full access by default", nil,
			map[string]bool{"a": true, "x/y": true}, map[string]bool{"a": true, "x/y": true}},
		{"a read-only viewer of everything", []string{"--read", "/"},
			map[string]bool{"a": true, "x/y": true}, map[string]bool{"a": false, "x/y": false}},
		{"one folder", []string{"--write", "team/"},
			map[string]bool{"team/a": true, "other/b": false, "teammates": false}, map[string]bool{"team/a": true, "other/b": false}},
		{"the longest prefix decides a write", []string{"--read", "team/", "--write", "team/drafts/"},
			map[string]bool{"team/a": true, "team/drafts/d": true}, map[string]bool{"team/a": false, "team/drafts/d": true}},
		{"and the other way round", []string{"--write", "team/", "--read", "team/archive/"},
			map[string]bool{"team/archive/x": true}, map[string]bool{"team/a": true, "team/archive/x": false}},
		{"a prefix given to both is writable", []string{"--read", "docs/", "--write", "docs/"},
			map[string]bool{"docs/a": true}, map[string]bool{"docs/a": true}},
		{"several", []string{"--read", "a/", "--read", "b/", "--write", "c/"},
			map[string]bool{"a/1": true, "b/1": true, "c/1": true, "d/1": false}, map[string]bool{"a/1": false, "b/1": false, "c/1": true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok := runToken(t, testSecret, append([]string{"--name", "alice", "--room", "r1"}, c.args...)...)
			id, err := verify(t.Context(), "r1", tok)
			if err != nil {
				t.Fatal(err)
			}
			for r, m := range map[roomstore.Right]map[string]bool{roomstore.Read: c.read, roomstore.Write: c.write} {
				for p, want := range m {
					if got, err := id.Policy.Allow(t.Context(), r, p); err != nil || got != want {
						t.Errorf("%v %q: %v, %v; want %v", r, p, got, err, want)
					}
				}
			}
		})
	}
}

func TestServeInsecureDevAdmitsWithoutATokenAndSIGTERMExitsZero(t *testing.T) {
	p, addr := startServe(t, "", "--insecure-dev")
	ws := join(t, addr, "r1", "")
	defer ws.CloseNow()

	closed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				closed <- err
				return
			}
		}
	}()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0; stderr:\n%s", code, p.stderr.String())
	}
	select {
	case err := <-closed:
		if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
			t.Errorf("connection ended with %v (status %d), want 1001 going away", err, got)
		}
	case <-time.After(5 * time.Second):
		t.Error("the connection outlived the server")
	}
	for _, want := range []string{"insecure development mode", "shutting down", "shutdown complete"} {
		if !strings.Contains(p.stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, p.stderr.String())
		}
	}
}

func TestServeAdmitsOnlyTokensSignedWithTheSecretForTheRoom(t *testing.T) {
	p, addr := startServe(t, testSecret, "--log-format", "json")
	for name, u := range map[string]string{
		"no token":     "ws://" + addr + "/rooms/r1",
		"wrong secret": "ws://" + addr + "/rooms/r1?token=" + mustToken(t, "other-secret-that-is-32-bytes-long", "r1"),
		"another room": "ws://" + addr + "/rooms/r1?token=" + mustToken(t, testSecret, "r2"),
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		ws, resp, err := websocket.Dial(ctx, u, nil)
		cancel()
		if err == nil {
			ws.CloseNow()
			t.Errorf("%s: admitted", name)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %v, want HTTP 403", name, err)
		}
	}
	tok := runToken(t, testSecret, "--name", "alice", "--room", "r1")
	ws := join(t, addr, "r1", tok)
	ws.Close(websocket.StatusNormalClosure, "")

	if !strings.Contains(p.stderr.String(), `"msg":"listening"`) {
		t.Errorf("--log-format json: no JSON listening line:\n%s", p.stderr.String())
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0; stderr:\n%s", code, p.stderr.String())
	}
}

func TestServeCreatesTheRoomsDirectoryButNotItsParents(t *testing.T) {
	base := t.TempDir()
	typo := "file://" + base + "/typo/rooms/{room}"
	p := start(t, testSecret, "serve", "--listen", "127.0.0.1:0", "--store", typo)
	if code := p.wait(t, 20*time.Second); code != 1 {
		t.Fatalf("serve on a store whose parent is missing: exit %d, want 1; stderr:\n%s", code, p.stderr.String())
	}
	want := "roomstore: --store \"" + typo + "\": the directory that would hold " + base + "/typo/rooms does not exist (serve creates the directory of the rooms' stores, not its parents)\n"
	if got := p.stderr.String(); got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(base, "typo")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("serve created the parent of the rooms' directory (%v)", err)
	}

	_, addr := startServe(t, testSecret, "--store", "file://"+base+"/rooms/{room}/files")
	o := procOptions{env: map[string]string{storeEnv: "ws://" + addr + "/rooms/r1", tokenEnv: mustToken(t, testSecret, "r1")}}
	o.stdin = strings.NewReader("x")
	mustRun(t, o, "put", "-", "a.txt")
	if got, err := os.ReadFile(filepath.Join(base, "rooms", "r1", "files", "a.txt")); err != nil || string(got) != "x" {
		t.Errorf("the room's file on disk: %q, %v", got, err)
	}
}

func TestARoomWhoseStoreCannotBeOpenedIsOneLineNamingTheCause(t *testing.T) {
	_, addr := startServe(t, testSecret, "--store", "file:///proc/{room}")
	store := "ws://" + addr + "/rooms/r1"
	res := runCmd(t, procOptions{env: map[string]string{storeEnv: store, tokenEnv: mustToken(t, testSecret, "r1")}}, "ls")
	prefix := "roomstore: --store " + store + ": room store unavailable: "
	if res.code != 1 || !strings.HasPrefix(res.stderr, prefix) || len(res.stderr) <= len(prefix)+1 || strings.Count(res.stderr, "\n") != 1 {
		t.Fatalf("ls in a room whose store cannot be opened: exit %d, %q; want 1 and one line beginning %q and naming the cause", res.code, res.stderr, prefix)
	}
	for _, leak := range []string{"/proc", "status code", "503"} {
		if strings.Contains(res.stderr, leak) {
			t.Errorf("the line %q says %q", res.stderr, leak)
		}
	}
}

func mustToken(t *testing.T, secret, room string) string {
	t.Helper()
	tok, err := roomserver.NewToken([]byte(secret), "alice", room, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// runToken runs `roomstore token args...` and returns the token it prints.
func runToken(t *testing.T, secret string, args ...string) string {
	t.Helper()
	p := start(t, secret, append([]string{"token"}, args...)...)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("token exited with %d:\n%s", code, p.stderr.String())
	}
	out := p.stdout.String()
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Fatalf("token printed %q, want one newline-terminated line", out)
	}
	return strings.TrimSuffix(out, "\n")
}

func TestTokenPrintsATokenHS256VerifiesForItsRoom(t *testing.T) {
	tok := runToken(t, testSecret, "--name", "alice", "--room", "r1", "--ttl", "1h")
	verify := roomserver.HS256([]byte(testSecret))
	id, err := verify(t.Context(), "r1", tok)
	if err != nil {
		t.Fatalf("HS256 refused the token for its room: %v", err)
	}
	if id.Name != "alice" {
		t.Errorf("name %q, want alice", id.Name)
	}
	if _, err := verify(t.Context(), "r2", tok); !errors.Is(err, roomserver.ErrBadToken) {
		t.Errorf("for another room: %v, want ErrBadToken", err)
	}
	if _, err := roomserver.HS256([]byte("another secret of at least 32 bytes"))(t.Context(), "r1", tok); !errors.Is(err, roomserver.ErrBadToken) {
		t.Errorf("with another secret: %v, want ErrBadToken", err)
	}
	forever := runToken(t, testSecret, "--name", "bob", "--room", "r1", "--ttl", "0")
	if id, err := verify(t.Context(), "r1", forever); err != nil || id.Name != "bob" {
		t.Errorf("--ttl 0: %v, %v", id, err)
	}
}

func TestTokenFailsClearly(t *testing.T) {
	for _, c := range []struct {
		name, secret string
		args         []string
		want         string
	}{
		{"without a secret", "", []string{"--name", "a", "--room", "r1"}, "ROOMSTORE_TOKEN_SECRET is not set"},
		{"for an invalid room", testSecret, []string{"--name", "a", "--room", "../x"}, "not a valid room name"},
		{"with a negative ttl", testSecret, []string{"--name", "a", "--room", "r1", "--ttl", "-1s"}, "negative"},
		{"with a secret of 31 bytes", strings.Repeat("s", 31), []string{"--name", "a", "--room", "r1"}, "ROOMSTORE_TOKEN_SECRET holds 31 bytes; a token secret needs at least 32"},
		{"with a control character in a prefix", testSecret, []string{"--name", "a", "--room", "r1", "--read", "a\nb"}, "holds a control character"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := start(t, c.secret, append([]string{"token"}, c.args...)...)
			if code := p.wait(t, 20*time.Second); code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if p.stdout.String() != "" {
				t.Errorf("printed %q on a failure", p.stdout.String())
			}
			if msg := p.stderr.String(); !strings.Contains(msg, c.want) || !strings.HasPrefix(msg, "roomstore: ") {
				t.Errorf("stderr %q, want roomstore: ...%s...", msg, c.want)
			}
		})
	}
}
