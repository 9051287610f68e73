// Command roomstore works on roomstore stores and rooms, and serves rooms
// to remote participants over the MeshAgent room protocol.
//
//	roomstore ls -r                                  # the store in ./roomstore-data
//	roomstore --store s3://bucket/rooms/r1 put notes.txt notes/a.txt
//	roomstore --store ws://127.0.0.1:8080/rooms/r1 --token "$T" watch
//
//	export ROOMSTORE_TOKEN_SECRET=...        # the HS256 secret of the tokens
//	roomstore serve --listen 127.0.0.1:8080  # the rooms in ./roomstore-rooms/{room}
//	roomstore token --name alice --room r1   # a token for ws://127.0.0.1:8080/rooms/r1
//
// The file commands (ls, stat, usage, put, get, rm, mv, url, watch,
// versions, restore, deleted, sweep) work on the store named by --store
// (default $ROOMSTORE_STORE, else file://./roomstore-data): a store URL
// (mem://, file://, s3://, gs://) opened directly, or a room server's
// room, ws://HOST:PORT/rooms/ROOM, reached with the participant token of
// --token (default $ROOMSTORE_TOKEN).
//
// serve keeps each room in a store of its own, by default
// file://./roomstore-rooms/{room}: beside the file commands' default store,
// never inside it, so that a file command run in the same directory
// without --store cannot reach the rooms. A file command whose file://
// store overlaps the rooms of a running serve on the same host (is their
// directory, lies inside it, or holds it as a subfolder) says so in one
// line, "roomstore: warning: ...", before it acts.
//
// Exit status: 0 on success (serve: after a clean shutdown on SIGINT or
// SIGTERM); 1 on failure, with one line on stderr such as "roomstore: get
// notes/x.txt: file does not exist"; 2 on a usage error (an unknown command
// or flag, a missing argument), with the usage hint on stderr; 3 when a
// precondition failed (put, rm or mv with --if-match or --if-none-match:
// the file is not the version named, and nothing changed). Ctrl-C (or
// SIGTERM) aborts a command cleanly ("interrupted", status 1; watch and
// serve exit 0); a second one, a second or more after the first, stops it
// at once with the line "roomstore: interrupted again, stopped at once"
// and status 130 (143 for SIGTERM). The same signal delivered twice at
// once, to the process and to its group, counts as one.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// secretEnv names the environment variable that holds the token secret:
// never a flag, so that it stays out of process listings and shell history.
const secretEnv = "ROOMSTORE_TOKEN_SECRET"

// main runs the command with a context that the first SIGINT or SIGTERM
// ends, so that a transfer is aborted cleanly (put, get) or a server
// shuts down (serve). A second signal, repeatWindow or more after the
// first, ends the process at once with one line and status 128 plus the
// signal's number (130 for Ctrl-C); the same signal delivered again
// sooner (to the process and to its group) changes nothing. Signals stay
// handled until the process exits, so that none arriving as it ends
// kills it before it prints its line.
func main() {
	ctx := interruptContext(context.Background(), func(sig os.Signal) {
		fmt.Fprintln(os.Stderr, "roomstore: interrupted again, stopped at once")
		os.Exit(signalStatus(sig))
	})
	os.Exit(run(ctx, os.Args[1:]))
}

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(os.Stderr, "roomstore: %v\n", err)
	var (
		f  failed
		pf preconditionFailed
	)
	switch {
	case errors.As(err, &pf):
		return exitPrecondition
	case errors.As(err, &f):
		return 1
	}
	return 2 // cobra's: a flag, argument or command it could not take
}

// exitPrecondition is the exit status of a change refused by its
// precondition (--if-match, --if-none-match), which a script tells apart
// from other failures: read the file again, then retry.
const exitPrecondition = 3

// failed marks an error of a command that ran: exit status 1. Every other
// error is a usage error.
type failed struct{ err error }

func (f failed) Error() string { return f.err.Error() }
func (f failed) Unwrap() error { return f.err }

// failure marks err, unless nil or a usage error, as a failure.
func failure(err error) error {
	var u usageError
	if err == nil || errors.As(err, &u) {
		return err
	}
	return failed{err}
}

// usageError is a command line the command cannot take: exit status 2.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// usageArgs wraps an argument check so that its complaint reads as a
// usage error with the hint to the command's help.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			if !cmd.HasParent() {
				return usagef("%v (see '%s --help')", err, cmd.CommandPath())
			}
			return usagef("%s: %v (see '%s --help')", cmd.Name(), err, cmd.CommandPath())
		}
		return nil
	}
}

