// Package batchconn gathers a connection's small writes into large ones.
//
// A WebSocket peer writes each frame with a flush of its own, and a
// client masks what it sends through a 4 KiB buffer, writing each 4 KiB
// on its own: one system call per frame, or per 4 KiB. A Conn hands
// small writes to a goroutine of its own, which writes all that was
// gathered while its last write ran, in one call. An idle connection
// writes at once: nothing waits for a batch to fill.
package batchconn

import (
	"net"
	"sync"
)

// Bounds of the gathering.
const (
	// Limit bounds the bytes gathered; a small Write that would pass it
	// waits for the socket.
	Limit = 256 << 10
	// Direct is the size from which a Write goes to the socket itself,
	// after what was gathered before it, rather than being copied.
	Direct = 64 << 10
)

// Conn is a net.Conn whose small Writes are gathered. Write returns once
// its bytes are gathered (a large one once written); a failure of the
// socket is returned by the Writes after it. Close drops what was not
// yet written (a WebSocket's close handshake has finished, or was
// skipped, by then), and returns once the writing goroutine has ended.
type Conn struct {
	net.Conn

	mu      sync.Mutex
	cond    *sync.Cond
	pending []byte // gathered, not yet written
	spare   []byte // the last batch's buffer, reused
	busy    bool   // a write to the socket is under way
	err     error  // the socket's write failure, or net.ErrClosed
	running bool   // the writing goroutine runs: something was gathered
	writer  sync.WaitGroup
	close   sync.Once
}

// New wraps c. Its writing goroutine runs while something gathered waits
// for the socket, so that an idle connection holds none; Close waits for
// it.
func New(c net.Conn) *Conn {
	b := &Conn{Conn: c}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// Write gathers p for the socket, or writes it when it is large.
func (b *Conn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(p) >= Direct {
		for b.err == nil && (b.busy || len(b.pending) > 0) {
			b.cond.Wait()
		}
		if b.err != nil {
			return 0, b.err
		}
		b.busy = true
		b.mu.Unlock()
		n, err := b.Conn.Write(p)
		b.mu.Lock()
		b.wrote(err)
		return n, err
	}
	for b.err == nil && len(b.pending) > 0 && len(b.pending)+len(p) > Limit {
		b.cond.Wait()
	}
	if b.err != nil {
		return 0, b.err
	}
	b.pending = append(b.pending, p...)
	if !b.running {
		b.running = true
		b.writer.Add(1)
		go b.run()
	}
	b.cond.Broadcast()
	return len(p), nil
}

// wrote ends a write to the socket, under mu.
func (b *Conn) wrote(err error) {
	b.busy = false
	if err != nil && b.err == nil {
		b.err = err
	}
	b.cond.Broadcast()
}

// run writes what was gathered until nothing is left, or the connection
// closes or fails.
func (b *Conn) run() {
	defer b.writer.Done()
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		for b.err == nil && b.busy {
			b.cond.Wait()
		}
		if b.err != nil || len(b.pending) == 0 {
			b.running = false
			if cap(b.spare) > idleSpare {
				b.spare = nil // an idle connection keeps a small buffer at most
			}
			if cap(b.pending) > idleSpare {
				b.pending = nil
			}
			b.cond.Broadcast()
			return
		}
		batch := b.pending
		b.pending = b.spare[:0]
		b.busy = true
		b.cond.Broadcast() // room for the Writes that wait
		b.mu.Unlock()
		_, err := b.Conn.Write(batch)
		b.mu.Lock()
		if cap(batch) <= 2*Limit {
			b.spare = batch[:0]
		}
		b.wrote(err)
	}
}

// Close closes the socket and waits for the writing goroutine to end.
func (b *Conn) Close() error {
	err := net.ErrClosed
	b.close.Do(func() {
		b.mu.Lock()
		if b.err == nil {
			b.err = net.ErrClosed
		}
		b.cond.Broadcast()
		b.mu.Unlock()
		err = b.Conn.Close() // ends a write under way
		// No writer starts once err is set (under mu, above): one that
		// runs started before, and its Add happened before this Wait.
		b.writer.Wait()
	})
	return err
}

// idleSpare bounds the buffer an idle connection keeps for its next
// batch.
const idleSpare = 4 << 10
