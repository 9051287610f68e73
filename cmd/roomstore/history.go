package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/spf13/cobra"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roompath"
)

// The history commands: versions and deleted list what a store keeps of
// past versions (see roomstore.WithHistory), restore brings them back,
// get --version reads one.

// versionJSON is a past version as versions --json and deleted --json
// print it.
type versionJSON struct {
	Path        string    `json:"path"`
	ID          string    `json:"id"`
	ETag        string    `json:"etag,omitempty"`
	Size        int64     `json:"size"`
	Modified    time.Time `json:"modified"`
	Replaced    time.Time `json:"replaced"`
	Reason      string    `json:"reason"`
	Participant string    `json:"participant,omitempty"`
}

// printVersions prints vs, one line each: ID, size, when it was replaced
// (UTC), why, by whom ("-" when unknown), and with withPath the path.
func printVersions(w io.Writer, vs []roomstore.Version, asJSON, withPath bool) error {
	width := 0
	for _, v := range vs {
		width = max(width, len(v.ID))
	}
	enc := json.NewEncoder(w)
	for _, v := range vs {
		var err error
		if asJSON {
			err = enc.Encode(versionJSON{Path: v.Path, ID: v.ID, ETag: v.ETag, Size: v.Size, Modified: v.ModTime.UTC(), Replaced: v.Replaced.UTC(), Reason: v.Reason, Participant: v.ParticipantID})
		} else {
			by := v.ParticipantID
			if by == "" {
				by = "-"
			}
			path := ""
			if withPath {
				path = "  " + v.Path
			}
			_, err = fmt.Fprintf(w, "%-*s  %12d  %-20s  %-11s  %s%s\n", width, v.ID, v.Size, v.Replaced.UTC().Format(time.RFC3339), v.Reason, shown(by), path)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func newVersionsCmd(sf *storeFlags) *cobra.Command {
	var asJSON bool
	cmd := fileCmd(sf, "versions PATH", "List the past versions of a file",
		`versions lists the past versions the store keeps of the file at PATH,
newest first, one per line: version ID, size in bytes, when it stopped
being current (UTC), why ("overwritten", "appended", "deleted" or
"moved": moved away from PATH), and the participant who replaced it ("-"
when unknown). It lists them also for a file deleted since; a file with
no past versions lists nothing. With --json each line is one JSON object:
{"path", "id", "etag", "size", "modified", "replaced", "reason",
"participant"}.

Every overwrite, append, delete and move keeps the version it replaces,
for the store's retention (serve's --history-versions and --history-age;
a store opened directly by this command keeps 10 versions of each file
for 30 days). roomstore get PATH --version ID reads one, roomstore
restore PATH ID makes it current again.`,
		cobra.ExactArgs(1),
		func(ctx context.Context, cmd *cobra.Command, args []string) error {
			p := args[0]
			if err := checkPath("versions", p, roompath.TargetFile); err != nil {
				return err
			}
			return withStore(ctx, sf, false, func(s store) error {
				vs, err := s.Versions(ctx, p)
				if err != nil {
					return opError("versions", p, notKept(ctx, s, p, err))
				}
				return printVersions(cmd.OutOrStdout(), vs, asJSON, false)
			})
		})
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per version")
	return cmd
}

// notKept explains a missing path of versions or restore: nothing is
// kept of it, or it is a folder.
func notKept(ctx context.Context, s store, p string, err error) error {
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if e, serr := s.Stat(ctx, p); serr == nil && e.IsFolder {
		return explained{"is a folder (restore -r restores the files deleted beneath it)", fs.ErrNotExist}
	}
	return explained{"no file and no past version there (roomstore deleted lists what restore can bring back)", fs.ErrNotExist}
}

// explained is err told in other words: its line says msg, and errors.Is
// still finds err.
type explained struct {
	msg string
	err error
}

func (e explained) Error() string { return e.msg }
func (e explained) Unwrap() error { return e.err }

func newRestoreCmd(sf *storeFlags) *cobra.Command {
	var recursive bool
	cmd := fileCmd(sf, "restore PATH [VERSION] | restore -r FOLDER", "Make a past version of a file current again, or bring back deleted files",
		`restore makes the past version VERSION of the file at PATH (roomstore
versions PATH lists them) current again, or without VERSION the newest
past version: the file deleted, or its version before the last change. It
is a new commit, as a put --overwrite of those bytes would be (one
file.updated event; the version it replaces is kept in turn, so a restore
is undone by another). It prints what it restored: "restored PATH from
version ID (SIZE bytes, REASON TIME by PARTICIPANT)".

With -r it restores every file deleted (or moved away) at or beneath
FOLDER ("/" the whole store) that is not there now, each to its newest
past version, and prints "restored PATH (SIZE bytes)" for each; roomstore
deleted FOLDER lists them first. It stops at the first failure, keeping
what it restored.`,
		cobra.RangeArgs(1, 2),
		func(ctx context.Context, cmd *cobra.Command, args []string) error {
			p := args[0]
			out := cmd.OutOrStdout()
			if recursive {
				if len(args) == 2 {
					return usagef("restore: -r restores each deleted file to its newest version, and takes no VERSION (see 'roomstore restore --help')")
				}
				if err := checkPath("restore", p, roompath.TargetAny); err != nil {
					return err
				}
				return withStore(ctx, sf, false, func(s store) error {
					restored, err := s.RestoreAll(ctx, p)
					for _, e := range restored {
						if _, perr := fmt.Fprintf(out, "restored %s (%d bytes)\n", shown(e.Path), e.Size); perr != nil && err == nil {
							err = perr
						}
					}
					return opError("restore", p, err)
				})
			}
			if err := checkPath("restore", p, roompath.TargetFile); err != nil {
				return err
			}
			return withStore(ctx, sf, false, func(s store) error {
				vs, err := s.Versions(ctx, p)
				if err != nil {
					return opError("restore", p, notKept(ctx, s, p, err))
				}
				v, err := pickVersion(vs, args[1:])
				if err != nil {
					return opError("restore", p, err)
				}
				if _, err := s.Restore(ctx, p, v.ID); err != nil {
					return opError("restore", p, err)
				}
				by := ""
				if v.ParticipantID != "" {
					by = " by " + shown(v.ParticipantID)
				}
				_, err = fmt.Fprintf(out, "restored %s from version %s (%d bytes, %s %s%s)\n", shown(p), v.ID, v.Size, v.Reason, v.Replaced.UTC().Format(time.RFC3339), by)
				return err
			})
		})
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "restore every file deleted beneath FOLDER")
	return cmd
}

// pickVersion returns the version of vs (newest first) that id names,
// or without id the newest.
func pickVersion(vs []roomstore.Version, id []string) (roomstore.Version, error) {
	if len(id) == 0 {
		if len(vs) == 0 {
			return roomstore.Version{}, explained{"no past version kept", fs.ErrNotExist}
		}
		return vs[0], nil
	}
	for _, v := range vs {
		if v.ID == id[0] {
			return v, nil
		}
	}
	return roomstore.Version{}, explained{"no past version " + shown(id[0]) + " (roomstore versions lists them)", fs.ErrNotExist}
}

func newDeletedCmd(sf *storeFlags) *cobra.Command {
	var asJSON bool
	cmd := fileCmd(sf, "deleted [FOLDER]", "List the deleted files that restore can bring back",
		`deleted lists the files at or beneath FOLDER (the whole store without
FOLDER) that are gone (deleted, or moved away) but whose past versions
the store still keeps, ordered by path, one per line with its newest
version, as versions prints it, and the path last. roomstore restore
PATH brings one back, roomstore restore -r FOLDER all of them. With
--json each line is one JSON object, as versions --json prints it.`,
		cobra.MaximumNArgs(1),
		func(ctx context.Context, cmd *cobra.Command, args []string) error {
			dir, name := "", "/"
			if len(args) == 1 {
				if err := checkPath("deleted", args[0], roompath.TargetAny); err != nil {
					return err
				}
				dir, name = args[0], args[0]
			}
			return withStore(ctx, sf, false, func(s store) error {
				vs, err := s.Deleted(ctx, dir)
				if err != nil {
					return opError("deleted", name, err)
				}
				return printVersions(cmd.OutOrStdout(), vs, asJSON, true)
			})
		})
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per file")
	return cmd
}
