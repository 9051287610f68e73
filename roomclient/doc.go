// Package roomclient is a Go participant of a room served over the
// MeshAgent room protocol (package roomserver, or any server of the
// protocol's storage toolkit): agents and services Dial the room's URL
// with a participant token and use its files as they would use a
// roomstore.Engine's, remotely.
//
//	c, err := roomclient.Dial(ctx, "wss://rooms.example.com/rooms/r1", roomclient.Options{Token: token, Reconnect: true})
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	c.On(roomstore.EventFileUpdated, func(path, participant string) { ... })
//	_, err = c.Upload(ctx, "notes/today.md", strings.NewReader("- ship it\n"), roomstore.OpenOptions{Overwrite: true})
//
// The calls mirror the engine's, so that code written against an Engine
// runs against a room with the same shape:
//
//	Engine                             Client
//	Exists, Stat, List                 Exists, Stat (ETag from roomserver), List (entries without ETag)
//	Open, then Write, Close, Abort     Open, then Handle.Write, Handle.Close, Handle.Abort
//	Upload(ctx, p, r, OpenOptions)     Upload(ctx, p, r, OpenOptions)
//	OpenReader(ctx, p, offset, length) OpenReader(ctx, p, offset, length)
//	Download                           Download
//	DownloadURL(ctx, p, opts...)       DownloadURL(ctx, p, URLOptions)
//	Delete, RemoveAll, Move            Delete, RemoveAll, Move (DeleteOptions, MoveOptions.IfMatch)
//	Versions, OpenVersion, Restore,    Versions, OpenVersion, Restore,
//	Deleted, RestoreAll                Deleted, RestoreAll (from roomserver)
//	On, Off, Subscribe                 On, Off, Subscribe
//	Shutdown                           Close
//	Walk, FS, ServeFile, Handle(id),   none: the protocol has no such calls
//	Usage, Stats
//
// OpenOptions mean what they mean to the engine: Overwrite replaces,
// Exclusive refuses an existing file, neither appends. The protocol's
// upload can only create or replace, so appending needs a server that
// speaks roomstore's append extension (roomserver does); against any
// other, an append fails with errors.ErrUnsupported rather than do
// something else. Two differences the protocol imposes: OpenOptions.Size
// is announced and the server holds the upload to it (the engine takes
// it as a hint), and the entries of Upload and a Handle have no ModTime
// (Stat for it). Download and OpenReader name the version they stream
// (ETag, ModTime) from a server that says it (roomserver); a range is cut
// by a server that speaks the range extension, and read and dropped up
// to its offset from any other.
//
// Preconditions (OpenOptions.IfMatch and IfNoneMatch, MoveOptions.IfMatch,
// DeleteOptions) and the history need a server that speaks roomstore's
// preconditions and history extensions (roomserver does): a change
// refused by its precondition fails with roomstore.ErrPrecondition and
// changes nothing, as the engine's. Against any other server a
// conditional call fails with errors.ErrUnsupported, sending nothing,
// rather than change the file without the check it asked for, and so do
// the history's calls.
//
// # Extensions
//
// The client asks every server for roomstore's extensions (the query
// parameter roomstore_extensions=1, which other servers ignore) and uses
// those the server names in room_ready: appends, ranges, the version of
// a download, storage.events.overflow, events resumed after a
// reconnection (see Events), preconditions and the history, and inline
// streams: against a server that speaks them (roomserver does), a
// stream's start goes out with its open, an Upload of at most 256 KiB
// (wire.InlineMax) carries its bytes in that start, and a Download that
// fits in one chunk comes back with the start's answer, each one round
// trip, as a stat is. It works with any server of the protocol without
// them.
//
// # Connection
//
// One Client is one WebSocket connection, and one participant: the
// server gives it a participant id (ParticipantID), which the events its
// changes cause carry. Calls may run concurrently, streams too; each
// message goes out whole under one write lock. Dial returns once the
// server has greeted the client (room_ready and connected) and answered
// a first call, so that no event published afterwards is missed.
//
// With Options.Reconnect, a connection that drops or closes with any
// code but 1000 is redialled with exponential back-off and jitter until a
// redial succeeds, is refused (403, 404), or Close is called. The calls
// made while there is no connection fail at once with ErrDisconnected
// (they do not wait for the next connection), and so do calls and streams
// in flight when it dropped: an upload cut short leaves nothing visible.
// Subscriptions stay across reconnections, and miss nothing where the
// server resumes (see Events). The new connection has a new participant
// id.
//
// # Errors
//
// Every error of a call is an *fs.PathError naming the operation and the
// caller's path. The server's refusals keep their *Error (Code, Text)
// reachable with errors.As and match, with errors.Is, the sentinels the
// engine returns: fs.ErrNotExist (404), fs.ErrExist (409 "exists"),
// roomstore.ErrIsFolder, ErrNotFolder and ErrConflict (409, by their
// text), fs.ErrInvalid (400), fs.ErrPermission (403),
// roomstore.ErrTooManyHandles or ErrRateLimited (429),
// errors.ErrUnsupported (501), roomstore.ErrTooManyEntries (413),
// roomstore.ErrQuotaExceeded (507), 408 (a stream the server ended
// after its idle limit without a chunk: the *Error alone), and
// roomstore.ErrStoreUnavailable, ErrBusy or fs.ErrClosed (503). The client's own
// errors are ErrDisconnected (no connection, or it dropped mid-call),
// fs.ErrClosed (after Close), fs.ErrInvalid (a bad argument), ErrProtocol
// (a server that breaks the protocol) and the call's context's error.
// Dial fails with ErrForbidden on HTTP 403 and fs.ErrNotExist on 404, and
// with an *Error on another refusal that gives its reason (a 503 "room
// store unavailable: ..." matches roomstore.ErrStoreUnavailable).
//
// # Events
//
// The server's storage.file.updated, storage.file.deleted and
// storage.file.moved become roomstore.EventFileUpdated, EventFileDeleted
// and EventFileMoved (for a move Path is the destination and SourcePath
// the source), with the participant id of whoever caused them, and
// storage.events.overflow becomes roomstore.EventOverflow with its
// Dropped. Delivery goes through an events.Bus, so handlers behave as the
// engine's do: the same shapes, asynchronous, in order per subscriber,
// each with a bounded queue, panics recovered. Event.Time is when the
// client received the event; Size is 0 (not carried); Seq and Position
// are the client's own bus's.
//
// The client remembers the server's position of the last event it
// handed to subscribers (or where its connection's events started) and
// redials with it. A server that resumes (roomserver, which names the
// "resume" extension) then sends every event of the gap before any live
// one, once and in order, and subscribers see no sign of the
// reconnection; where it cannot tell what the client missed (its history
// no longer reaches back, or the room's engine was opened anew) it says
// so, and the handlers that take events get one EventOverflow: re-list.
// After a reconnection to a server that does not resume, they get an
// EventOverflow with Dropped 0, since events may have been lost in the
// gap.
//
// # Streams
//
// Upload, Open's handles and OpenReader follow the protocol's pull flow
// control: an upload sends a chunk only when the server pulls one, a download asks
// for each chunk (and, when the server says how much a pull brings, for
// the next one as soon as the last was answered, so that the server
// reads while the data travels), so memory stays at about two chunks per
// stream whatever the size. Each stream ends with a closing chunk, also
// when it failed or its context ended, so that the server lets go of it
// at once.
package roomclient
