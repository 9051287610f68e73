package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
)

// sweeper is a backend with temporaries to sweep: a disk store's Afero.
type sweeper interface {
	Sweep(ctx context.Context) (int, error)
	Swept() int
	Close() error
}

// historyFlags are the retention of past versions that serve and sweep
// take: --history-versions and --history-age, by default the Engine's.
type historyFlags struct {
	versions int
	age      time.Duration
}

func (h *historyFlags) add(cmd *cobra.Command, versionsUsage string) {
	cmd.Flags().IntVar(&h.versions, "history-versions", roomstore.DefaultHistoryVersions, versionsUsage)
	cmd.Flags().DurationVar(&h.age, "history-age", roomstore.DefaultHistoryAge, "how long a past version is kept once replaced (0: until --history-versions newer ones push it out)")
}

// resumableFlags are the limits of resumable uploads that serve and sweep
// take: --resumable-age and, for serve, --resumable-per-participant.
type resumableFlags struct {
	age            time.Duration
	perParticipant int
}

func (r *resumableFlags) add(cmd *cobra.Command) {
	r.perParticipant = roomstore.DefaultResumablePerParticipant
	cmd.Flags().DurationVar(&r.age, "resumable-age", roomstore.DefaultResumableAge, "how long an unfinished resumable (tus) upload is kept after its last write")
	if cmd.Name() == "serve" {
		cmd.Flags().IntVar(&r.perParticipant, "resumable-per-participant", roomstore.DefaultResumablePerParticipant, "unfinished resumable (tus) uploads one identity may hold in a room; one more gets 429")
	}
}

// option is the flags' WithResumable, or their one-line complaint.
func (r resumableFlags) option() (roomstore.Option, error) {
	if r.age <= 0 || r.perParticipant <= 0 {
		return nil, fmt.Errorf("--resumable-age and --resumable-per-participant must be positive")
	}
	return roomstore.WithResumable(roomstore.ResumableLimits{MaxAge: r.age, PerParticipant: r.perParticipant}), nil
}

// option is the flags' WithHistory, or their one-line complaint.
func (h historyFlags) option() (roomstore.Option, error) {
	if h.versions < 0 || h.age < 0 {
		return nil, fmt.Errorf("--history-versions and --history-age must not be negative (0 keeps no past versions, or keeps them without an age limit)")
	}
	return roomstore.WithHistory(roomstore.History{Versions: h.versions, MaxAge: h.age}), nil
}

func newSweepCmd(sf *storeFlags) *cobra.Command {
	var (
		hf historyFlags
		rf resumableFlags
	)
	cmd := fileCmd(sf, "sweep [--history-versions N] [--history-age D] [--resumable-age D]", "Remove a store's stale temporaries, expired past versions and abandoned uploads",
		`sweep removes what a store keeps but no longer needs:

On a disk store (file://), what writers that crashed (or were killed)
mid-upload left: their staged bytes, invisible but taking space, in the
store's reserved folder. The temporaries of writers still running, in
any process on this host, are left alone, and so are those of other hosts
sharing the directory. It prints how many it removed. Every opening of a
disk store sweeps too (the other commands do so silently), so this is for
stores that long-running processes share, which may crash meanwhile.

On every store opened directly (mem://, file://, s3://, gs://), the past
versions beyond the retention of --history-versions and --history-age
(serve's flags, and their defaults: give the ones the store is served
with, since sweep removes what they no longer keep; --history-versions 0
removes every past version). It prints how many it expired. An engine
that runs does so itself every hour; sweep is for stores no long-running
engine serves. A room server's room (ws://) is swept by its server.

On every store opened directly, the resumable (tus) uploads left
unfinished for longer than --resumable-age since their last write (serve's
flag, and its default), with their bytes.`,
		cobra.NoArgs,
		func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			keep, err := hf.option()
			if err != nil {
				return usagef("sweep: %v", err)
			}
			resumable, err := rf.option()
			if err != nil {
				return usagef("sweep: %v", err)
			}
			raw := sf.target()
			u, err := url.Parse(raw)
			if err != nil {
				return fmt.Errorf("--store: %s is not a URL", redactedURL(raw))
			}
			scheme := strings.ToLower(u.Scheme)
			switch {
			case sf.isRoom():
				return errors.New("sweep: a room server expires its rooms' past versions itself (roomstore serve --history-versions, --history-age), and its stores' temporaries are swept where it runs")
			case !slices.Contains(backend.Schemes(), scheme):
				return fmt.Errorf("--store %s: unknown scheme %q (known: %s)", redactedURL(raw), u.Scheme, schemeList())
			case scheme == "file":
				if err := storeDirExists(u); err != nil {
					return err
				}
			}
			octx, cancel := context.WithTimeout(ctx, connectTimeout)
			defer cancel()
			b, err := backend.Open(octx, raw)
			if err != nil {
				return fmt.Errorf("--store %s: %s", redactedURL(raw), reason(err))
			}
			defer b.Close()
			out := cmd.OutOrStdout()
			if s, ok := b.(sweeper); ok {
				n, err := s.Sweep(ctx)
				n += s.Swept()
				if err != nil {
					return fmt.Errorf("sweep: %s (after removing %d)", reason(err), n)
				}
				if _, err := fmt.Fprintf(out, "%d stale %s removed\n", n, plural(n, "temporary", "temporaries")); err != nil {
					return err
				}
			}
			return expire(ctx, b, out, keep, resumable)
		})
	hf.add(cmd, "how many past versions of each file to keep (0: none; every kept version is removed)")
	rf.add(cmd)
	return cmd
}

// expire removes the past versions of b beyond the history opts set
// (see roomstore.WithHistory) and prints how many.
func expire(ctx context.Context, b backend.Backend, out io.Writer, opts ...roomstore.Option) error {
	e, err := roomstore.New(b, opts...)
	if err != nil {
		return fmt.Errorf("sweep: %s", reason(err))
	}
	n, err := e.Expire(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if serr := e.Shutdown(sctx); err == nil && serr != nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("sweep: expiring past versions: %s (after expiring %d)", reason(err), n)
	}
	_, err = fmt.Fprintf(out, "%d past %s expired\n", n, plural(n, "version", "versions"))
	return err
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
