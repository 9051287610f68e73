// Package testserver starts the real servers that backend tests run
// against (versitygw for S3, fake-gcs-server for GCS, nats-server) as child
// processes on free loopback ports, and stops them when the test ends. A
// port found free may be taken by another process before the child binds
// it; the child then fails to listen and Start tries another port, and a
// server only counts as started once the child itself holds the listening
// socket, never when something else answers on its port. A test may also
// crash a server (Process.Kill, SIGKILL) and bring it back on the same
// address with the same data (Process.Restart), to see what a client does
// when its server dies mid-request.
//
// The binaries are installed by `make test` into the project's .bin folder.
// A missing binary fails the test: the conformance suite never skips.
package testserver

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
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

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
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

// Start runs the command on a free loopback address, with the arguments
// args gives for that address, and waits until the child listens there (or
// 30 s pass, which fail the test with its output). When the child cannot
// listen because another process took the port since it was found free,
// Start tries another port. It registers a cleanup that stops the server.
func Start(t testing.TB, name string, args func(addr string) []string) *Process {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		addr, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		p := &Process{name: name, args: args(addr), addr: addr, out: &syncBuffer{}}
		r, err := p.launch(deadline)
		if errors.Is(err, errPortTaken) && time.Now().Before(deadline) {
			t.Logf("%v; trying another port", err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		p.cur = r
		t.Cleanup(p.Stop)
		return p
	}
}

// errPortTaken says that another process holds the port a child was to
// listen on.
var errPortTaken = errors.New("the port is taken by another process")

// launch starts the command and waits until the child listens on p.addr,
// at most until deadline. On failure the child is gone and the error
// carries its output; it is errPortTaken when another process holds the
// port.
func (p *Process) launch(deadline time.Time) (*run, error) {
	from := p.out.Len() // this run's output starts here
	r := &run{cmd: exec.Command(p.name, p.args...), done: make(chan struct{})}
	r.cmd.Stdout = p.out
	r.cmd.Stderr = p.out
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	go func() { r.err = r.cmd.Wait(); close(r.done) }()
	for {
		mine, other := listening(r.cmd.Process.Pid, p.addr)
		if mine {
			return r, nil
		}
		select {
		case <-r.done:
			out := p.out.String()
			if len(out) > from && strings.Contains(out[from:], "address already in use") || other {
				return nil, fmt.Errorf("%s could not listen on %s: %w", p.name, p.addr, errPortTaken)
			}
			return nil, fmt.Errorf("%s exited before listening on %s: %v\n%s", p.name, p.addr, r.err, out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.kill()
			if other {
				return nil, fmt.Errorf("%s could not listen on %s within %v: %w", p.name, p.addr, startTimeout, errPortTaken)
			}
			return nil, fmt.Errorf("%s did not listen on %s within %v\n%s", p.name, p.addr, startTimeout, p.out.String())
		}
	}
}

// listening reports whether the process pid holds a socket listening on
// addr (mine), and whether another process does (other). It reads the
// kernel's socket tables in /proc; where there are none, it counts a
// connection that addr accepts as the process's own.
func listening(pid int, addr string) (mine, other bool) {
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return false, false
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return false, false
	}
	var inodes []string
	tables := 0
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		tables++
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(f[1], ":")
			if n, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && n == port {
				inodes = append(inodes, f[9])
			}
		}
	}
	if tables == 0 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return false, false
		}
		c.Close()
		return true, false
	}
	if len(inodes) == 0 {
		return false, false
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return false, true
	}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		for _, ino := range inodes {
			if link == "socket:["+ino+"]" {
				return true, false
			}
		}
	}
	return false, true
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
// until it listens. While the server was down another process may have
// bound its port: Restart then tries again until the port is free, for at
// most 30 s. Unlike Start it reports failure as an error rather than
// failing a test, so that it may run on any goroutine; the server started
// is stopped by the cleanup Start registered.
func (p *Process) Restart() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur.kill()
	deadline := time.Now().Add(startTimeout)
	for {
		r, err := p.launch(deadline)
		if errors.Is(err, errPortTaken) && time.Now().Before(deadline) {
			select {
			case <-time.After(50 * time.Millisecond): // the port's holder gets a moment to let it go
			case <-time.After(time.Until(deadline)):
			}
			continue
		}
		if err != nil {
			return err
		}
		p.cur = r
		return nil
	}
}

// Addr is the server's address, host:port, the same across restarts.
func (p *Process) Addr() string { return p.addr }

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

func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
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
