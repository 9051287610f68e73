package events

import (
	"bytes"
	"runtime"
	"strconv"
)

// InHandler reports whether the caller runs inside a handler of this bus
// (on one of its delivery goroutines), where waiting for delivery would
// wait for itself. Should the runtime ever stop reporting goroutine ids
// (see the package documentation), it reports true: the answer that makes
// a caller deciding whether to wait not wait, rather than deadlock.
func (b *Bus) InHandler() bool { return b.inHandler() }

func (b *Bus) inHandler() bool { return b.delivers(goid()) }

// delivers reports whether id is one of the bus's delivery goroutines. Id 0
// means goid could not read the id; then it reports true, so that
// Unsubscribe, Close and callers of InHandler do not wait (the worst that
// can happen is that Unsubscribe returns while a call of the handler is
// still running) rather than wait, possibly for themselves, forever.
func (b *Bus) delivers(id uint64) bool {
	if id == 0 {
		return true
	}
	_, ok := b.deliverers.Load(id)
	return ok
}

// goid returns the current goroutine's id, or 0 if it cannot be read.
// The runtime does not export it; the bus needs it only to tell its own
// delivery goroutines apart: once when a subscriber's goroutine starts, and
// on the rare paths of Unsubscribe, Close and InHandler. It reads the first
// line of runtime.Stack, whose format the package documentation discusses.
func goid() uint64 {
	var buf [64]byte
	return parseGoid(buf[:runtime.Stack(buf[:], false)])
}

// parseGoid returns N from a traceback that starts "goroutine N [" (or
// "goroutine N gp=...", as with GOTRACEBACK=system), or 0 for anything else.
func parseGoid(stack []byte) uint64 {
	rest, ok := bytes.CutPrefix(stack, []byte("goroutine "))
	if !ok {
		return 0
	}
	digits, _, ok := bytes.Cut(rest, []byte(" "))
	if !ok || len(digits) == 0 {
		return 0
	}
	id, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil {
		return 0 // not a number, or more than 64 bits of one
	}
	return id
}
