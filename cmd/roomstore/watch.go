package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/roompath"
)

// watchHeartbeat is how often watch checks that the room server is still
// there: events alone cannot tell a quiet room from a lost connection.
const watchHeartbeat = 5 * time.Second

// jsonEvent is an event as watch --json prints it.
type jsonEvent struct {
	Time        time.Time `json:"time"`
	Type        string    `json:"type"`
	Path        string    `json:"path,omitempty"`
	SourcePath  string    `json:"source_path,omitempty"`
	Participant string    `json:"participant,omitempty"`
	Name        string    `json:"participant_name,omitempty"`
	Dropped     uint64    `json:"dropped,omitempty"`
}

func newWatchCmd(sf *storeFlags) *cobra.Command {
	var asJSON bool
	cmd := fileCmd(sf, "watch [PATH]", "Print each change to the room as it happens",
		`watch prints one line per change to the files at or beneath PATH (the
whole room without PATH) as the room server reports it, whoever makes it:
time (UTC), event (file.updated, file.deleted or file.moved), path,
participant (the name in its token, or its id where the room server cannot
name it), and for a move the path it came from. With --json each line is
one JSON object: {"time", "type", "path", "source_path", "participant"
(the id), "participant_name"}.
Once subscribed it says so on standard error, then runs until Ctrl-C (exit
status 0) or until the room server is lost (1).

If watch falls behind (its output blocked), the events it could not keep
are counted and reported, as a line on standard error (with --json, also an
object of type "events.overflow" with "dropped"), and it goes on.

watch needs a room server (--store ws://HOST:PORT/rooms/ROOM): a store
opened directly by this command would show only the command's own changes.`,
		cobra.MaximumNArgs(1),
		func(ctx context.Context, cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				if err := checkPath("watch", args[0], roompath.TargetAny); err != nil {
					return err
				}
				prefix = strings.Trim(args[0], "/")
			}
			if !sf.isRoom() {
				return errors.New("watch: a store opened directly shows only this command's own changes; watch a room server's room (--store ws://HOST:PORT/rooms/ROOM)")
			}
			return withStore(ctx, sf, false, func(s store) error {
				w, ok := s.(watchable)
				if !ok {
					return errors.New("watch: this store cannot be watched")
				}
				return watch(ctx, w, prefix, cmd.OutOrStdout(), cmd.ErrOrStderr(), asJSON)
			})
		})
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per event")
	return cmd
}

// watchable is a store whose every participant's changes reach this
// process: a room server's room (clientStore).
type watchable interface {
	Subscribe(handler func(events.Event)) *roomstore.Subscription
	Alive(ctx context.Context) error
}

// watchQueue bounds the lines waiting for watch's output; past it the
// events are counted as lost, so that a blocked output never blocks the
// store's event delivery, nor Ctrl-C.
const watchQueue = 4096

// watch prints the events beneath prefix until ctx ends or the store is
// lost. The handler only queues lines: a writer prints them, and is not
// waited for at the end, when it may be stuck on an output nobody reads
// (the process ends then). Every event is printed or counted in a loss
// report.
func watch(ctx context.Context, s watchable, prefix string, out, errOut io.Writer, asJSON bool) error {
	queue := make(chan string, watchQueue)
	wake := make(chan struct{}, 1) // a loss to report
	var lost atomic.Uint64         // events lost since the writer last said so
	report := func() {
		n := lost.Swap(0)
		if n == 0 {
			return
		}
		fmt.Fprintf(errOut, "roomstore: watch: %d events were lost here (the output could not keep up)\n", n)
		if asJSON {
			b, _ := json.Marshal(jsonEvent{Time: time.Now().UTC(), Type: events.TypeOverflow, Dropped: n})
			fmt.Fprintln(out, string(b))
		}
	}
	go func() {
		for {
			select {
			case l := <-queue:
				report()
				fmt.Fprintln(out, l)
			case <-wake:
				report()
			}
		}
	}()
	lose := func(n uint64) {
		lost.Add(n)
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	handler := func(e events.Event) {
		if e.Type == events.TypeOverflow {
			lose(max(e.Dropped, 1)) // 0: the server could not say how many
			return
		}
		if !beneath(e.Path, prefix) && !(e.SourcePath != "" && beneath(e.SourcePath, prefix)) {
			return
		}
		select {
		case queue <- formatEvent(e, asJSON):
		default:
			lose(1)
		}
	}
	sub := s.Subscribe(handler)
	defer sub.Unsubscribe()
	where := "the room"
	if prefix != "" {
		where = prefix
	}
	fmt.Fprintf(errOut, "roomstore: watching %s for changes (Ctrl-C stops)\n", where)
	tick := time.NewTicker(watchHeartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			hctx, cancel := context.WithTimeout(ctx, connectTimeout)
			err := s.Alive(hctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("watch: lost the room server: %s", reason(err))
			}
		}
	}
}

// formatEvent is watch's line for e: time, type, path, participant and,
// for a move, where from; or one JSON object.
func formatEvent(e events.Event, asJSON bool) string {
	if asJSON {
		b, _ := json.Marshal(jsonEvent{Time: e.Time.UTC(), Type: e.Type, Path: e.Path, SourcePath: e.SourcePath, Participant: e.ParticipantID, Name: e.ParticipantName})
		return string(b)
	}
	who := e.ParticipantName // the name of the participant's token
	if who == "" {
		who = e.ParticipantID // a change the server cannot name
	}
	if who == "" {
		who = "-"
	} else {
		who = shown(who)
	}
	line := fmt.Sprintf("%s  %-12s  %s  %s", e.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"), e.Type, shown(e.Path), who)
	if e.SourcePath != "" {
		line += "  (from " + shown(e.SourcePath) + ")"
	}
	return line
}

// beneath reports whether the store path p is prefix or lies beneath it.
func beneath(p, prefix string) bool {
	return prefix == "" || p == prefix || strings.HasPrefix(p, prefix+"/")
}
