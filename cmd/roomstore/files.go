package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roompath"
)

// The file commands: each opens the store, does one thing, and closes it.
// A failure is one line, "roomstore: CMD PATH: reason", and exit status 1.

// fileCmd builds a file command: args validated as given (a usage error,
// exit 2, otherwise), run with the store open.
func fileCmd(sf *storeFlags, use, short, long string, args cobra.PositionalArgs, run func(ctx context.Context, cmd *cobra.Command, args []string) error) *cobra.Command {
	name, _, _ := strings.Cut(use, " ")
	return &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  usageArgs(args),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Ctrl-C (or SIGTERM) ends the command's context (see
			// main), so that an upload is aborted and a download's
			// temporary removed.
			ctx := cmd.Context()
			if sf.timeout < 0 {
				return usagef("--timeout %v is negative", sf.timeout)
			}
			limit := sf.timeout
			if limit == 0 && !streaming[name] {
				limit = defaultTimeout
			}
			if sf.scheme() == "file" {
				// A store that overlaps a running server's rooms is
				// still the user's to work on, but not unknowingly.
				warnServed(cmd.ErrOrStderr(), sf.target())
			}
			if limit > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, limit)
				defer cancel()
			}
			return run(ctx, cmd, args)
		},
	}
}

// errNoURLs is url's answer on a store that signs no URLs itself.
var errNoURLs = errors.New("a store opened directly signs no URLs of its own (only s3:// and gs:// do); serve it with roomstore serve and ask the room server")

// defaultTimeout bounds the commands that are not transfers (ls, stat,
// rm, mv, url, sweep) without --timeout: a store that never answers (an
// object store's client retries for as long as it may) must not hang them.
const defaultTimeout = 2 * time.Minute

// streaming are the commands that --timeout alone bounds: they run for
// as long as their transfer, or until Ctrl-C.
var streaming = map[string]bool{"put": true, "get": true, "watch": true}

// withStore opens the store, runs f on it, and closes it, returning the
// first error.
func withStore(ctx context.Context, sf *storeFlags, create bool, f func(store) error) error {
	s, err := sf.open(ctx, create)
	if err != nil {
		return err
	}
	err = f(s)
	cctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if cerr := s.Close(cctx); err == nil && cerr != nil {
		err = fmt.Errorf("closing the store: %s", reason(cerr))
	}
	return err
}

// checkPath fails with the one line of an invalid store path p, before
// the store is opened, so that nothing is created or changed.
func checkPath(op, p string, t roompath.Target) error {
	if p == "" {
		// An unset shell variable must not name the root: "/" does.
		return fmt.Errorf("%s: an empty path (the root is /)", op)
	}
	if _, err := roompath.Clean(p, t); err != nil {
		return fmt.Errorf("%s %s: %s", op, shown(p), reason(err))
	}
	return nil
}

// shown is a path as messages print it: quoted when it holds anything a
// terminal would not show as it is.
func shown(p string) string {
	for _, r := range p {
		if !unicode.IsPrint(r) || r == ' ' {
			return strconv.Quote(p)
		}
	}
	return p
}

// opError is the one line of a failed operation on a store path.
func opError(op, p string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s: %s", op, shown(p), explain(op, err, reason(err)))
}

// mvError is the one line of a failed move.
func mvError(src, dst string, err error) error {
	if err == nil {
		return nil
	}
	// The engine's message names the destination, which the line has already.
	msg := strings.TrimPrefix(reason(err), "to "+dst+": ")
	return fmt.Errorf("mv %s %s: %s", shown(src), shown(dst), explain("mv", err, msg))
}

// explain adds to msg, the reason of err, what the user can do about it.
func explain(op string, err error, msg string) string {
	switch {
	case op == "rm" && errors.Is(err, roomstore.ErrIsFolder):
		msg += " (rm -r removes a folder and everything in it)"
	case errors.Is(err, fs.ErrExist) && (op == "put" || op == "mv"):
		msg += " (--overwrite replaces it)"
	case errors.Is(err, context.Canceled):
		msg = "interrupted"
	case errors.Is(err, context.DeadlineExceeded):
		msg = "no answer from the store in time (see --timeout)"
	}
	return msg
}

