package events

import (
	"fmt"
	"io/fs"
	"log/slog"
)

// Option configures New. An Option returns an error, wrapping
// fs.ErrInvalid, when its argument is unusable; New then fails with it.
type Option func(*Bus) error

// WithBuffer sets how many events may wait for each subscriber (default
// DefaultBuffer). Past that, events are dropped for that subscriber only,
// counted (Subscription.Dropped), logged and marked in its stream by an
// event of type TypeOverflow, which has room even in a full queue. The
// queue grows on demand up to n and gives its memory back when it drains,
// so a large n costs only while events are actually waiting. An n below 1 makes New fail with an
// error wrapping fs.ErrInvalid.
func WithBuffer(n int) Option {
	return func(b *Bus) error {
		if n < 1 {
			return fmt.Errorf("events: buffer must be at least 1, got %d: %w", n, fs.ErrInvalid)
		}
		b.buffer = n
		return nil
	}
}

// WithHistory sets how many of the latest published events the bus keeps
// for SubscribeAfter and EventsAfter (default DefaultHistory); 0 keeps
// none, so that only a subscriber that missed nothing resumes without an
// overflow event. The history holds only what was published: it grows as
// events are published, up to n, so an idle bus costs nothing for it.
// Each event held costs its slot (the Event and its topic, 208 bytes)
// and keeps its strings (path, ids, ETag) alive until it leaves: about
// 350 bytes an event with 40-byte paths, 1.4 MiB for the default
// (TestWhatAFullHistoryCosts measures it). An n below 0 makes New fail
// with an error wrapping fs.ErrInvalid.
func WithHistory(n int) Option {
	return func(b *Bus) error {
		if n < 0 {
			return fmt.Errorf("events: history must not be negative, got %d: %w", n, fs.ErrInvalid)
		}
		b.hist.max = n
		return nil
	}
}

// WithLogger sets where recovered panics and dropped events are logged
// (default slog.Default()). A nil l makes New fail with an error wrapping
// fs.ErrInvalid.
func WithLogger(l *slog.Logger) Option {
	return func(b *Bus) error {
		if l == nil {
			return fmt.Errorf("events: WithLogger(nil): %w", fs.ErrInvalid)
		}
		b.log = l
		return nil
	}
}

// WithObserver makes the bus tell o, as they happen, of the events it
// accepts, delivers and drops (see Observer): the hook for counters and
// metrics, which the bus does not keep itself. A nil o makes New fail with
// an error wrapping fs.ErrInvalid.
func WithObserver(o Observer) Option {
	return func(b *Bus) error {
		if o == nil {
			return fmt.Errorf("events: WithObserver(nil): %w", fs.ErrInvalid)
		}
		b.obs = o
		return nil
	}
}

// WithAdmit makes Publish ask admit about every event before it accepts
// it: an event for which admit returns false is not published (nor told
// to the Observer). It is how an engine refuses an event of another
// engine that reports a change it has reported already. admit is called
// from the publisher's goroutine, concurrently for concurrent Publish
// calls, and must not call Publish. A nil admit makes New fail with an
// error wrapping fs.ErrInvalid.
func WithAdmit(admit func(Event) bool) Option {
	return func(b *Bus) error {
		if admit == nil {
			return fmt.Errorf("events: WithAdmit(nil): %w", fs.ErrInvalid)
		}
		b.admit = admit
		return nil
	}
}
