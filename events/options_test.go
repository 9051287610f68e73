package events_test

import (
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"testing"

	"github.com/roomstore/roomstore/events"
)

func TestNewRejectsUnusableOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []events.Option
		want string
	}{
		{"nil logger", []events.Option{events.WithLogger(nil)}, "events: WithLogger(nil)"},
		{"zero buffer", []events.Option{events.WithBuffer(0)}, "events: buffer must be at least 1, got 0"},
		{"negative buffer", []events.Option{events.WithBuffer(-5)}, "events: buffer must be at least 1, got -5"},
		{"nil option", []events.Option{nil}, "events: option 0 is nil"},
		{"nil observer", []events.Option{events.WithObserver(nil)}, "events: WithObserver(nil)"},
		{"the first bad one", []events.Option{events.WithBuffer(8), events.WithBuffer(0), events.WithLogger(nil)}, "got 0"},
	} {
		b, err := events.New(c.opts...)
		if b != nil || !errors.Is(err, fs.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New = %v, %v; want nil and an error wrapping fs.ErrInvalid that says %q", c.name, b, err, c.want)
		}
	}
}

func TestNewAppliesUsableOptions(t *testing.T) {
	for _, opts := range [][]events.Option{
		nil,
		{events.WithBuffer(1)},
		{events.WithLogger(slog.New(slog.DiscardHandler)), events.WithBuffer(1 << 30)},
	} {
		b, err := events.New(opts...)
		if err != nil || b == nil {
			t.Fatalf("New(%d options) = %v, %v", len(opts), b, err)
		}
		closeBus(t, b)
	}
}
