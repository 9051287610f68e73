package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/internal/wire"
)

// Error codes of the replies, as HTTP status codes.
const (
	CodeBadRequest   = 400 // an invalid path or a malformed call
	CodeForbidden    = 403 // refused by the participant's policy (a right it lacks), another participant's handle, an expired token
	CodeNotFound     = 404
	CodeTimeout      = 408 // a stream that took no chunk for Options.StreamIdle, ended
	CodeConflict     = 409 // exists, a folder where a file is meant or the reverse, a lost race
	CodePrecondition = 412 // the file is not the version if_match or if_none_match requires (roomstore.ErrPrecondition)
	CodeTooLarge     = 413 // a folder with more entries than a list may return (Options.MaxListEntries), a handle-era download of a file over Options.MaxMessageSize
	CodeTooMany      = 429 // too many handles, streams or calls: a budget of the participant (see Budget)
	CodeInternal     = 500
	CodeUnsupported  = 501
	CodeUnavailable  = 503 // shutting down, a budget of the server spent, or the store is unavailable
	CodeQuota        = 507 // the room's quota (roomstore.ErrQuotaExceeded)
)

// requestError is a refusal the server itself makes.
type requestError struct {
	code int
	text string
}

func (e *requestError) Error() string { return e.text }

func badRequest(text string) error { return &requestError{CodeBadRequest, text} }

// errorContent turns an engine error into an error reply a client can
// act on. Only the errors the engine classifies carry their text (which
// names the room's path, never a host's); anything else is logged by the
// caller's server and answered as internal.
func errorContent(err error) wire.Content {
	var re *requestError
	if errors.As(err, &re) {
		return wire.Error(re.code, re.text)
	}
	code := CodeInternal
	switch {
	case errors.Is(err, fs.ErrInvalid):
		code = CodeBadRequest
	case errors.Is(err, fs.ErrNotExist):
		code = CodeNotFound
	case errors.Is(err, fs.ErrExist), errors.Is(err, roomstore.ErrIsFolder),
		errors.Is(err, roomstore.ErrNotFolder), errors.Is(err, roomstore.ErrConflict):
		code = CodeConflict
	case errors.Is(err, fs.ErrPermission):
		code = CodeForbidden
	case errors.Is(err, roomstore.ErrTooManyHandles):
		code = CodeTooMany
	case errors.Is(err, roomstore.ErrQuotaExceeded):
		code = CodeQuota
	case errors.Is(err, roomstore.ErrPrecondition):
		code = CodePrecondition
	case errors.Is(err, errors.ErrUnsupported):
		code = CodeUnsupported
	case errors.Is(err, fs.ErrClosed), errors.Is(err, roomstore.ErrStoreUnavailable),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = CodeUnavailable
	}
	if code == CodeInternal {
		return wire.Error(code, "internal error")
	}
	var pe *fs.PathError
	var ae *roomstore.AccessError
	if errors.As(err, &pe) && pe.Path == "" {
		pe = &fs.PathError{Op: pe.Op, Path: "/", Err: pe.Err} // the root, named
	}
	switch {
	case pe != nil && errors.As(pe.Err, &ae):
		// The refused path names itself unless it is the call's own.
		if ae.Path == "" || ae.Path == strings.TrimPrefix(pe.Path, "/") {
			return wire.Error(code, fmt.Sprintf("%s %s: no %s access", pe.Op, pe.Path, ae.Right))
		}
		return wire.Error(code, fmt.Sprintf("%s %s: %s", pe.Op, pe.Path, ae))
	case pe != nil:
		return wire.Error(code, fmt.Sprintf("%s %s: %s", pe.Op, pe.Path, sentinelText(pe.Err)))
	}
	return wire.Error(code, err.Error())
}

// sentinelText names the class of err without the provider's details.
func sentinelText(err error) string {
	for _, s := range []error{fs.ErrInvalid, fs.ErrNotExist, fs.ErrExist, fs.ErrPermission, fs.ErrClosed,
		roomstore.ErrIsFolder, roomstore.ErrNotFolder, roomstore.ErrConflict, roomstore.ErrTooManyHandles, roomstore.ErrQuotaExceeded,
		roomstore.ErrPrecondition, roomstore.ErrStoreUnavailable, errors.ErrUnsupported, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, s) {
			// The quota's refusal says no more: its figures are the
			// room's, files the participant may not read included.
			if s == fs.ErrInvalid || s == errors.ErrUnsupported {
				return err.Error() // says which rule the path broke
			}
			return s.Error()
		}
	}
	return "error"
}

