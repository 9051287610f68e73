package roomserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/internal/wire"
)

// historyLists are the tools of wire.ExtHistory (which only a client
// that asked for roomstore's extensions has: any other is answered as a
// MeshAgent server answers a tool it does not know) that build a list
// whole: each holds one of the identity's list slots (see spawn) and
// returns at most Options.MaxListEntries items, as list does.
var historyLists = map[string]bool{"versions": true, "deleted": true, "restore_all": true}

// history runs the tool of wire.ExtHistory on p; version is restore's.
// The engine asks the participant's policy, as for every call: Read for
// versions and deleted (which lists only what may be read), Read and
// Write for each restore.
func (c *conn) history(tool, p string, version json.RawMessage) (wire.Content, error) {
	e, ctx := c.rm.eng, c.engineCtx()
	switch tool {
	case "versions":
		vs, err := e.Versions(ctx, p)
		if err != nil {
			return wire.Content{}, err
		}
		if err := c.listBound(tool, p, len(vs)); err != nil {
			return wire.Content{}, err
		}
		return wire.JSONOf(map[string]any{"versions": versionsOf(vs)}), nil
	case "deleted":
		vs, err := e.DeletedMax(ctx, p, c.s.o.MaxListEntries)
		if err != nil {
			return wire.Content{}, c.tooMany(tool, p, err)
		}
		if err := c.listBound(tool, p, len(vs)); err != nil {
			return wire.Content{}, err
		}
		return wire.JSONOf(map[string]any{"versions": versionsOf(vs)}), nil
	case "restore":
		var id string
		if json.Unmarshal(version, &id) != nil {
			return wire.Content{}, badRequest("storage.restore needs a path and a version (a string)")
		}
		done, err := c.holdHandle(tool, p)
		if err != nil {
			return wire.Content{}, err
		}
		defer done()
		en, err := e.Restore(ctx, p, id)
		if err != nil {
			return wire.Content{}, err
		}
		return wire.JSONOf(historyEntry(en)), nil
	default: // restore_all
		// The files are found first, so that a folder with more than a
		// reply may hold is refused before anything is restored; then
		// each is restored as Engine.RestoreAll does, stopping at the
		// first failure (the files restored before it stay restored, and
		// their events tell which).
		gone, err := e.DeletedMax(ctx, p, c.s.o.MaxListEntries)
		if err != nil {
			return wire.Content{}, c.tooMany(tool, p, asOp(tool, err))
		}
		if err := c.listBound(tool, p, len(gone)); err != nil {
			return wire.Content{}, err
		}
		done, err := c.holdHandle(tool, p) // one restore at a time
		if err != nil {
			return wire.Content{}, err
		}
		defer done()
		files := make([]wire.Entry, 0, len(gone))
		for _, v := range gone {
			en, err := e.Restore(ctx, v.Path, v.ID)
			if err != nil {
				return wire.Content{}, asOp(tool, err)
			}
			files = append(files, historyEntry(en))
		}
		return wire.JSONOf(map[string]any{"files": files}), nil
	}
}

// holdHandle counts a restore of tool on p as an upload of the
// participant's identity, which it is (the engine writes the version
// through a handle), against the identity's share of the room's
// handles; it returns what gives it back, or the refusal.
func (c *conn) holdHandle(tool, p string) (func(), error) {
	name := c.idst.name
	if share, ok := c.rm.takeHandle(name); !ok {
		c.s.lim.refuse(BudgetRoomHandles)
		return nil, &requestError{CodeTooMany, fmt.Sprintf("%s %s: too many uploads open in this room (at most %d per identity)", tool, truncate(shown(p), 256), share)}
	}
	return func() { c.rm.dropHandle(name) }, nil
}

// tooMany turns the engine's refusal of more than MaxListEntries paths
// (DeletedMax) into the refusal listBound makes, and leaves other errors.
func (c *conn) tooMany(tool, p string, err error) error {
	if errors.Is(err, roomstore.ErrTooManyEntries) {
		return c.listBound(tool, p, c.s.o.MaxListEntries+1)
	}
	return err
}

// listBound refuses a reply of n items of tool on p past
// Options.MaxListEntries, as list refuses a folder too big.
func (c *conn) listBound(tool, p string, n int) error {
	if n <= c.s.o.MaxListEntries {
		return nil
	}
	c.s.lim.refuse(BudgetListEntries)
	return &requestError{CodeTooLarge, fmt.Sprintf("%s %s: more than %d entries", tool, shown(p), c.s.o.MaxListEntries)}
}

// versionsOf is vs as the history tools describe them.
func versionsOf(vs []roomstore.Version) []wire.Version {
	out := make([]wire.Version, len(vs))
	for i, v := range vs {
		out[i] = wire.Version{Path: v.Path, ID: v.ID, ETag: v.ETag, Size: v.Size, ModifiedAt: timeOf(v.ModTime),
			ReplacedAt: timeOf(v.Replaced), ParticipantID: v.ParticipantID, Reason: v.Reason}
	}
	return out
}

// timeOf is t as the protocol writes times, "" for none.
func timeOf(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// historyEntry is a restored file as the history tools describe it: an
// entry with its path and its new ETag.
func historyEntry(en roomstore.Entry) wire.Entry {
	we := entryOf(en)
	we.Path, we.ETag = en.Path, en.ETag
	return we
}
