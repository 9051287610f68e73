package batchconn_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roomstore/roomstore/internal/batchconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait of these tests.
const wait = 10 * time.Second

// counting counts the writes that reach the socket.
type counting struct {
	net.Conn
	writes atomic.Int64
}

func (c *counting) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// pipe returns a batchconn.Conn over one end of a synchronous net.Pipe
// (a write there waits for the reader), the counting end under it and
// the other end.
func pipe(t *testing.T) (*batchconn.Conn, *counting, net.Conn) {
	a, b := net.Pipe()
	cnt := &counting{Conn: a}
	bc := batchconn.New(cnt)
	t.Cleanup(func() { bc.Close(); b.Close() })
	return bc, cnt, b
}

// readAll reads n bytes from c within the deadline.
func readAll(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	return buf
}

// Writes made while held reach the socket as one write, in order, at
// the Flush; a large one goes out at once, after what was gathered.
func TestGathersWhileHeld(t *testing.T) {
	bc, cnt, peer := pipe(t)
	var want []byte
	small := func(i int) {
		p := bytes.Repeat([]byte{byte(i)}, 100)
		want = append(want, p...)
		if n, err := bc.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write %d: %d, %v", i, n, err)
		}
	}
	bc.Hold()
	for i := range 100 {
		small(i)
	}
	if n := cnt.writes.Load(); n != 0 {
		t.Fatalf("%d writes reached the socket while held, want none", n)
	}
	big := bytes.Repeat([]byte("x"), batchconn.Direct)
	want = append(want, big...)
	first := len(want)
	var rest [][]byte
	for i := range 50 {
		p := bytes.Repeat([]byte{byte(100 + i)}, 100)
		rest = append(rest, p)
		want = append(want, p...)
	}
	done := make(chan error, 1)
	go func() {
		if _, err := bc.Write(big); err != nil {
			done <- err
			return
		}
		for _, p := range rest {
			if _, err := bc.Write(p); err != nil {
				done <- err
				return
			}
		}
		done <- bc.Flush()
	}()
	got := readAll(t, peer, first)
	more := readAll(t, peer, len(want)-first)
	if !bytes.Equal(got, want[:first]) || !bytes.Equal(more, want[first:]) {
		t.Fatal("the bytes arrived out of order or changed")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("the Writes did not return")
	}
	// The gathered bytes and the large Write (one writev on a TCP socket;
	// two writes on a pipe, which has none), then the Flush.
	if n := cnt.writes.Load(); n != 3 {
		t.Fatalf("%d writes reached the socket, want 3", n)
	}
}

// Holds nest: only the last Flush writes.
func TestHoldsNest(t *testing.T) {
	bc, cnt, peer := pipe(t)
	bc.Hold()
	bc.Hold()
	if _, err := bc.Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	if err := bc.Flush(); err != nil || cnt.writes.Load() != 0 {
		t.Fatalf("the inner Flush: %v, %d writes, want none", err, cnt.writes.Load())
	}
	done := make(chan error, 1)
	go func() { done <- bc.Flush() }()
	if got := readAll(t, peer, 2); string(got) != "ab" {
		t.Fatalf("read %q", got)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := cnt.writes.Load(); n != 1 {
		t.Fatalf("%d writes, want 1", n)
	}
}

// A connection that is not held writes at once, on the Write's own
// goroutine.
func TestUnheldWritesAtOnce(t *testing.T) {
	bc, cnt, peer := pipe(t)
	for i := range 3 {
		done := make(chan error, 1)
		go func() { _, err := bc.Write([]byte{byte(i)}); done <- err }()
		if got := readAll(t, peer, 1); got[0] != byte(i) {
			t.Fatalf("read %d, want %d", got[0], i)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := cnt.writes.Load(); n != 3 {
		t.Fatalf("%d writes, want 3", n)
	}
}

// Close ends a Write stuck on a peer that never reads, and the Writes
// after it fail.
func TestCloseEndsStuckWrites(t *testing.T) {
	bc, _, _ := pipe(t)
	errs := make(chan error, 1)
	go func() {
		_, err := bc.Write(make([]byte, 1024))
		errs <- err
	}()
	// The pipe is synchronous: the Write is stuck until Close.
	select {
	case err := <-errs:
		t.Fatalf("a Write to a peer that never reads returned: %v", err)
	default:
	}
	bc.Close()
	select {
	case err := <-errs:
		if !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("the stuck Write: %v, want the socket's error", err)
		}
	case <-time.After(wait):
		t.Fatal("a stuck Write did not end with Close")
	}
	if _, err := bc.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

// A failure of the socket is returned by the Write that met it, by every
// Write after it, and by a Flush.
func TestSocketFailureSurfaces(t *testing.T) {
	bc, _, peer := pipe(t)
	peer.Close()
	if _, err := bc.Write(make([]byte, batchconn.Direct)); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("large Write: %v, want the socket's error", err)
	}
	if _, err := bc.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("small Write after the failure: %v, want the socket's error", err)
	}
	bc.Hold()
	if err := bc.Flush(); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Flush after the failure: %v, want the socket's error", err)
	}
}

