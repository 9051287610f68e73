// Command roomstore serves roomstore rooms to remote participants over the
// MeshAgent room protocol and mints the tokens they connect with.
//
//	export ROOMSTORE_TOKEN_SECRET=...        # the HS256 secret of the tokens
//	roomstore serve --store 'file://./roomstore-data/{room}' --listen 127.0.0.1:8080
//	roomstore token --name alice --room r1   # a token for ws://127.0.0.1:8080/rooms/r1
//
// Every command writes its errors to stderr and exits with status 1 on
// failure, 0 on success (serve: after a clean shutdown on SIGINT or
// SIGTERM).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// secretEnv names the environment variable that holds the token secret:
// never a flag, so that it stays out of process listings and shell history.
const secretEnv = "ROOMSTORE_TOKEN_SECRET"

func main() {
	if err := newRootCmd().ExecuteContext(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "roomstore: %v\n", err)
		os.Exit(1)
	}
}

// newRootCmd returns the roomstore command with every subcommand. Each
// subcommand lives in a file of its own and reports its failures as
// errors, which main prints once.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "roomstore",
		Short: "Serve roomstore rooms over the MeshAgent room protocol",
		Long: `roomstore serves the files of collaboration rooms over the MeshAgent room
protocol: each room is a roomstore Engine on its own store (local disk, S3,
GCS or memory), reached at ws://ADDR/rooms/{room} with a token signed with
the secret in ` + secretEnv + `.`,
		SilenceUsage:      true, // a failure is one line, not the usage text
		SilenceErrors:     true, // main prints the error once
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: true},
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())
	})
	root.AddCommand(newServeCmd(), newTokenCmd())
	return root
}

// tokenSecret returns the token secret from the environment, or nil.
func tokenSecret() []byte {
	if s := os.Getenv(secretEnv); s != "" {
		return []byte(s)
	}
	return nil
}
