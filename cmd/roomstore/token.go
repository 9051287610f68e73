package main

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/roomstore/roomstore/roomserver"
)

// newTokenCmd returns `roomstore token`, which prints a participant token
// that `roomstore serve` accepts for one room.
func newTokenCmd() *cobra.Command {
	var (
		name, room    string
		ttl           time.Duration
		reads, writes []string
	)
	cmd := &cobra.Command{
		Use:   "token --name NAME --room ROOM [--ttl D] [--read PREFIX]... [--write PREFIX]...",
		Short: "Print a participant token for a room, signed with " + secretEnv,
		Long: `token prints an HS256 participant token for one room, as the MeshAgent
clients make them (claims name, grants [{room: ROOM}, {role: user},
{api: {storage: ...}}], exp), signed with the secret in ` + secretEnv + `,
followed by a newline. Connect with it as ws://ADDR/rooms/ROOM?token=TOKEN.

Without --read or --write the token may read and write every file of the
room. Each --read PREFIX lets it read the paths that begin with PREFIX,
each --write PREFIX read and write them; with either, nothing else. Where
prefixes overlap, the longest decides whether a path may be written
(--read team/ --write team/drafts/ writes only drafts). Prefixes are plain
string prefixes: end a folder's with a slash ("team/", not "team", which
also covers "teammates.txt"); "/" is every path, so --read / makes a
read-only viewer of the whole room.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secret := tokenSecret()
			if secret == nil {
				return errors.New(secretEnv + " is not set: it holds the secret the tokens are signed with, the same as roomstore serve's")
			}
			if err := checkSecret(secret); err != nil {
				return err
			}
			if !roomserver.ValidRoom(room) {
				return fmt.Errorf("--room %q is not a valid room name (1 to 255 bytes of UTF-8, no '/', '\\', control characters or leading '.')", room)
			}
			if ttl < 0 {
				return fmt.Errorf("--ttl %v is negative (0 means no expiry)", ttl)
			}
			var opts []roomserver.TokenOption
			if len(reads)+len(writes) > 0 {
				g, err := storageGrant(reads, writes)
				if err != nil {
					return err
				}
				opts = append(opts, roomserver.WithStorage(g))
			}
			tok, err := roomserver.NewToken(secret, name, room, ttl, opts...)
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
	f.StringArrayVar(&reads, "read", nil, "let the token read the paths that begin with `PREFIX` (repeatable; \"/\" for all)")
	f.StringArrayVar(&writes, "write", nil, "let the token read and write the paths that begin with `PREFIX` (repeatable)")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("room")
	return cmd
}

// storageGrant turns --read and --write prefixes into the MeshAgent
// storage grant: longest prefix first, so that the first entry matching
// a path (which decides Write) is the most specific one, and a prefix
// given to both flags is writable.
func storageGrant(reads, writes []string) (roomserver.StorageGrant, error) {
	entries := map[string]bool{} // prefix -> read only
	for _, list := range []struct {
		flag     string
		prefixes []string
		readOnly bool
	}{{"--read", reads, true}, {"--write", writes, false}} {
		for _, p := range list.prefixes {
			if strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				return roomserver.StorageGrant{}, fmt.Errorf("%s %q holds a control character", list.flag, p)
			}
			p = strings.TrimPrefix(p, "/")
			ro, seen := entries[p]
			entries[p] = list.readOnly && (!seen || ro)
		}
	}
	g := roomserver.StorageGrant{Paths: make([]roomserver.StoragePathGrant, 0, len(entries))}
	for p, ro := range entries {
		g.Paths = append(g.Paths, roomserver.StoragePathGrant{Path: p, ReadOnly: ro})
	}
	slices.SortFunc(g.Paths, func(a, b roomserver.StoragePathGrant) int {
		return cmp.Or(cmp.Compare(len(b.Path), len(a.Path)), strings.Compare(a.Path, b.Path))
	})
	return g, nil
}

// checkSecret refuses a token secret too short to resist brute force.
func checkSecret(secret []byte) error {
	if len(secret) < roomserver.MinSecretLen {
		return fmt.Errorf("%s holds %d bytes; a token secret needs at least %d (such as the output of: openssl rand -hex 32)", secretEnv, len(secret), roomserver.MinSecretLen)
	}
	return nil
}