// Behind, Writes return at once and a goroutine writes them, so that a
// close frame does not wait for a peer that is itself writing; Close
// ends that goroutine (goleak checks).
func TestBehindWritesReturnAtOnce(t *testing.T) {
	bc, _, peer := pipe(t)
	bc.Hold()
	if _, err := bc.Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	bc.Behind()
	done := make(chan error, 1)
	go func() { _, err := bc.Write([]byte("cd")); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("a Write behind waited for a peer that does not read")
	}
	if got := readAll(t, peer, 4); string(got) != "abcd" {
		t.Fatalf("read %q, want abcd", got)
	}
	if _, err := bc.Write(make([]byte, 1024)); err != nil { // stuck in the goroutine: nothing reads
		t.Fatal(err)
	}
	bc.Close()
	if _, err := bc.Write([]byte("x")); err == nil {
		t.Fatal("Write behind after Close succeeded")
	}
}

// Between Background and Foreground, Writes return once gathered (at
// most Limit of them wait) while a goroutine writes them; Foreground
// returns once all went out, and the Writes after it are the caller's
// again.
func TestBackgroundOverlapsAndForegroundWaits(t *testing.T) {
	bc, cnt, peer := pipe(t)
	var want []byte
	got := make(chan []byte, 1)
	total := 4*batchconn.Limit + 100
	go func() {
		buf := make([]byte, total)
		peer.SetReadDeadline(time.Now().Add(wait))
		_, err := io.ReadFull(peer, buf)
		if err != nil {
			buf = nil
		}
		got <- buf
	}()
	bc.Background()
	for i := 0; len(want) < total; i++ {
		p := bytes.Repeat([]byte{byte(i)}, min(4096, total-len(want)))
		want = append(want, p...)
		if _, err := bc.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := bc.Foreground(); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, want) {
			t.Fatal("the bytes arrived out of order or changed")
		}
	case <-time.After(wait):
		t.Fatal("the peer did not get every byte")
	}
	// No more writes than Writes: the goroutine writes what gathered
	// while it wrote, whole.
	if n := cnt.writes.Load(); n < 1 || n > int64((total+4095)/4096) {
		t.Errorf("%d writes reached the socket for %d Writes", n, (total+4095)/4096)
	}
	before := cnt.writes.Load()
	done := make(chan error, 1)
	go func() { _, err := bc.Write([]byte("x")); done <- err }()
	if b := readAll(t, peer, 1); b[0] != 'x' {
		t.Fatalf("read %q", b)
	}
	if err := <-done; err != nil || cnt.writes.Load() != before+1 {
		t.Fatalf("a Write after Foreground: %v, %d writes", err, cnt.writes.Load()-before)
	}
}
