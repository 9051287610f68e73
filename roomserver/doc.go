// Package roomserver serves roomstore rooms to remote participants over
// the MeshAgent room protocol, so that every MeshAgent client that
// exists (the handle-era clients before 0.30, the toolkit clients of
// 0.30 and later, the strict Python clients of today), roomclient and
// the roomstore command reach a room's files through one WebSocket per
// participant.
//
// A Server is an http.Handler for GET /rooms/{room}. Each connection is
// one participant: it gets its own participant id (sent in the connected
// message, carried by every event its calls cause), and the uploads,
// downloads and handles it opened die with it: an upload cut short
// leaves nothing visible. The engine of each room comes from
// Options.Resolve and is shut down Options.RoomIdle after its last
// participant left.
//
// # Connecting
//
// A client brings its token as ?token= (clients before 0.43), in an
// Authorization: Bearer header (Node, Python and Dart clients from
// 0.43), or as the subprotocol meshagent-room.<jwt> (browsers), which
// the server echoes; other query parameters (Python's ?v=) are ignored.
// The server greets it with room_ready {room_name, room_url, session_id}
// (room_url: Options.PublicURL's ws or wss form followed by
// rooms/{room}, else the URL the client connected to, without its
// query) and connected {type: "init", participantId, attributes}. A
// set_attributes message, which older TypeScript clients send after
// connected, is taken without an answer. permessage-deflate is declined
// unless Options.Compression is set; a client that offers it connects
// either way.
//
// # Calls
//
// The toolkit of the 0.30 and later clients (room.invoke_tool, toolkit
// storage): exists, stat, list, delete (recursive: RemoveAll), move,
// download_url (download: an attachment URL), and the streams upload
// (Open, Write per pulled chunk, Close: nothing is visible before the
// last byte) and download (a Reader, so that the size announced is the
// size of the version streamed).
//
// The handle-era messages of the clients before 0.30, each its own
// message type answered by a __response__: storage.exists, storage.stat
// ({exists, name, is_folder, created_at, updated_at}), storage.list
// ({files: [{name, is_folder, created_at, updated_at}]}; a folder, whose
// time the store does not keep, has the Unix epoch), storage.open
// ({path, overwrite}: Engine.Open, answered with {handle}, a string that
// belongs to the connection; without overwrite the close appends, as
// the seed of the protocol says), storage.write ({handle} and the bytes
// as payload: Engine.Write, nothing visible), storage.close ({handle}:
// Engine.Close, then storage.file.updated), storage.download ({type:
// "file", name, mime_type} and the bytes of a file of at most
// MaxMessageSize; a bigger one is refused with 413 naming
// storage.download_url), storage.download_url and storage.delete ({path}
// or {path, recursive}, answered with json {}). A handle's writes and
// its close run in the order they came; a call sent before the previous
// one was answered waits for it (and so does the connection, as for
// MaxRequests). A handle is aborted when
// its connection ends or after StreamIdle without a call, and counts as
// a stream in the budgets; Shutdown lets it finish as it lets streams.
// A storage.download takes its place in the send buffer before its file
// is opened. Another connection's handle is refused (403,
// naming no file), one that has ended is not found (404). One write is
// one message, so at most MaxMessageSize bytes.
//
// Replies, stream headers and events carry exactly the fields the
// protocol defines, because the strict Python clients refuse any other.
// A client that asks for roomstore's extensions, with the query
// parameter roomstore_extensions=1 (MeshAgent clients never send it;
// roomclient does), is named them in room_ready's "extensions" and gets
// what they add:
//
//   - "version": a download start also carries etag and updated_at (the
//     version streamed) and chunk_size (the bytes each pull brings, so
//     that the client may pull the next chunk before this one came);
//   - "range": a download start with offset and length streams that
//     range (size is then the range's), and carries total_size;
//   - "append": an upload start with append true (and no overwrite)
//     appends to the file, as Engine.Open without Overwrite or
//     Exclusive;
//   - "overflow": storage.events.overflow {dropped} tells of lost events
//     (see Events);
//   - "resume": room_ready carries "position", where the connection's
//     events start, and every storage.file.* event its "position"; a
//     client that connects with roomstore_after=POSITION is sent what it
//     missed (see Events);
//   - "preconditions": stat also carries the file's etag; an upload
//     start takes if_match (an etag: Engine.Open's OpenOptions.IfMatch,
//     checked at the open and again at the commit) and if_none_match (an
//     etag, or "*"), delete (recursive or not) and move take if_match;
//     a change whose precondition fails is refused with CodePrecondition
//     (412) and changes nothing;
//   - "history": the tools versions {path} ({versions: [{path, id, etag,
//     size, modified_at, replaced_at, participant_id, reason}]}, newest
//     first: Engine.Versions), restore {path, version} (the restored
//     file's entry with its path and new etag: Engine.Restore, one
//     storage.file.updated), deleted {path} ({versions}, each deleted
//     file of the folder with its newest version: Engine.Deleted) and
//     restore_all {path} ({files: [entries]}, each file restored as
//     restore does), and a download start with version streams that
//     past version (Engine.OpenVersion; offset and length are refused
//     with it);
//   - "inline": a small upload or download in one round trip. A stream's
//     open with pipelined true says its first chunk follows at once: the
//     open's reply then goes out with the stream's first response. An
//     upload start with inline true carries the whole file (at most
//     wire.InlineMax, 256 KiB) as its payload: the server commits it and
//     answers the start and the stream's close (or an error chunk), with
//     no pull and no close from the client. A download start with push
//     true, for what fits in its chunk_size, gets a start with push true,
//     the data and the close, unpulled; a bigger one streams as usual.
//
// For every client, what a stream sends together goes out in one write
// to the socket: a start's answer with the first pull or the download's
// start, a pull's answer with its data, the last data with the close.
// A connection's messages are written by the goroutine that has them
// when nothing else waits to go out (events, which the room's fan-out
// must never wait for, by a goroutine of the connection's), and the
// messages found waiting together go out in one system call.
//
// Such a client also gets participant_name in storage.file.updated,
// deleted and moved: the name (Identity.Name) of the participant whose
// change it reports, where the server knows it (a change made through
// this server; not one another replica sent through NATS).
//
// Requests may carry null and unknown fields, which are ignored:
// participant_id and on_behalf_of_id null, a tool_call_id on a simple
// call, recursive null and download null (false). The fields the
// extensions add to the protocol's calls (range, append, if_match,
// if_none_match, a download's version) are honoured from any client:
// MeshAgent clients never send them, and ignoring one would do
// something other than its sender asked (overwrite a file it meant to
// save only over the version it read). The history's tools exist only
// for a client that asked for the extensions: any other is answered as
// for a tool the server lacks (CodeNotFound, "no tool storage.versions"),
// so that it sees no trace of them.
//
// # Who may do what
//
// A connection's token is checked once, at the upgrade, by
// Options.Verify, which returns the participant's Identity: its name, and
// the roomstore.Policy that decides every call it makes. The engine asks
// the policy on every call (see roomstore.Policy): Read for exists, stat,
// list, download and download_url, versions, deleted and a download of a
// version (deleted lists only what the participant may read); Read and
// Write for restore and each file of restore_all; Write for uploads,
// delete (every file
// of a recursive delete: one file it may not write refuses the whole
// delete, which then removes nothing) and move (every file at its source
// and at its destination). List shows only what the participant may read:
// a folder appears while something it may read lies beneath it. A path it
// may not read is refused whether or not anything is there, so a refusal
// never tells what lies outside its reach. Events reach a participant only
// for paths it may read; a move between a path it may read and one it may
// not reaches it as the event of its own side (storage.file.updated of the
// destination, or storage.file.deleted of the source), never naming the
// other path.
//
// HS256 builds the policy from the token's MeshAgent storage grant
// (StorageGrant: api.storage.paths[{path, read_only}], decided exactly as
// MeshAgent's clients decide it), and refuses storage to a token whose api
// grant has no storage key, or that has no api grant at all, as MeshAgent
// does. An embedding server plugs rules of its own by returning another
// policy from its Verifier (a lookup in its database, roles): see the
// example. A nil policy grants everything.
//
// A token ends: Identity.Expires (HS256: the exp claim, with Leeway) closes
// the connection at that moment with 1008 "token expired", aborting the
// uploads it has open, and no download URL the participant obtains lives
// past it (roomstore.NotAfter). A token without exp stays valid while its
// connection lives, as MeshAgent's do. To revoke one before it ends, the
// Verifier refuses it at the door (a denylist looked up there) and its
// policy refuses it on every call of a connection already open (the same
// denylist looked up there), as the example shows.
//
// # Resumable uploads
//
// Server.Uploads serves the rooms' resumable uploads over tus 1.0 (SPEC
// 9.6), on the same listener and with the same tokens, sent as
// Authorization: Bearer: POST {prefix}{room}/ with Upload-Length and
// Upload-Metadata (the room path as "path", "overwrite" "true" to
// replace) creates an upload of the room's engine
// (roomstore.Engine.CreateResumable, which checks the path, the policy
// and the quota at once), whose Location, {prefix}{room}/{id}, takes HEAD
// (its offset), PATCH (bytes from that offset; what a cut body delivered
// is kept) and DELETE. The last byte commits the file, atomically, with
// one storage.file.updated; nothing is visible before. An upload belongs
// to its identity and its room: any other finds no such upload. Every
// answer to POST, PATCH and HEAD of an unfinished upload says when it
// expires (Upload-Expires, roomstore.ResumableLimits.MaxAge after its
// last write). Each request costs a call of the identity's rate and
// counts as one of its connections while it runs; one that sends bytes
// counts as one of its streams, must keep sending (each read within
// MessageTimeout), and is cut when its identity expires or, after the
// wait Shutdown gives streams, when the server shuts down (503). See
// Uploads for its statuses.
//
// # Budgets
//
// Nothing is opened before a request is authenticated: the token is
// checked before the room is opened, and Files checks a download URL's
// signature (roomstore.VerifyURL with Options.SigningKey) before it opens
// anything. A participant whose policy grants no write, and a download
// URL, open a room with Resolver's create false, so that a read never
// creates a store (the resolver answers fs.ErrNotExist; the server 404).
//
// No participant can exhaust the server for the others. An identity
// (Identity.Name) holds at most Options.MaxConnectionsPerIdentity
// connections, MaxStreamsPerIdentity uploads and downloads, half of a
// room's handles (roomstore.WithMaxOpenHandles) and CallRate calls a
// second (a token bucket); a connection MaxStreams streams and SendBuffer
// bytes waiting to go out; a room MaxParticipants connections; the server
// MaxConnections connections, MaxOpenStreams streams and MaxPendingBytes
// of messages partly received, each of which must arrive within
// MessageTimeout. A list reply holds at most MaxListEntries entries, and
// an identity builds two at most at once; so do the history's versions,
// deleted and restore_all, which are calls as any other (a restore_all
// is one call however many files it restores, as a recursive delete
// is), a download of a version is a stream, and a restore (restore_all
// restores one file at a time) holds one of the identity's share of
// the room's handles, as an upload does. A refusal is immediate: HTTP
// 429 or 503 before the upgrade, code 429 or 503 for a call, 413 for a
// list, close code 1008 or 1013 for a connection; it is counted in
// Stats().Refused and the roomstore.server.refused metric under its
// Budget, and logged at most 10 lines a second. A room's quota
// (roomstore.WithQuota) refuses a commit with CodeQuota (507). A stream
// or handle gives back what it holds of these budgets before the answer
// that ends it goes out, so that a participant that has its answer may
// open the next one at once, whatever the budget.
//
// # Errors
//
// A refused call gets an error reply whose code is an HTTP status:
// CodeBadRequest (invalid path, malformed call), CodeNotFound,
// CodeTimeout (a stream ended after StreamIdle without a chunk, told in
// an error chunk),
// CodeConflict (exists; a folder where a file is meant or the reverse),
// CodePrecondition (the file is not the version if_match or
// if_none_match names),
// CodeForbidden (a right the participant lacks: "delete a.txt: no write
// access", naming the file when a recursive delete or a move refuses one
// other than the call's own path and the participant may read it; another
// participant's handle; an expired token), CodeTooMany (handles or
// streams, CodeTooMany also for a call past the identity's rate:
// "rate limited: ..."), CodeTooLarge (a folder too big to list, a
// handle-era download of a file over MaxMessageSize), CodeQuota
// (the room's quota), CodeUnavailable (shutting down, or a budget of the
// server spent) and CodeInternal (logged; its
// text says nothing of the host, nor of a policy that failed). A token
// that does not verify, or an Identity that has already expired, is HTTP
// 403 on the upgrade. A frame that breaks the framing, a text frame or a
// message over Options.MaxMessageSize closes that connection alone, with
// 1002, 1003 or 1009 and a log line; malformed JSON, unknown message types
// and chunks of unknown or ended streams get error replies.
//
// # Events
//
// storage.file.updated, storage.file.deleted and storage.file.moved go to
// every participant of the room that may read their path (see above), the
// one that caused them included, with its participant id; a handle-era
// participant gets a move as the storage.file.deleted of its source and
// the storage.file.updated of its destination. An event that finds
// Options.SendQueue events waiting for a participant is dropped for it
// alone, rather than allowed to stall the room, and so is every event
// when the room's own subscription lost some. A participant that asked
// for the extensions is told how many it lost, storage.events.overflow
// {dropped}, before its next event (re-list to catch up); any other
// cannot be told, and is closed with 1013 once the events queued before
// the loss have gone out, so that it reconnects and re-lists. Since a
// loss costs such a participant its connection, it has room for bursts
// (a recursive delete of many files) of up to 8 times SendQueue events
// while it keeps reading. A
// participant that stops reading is dropped after Options.WriteTimeout.
//
// Events reach a participant only after room_ready and connected. A
// client that asked for the extensions and connects again with
// roomstore_after set to the position of the last event it got (room_ready's
// position if it got none) is sent, before any live event, every event
// of the room after that position, from the engine's history
// (roomstore.WithEventHistory): none missed, none twice, whatever the room
// publishes meanwhile, and while it reads them its calls are answered.
// They wait for room in its queue rather than being dropped; the events
// published meanwhile wait in the room for it, up to 8 times SendQueue,
// and past that are lost for it, and told. Where the engine cannot tell
// what came after the position (the room's engine was opened anew since,
// by a restart or after the room idled, or the position is older than the
// history reaches), the client's first event is instead one
// storage.events.overflow, whose position is where its stream goes on
// (its room_ready's), and it should re-list. An overflow told mid-stream
// carries the position of the last event lost, where known. A malformed
// roomstore_after is refused with 400 before the upgrade; from a client
// that did not ask for the extensions it is ignored.
package roomserver