// printEntry prints one line of ls: size, modification time, with long
// the ETag, and path, a folder's path ending in '/'.
func printEntry(w io.Writer, e roomstore.Entry, asJSON, long bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(e) // roomstore.Entry's JSON
	}
	etag := ""
	if long {
		etag = "-  "
		if !e.IsFolder && e.ETag != "" {
			etag = shown(e.ETag) + "  "
		}
	}
	if e.IsFolder {
		_, err := fmt.Fprintf(w, "%12s  %-20s  %s%s/\n", "-", "-", etag, e.Path)
		return err
	}
	_, err := fmt.Fprintf(w, "%12d  %-20s  %s%s\n", e.Size, e.ModTime.UTC().Format(time.RFC3339), etag, e.Path)
	return err
}

func newLsCmd(sf *storeFlags) *cobra.Command {
	var recursive, asJSON, long bool
	cmd := fileCmd(sf, "ls [-r] [-l] [PATH]", "List a folder (the root by default), or describe a file",
		`ls lists the files and folders in the folder at PATH (the store's root
without PATH), one per line: size in bytes, time of the last commit (UTC)
and path, a folder's size and time shown as "-" and its path ending in '/'.
With -l each line also shows, before the path, the file's ETag (which
changes with every commit: what put, rm and mv take as --if-match), "-"
for a folder. With -r it lists everything beneath, depth-first, each
folder right before its contents. A PATH that is a file lists that file.
With --json each line is one JSON object: {"path", "name", "type" ("file"
or "folder"), "size", "modified", "etag"}.`,
		cobra.MaximumNArgs(1),
		func(ctx context.Context, cmd *cobra.Command, args []string) error {
			dir := ""
			if len(args) == 1 {
				dir = args[0]
			}
			name := dir
			if name == "" {
				name = "/"
			}
			if len(args) == 1 {
				if err := checkPath("ls", dir, roompath.TargetAny); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			return withStore(ctx, sf, false, func(s store) error {
				return opError("ls", name, list(ctx, s, dir, recursive, func(e roomstore.Entry) error {
					return printEntry(out, e, asJSON, long)
				}))
			})
		})
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "list everything beneath PATH")
	cmd.Flags().BoolVarP(&long, "long", "l", false, "show each file's ETag too")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line")
	return cmd
}

