package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// repeatWindow is how long after the first SIGINT or SIGTERM another one
// is the same request delivered again rather than a second Ctrl-C: a
// terminal signals the whole foreground process group, and timeout(1) or
// a shell script may signal both the process and its group, so one Ctrl-C
// can arrive twice within microseconds, while a person pressing it again
// takes far longer.
const repeatWindow = time.Second

// interruptContext returns a context that ends on the first SIGINT or
// SIGTERM, so that the command winds down cleanly. A signal repeatWindow
// or more after the first calls hard with it, which must end the
// process; one sooner is ignored. The signals stay handled for the life
// of the process: none arriving as it ends can kill it before it has
// said why it ends.
func interruptContext(parent context.Context, hard func(os.Signal)) context.Context {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		first := time.Now()
		cancel()
		for sig := range sigs {
			if time.Since(first) >= repeatWindow {
				hard(sig)
			}
		}
	}()
	return ctx
}

// signalStatus is the exit status of a process that a second sig ends:
// 128 plus the signal's number, as a shell reports a process the signal
// killed (130 for SIGINT).
func signalStatus(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}
