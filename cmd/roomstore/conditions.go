package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/roomstore/roomstore"
)

// conditions are the preconditions of a change, --if-match and (for put)
// --if-none-match: the change happens only while the file is, or is not,
// the version named, so that a script that read a file does not
// overwrite or remove another's edit made since.
type conditions struct {
	ifMatch, ifNoneMatch string
	fs                   *pflag.FlagSet
}

// flags adds --if-match, described by usage, and with noneMatch
// --if-none-match, to cmd.
func (c *conditions) flags(cmd *cobra.Command, usage string, noneMatch bool) {
	c.fs = cmd.Flags()
	c.fs.StringVar(&c.ifMatch, "if-match", "", usage)
	if noneMatch {
		c.fs.StringVar(&c.ifNoneMatch, "if-none-match", "", `write only while the file is not the version with this ETag; "*": only while no file is there (exit status 3 otherwise)`)
	}
}

// set reports whether a precondition was given.
func (c *conditions) set() bool { return c.ifMatch != "" || c.ifNoneMatch != "" }

// check refuses a flag given an empty ETag, which would silently ask for
// nothing: a usage error of op.
func (c *conditions) check(op string) error {
	for _, name := range []string{"if-match", "if-none-match"} {
		if f := c.fs.Lookup(name); f != nil && f.Changed && f.Value.String() == "" {
			return usagef("%s: --%s needs an ETag (stat or ls -l show a file's)", op, name)
		}
	}
	if c.ifMatch == "*" {
		return usagef(`%s: --if-match takes an ETag, not "*" (stat or ls -l show a file's)`, op)
	}
	return nil
}

// preconditionFailed is the one line of a change its precondition
// refused: exit status 3 (exitPrecondition).
type preconditionFailed struct{ line string }

func (p preconditionFailed) Error() string { return p.line }

// error returns line, the command's message of err, unless err is
// roomstore.ErrPrecondition: then the line "PREFIX: why (precondition
// failed)", which says what is at p now (one more look at the store, so
// that the user knows what to read again), marked for exit status 3.
func (c *conditions) error(ctx context.Context, s store, prefix, p string, line, err error) error {
	if !errors.Is(err, roomstore.ErrPrecondition) {
		return line
	}
	why, flag := "not the version required", ""
	e, serr := s.Stat(ctx, p)
	switch {
	case serr == nil && e.IsFolder:
		why = "a folder is there, not a version of a file"
	case serr == nil && c.ifMatch != "" && e.ETag != c.ifMatch:
		why = "changed since " + shown(c.ifMatch)
		if e.ETag != "" {
			why += ", now " + shown(e.ETag)
		}
	case serr == nil && c.ifNoneMatch == "*":
		why, flag = "a file is there", ": --if-none-match *"
	case serr == nil && c.ifNoneMatch != "" && e.ETag == c.ifNoneMatch:
		why, flag = "still "+shown(c.ifNoneMatch), ": --if-none-match"
	case errors.Is(serr, fs.ErrNotExist) && c.ifMatch != "":
		why = "no file there, not " + shown(c.ifMatch)
	}
	return preconditionFailed{fmt.Sprintf("%s: %s (precondition failed%s)", prefix, why, flag)}
}
