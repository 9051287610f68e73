package roomclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/internal/wire"
	"github.com/roomstore/roomstore/roompath"
)

// Every call below honours its context: it returns ctx's error (inside
// the *fs.PathError) as soon as ctx ends, and ErrDisconnected as soon as
// the connection drops. A call whose context ended may still take effect
// on the server.

// call makes one simple storage call for op on p and returns the JSON of
// its reply (nil for an empty one).
func (c *Client) call(ctx context.Context, op, p, tool string, args any) (json.RawMessage, error) {
	return c.callNeeding(ctx, op, p, tool, "", "", args)
}

// callNeeding is call on a connection whose server speaks the extension
// ext (none when ""), without which it fails with errors.ErrUnsupported
// saying that what needs it; nothing is sent then.
func (c *Client) callNeeding(ctx context.Context, op, p, tool, ext, what string, args any) (json.RawMessage, error) {
	if err := checkPath(op, p, p); err != nil {
		return nil, err
	}
	k, err := c.connNeeding(op, p, ext, what)
	if err != nil {
		return nil, err
	}
	res, _, err := k.invoke(ctx, wire.InvokeTool{Toolkit: "storage", Tool: tool, Arguments: jsonArgs(args)})
	if err != nil {
		return nil, pathError(op, p, err)
	}
	if err := replyError(res, p); err != nil {
		return nil, pathError(op, p, err)
	}
	return res.JSON, nil
}

// connNeeding is the live connection for op on p, whose server speaks
// the extension ext (none when ""), or the error op fails with:
// errors.ErrUnsupported, saying that what needs ext, from a server that
// does not (an older roomstore server, a MeshAgent server), so that
// nothing is done without what the caller asked for.
func (c *Client) connNeeding(op, p, ext, what string) (*conn, error) {
	k, err := c.conn(op, p)
	if err != nil || ext == "" || k.has(ext) {
		return k, err
	}
	return nil, pathError(op, p, unsupported(ext, what))
}

// unsupported is the error of what, which needs roomstore's extension
// ext that the server does not speak.
func unsupported(ext, what string) error {
	return &classError{fmt.Sprintf("%s needs a server that speaks roomstore's %s extension", what, ext), errors.ErrUnsupported}
}

// replyError is the *Error of an error reply about p, or nil.
func replyError(res wire.Content, p string) error {
	if res.Type == wire.KindError {
		return newError(res.Code, res.Text, p)
	}
	return nil
}

// decode unmarshals a reply's JSON into v for op on p.
func decode(op, p string, j json.RawMessage, v any) error {
	if err := json.Unmarshal(j, v); err != nil {
		return pathError(op, p, protocolError("a %s reply that is not the JSON expected: %v", op, err))
	}
	return nil
}

// Exists reports whether a file or folder is at p. Errors: fs.ErrInvalid
// for an invalid path, and those of every call (see the package
// documentation).
func (c *Client) Exists(ctx context.Context, p string) (bool, error) {
	j, err := c.call(ctx, "exists", p, "exists", map[string]string{"path": p})
	if err != nil {
		return false, err
	}
	var v struct {
		Exists bool `json:"exists"`
	}
	if err := decode("exists", p, j, &v); err != nil {
		return false, err
	}
	return v.Exists, nil
}

// Stat describes the file or folder at p: Name, Path (clean), IsFolder,
// Size and ModTime (zero for folders), and a file's ETag from a server
// that speaks roomstore's preconditions extension (roomserver; the bare
// protocol carries none): the version to name in an IfMatch.
// Nothing at p yields fs.ErrNotExist, an invalid path fs.ErrInvalid, a
// file written as a folder ("f/") roomstore.ErrNotFolder.
func (c *Client) Stat(ctx context.Context, p string) (roomstore.Entry, error) {
	j, err := c.call(ctx, "stat", p, "stat", map[string]string{"path": p})
	if err != nil {
		return roomstore.Entry{}, err
	}
	var v wire.Stat
	if err := decode("stat", p, j, &v); err != nil {
		return roomstore.Entry{}, err
	}
	if !v.Exists || v.Entry == nil {
		return roomstore.Entry{}, pathError("stat", p, fs.ErrNotExist)
	}
	e := entryOf(*v.Entry, clean(p))
	if !e.IsFolder {
		e.ETag = v.ETag
	}
	return e, nil
}

// List returns the direct children of the folder at p ("" or "/" for the
// root), ordered as roomstore.Engine.List orders them (bytewise by name, a
// folder's name taken as ending in "/"). A missing folder yields
// fs.ErrNotExist, a file roomstore.ErrNotFolder, an invalid path
// fs.ErrInvalid.
func (c *Client) List(ctx context.Context, p string) ([]roomstore.Entry, error) {
	j, err := c.call(ctx, "list", p, "list", map[string]string{"path": p})
	if err != nil {
		return nil, err
	}
	var v struct {
		Files []wire.Entry `json:"files"`
	}
	if err := decode("list", p, j, &v); err != nil {
		return nil, err
	}
	dir := clean(p)
	out := make([]roomstore.Entry, len(v.Files))
	for i, we := range v.Files {
		child := we.Name
		if dir != "" {
			child = dir + "/" + we.Name
		}
		out[i] = entryOf(we, child)
	}
	slices.SortFunc(out, func(a, b roomstore.Entry) int { return strings.Compare(sortKey(a), sortKey(b)) })
	return out, nil
}

func sortKey(e roomstore.Entry) string {
	if e.IsFolder {
		return e.Name + "/"
	}
	return e.Name
}

