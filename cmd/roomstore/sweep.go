package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/roomstore/roomstore/backend"
)

// sweeper is a backend with temporaries to sweep: a disk store's Afero.
type sweeper interface {
	Sweep(ctx context.Context) (int, error)
	Swept() int
	Close() error
}

func newSweepCmd(sf *storeFlags) *cobra.Command {
	return fileCmd(sf, "sweep", "Remove the stale temporaries of a disk store",
		`sweep removes what writers that crashed (or were killed) mid-upload left
in a disk store (file://): their staged bytes, invisible but taking space,
in the store's reserved folder. The temporaries of writers still running,
in any process on this host, are left alone, and so are those of other
hosts sharing the directory. It prints how many it removed. Every opening
of a disk store sweeps too (the other commands do so silently), so this is
for stores that long-running processes share, which may crash meanwhile.`,
		cobra.NoArgs,
		func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			raw := sf.target()
			u, err := url.Parse(raw)
			if err != nil || strings.ToLower(u.Scheme) != "file" {
				what := "this store"
				if err == nil && u.Scheme != "" {
					what = strings.ToLower(u.Scheme) + ":// stores"
				}
				return fmt.Errorf("sweep: only disk stores (file://) keep temporaries to sweep, not %s", what)
			}
			if err := storeDirExists(u); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, connectTimeout)
			defer cancel()
			b, err := backend.Open(ctx, raw)
			if err != nil {
				return fmt.Errorf("--store %s: %s", redactedURL(raw), reason(err))
			}
			defer b.Close()
			s, ok := b.(sweeper)
			if !ok {
				return errors.New("sweep: this store cannot be swept")
			}
			n, err := s.Sweep(ctx)
			n += s.Swept()
			if err != nil {
				return fmt.Errorf("sweep: %s (after removing %d)", reason(err), n)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%d stale %s removed\n", n, plural(n, "temporary", "temporaries"))
			return err
		})
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
