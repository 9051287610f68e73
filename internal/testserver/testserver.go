// Package testserver starts the real servers that backend tests run
// against (versitygw for S3, fake-gcs-server for GCS) as child processes on
// free loopback ports, and stops them when the test ends. A test may also
// crash a server (Process.Kill, SIGKILL) and bring it back on the same
// address with the same data (Process.Restart), to see what a client does
// when its server dies mid-request.
//
// The binaries are installed by `make test` into the project's .bin folder.
// A missing binary fails the test: the conformance suite never skips.
package testserver

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary returns the path of the named tool: $NAME_BIN (upper-cased, '-'
// as '_'), the project's .bin folder, PATH, then $GOPATH/bin. A missing tool
// fails the test with the command that installs it.
func Binary(t testing.TB, name, install string) string {
	t.Helper()
	env := strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_BIN"
	if p := os.Getenv(env); p != "" {
		return p
	}
	if root := moduleRoot(); root != "" {
		p := filepath.Join(root, ".bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("%s not found: run `make test` (which installs it) or `%s`", name, install)
	return ""
}

func moduleRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Process is a server started by Start. Kill and Restart let a test crash
// it and bring it back on the same address with the same arguments (and
// so the same data folder, for servers that keep one).
type Process struct {
	name string
	args []string
	addr string
	out  *syncBuffer

	mu  sync.Mutex // serialises Kill, Restart and Stop
	cur *run       // the current child; replaced by Restart
}

// run is one child process of a Process.
type run struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// startTimeout bounds how long a server may take to listen.
const startTimeout = 30 * time.Second

// Start runs the command, waits until addr accepts TCP connections (or the
// process exits, or 30 s pass, which fail the test with its output), and
// registers a cleanup that stops it.
func Start(t testing.TB, addr string, name string, args ...string) *Process {
	t.Helper()
	p := &Process{name: name, args: args, addr: addr, out: &syncBuffer{}}
	r, err := p.launch()
	if err != nil {
		t.Fatal(err)
	}
	p.cur = r
	t.Cleanup(p.Stop)
	return p
}

// launch starts the command and waits until it listens on p.addr. On
// failure the child is gone and the error carries its output.
func (p *Process) launch() (*run, error) {
	r := &run{cmd: exec.Command(p.name, p.args...), done: make(chan struct{})}
	r.cmd.Stdout = p.out
	r.cmd.Stderr = p.out
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	go func() { r.err = r.cmd.Wait(); close(r.done) }()
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", p.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return r, nil
		}
		select {
		case <-r.done:
			return nil, fmt.Errorf("%s exited before listening on %s: %v\n%s", p.name, p.addr, r.err, p.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.kill()
			return nil, fmt.Errorf("%s did not listen on %s within %v\n%s", p.name, p.addr, startTimeout, p.out.String())
		}
	}
}

// kill sends SIGKILL to the child's whole process group and waits until
// the child has exited. It is idempotent.
func (r *run) kill() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.done
}

// Stop kills the server (its whole process group) and waits for it. It is
// idempotent, and registered by Start as a cleanup of the test.
func (p *Process) Stop() { p.Kill() }

// Kill crashes the server: SIGKILL to its whole process group, so it gets
// no chance to finish requests or flush anything, as in a power cut of
// the process. It returns once the process has exited, so the address no
// longer accepts connections. It is idempotent and safe from any
// goroutine.
func (p *Process) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur.kill()
}

// Restart kills the server if it still runs, then starts the same command
// again (same address, same arguments, so the same data folder) and waits
// until it listens. Unlike Start it reports failure as an error rather
// than failing a test, so that it may run on any goroutine; the server
// started is stopped by the cleanup Start registered.
func (p *Process) Restart() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur.kill()
	r, err := p.launch()
	if err != nil {
		return err
	}
	p.cur = r
	return nil
}

// Output returns what the server printed so far, over all its runs.
func (p *Process) Output() string { return p.out.String() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // keep the log bounded for long runs
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// String describes the process for logs.
func (p *Process) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("%s (pid %d)", p.name, p.cur.cmd.Process.Pid)
}
