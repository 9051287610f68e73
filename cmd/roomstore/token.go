package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/roomstore/roomstore/roomserver"
)

// newTokenCmd returns `roomstore token`, which prints a participant token
// that `roomstore serve` accepts for one room.
func newTokenCmd() *cobra.Command {
	var (
		name, room string
		ttl        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token --name NAME --room ROOM [--ttl D]",
		Short: "Print a participant token for a room, signed with " + secretEnv,
		Long: `token prints an HS256 participant token for one room, as the MeshAgent
clients make them (claims name, grants [{room: ROOM}, {role: user}], exp),
signed with the secret in ` + secretEnv + `, followed by a newline.
Connect with it as ws://ADDR/rooms/ROOM?token=TOKEN.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secret := tokenSecret()
			if secret == nil {
				return errors.New(secretEnv + " is not set: it holds the secret the tokens are signed with, the same as roomstore serve's")
			}
			if !roomserver.ValidRoom(room) {
				return fmt.Errorf("--room %q is not a valid room name (1 to 255 bytes of UTF-8, no '/', '\\', control characters or leading '.')", room)
			}
			if ttl < 0 {
				return fmt.Errorf("--ttl %v is negative (0 means no expiry)", ttl)
			}
			tok, err := roomserver.NewToken(secret, name, room, ttl)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "the participant's name (required)")
	f.StringVar(&room, "room", "", "the room the token admits to (required)")
	f.DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token stays valid; 0 for no expiry")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("room")
	return cmd
}
