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

// Small writes made while the socket is busy reach it as one write, in
// order; a large one goes after them, whole.
func TestGathersWhileBusy(t *testing.T) {
	bc, cnt, peer := pipe(t)
	var want []byte
	for i := range 100 {
		p := bytes.Repeat([]byte{byte(i)}, 100)
		want = append(want, p...)
		if n, err := bc.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write %d: %d, %v", i, n, err)
		}
	}
	big := bytes.Repeat([]byte("x"), batchconn.Direct)
	want = append(want, big...)
	done := make(chan error, 1)
	go func() { _, err := bc.Write(big); done <- err }()
	got := readAll(t, peer, len(want))
	if !bytes.Equal(got, want) {
		t.Fatal("the bytes arrived out of order or changed")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("the large Write did not return")
	}
	// The peer read nothing until all 100 were made, so the first write
	// took what was gathered when it began and the second the rest.
	if n := cnt.writes.Load(); n > 3 {
		t.Fatalf("%d writes reached the socket for 100 small ones and a large one, want at most 3", n)
	}
}

// An idle connection writes at once.
func TestIdleWritesAtOnce(t *testing.T) {
	bc, _, peer := pipe(t)
	for i := range 3 {
		if _, err := bc.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, peer, 1); got[0] != byte(i) {
			t.Fatalf("read %d, want %d", got[0], i)
		}
	}
}

// Writes past Limit wait for a stuck socket, and Close ends them and the
// writing goroutine (goleak checks), even with the peer never reading.
func TestCloseEndsStuckWrites(t *testing.T) {
	bc, _, _ := pipe(t)
	const piece = 1024
	progress := make(chan int, 4*batchconn.Limit/piece)
	errs := make(chan error, 1)
	go func() {
		p := make([]byte, piece)
		total := 0
		for {
			if _, err := bc.Write(p); err != nil {
				errs <- err
				return
			}
			total += piece
			progress <- total
		}
	}()
	// Past Limit, a batch is stuck in the socket (nothing reads) and the
	// writer fills the next one, where it will wait.
	timeout := time.After(wait)
	for total := 0; total <= batchconn.Limit; {
		select {
		case total = <-progress:
		case <-timeout:
			t.Fatal("the writes did not fill the batch")
		}
	}
	bc.Close()
	select {
	case err := <-errs:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(wait):
		t.Fatal("a Write stuck on a full batch did not end with Close")
	}
	if _, err := bc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if err := bc.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

// A failure of the socket is returned by the Write that met it (a large
// one writes itself) and by every Write after it.
func TestSocketFailureSurfaces(t *testing.T) {
	bc, _, peer := pipe(t)
	peer.Close()
	if _, err := bc.Write(make([]byte, batchconn.Direct)); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("large Write: %v, want the socket's error", err)
	}
	if _, err := bc.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("small Write after the failure: %v, want the socket's error", err)
	}
}
