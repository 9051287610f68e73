package roomclient

import (
	"context"
	"io/fs"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/internal/wire"
)

// The past versions of a room's files (see roomstore.WithHistory), from
// a server that speaks roomstore's history extension (roomserver); any
// other server makes these calls fail with errors.ErrUnsupported, having
// sent nothing. The server's engine asks the participant's policy as for
// any call: Read for Versions, OpenVersion and Deleted (which lists only
// what the participant may read), Read and Write for Restore and each
// file of RestoreAll; a refusal is an *Error of code 403 wrapping the
// *roomstore.AccessError, and says nothing of what the path holds.

// Versions lists the past versions of the file at p, newest first, as
// Engine.Versions: also for a file deleted since. A path with neither a
// file nor a kept version yields fs.ErrNotExist, a file with no past
// version an empty list, an invalid path fs.ErrInvalid, a list longer
// than the server returns (roomserver.Options.MaxListEntries)
// roomstore.ErrTooManyEntries.
func (c *Client) Versions(ctx context.Context, p string) ([]roomstore.Version, error) {
	return c.versions(ctx, telemetry.Versions.String(), p, "versions")
}

// Deleted lists the files at or beneath the folder dir ("" or "/" for
// the whole room) that are gone but have past versions kept, each with
// its newest version, ordered by path, as Engine.Deleted. Errors are
// those of Versions but fs.ErrNotExist.
func (c *Client) Deleted(ctx context.Context, dir string) ([]roomstore.Version, error) {
	return c.versions(ctx, telemetry.Deleted.String(), dir, "deleted")
}

// versions makes the call of tool, versions or deleted, for op on p.
func (c *Client) versions(ctx context.Context, op, p, tool string) ([]roomstore.Version, error) {
	j, err := c.callNeeding(ctx, op, p, tool, wire.ExtHistory, op, map[string]any{"path": p})
	if err != nil {
		return nil, err
	}
	var v struct {
		Versions []wire.Version `json:"versions"`
	}
	if err := decode(op, p, j, &v); err != nil {
		return nil, err
	}
	out := make([]roomstore.Version, len(v.Versions))
	for i, wv := range v.Versions {
		vp := wv.Path
		if vp == "" {
			vp = clean(p)
		}
		out[i] = roomstore.Version{Path: vp, ID: wv.ID, ETag: wv.ETag, Size: wv.Size, ModTime: parseTime(wv.ModifiedAt),
			Replaced: parseTime(wv.ReplacedAt), ParticipantID: wv.ParticipantID, Reason: wv.Reason}
	}
	return out, nil
}

// parseTime reads a time of the protocol, zero for none.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// OpenVersion streams the past version id of the file at p (see
// Versions), as Engine.OpenVersion: a Reader whose Entry describes the
// version (its Size, and the ETag and ModTime it had when it was
// current). An unknown id yields fs.ErrNotExist, an id no server makes
// fs.ErrInvalid; errors are *fs.PathError values of the operation
// "open_version", and those of Read are OpenReader's.
func (c *Client) OpenVersion(ctx context.Context, p, id string) (*Reader, error) {
	op := telemetry.OpenVersion.String()
	if err := checkPath(op, p, p); err != nil {
		return nil, err
	}
	if _, err := c.connNeeding(op, p, wire.ExtHistory, op); err != nil {
		return nil, err
	}
	if id == "" {
		// The server would stream the current file for a version of "".
		return nil, pathError(op, p, &classError{`bad version id ""`, fs.ErrInvalid})
	}
	return c.openReader(ctx, op, p, id, 0, -1, false)
}

// Restore makes the past version id of the file at p current again, as
// Engine.Restore: every participant gets one roomstore.EventFileUpdated,
// and the version it replaces is kept in turn. It returns the new Entry
// (Name, Path, Size, ModTime and its new ETag). Errors are those of
// OpenVersion, and of an Upload with Overwrite (a quota's
// roomstore.ErrQuotaExceeded), under the operation "restore".
func (c *Client) Restore(ctx context.Context, p, id string) (roomstore.Entry, error) {
	op := telemetry.Restore.String()
	j, err := c.callNeeding(ctx, op, p, "restore", wire.ExtHistory, op, map[string]any{"path": p, "version": id})
	if err != nil {
		return roomstore.Entry{}, err
	}
	var we wire.Entry
	if err := decode(op, p, j, &we); err != nil {
		return roomstore.Entry{}, err
	}
	return restored(we, clean(p)), nil
}

// RestoreAll restores every file Deleted lists for dir to its newest
// version, each as Restore does, and returns their entries ordered by
// path, as Engine.RestoreAll. The server refuses a folder with more such
// files than a reply holds (roomserver.Options.MaxListEntries) with
// roomstore.ErrTooManyEntries, before restoring any. On a failure it
// returns the error alone: the files restored before it stay restored
// (their events tell which).
func (c *Client) RestoreAll(ctx context.Context, dir string) ([]roomstore.Entry, error) {
	op := telemetry.RestoreAll.String()
	j, err := c.callNeeding(ctx, op, dir, "restore_all", wire.ExtHistory, op, map[string]any{"path": dir})
	if err != nil {
		return nil, err
	}
	var v struct {
		Files []wire.Entry `json:"files"`
	}
	if err := decode(op, dir, j, &v); err != nil {
		return nil, err
	}
	out := make([]roomstore.Entry, len(v.Files))
	for i, we := range v.Files {
		out[i] = restored(we, "")
	}
	return out, nil
}

// restored is the Entry of a restored file the server described, at p
// unless the server names its path.
func restored(we wire.Entry, p string) roomstore.Entry {
	if we.Path != "" {
		p = we.Path
	}
	e := entryOf(we, p)
	e.ETag = we.ETag
	return e
}