// Delete removes the file at p; every participant gets
// roomstore.EventFileDeleted. At most one roomstore.DeleteOptions may
// make it conditional, as Engine.Delete: with IfMatch the file is
// removed only while it is that version. A missing file yields
// fs.ErrNotExist, a folder roomstore.ErrIsFolder (see RemoveAll), an
// invalid path or more than one DeleteOptions fs.ErrInvalid, a file that
// is not the version IfMatch names roomstore.ErrPrecondition, and an
// IfMatch sent to a server that does not speak roomstore's preconditions
// extension errors.ErrUnsupported (nothing is removed).
func (c *Client) Delete(ctx context.Context, p string, opts ...roomstore.DeleteOptions) error {
	return c.remove(ctx, "delete", p, false, opts)
}

// RemoveAll removes the file or folder at p and everything below it (the
// whole store for the root), with roomstore.EventFileDeleted for each
// file removed. A missing path is not an error; an invalid one yields
// fs.ErrInvalid. With roomstore.DeleteOptions.IfMatch (at most one
// DeleteOptions) it removes the file at p only while it is that version,
// and fails with roomstore.ErrPrecondition otherwise (the file changed,
// is missing or is a folder), as Engine.RemoveAll; errors.ErrUnsupported
// from a server that does not speak roomstore's preconditions extension.
func (c *Client) RemoveAll(ctx context.Context, p string, opts ...roomstore.DeleteOptions) error {
	return c.remove(ctx, telemetry.RemoveAll.String(), p, true, opts)
}

// remove is Delete (recursive false) and RemoveAll under op.
func (c *Client) remove(ctx context.Context, op, p string, recursive bool, opts []roomstore.DeleteOptions) error {
	if len(opts) > 1 {
		return pathError(op, p, &classError{fmt.Sprintf("%d DeleteOptions, at most one", len(opts)), fs.ErrInvalid})
	}
	args := map[string]any{"path": p, "recursive": recursive}
	ext := ""
	if len(opts) == 1 && opts[0].IfMatch != "" {
		args["if_match"], ext = opts[0].IfMatch, wire.ExtPreconditions
	}
	_, err := c.callNeeding(ctx, op, p, "delete", ext, "a conditional delete", args)
	return err
}

// Move renames the file or folder at src to dst, with
// roomstore.EventFileMoved for every file moved (Path the destination,
// SourcePath the source); see roomstore.Engine.Move for what is atomic.
// Errors are *fs.PathError values on src: fs.ErrNotExist when nothing is
// at src, fs.ErrExist when dst is taken and opts.Overwrite is false,
// fs.ErrInvalid for invalid paths (the root, dst inside src),
// roomstore.ErrIsFolder, ErrNotFolder and ErrConflict as the engine
// reports them, roomstore.ErrPrecondition when src is not the version
// opts.IfMatch names (or is a folder), and errors.ErrUnsupported for an
// IfMatch sent to a server that does not speak roomstore's
// preconditions extension (nothing is moved).
func (c *Client) Move(ctx context.Context, src, dst string, opts roomstore.MoveOptions) error {
	if err := checkPath("move", src, dst); err != nil {
		return err
	}
	args := map[string]any{"source_path": src, "destination_path": dst, "overwrite": opts.Overwrite}
	ext := ""
	if opts.IfMatch != "" {
		args["if_match"], ext = opts.IfMatch, wire.ExtPreconditions
	}
	_, err := c.callNeeding(ctx, "move", src, "move", ext, "a conditional move", args)
	return err
}

// URLOptions tune DownloadURL.
type URLOptions struct {
	// Attachment asks for a URL whose response carries
	// Content-Disposition: attachment with the file's base name, so that
	// a browser saves the file rather than shows it.
	Attachment bool
}

// DownloadURL returns a URL that a plain HTTP GET fetches the file at p
// with until it expires (the server's engine decides when). A missing
// file yields fs.ErrNotExist, a folder roomstore.ErrIsFolder, an invalid
// path fs.ErrInvalid, and a server that cannot make URLs
// errors.ErrUnsupported.
func (c *Client) DownloadURL(ctx context.Context, p string, opts URLOptions) (string, error) {
	j, err := c.call(ctx, telemetry.DownloadURL.String(), p, "download_url", map[string]any{"path": p, "download": opts.Attachment})
	if err != nil {
		return "", err
	}
	var v struct {
		URL string `json:"url"`
	}
	if err := decode(telemetry.DownloadURL.String(), p, j, &v); err != nil {
		return "", err
	}
	if v.URL == "" {
		return "", pathError(telemetry.DownloadURL.String(), p, protocolError("a download_url reply without a url"))
	}
	return v.URL, nil
}

// entryOf is the roomstore.Entry of a protocol entry at the clean path p.
func entryOf(we wire.Entry, p string) roomstore.Entry {
	e := roomstore.Entry{Name: we.Name, Path: p, IsFolder: we.IsFolder}
	if we.Size != nil && !we.IsFolder {
		e.Size = *we.Size
	}
	if we.UpdatedAt != nil {
		if t, err := time.Parse(time.RFC3339Nano, *we.UpdatedAt); err == nil {
			e.ModTime = t
		}
	}
	return e
}

// checkPath refuses, for op on p, a path q that JSON cannot carry: an
// encoder would replace its invalid UTF-8 and the server would act on
// another path. The server checks every other rule.
func checkPath(op, p, q string) error {
	if !utf8.ValidString(q) {
		return pathError(op, p, &classError{"invalid path: not valid UTF-8", fs.ErrInvalid})
	}
	return nil
}

// clean is p as the server names it: its clean form when p is valid
// (roompath.Clean), else p without its outer slashes.
func clean(p string) string {
	if c, err := roompath.Clean(p, roompath.TargetAny); err == nil {
		return c
	}
	return strings.Trim(p, "/")
}
