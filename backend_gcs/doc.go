// Package backend_gcs stores roomstore files in a Google Cloud Storage
// bucket through cloud.google.com/go/storage.
//
// A Backend maps the clean path p to the object prefix + "/" + p (just p
// without a prefix). Folders are implicit, as everywhere in roomstore: a
// folder is any name that objects lie beneath, found with delimiter
// listings. The backend keeps its own objects (upload staging, append
// and move claims, kept versions) under prefix + "/.roomstore/"; they
// never show in List, Stat or a folder.
//
// Importing the package registers the "gs" scheme for roomstore.OpenURL:
//
//	gs://bucket/prefix                                  Application Default Credentials
//	gs://bucket/prefix?endpoint=http://127.0.0.1:4443   an emulator, no credentials
//
// # Writes
//
// Create streams through a storage.Writer (ChunkSize bytes of memory per
// writer) straight to the final object: GCS makes an upload visible only
// when it is finalised, which Commit does. Exclusive creates carry a
// DoesNotExist precondition.
//
// Append stages the handle's bytes in a private temporary object and, at
// Commit, composes [file, temporary] into the file, so the old content is
// never copied through the client. One Commit is one guarded attempt:
//
//  1. read the file's generation g (0 when it is missing);
//  2. claim g: create the claim object .roomstore/claim/<hash>.<g> with a
//     DoesNotExist precondition, which only one writer can win;
//  3. check the file is still at g;
//  4. compose [file@g, temporary] into the file with the destination
//     precondition "generation is still g" (DoesNotExist for g = 0);
//  5. delete the claim and, in every final outcome, the temporary.
//
// A lost claim, a changed generation or a failed precondition returns an
// error wrapping backend.ErrConflict and keeps the temporary, so the engine
// can call Commit again.
//
// On Cloud Storage step 4 alone is enough: compose is atomic and its
// destination precondition is enforced. Step 2 exists because the
// emulator (fake-gcs-server) ignores preconditions on compose and copy and
// composes without holding its lock, so two composes onto one file could
// both succeed and one append would vanish; the claim relies only on the
// create-only upload, which every server enforces. A claim older than
// one minute, by the server's clock, is taken to belong to a crashed
// writer and is removed by the next attempt, which still reports a
// conflict and lets the retry proceed. claim.go states the protocol's
// invariants.
//
// # Moves
//
// Move renames a file without moving its bytes through the client:
//
//  1. read src's generation g (none: fs.ErrNotExist, or ErrIsFolder when
//     objects lie beneath src); refuse a dst that is a folder and, without
//     Overwrite, one that holds an object (fs.ErrExist);
//  2. claim g and 0 of src, as an append would, and check src is still at
//     g;
//  3. copy src@g (the source generation pinned) to dst on the server,
//     with a DoesNotExist precondition unless Overwrite;
//  4. delete src@g (that generation pinned), and release the claims.
//
// When src changed in between (the pinned copy or delete meets a 404, a
// claim is held) Move returns an error wrapping backend.ErrConflict,
// having deleted its copy's generation unless Overwrite, and src keeps
// every byte.
//
// Cloud Storage enforces every precondition above, and its compose, also
// guarded by the file's generation, cannot land on a src that step 4 has
// deleted. The emulator ignores the preconditions of copies, composes and
// deletes, and composes without holding its lock; it honours pinned
// generations on reads, copies and deletes (not on a compose's sources,
// which it reads as they are). So Move pins generations rather than trusting
// preconditions, and holds the claims: on the emulator an append that
// read src's sources before step 4 and wrote after it would bring src
// back with its old content, and an appender creating src afresh after
// step 4 would make a lost delete response look like a conflict and the
// copy be deleted while src holds only the new bytes. While Move holds the
// claims, an append lost to it reports ErrConflict and retries, onto src
// still at g or, once Move is done, onto a new src: never lost. On the
// emulator only the check in step 1 stands for DoesNotExist, so a file
// created at dst just after it may be replaced.
//
// # Preconditions and history
//
// A file's ETag is its object's generation, which only grows and never
// comes back, so a precondition on an ETag is one on a generation, and
// every change carries it where the server checks it atomically:
//
//   - Create: the upload's ifGenerationMatch (IfMatch), DoesNotExist
//     (IfNoneMatch "*", Exclusive), or, with Keep or an IfNoneMatch of an
//     ETag, the generation of the version it replaces (see Create);
//   - Append: the claim on the version it composes onto, checked again
//     once held, and the compose's ifGenerationMatch;
//   - Remove: a delete of the generation read, which the server refuses
//     once that generation is gone;
//   - Move: the copy and the delete pin src's generation (and, with
//     Keep, the copy carries dst's generation, or DoesNotExist).
//
// Keep copies the version a change replaces, on the server and pinned to
// its generation, to the kept version .roomstore/versions/<path>/<id>
// (a hashed name where that would pass the limit of 1024 bytes; history.go
// tells how) before the change, which is then conditional on that
// generation: a change that happens has kept what it replaced, and a
// crash in between leaves a kept version with the ETag of the file still
// there, which the Engine hides and forgets. A change that is refused
// forgets its copy, within the cleanup budget; one whose outcome is
// unknown leaves it.
//
// Requests each change costs beyond the same change without history
// (TestHistoryCosts counts them): a new file, none (one more, a metadata
// read, when it passes one chunk, since a resumable upload states its
// preconditions when it begins); an overwrite, a metadata read and the
// copy (with IfMatch, or for an upload that passes one chunk), or, for
// one sent at Commit without IfMatch, one more, the upload that guessed
// no file was there; an append, the copy; a removal, a metadata read and
// the copy; a move, the copy of src, and that of dst when it replaces one.
// IfMatch alone costs nothing on a Create, and a metadata read on a
// Remove.
//
// On the emulator, which ignores a compose's preconditions and the
// generations of its sources, and a copy's destination preconditions,
// nothing but the claims guards the instant between an append's keep and
// its compose, or between a Move's keep of dst and its copy: an upload
// landing then is replaced without being kept. Cloud Storage refuses the
// compose or the copy (ErrConflict, or ErrPrecondition with IfMatch), and
// the kept copy is forgotten.
//
// # Errors
//
// Errors follow the backend contract: a classified error is a
// *backend.Error whose kind is the sentinel below (errors.Is), whose
// detail is the HTTP status, and whose cause is the SDK's error
// (errors.As, and errors.Is for storage.ErrObjectNotExist); none names a
// path or object, as the Engine adds the caller's:
//
//   - fs.ErrNotExist: storage.ErrObjectNotExist or an HTTP 404 for an
//     object;
//   - backend.ErrStoreUnavailable: the bucket is missing (a listing's 404,
//     which follows an object's to tell the two apart);
//   - backend.ErrIsFolder: Read, Remove or Move of a prefix with objects
//     beneath, or a Move onto one;
//   - fs.ErrClosed: a call on a finished Writer;
//   - fs.ErrExist: an exclusive Create lost to an existing object (412),
//     or a Move without Overwrite found one at its destination;
//   - backend.ErrConflict: an append, a Move, or a Create with Keep that
//     holds its bytes to the commit lost a race (claim, 412, or a pinned
//     generation gone);
//   - backend.ErrPrecondition: a change's precondition did not hold (see
//     above);
//   - fs.ErrPermission: HTTP 401 or 403;
//   - fs.ErrInvalid: bad arguments (read offset past the end, expiry);
//   - errors.ErrUnsupported: Presign without a signing identity.
//
// Other SDK errors (a network failure, a context's end) are returned as
// the SDK gives them. A commit over a folder or below a file is not
// refused here (the store cannot tell); the Engine refuses both at Open.
package backend_gcs
