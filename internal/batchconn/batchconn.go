// Package batchconn gathers a connection's small writes into large ones.
//
// A WebSocket peer writes each frame with a flush of its own, and the
// room protocol sends each message as two frames (a header and its data),
// so that a reply, and the replies a call sends together, would cost a
// system call per frame and wake the peer's reader for each. The writer
// of a Conn says when more is coming (Hold) and when it is done (Flush):
// what it writes in between reaches the socket in one call (writev, for a
// large payload after small frames). Writes outside a Hold go to the
// socket at once. Every write is made by the goroutine that has the
// bytes: none is handed to another, so that nothing waits for a goroutine
// to be scheduled.
package batchconn

import (
	"net"
	"sync"
)

// Bounds of the gathering.
const (
	// Limit bounds the bytes gathered; a Write that would pass it writes
	// what was gathered, and itself, at once.
	Limit = 256 << 10
	// Direct is the size from which a Write goes to the socket itself,
	// after what was gathered before it, rather than being copied.
	Direct = 64 << 10
)

// Conn is a net.Conn whose Writes are gathered while held. Write returns
// once its bytes are gathered, or written; a failure of the socket is
// returned by the Write (or Flush) that met it and by every one after
// it. Writes hold a lock across the system call, so that bytes keep
// their order; Close does not take it, and ends a write stuck on a peer
// that stopped reading.
type Conn struct {
	net.Conn

	mu      sync.Mutex
	held    int    // Holds not yet flushed
	pending []byte // gathered, not yet written
	err     error  // the socket's write failure

	// Behind (for good, or between Background and Foreground), Writes
	// are gathered for a goroutine of the Conn's, which runs while some
	// wait.
	behind  bool
	forever bool // Behind was called
	closed  bool
	running bool
	writer  sync.WaitGroup
	cond    *sync.Cond // the goroutine took or wrote a batch, or ended
	spare   []byte     // the goroutine's last batch, reused
}

// New wraps c.
func New(c net.Conn) *Conn {
	b := &Conn{Conn: c}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// Hold gathers the Writes that follow, until the matching Flush. Holds
// nest; every Hold needs its Flush.
func (b *Conn) Hold() {
	b.mu.Lock()
	b.held++
	b.mu.Unlock()
}

// Flush ends a Hold: the last one writes what was gathered. It returns
// the socket's failure, if one happened.
func (b *Conn) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held > 0 {
		b.held--
	}
	if b.held > 0 || len(b.pending) == 0 || b.err != nil || b.behind {
		return b.err
	}
	return b.writeLocked(nil)
}

// Behind makes the Writes from now on return at once, their bytes
// written by a goroutine of the Conn's: for a close handshake, whose
// close frame must not wait for a peer that is itself stuck writing a
// message the handshake would read and drop. Close waits for that
// goroutine.
func (b *Conn) Behind() {
	b.mu.Lock()
	b.behind, b.forever = true, true
	if len(b.pending) > 0 && !b.running && b.err == nil && !b.closed {
		b.running = true
		b.writer.Add(1)
		go b.run()
	}
	b.mu.Unlock()
}

// Background makes the Writes until Foreground return once gathered, a
// goroutine of the Conn's writing them meanwhile: for a large message
// whose writer has more to do per byte than the socket (a client masks
// every byte), so that the two overlap. What was gathered before goes
// first.
func (b *Conn) Background() {
	b.mu.Lock()
	b.behind = true
	b.mu.Unlock()
}

// Foreground ends Background: it waits until the goroutine has written
// what was gathered, and returns the socket's failure, if one happened.
func (b *Conn) Foreground() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.forever {
		return b.err
	}
	if len(b.pending) > 0 && !b.running && b.err == nil && !b.closed {
		b.running = true
		b.writer.Add(1)
		go b.run()
	}
	for b.running {
		b.cond.Wait()
	}
	b.behind = false
	return b.err
}

// run writes what Writes gathered behind, until nothing is left or the
// socket fails.
func (b *Conn) run() {
	defer b.writer.Done()
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.pending) > 0 && b.err == nil {
		batch := b.pending
		b.pending, b.spare = b.spare[:0], nil
		b.cond.Broadcast() // room for the Writes that wait
		b.mu.Unlock()
		_, err := b.Conn.Write(batch)
		b.mu.Lock()
		if cap(batch) <= 2*Limit {
			b.spare = batch
		}
		if err != nil && b.err == nil {
			b.err = err
		}
	}
	b.running = false
	b.cond.Broadcast()
}

// Close closes the socket, which ends a write under way, and waits for
// the goroutine of Behind.
func (b *Conn) Close() error {
	err := b.Conn.Close()
	b.mu.Lock()
	b.closed = true // no goroutine starts after this
	b.mu.Unlock()
	b.writer.Wait()
	return err
}

// Write gathers p while the Conn is held, or writes it, after what was
// gathered, when it is not, when it is large or when the gathered bytes
// would pass Limit.
func (b *Conn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if b.behind {
		// At most Limit gathered: past it the Write waits for the
		// goroutine to take what waits.
		for !b.forever && b.running && len(b.pending) > 0 && len(b.pending)+len(p) > Limit && b.err == nil {
			b.cond.Wait()
		}
		if b.err != nil {
			return 0, b.err
		}
		if b.closed {
			return 0, net.ErrClosed
		}
		b.pending = append(b.pending, p...)
		if !b.running {
			b.running = true
			b.writer.Add(1)
			go b.run()
		}
		return len(p), nil
	}
	if b.held > 0 && len(p) < Direct && len(b.pending)+len(p) <= Limit {
		b.pending = append(b.pending, p...)
		return len(p), nil
	}
	if err := b.writeLocked(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeLocked writes what was gathered, then p, in one call; mu is held.
func (b *Conn) writeLocked(p []byte) error {
	var err error
	switch {
	case len(b.pending) == 0:
		_, err = b.Conn.Write(p)
	case len(p) == 0:
		_, err = b.Conn.Write(b.pending)
	default:
		bufs := net.Buffers{b.pending, p}
		_, err = bufs.WriteTo(b.Conn)
	}
	if cap(b.pending) > idleSpare {
		b.pending = nil // an idle connection keeps a small buffer at most
	} else {
		b.pending = b.pending[:0]
	}
	if err != nil {
		b.err = err
	}
	return err
}

// idleSpare bounds the buffer a connection keeps for its next batch.
const idleSpare = 16 << 10