// list calls f for each entry in dir, and beneath it when recursive,
// depth-first; a file at dir is listed itself. A folder that vanishes
// while it is listed is skipped.
func list(ctx context.Context, s store, dir string, recursive bool, f func(roomstore.Entry) error) error {
	entries, err := s.List(ctx, dir)
	if errors.Is(err, roomstore.ErrNotFolder) {
		e, serr := s.Stat(ctx, dir)
		if serr == nil && !e.IsFolder {
			return f(e)
		}
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := f(e); err != nil {
			return err
		}
		if recursive && e.IsFolder {
			err := list(ctx, s, e.Path, true, f)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

func newStatCmd(sf *storeFlags) *cobra.Command {
	var asJSON bool
	cmd := fileCmd(sf, "stat PATH", "Describe a file or folder",
		`stat prints what is at PATH: its path, type (file or folder), size in
bytes, time of the last commit (UTC) and ETag (which changes with every
commit; where the store gives one; put, rm and mv take it as --if-match).
With --json it prints one JSON object, as ls --json does.`,
		cobra.ExactArgs(1),
		func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if err := checkPath("stat", args[0], roompath.TargetAny); err != nil {
				return err
			}
			return withStore(ctx, sf, false, func(s store) error {
				e, err := s.Stat(ctx, args[0])
				if err != nil {
					return opError("stat", args[0], err)
				}
				out := cmd.OutOrStdout()
				if asJSON {
					return json.NewEncoder(out).Encode(e)
				}
				if e.IsFolder {
					fmt.Fprintf(out, "path:      %s/\ntype:      folder\n", e.Path)
				} else {
					fmt.Fprintf(out, "path:      %s\ntype:      file\n", e.Path)
				}
				if !e.IsFolder {
					fmt.Fprintf(out, "size:      %d\nmodified:  %s\n", e.Size, e.ModTime.UTC().Format(time.RFC3339Nano))
					if e.ETag != "" {
						fmt.Fprintf(out, "etag:      %s\n", e.ETag)
					}
				}
				return nil
			})
		})
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func newUsageCmd(sf *storeFlags) *cobra.Command {
	var asJSON bool
	cmd := fileCmd(sf, "usage [PATH]", "Count the bytes and files beneath a folder (the root by default)",
		`usage prints what the files beneath the folder at PATH (the whole store
without PATH) hold: their sizes together in bytes, and their number. A
PATH that is a file counts that file. A room server's room is counted as
far as the token may read it. For the whole of a store opened directly
(mem://, file://, s3://, gs://) it adds the bytes of the past versions
kept (see roomstore versions): "/: B bytes in N files, K bytes in past
versions". With --json it prints one JSON object: {"path", "bytes",
"files"}, and "kept" where the line shows it. roomstore serve
--quota-bytes and --quota-files bound what each room may hold; its
--quota-bytes counts the past versions too.`,
		cobra.MaximumNArgs(1),
		func(ctx context.Context, cmd *cobra.Command, args []string) error {
			dir := ""
			if len(args) == 1 {
				if err := checkPath("usage", args[0], roompath.TargetAny); err != nil {
					return err
				}
				dir = args[0]
			}
			name := dir
			if name == "" {
				name = "/"
			}
			return withStore(ctx, sf, false, func(s store) error {
				var bytes, files int64
				err := list(ctx, s, dir, true, func(e roomstore.Entry) error {
					if !e.IsFolder {
						bytes += e.Size
						files++
					}
					return nil
				})
				if err != nil {
					return opError("usage", name, err)
				}
				var kept *int64
				if k, ok := s.(keptCounter); ok && dir == "" {
					n, err := k.Kept(ctx)
					if err != nil {
						return opError("usage", name, err)
					}
					kept = &n
				}
				out := cmd.OutOrStdout()
				if asJSON {
					return json.NewEncoder(out).Encode(struct {
						Path  string `json:"path"`
						Bytes int64  `json:"bytes"`
						Files int64  `json:"files"`
						Kept  *int64 `json:"kept,omitempty"`
					}{name, bytes, files, kept})
				}
				line := fmt.Sprintf("%s: %d bytes in %d files", name, bytes, files)
				if kept != nil {
					line += fmt.Sprintf(", %d bytes in past versions", *kept)
				}
				_, err = fmt.Fprintln(out, line)
				return err
			})
		})
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func newPutCmd(sf *storeFlags) *cobra.Command {
	var (
		overwrite, exclusive bool
		cond                 conditions
		threshold            int64
	)
	cmd := fileCmd(sf, "put LOCAL|- PATH [--overwrite|--exclusive|--if-match ETAG|--if-none-match ETAG|*]", "Upload a local file (or stdin) to PATH",
		`put uploads the local file LOCAL, or standard input for "-", to the file
at PATH, streaming it in constant memory. The file appears whole when the
upload completes, or not at all: an interrupted or failed upload (Ctrl-C,
a read error, a lost connection) leaves the store as it was.

A file already at PATH is kept, and put fails, unless --overwrite is given,
which replaces it. --exclusive states the default explicitly: put fails if
a file is at PATH, or appears there before the upload completes (of several
racing exclusive uploads exactly one wins). On a disk store (file://) put
creates the store's directory if it does not exist yet, but not the
directories above it.

--if-match ETAG replaces the file only while it is the version with that
ETag (as stat or ls -l show it), checked when the upload starts and again,
atomically, when it commits: a save that would overwrite another's edit
made meanwhile fails instead, with exit status 3 and the line "put PATH:
changed since ETAG, now ETAG2 (precondition failed)", and changes
nothing. --if-none-match * writes only while no file is there (as
--exclusive, but exit status 3), --if-none-match ETAG only while the file
is not that version. Either implies --overwrite when it holds. A replaced
version is kept (see roomstore versions).

To a room server (--store ws://HOST/rooms/ROOM), a local file of at least
--resumable-threshold bytes (default 8 MiB) goes over tus 1.0 to
http://HOST/tus/ROOM/: when the connection drops, put asks the server how
much it kept and sends the rest from there, up to 8 failed attempts in a
row with a pause that doubles from 250ms to 8s; a refusal (a bad token, a
path the token may not write, an existing file) ends it at once. The file
still appears whole when its last byte arrives, or not at all: a put that
fails abandons its upload, whose bytes a server that cannot be reached
removes after its --resumable-age.
Standard input, smaller files, and a put with --if-match or
--if-none-match use the room protocol.

When standard error is a terminal put shows its progress: bytes sent, rate
and time left.`,
		cobra.ExactArgs(2),
		func(ctx context.Context, cmd *cobra.Command, args []string) error {
			local, p := args[0], args[1]
			if overwrite && exclusive {
				return usagef("put: --overwrite and --exclusive exclude each other (see 'roomstore put --help')")
			}
			if exclusive && cond.set() {
				return usagef("put: --exclusive and --if-match or --if-none-match exclude each other (--if-none-match '*' is the exclusive put that exits 3; see 'roomstore put --help')")
			}
			if err := cond.check("put"); err != nil {
				return err
			}
			if err := checkPath("put", p, roompath.TargetFile); err != nil {
				return err
			}
			var (
				in   io.Reader = cmd.InOrStdin()
				size int64     = -1
			)
			if local != "-" {
				f, fi, err := openLocal(local)
				if err != nil {
					return fmt.Errorf("put %s: %s", local, err)
				}
				defer f.Close()
				in = f
				if fi.Mode().IsRegular() {
					size = fi.Size()
				}
			}
			if size < 0 {
				in = interruptible(ctx, in) // a pipe or terminal may block a read
			}
			opts := roomstore.OpenOptions{Overwrite: overwrite, Exclusive: !overwrite, Size: max(size, 0)}
			if cond.set() {
				// The precondition decides whether a file may be there.
				opts.Overwrite, opts.Exclusive = true, false
				opts.IfMatch, opts.IfNoneMatch = cond.ifMatch, cond.ifNoneMatch
			}
			if f, ok := in.(*os.File); ok && sf.isRoom() && !cond.set() && threshold >= 0 && size >= threshold {
				bar := newProgress(cmd.ErrOrStderr(), size, "put "+p)
				err := tusPut(ctx, sf, f, size, p, overwrite, bar)
				bar.finish(err)
				return opError("put", p, err)
			}
			return withStore(ctx, sf, true, func(s store) error {
				bar := newProgress(cmd.ErrOrStderr(), size, "put "+p)
				_, err := s.Upload(ctx, p, bar.reader(in), opts)
				bar.finish(err)
				return cond.error(ctx, s, "put "+shown(p), p, opError("put", p, err), err)
			})
		})
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace a file already at PATH")
	cmd.Flags().BoolVar(&exclusive, "exclusive", false, "fail if a file is at PATH or appears there first (the default)")
	cmd.Flags().Int64Var(&threshold, "resumable-threshold", defaultResumableThreshold, "to a room server, send a file this big or bigger over tus, which resumes after a dropped connection (negative: never)")
	cond.flags(cmd, "replace the file only while it is the version with this ETag (exit status 3 otherwise)", true)
	return cmd
}

// openLocal opens a local regular file for put; errors name no path (the
// caller shows the one it was given).
func openLocal(name string) (*os.File, fs.FileInfo, error) {
	f, err := os.Open(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, errors.New("no such local file")
	case errors.Is(err, fs.ErrPermission):
		return nil, nil, errors.New("permission denied")
	case err != nil:
		return nil, nil, fmt.Errorf("cannot open: %s", reason(err))
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
		f.Close()
		return nil, nil, fmt.Errorf("cannot open: %s", reason(err))
	case fi.IsDir():
		f.Close()
		return nil, nil, errors.New("is a folder (put uploads one file)")
	}
	return f, fi, nil // a pipe or device too: streamed, of unknown size
}

func newGetCmd(sf *storeFlags) *cobra.Command {
	var version string
	cmd := fileCmd(sf, "get PATH [LOCAL|-] [--version ID]", "Download the file at PATH to LOCAL (or stdout)",
		`get downloads the file at PATH to the local file LOCAL, or to standard
output without LOCAL or with "-". It reads one version of the file, the one
it found when it started, whatever commits land meanwhile. A LOCAL that is
a folder receives the file under its base name. LOCAL is written whole or
not at all: the bytes go to a temporary file beside it, which replaces
LOCAL once every byte has arrived, and is removed if get fails.

With --version ID it downloads that past version of the file instead
(roomstore versions PATH lists them), also of a file deleted since.

When standard error is a terminal get shows its progress: bytes received,
rate and time left.`,
		cobra.RangeArgs(1, 2),
		func(ctx context.Context, cmd *cobra.Command, args []string) error {
			p, local := args[0], "-"
			if len(args) == 2 {
				local = args[1]
			}
			if err := checkPath("get", p, roompath.TargetFile); err != nil {
				return err
			}
			if cmd.Flags().Changed("version") && version == "" {
				return usagef("get: --version needs a version ID (roomstore versions %s lists them)", shown(p))
			}
			return withStore(ctx, sf, false, func(s store) error {
				var (
					r   reader
					err error
				)
				if version == "" {
					r, err = s.Open(ctx, p)
				} else if r, err = s.OpenVersion(ctx, p, version); errors.Is(err, fs.ErrNotExist) {
					err = explained{"no past version " + shown(version) + " (roomstore versions lists them)", fs.ErrNotExist}
				}
				if err != nil {
					return opError("get", p, err)
				}
				defer r.Close()
				bar := newProgress(cmd.ErrOrStderr(), r.Entry().Size, "get "+p)
				if local == "-" {
					_, err = io.Copy(cmd.OutOrStdout(), bar.reader(r))
					bar.finish(err)
					return opError("get", p, err)
				}
				err = saveLocal(local, baseName(p), bar.reader(r))
				bar.finish(err)
				return opError("get", p, err)
			})
		})
	cmd.Flags().StringVar(&version, "version", "", "download this past version (see roomstore versions)")
	return cmd
}

// saveLocal writes r to the local file name (or name/base when name is a
// folder) through a temporary beside it, renamed over it once r is
// drained; on failure the temporary is removed and name is left alone.
// The file gets the mode of the one it replaces, else 0666 less the umask.
func saveLocal(name, base string, r io.Reader) error {
	mode := fs.FileMode(0)
	if fi, err := os.Stat(name); err == nil && fi.IsDir() {
		name = filepath.Join(name, base)
		if fi, err := os.Stat(name); err == nil && fi.Mode().IsRegular() {
			mode = fi.Mode().Perm()
		}
	} else if err == nil && fi.Mode().IsRegular() {
		mode = fi.Mode().Perm()
	}
	tmp, err := createBeside(name)
	if err != nil {
		return localError(name, err)
	}
	_, err = io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && mode != 0 {
		err = os.Chmod(tmp.Name(), mode)
	}
	if err == nil {
		if err = os.Rename(tmp.Name(), name); err != nil {
			err = localError(name, err)
		}
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// createBeside creates a new temporary file in name's folder with mode
// 0666, which the umask narrows as for any new file (os.CreateTemp's are
// 0600).
func createBeside(name string) (*os.File, error) {
	for {
		var b [6]byte
		_, _ = rand.Read(b[:])
		tmp := filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+".roomstore-"+hex.EncodeToString(b[:]))
		f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
}

// interruptible returns a reader of r whose Read returns ctx's error as
// soon as ctx ends, even while r blocks (a terminal or pipe with nothing
// to read): each read runs in a goroutine of its own, left behind when
// ctx ends first, as the command ends then.
func interruptible(ctx context.Context, r io.Reader) io.Reader {
	return &ctxReader{ctx: ctx, r: r, res: make(chan readResult, 1)}
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
	buf []byte
	res chan readResult
}

type readResult struct {
	n   int
	err error
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	if cap(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	buf := c.buf[:len(p)]
	go func() {
		n, err := c.r.Read(buf)
		c.res <- readResult{n, err}
	}()
	select {
	case r := <-c.res:
		return copy(p, buf[:r.n]), r.err
	case <-c.ctx.Done():
		c.buf = nil // the read left behind still owns it
		return 0, c.ctx.Err()
	}
}

// localError describes a failure to write a local file without the host
// path the os package puts in it.
func localError(name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		err = le.Err
	}
	return fmt.Errorf("writing %s: %w", name, err)
}

func newRmCmd(sf *storeFlags) *cobra.Command {
	var (
		recursive bool
		cond      conditions
	)
	cmd := fileCmd(sf, "rm [-r] PATH [--if-match ETAG]", "Remove a file (or, with -r, a folder and everything in it)",
		`rm removes the file at PATH. With -r, PATH may also be a folder, which is
removed with every file beneath it (one file.deleted event each); "/" is
the whole store (the root always exists, even when empty). A PATH with
nothing there fails, with or without -r; an empty PATH always does.

--if-match ETAG removes the file only while it is the version with that
ETag (as stat or ls -l show it), atomically with the removal; otherwise rm
fails with exit status 3 and removes nothing (a folder fails it too).

A removed file's last version is kept, for the store's retention (see
roomstore serve --history-versions): roomstore restore PATH brings it
back, roomstore restore -r FOLDER every file removed beneath a folder.`,
		cobra.ExactArgs(1),
		func(ctx context.Context, _ *cobra.Command, args []string) error {
			p, t := args[0], roompath.TargetFile
			if recursive {
				t = roompath.TargetAny
			}
			if err := cond.check("rm"); err != nil {
				return err
			}
			if err := checkPath("rm", p, t); err != nil {
				return err
			}
			opts := roomstore.DeleteOptions{IfMatch: cond.ifMatch}
			return withStore(ctx, sf, false, func(s store) error {
				if !recursive {
					err := s.Delete(ctx, p, opts)
					return cond.error(ctx, s, "rm "+shown(p), p, opError("rm", p, err), err)
				}
				if _, err := s.Stat(ctx, p); err != nil {
					return opError("rm", p, err)
				}
				err := s.RemoveAll(ctx, p, opts)
				return cond.error(ctx, s, "rm "+shown(p), p, opError("rm", p, err), err)
			})
		})
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove a folder and everything beneath it")
	cond.flags(cmd, "remove the file only while it is the version with this ETag (exit status 3 otherwise)", false)
	return cmd
}

func newMvCmd(sf *storeFlags) *cobra.Command {
	var (
		overwrite bool
		cond      conditions
	)
	cmd := fileCmd(sf, "mv SRC DST [--overwrite] [--if-match ETAG]", "Move a file or folder",
		`mv moves the file or folder at SRC to DST (one file.moved event per file).
A file moves atomically on disk and in memory; on S3 and GCS it is copied
then removed, never lost. A file or folder already at DST is kept, and mv
fails, unless --overwrite is given.

--if-match ETAG moves the file at SRC only while it is the version with
that ETag (as stat or ls -l show it), atomically with the move; otherwise
mv fails with exit status 3 and moves nothing (a folder fails it too).`,
		cobra.ExactArgs(2),
		func(ctx context.Context, _ *cobra.Command, args []string) error {
			if err := cond.check("mv"); err != nil {
				return err
			}
			for _, p := range args {
				if err := checkPath("mv", p, roompath.TargetAny); err != nil {
					return err
				}
			}
			return withStore(ctx, sf, false, func(s store) error {
				err := s.Move(ctx, args[0], args[1], roomstore.MoveOptions{Overwrite: overwrite, IfMatch: cond.ifMatch})
				return cond.error(ctx, s, "mv "+shown(args[0])+" "+shown(args[1]), args[0], mvError(args[0], args[1], err), err)
			})
		})
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace what is at DST")
	cond.flags(cmd, "move the file only while it is the version with this ETag (exit status 3 otherwise)", false)
	return cmd
}

func newURLCmd(sf *storeFlags) *cobra.Command {
	var attachment bool
	cmd := fileCmd(sf, "url PATH [--attachment]", "Print a download URL of the file at PATH",
		`url prints a URL that a plain HTTP GET fetches the file at PATH with,
until it expires: signed by the room server for a ws:// store, natively by
S3 or GCS for s3:// and gs:// stores. With --attachment the response asks
a browser to save the file under its base name rather than show it.`,
		cobra.ExactArgs(1),
		func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if err := checkPath("url", args[0], roompath.TargetFile); err != nil {
				return err
			}
			if sc := sf.scheme(); sc == "file" || sc == "mem" {
				return fmt.Errorf("url %s: %s", shown(args[0]), errNoURLs)
			}
			return withStore(ctx, sf, false, func(s store) error {
				u, err := s.DownloadURL(ctx, args[0], attachment)
				if err != nil {
					return opError("url", args[0], err)
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), u)
				return err
			})
		})
	cmd.Flags().BoolVar(&attachment, "attachment", false, "make the response a download (Content-Disposition: attachment)")
	return cmd
}