// newRootCmd returns the roomstore command with every subcommand. Each
// subcommand lives in a file of its own and reports its failures as
// errors, which main prints once.
func newRootCmd() *cobra.Command {
	var sf storeFlags
	root := &cobra.Command{
		Use:   "roomstore",
		Short: "Work on roomstore stores and rooms, and serve rooms over the MeshAgent room protocol",
		Long: `roomstore lists, reads, writes and watches the files of roomstore stores
and rooms, and serves rooms over the MeshAgent room protocol.

The file commands work on the store named by --store (default
$` + storeEnv + `, else ` + defaultStore + `):
  a store URL, opened directly:   mem://, file:///abs/dir, file://./rel/dir,
                                  s3://bucket/prefix?region=R, gs://bucket/prefix
  a room server's room:           ws://HOST:PORT/rooms/ROOM (or wss://; http:// and
                                  https:// are taken as ws:// and wss://), with the
                                  participant token of --token (default $` + tokenEnv + `)

serve serves each room at ws://ADDR/rooms/{room} on a store of its own
(by default ` + defaultRoomsStore + `, beside the file commands'
default store rather than in it), with tokens signed with the secret in
` + secretEnv + ` (see token). A file command whose file:// store overlaps
the rooms of a running serve on this host warns first, in one line
("roomstore: warning: ...").

Exit status: 0 on success; 1 on failure, with one line on standard error
("roomstore: get notes/x.txt: file does not exist"); 2 on a usage error;
3 when --if-match or --if-none-match found another version (nothing
changed). Ctrl-C aborts a command cleanly; a second Ctrl-C, a second or
more after the first, stops it at once (status 130).`,
		Example: `  roomstore put report.pdf docs/report.pdf
  roomstore ls -r
  cat big.bin | roomstore put - data/big.bin --overwrite
  roomstore get docs/report.pdf ./report.pdf
  roomstore --store ws://127.0.0.1:8080/rooms/r1 --token "$(roomstore token --name me --room r1)" watch`,
		Args:              usageArgs(cobra.NoArgs),
		SilenceUsage:      true, // a failure is one line, not the usage text
		SilenceErrors:     true, // main prints the error once
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: true},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return usagef("a command is needed (see '%s --help')", cmd.CommandPath())
		},
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usagef("%v (see '%s --help')", err, c.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.StringVar(&sf.url, "store", "", "store URL or ws://HOST:PORT/rooms/ROOM (default $"+storeEnv+", else "+defaultStore+")")
	pf.StringVar(&sf.token, "token", "", "participant token for a ws:// store (default $"+tokenEnv+")")
	pf.DurationVar(&sf.timeout, "timeout", 0, "bound on the whole command (default 2m; none for put, get and watch)")
	root.AddCommand(
		newLsCmd(&sf), newStatCmd(&sf), newUsageCmd(&sf), newPutCmd(&sf), newGetCmd(&sf), newRmCmd(&sf),
		newMvCmd(&sf), newURLCmd(&sf), newWatchCmd(&sf), newVersionsCmd(&sf), newRestoreCmd(&sf),
		newDeletedCmd(&sf), newSweepCmd(&sf), newServeCmd(), newTokenCmd(),
	)
	for _, c := range root.Commands() {
		if c.Args == nil {
			c.Args = usageArgs(cobra.NoArgs)
		}
		if run := c.RunE; run != nil {
			c.RunE = func(cmd *cobra.Command, args []string) error { return failure(run(cmd, args)) }
		}
		if c.Name() == "serve" || c.Name() == "token" {
			// They take the file commands' flags from the root too; refuse
			// them rather than ignore them.
			c.PreRunE = func(cmd *cobra.Command, _ []string) error {
				for _, name := range []string{"token", "timeout", "store"} {
					if f := cmd.InheritedFlags().Lookup(name); f != nil && f.Changed {
						return usagef("%s: --%s is for the file commands (see '%s --help')", cmd.Name(), name, cmd.CommandPath())
					}
				}
				return nil
			}
		}
	}
	return root
}

// tokenSecret returns the token secret from the environment, or nil.
func tokenSecret() []byte {
	if s := os.Getenv(secretEnv); s != "" {
		return []byte(s)
	}
	return nil
}
