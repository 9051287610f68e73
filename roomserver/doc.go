// Package roomserver serves roomstore rooms to remote participants over
// the MeshAgent room protocol (the storage toolkit of the 0.39 clients),
// so that the MeshAgent TypeScript client, roomclient and the roomstore
// command reach a room's files through one WebSocket per participant.
//
// A Server is an http.Handler for GET /rooms/{room}. Each connection is
// one participant: it gets its own participant id (sent in the connected
// message, carried by every event its calls cause), and the uploads and
// downloads it opened die with it: an upload cut short leaves nothing
// visible. The engine of each room comes from Options.Resolve and is shut
// down Options.RoomIdle after its last participant left.
//
// # Calls
//
// storage.exists, stat, list, delete (recursive: RemoveAll), move,
// download_url (download: an attachment URL), and the streams upload
// (Open, Write per pulled chunk, Close: nothing is visible before the
// last byte) and download (a Reader, so that the size announced is the
// size of the version streamed; its start also carries etag,
// updated_at and chunk_size, the bytes each pull brings, which clients
// that do not know them ignore).
//
// # Errors
//
// A refused call gets an error reply whose code is an HTTP status:
// CodeBadRequest (invalid path, malformed call), CodeNotFound,
// CodeConflict (exists; a folder where a file is meant or the reverse),
// CodeForbidden, CodeTooMany (handles or streams), CodeUnavailable
// (shutting down) and CodeInternal (logged; its text says nothing of the
// host). A token that does not verify is HTTP 403 on the upgrade. A frame
// that breaks the framing, a text frame or a message over
// Options.MaxMessageSize closes that connection alone, with 1002, 1003 or
// 1009 and a log line; malformed JSON, unknown message types and chunks
// of unknown or ended streams get error replies.
//
// # Events
//
// storage.file.updated, storage.file.deleted and storage.file.moved go to
// every participant of the room, the one that caused them included, with
// its participant id. storage.events.overflow {dropped} tells that events
// were lost (re-list to catch up). A participant whose send queue is full
// is disconnected with 1008 rather than allowed to stall the room.
package roomserver