// call runs one simple storage call; legacy answers as the handle era
// did (see legacy.go).
func (c *conn) call(tool string, args json.RawMessage, legacy bool) wire.Content {
	var a struct {
		Path            *string `json:"path"`
		Recursive       *bool   `json:"recursive"`
		SourcePath      *string `json:"source_path"`
		DestinationPath *string `json:"destination_path"`
		Overwrite       *bool   `json:"overwrite"`
		Download        *bool   `json:"download"`
		// ExtPreconditions: honoured from any client, since ignoring one
		// would make a change its sender made conditional unconditional.
		IfMatch *string `json:"if_match"`
		// ExtHistory: the version of restore, read by restore alone, so
		// that the other calls ignore a field of that name as before.
		Version json.RawMessage `json:"version"`
	}
	if err := json.Unmarshal(args, &a); err != nil {
		return wire.Error(CodeBadRequest, fmt.Sprintf("invalid arguments to storage.%s", truncate(tool, 64)))
	}
	e := c.rm.eng
	ctx := c.engineCtx()
	needPath := func() (string, bool) {
		if a.Path == nil {
			return "", false
		}
		return *a.Path, true
	}
	var ifMatch string
	if a.IfMatch != nil {
		ifMatch = *a.IfMatch
	}
	res, err := func() (wire.Content, error) {
		switch tool {
		case "exists":
			p, ok := needPath()
			if !ok {
				return wire.Content{}, badRequest("storage.exists needs a path")
			}
			ok, err := e.Exists(ctx, p)
			return wire.JSONOf(map[string]bool{"exists": ok}), err
		case "stat":
			p, ok := needPath()
			if !ok {
				return wire.Content{}, badRequest("storage.stat needs a path")
			}
			ent, err := e.Stat(ctx, p)
			if errors.Is(err, fs.ErrNotExist) {
				return wire.JSONOf(wire.Stat{Exists: false}), nil
			}
			if err != nil {
				return wire.Content{}, err
			}
			if legacy {
				le := legacyEntryOf(ent)
				return wire.JSONOf(wire.LegacyStat{Exists: true, LegacyEntry: &le}), nil
			}
			we := entryOf(ent)
			if c.extras {
				we.ETag = ent.ETag // wire.ExtPreconditions
			}
			return wire.JSONOf(wire.Stat{Exists: true, Entry: &we}), nil
		case "list":
			p, ok := needPath()
			if !ok {
				return wire.Content{}, badRequest("storage.list needs a path")
			}
			// The engine reads at most MaxListEntries+1 entries of the
			// folder (invoke holds one of the identity's two list slots).
			ents, err := e.ListMax(ctx, p, c.s.o.MaxListEntries)
			if errors.Is(err, roomstore.ErrTooManyEntries) {
				c.s.lim.refuse(BudgetListEntries)
				return wire.Content{}, &requestError{CodeTooLarge, fmt.Sprintf("list %s: more than %d entries", shown(p), c.s.o.MaxListEntries)}
			}
			if err != nil {
				return wire.Content{}, err
			}
			if legacy {
				files := make([]wire.LegacyEntry, len(ents))
				for i, ent := range ents {
					files[i] = legacyEntryOf(ent)
				}
				return wire.JSONOf(map[string]any{"files": files}), nil
			}
			files := make([]wire.Entry, len(ents))
			for i, ent := range ents {
				files[i] = entryOf(ent)
			}
			return wire.JSONOf(map[string]any{"files": files}), nil
		case "delete":
			p, ok := needPath()
			if !ok {
				return wire.Content{}, badRequest("storage.delete needs a path")
			}
			done := wire.Empty()
			if legacy {
				done = wire.JSONOf(struct{}{}) // the Dart client casts it to a JSON body
			}
			var opts []roomstore.DeleteOptions
			if ifMatch != "" {
				opts = append(opts, roomstore.DeleteOptions{IfMatch: ifMatch})
			}
			if a.Recursive != nil && *a.Recursive {
				return done, asOp("delete", e.RemoveAll(ctx, p, opts...))
			}
			return done, e.Delete(ctx, p, opts...)
		case "move":
			if a.SourcePath == nil || a.DestinationPath == nil {
				return wire.Content{}, badRequest("storage.move needs source_path and destination_path")
			}
			ow := a.Overwrite != nil && *a.Overwrite
			return wire.Empty(), e.Move(ctx, *a.SourcePath, *a.DestinationPath, roomstore.MoveOptions{Overwrite: ow, IfMatch: ifMatch})
		case "download_url":
			p, ok := needPath()
			if !ok {
				return wire.Content{}, badRequest("storage.download_url needs a path")
			}
			var opts []roomstore.URLOption
			if a.Download != nil && *a.Download {
				opts = append(opts, roomstore.Attachment(path.Base(p)))
			}
			if !c.ident.Expires.IsZero() {
				opts = append(opts, roomstore.NotAfter(c.ident.Expires))
			}
			u, err := e.DownloadURL(ctx, p, opts...)
			return wire.JSONOf(map[string]string{"url": u}), asOp("download_url", err)
		case "versions", "restore", "deleted", "restore_all":
			if !c.extras {
				return wire.Content{}, noTool(tool)
			}
			p, ok := needPath()
			if !ok {
				return wire.Content{}, badRequest("storage." + tool + " needs a path")
			}
			return c.history(tool, p, a.Version)
		default:
			return wire.Content{}, noTool(tool)
		}
	}()
	if err != nil {
		ec := errorContent(err)
		if ec.Code == CodeInternal {
			c.s.log.Error("storage call failed", "room", c.rm.name, "participant", c.id, "tool", tool, "err", err)
		}
		return ec
	}
	return res
}

// noTool refuses a call of a tool the server does not have, as a
// MeshAgent server does: what a client that did not ask for roomstore's
// extensions gets for the tools of the extensions too.
func noTool(tool string) error {
	return &requestError{CodeNotFound, fmt.Sprintf("no tool storage.%s", truncate(tool, 64))}
}

// entryOf is an engine entry as the protocol describes it: folders have
// no size or times; the store keeps no creation time, so created_at is
// the time of the version's commit, like updated_at.
func entryOf(e roomstore.Entry) wire.Entry {
	we := wire.Entry{Name: e.Name, IsFolder: e.IsFolder}
	if !e.IsFolder {
		size := e.Size
		we.Size = &size
		if !e.ModTime.IsZero() {
			t := e.ModTime.UTC().Format(time.RFC3339Nano)
			we.CreatedAt, we.UpdatedAt = &t, &t
		}
	}
	return we
}

// shown is a path as a reply names it: the root as "/".
func shown(p string) string {
	if p == "" {
		return "/"
	}
	return p
}
