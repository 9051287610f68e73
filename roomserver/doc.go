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
// # Who may do what
//
// A connection's token is checked once, at the upgrade, by
// Options.Verify, which returns the participant's Identity: its name, and
// the roomstore.Policy that decides every call it makes. The engine asks
// the policy on every call (see roomstore.Policy): Read for exists, stat,
// list, download and download_url; Write for uploads, delete (every file
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
// an identity builds two at most at once. A refusal is immediate: HTTP
// 429 or 503 before the upgrade, code 429 or 503 for a call, 413 for a
// list, close code 1008 or 1013 for a connection; it is counted in
// Stats().Refused and the roomstore.server.refused metric under its
// Budget, and logged at most 10 lines a second. A room's quota
// (roomstore.WithQuota) refuses a commit with CodeQuota (507).
//
// # Errors
//
// A refused call gets an error reply whose code is an HTTP status:
// CodeBadRequest (invalid path, malformed call), CodeNotFound,
// CodeConflict (exists; a folder where a file is meant or the reverse),
// CodeForbidden (a right the participant lacks: "delete a.txt: no write
// access", naming the file when a recursive delete or a move refuses one
// other than the call's own path and the participant may read it; another
// participant's handle; an expired token), CodeTooMany (handles or
// streams, CodeTooMany also for a call past the identity's rate:
// "rate limited: ..."), CodeTooLarge (a folder too big to list), CodeQuota
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
// one that caused them included, with its participant id.
// storage.events.overflow {dropped} tells that events were lost (re-list
// to catch up): an event that finds Options.SendQueue events waiting for
// a participant is dropped for it alone and counted in the next overflow
// it gets, rather than allowed to stall the room. A participant that
// stops reading is dropped after Options.WriteTimeout.
package roomserver
