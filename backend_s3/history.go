package backend_s3

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/objstore"
	"github.com/roomstore/roomstore/roompath"
)

// A kept version is an object of its own: a copy, made on the server, of
// the version it keeps. The versions of the file at path p are the keys
//
//	prefix/.roomstore/versions/p/.roomstore.v<ID>
//
// The last element starts with the reserved prefix, which no element of a
// path can, so that the versions of "a" and those of "a/x" (under
// .../versions/a/x/) never meet, not even on a server that stores objects
// as files. Everything Kept must tell is in the ID, so that Kept is one
// flat listing (Size is the listing's): the time of the change, the
// reason, and the ETag the version had. What the key leaves out (who made
// the change, when the version was committed) is in the object's
// metadata, which Versions and ReadVersion read.
//
// A key may hold 1024 bytes. Paths up to pathBudget bytes (880 with the
// prefix "room") are spelt out whole; a longer path is cut at an element
// boundary to at most cutBudget bytes and followed by an element that
// names it by its hash:
//
//	prefix/.roomstore/versions/<cut>/.roomstore.h<sha256(p)[:16] hex>/.roomstore.v<ID>
//
// and the whole path goes into the metadata, which Kept then reads with a
// HEAD for each such version. Such a version still lies beneath every
// folder of the path that is spelt out, which is all Kept needs to find it.

// versionsDir is where kept versions live, relative to the store's root.
const versionsDir = roompath.ReservedPrefix + "/versions/"

// The marks that start the last element of a kept version's key, and the
// element that stands for a path too long to be spelt out.
const (
	leafMark = roompath.ReservedPrefix + ".v"
	hashMark = roompath.ReservedPrefix + ".h"
)

// Sizes of a kept version's key.
const (
	// maxKeyLen is the longest key S3 accepts.
	maxKeyLen = 1024
	// maxKeyETag is the longest ETag spelt out in an ID; a longer one,
	// or one with characters an ID may not hold (an outside program's
	// object on a server with unusual ETags), is kept in the metadata.
	maxKeyETag = 80
	// idFixed is the length of an ID's fields before the ETag:
	// replaced(13) '-' reason(1) '-' nonce(8) '-' kind(1).
	idFixed = 13 + 1 + 1 + 1 + 8 + 1 + 1
	// maxIDLen is the longest ID.
	maxIDLen = idFixed + maxKeyETag
	// hashHex is the length of a long path's hash in its key.
	hashHex = 32
)

// The metadata of a kept version (x-amz-meta-...), each value in
// unpadded base64url but the time.
const (
	// keptModTimeMeta is when the version was committed, in Unix
	// seconds (S3's Last-Modified has no finer grain).
	keptModTimeMeta = "roomstore-kept-modtime"
	// keptByMeta is who made the change (backend.Keep.Participant).
	keptByMeta = "roomstore-kept-by"
	// keptPathMeta is the path, for a path too long for the key.
	keptPathMeta = "roomstore-kept-path"
	// keptETagMeta is the ETag, when the ID cannot hold it.
	keptETagMeta = "roomstore-kept-etag"
)

var reasonCodes = map[string]byte{
	backend.ReasonOverwritten: 'o',
	backend.ReasonAppended:    'a',
	backend.ReasonDeleted:     'd',
	backend.ReasonMoved:       'm',
}

func reasonOf(code byte) (string, bool) {
	for r, c := range reasonCodes {
		if c == code {
			return r, true
		}
	}
	return "", false
}

// pathBudget is the longest path whose versions' keys spell it out whole.
func (b *Backend) pathBudget() int {
	return maxKeyLen - len(b.prefix) - len(versionsDir) - len("/") - len(leafMark) - maxIDLen
}

// cutBudget is the most of a longer path that its versions' keys spell
// out before the element that names it by its hash.
func (b *Backend) cutBudget() int {
	return b.pathBudget() - len(hashMark) - hashHex - len("/")
}

// versionsKey returns the key prefix, ending in "/", of the kept versions
// of the file at path, and whether it names the path by its hash.
func (b *Backend) versionsKey(path string) (string, bool) {
	base := b.prefix + versionsDir
	if len(path) <= b.pathBudget() {
		return base + path + "/", false
	}
	if cut := cutPath(path, b.cutBudget()); cut != "" {
		base += cut + "/"
	}
	sum := sha256.Sum256([]byte(path))
	return base + hashMark + hex.EncodeToString(sum[:hashHex/2]) + "/", true
}

// cutPath returns the longest folder of path (or path itself) of at most
// n bytes, "" when there is none.
func cutPath(path string, n int) string {
	switch {
	case n <= 0:
		return ""
	case len(path) <= n:
		return path
	}
	i := strings.LastIndexByte(path[:n+1], '/')
	if i <= 0 {
		return ""
	}
	return path[:i]
}

// keptID is what a version's ID says.
type keptID struct {
	replaced time.Time
	reason   string
	// etag is the version's ETag; inMeta says it is in the metadata
	// instead.
	etag   string
	inMeta bool
}

// newKeptID returns the ID of a version with the given ETag replaced at
// now for reason: the time in base 36 nanoseconds (13 digits, so that IDs
// sort by it), the reason's letter, a random nonce that keeps two copies
// of one version apart, and the ETag ('e' and the ETag, or 'm' when it is
// in the metadata).
func newKeptID(now time.Time, reason, etag string) (string, bool, error) {
	code, ok := reasonCodes[reason]
	if !ok {
		return "", false, backend.Errorf(fs.ErrInvalid, nil, "unknown reason %q", reason)
	}
	var nonce [4]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", false, err
	}
	ts := strconv.FormatInt(max(now.UnixNano(), 0), 36)
	var sb strings.Builder
	sb.Grow(idFixed + len(etag))
	sb.WriteString(strings.Repeat("0", 13-len(ts)))
	sb.WriteString(ts)
	sb.WriteByte('-')
	sb.WriteByte(code)
	sb.WriteByte('-')
	sb.WriteString(hex.EncodeToString(nonce[:]))
	sb.WriteByte('-')
	inKey := keyableETag(etag)
	if inKey {
		sb.WriteByte('e')
		sb.WriteString(etag)
	} else {
		sb.WriteByte('m')
	}
	return sb.String(), inKey, nil
}

// keyableETag reports whether an ID can spell out etag.
func keyableETag(etag string) bool {
	if etag == "" || len(etag) > maxKeyETag {
		return false
	}
	for i := 0; i < len(etag); i++ {
		if !idByte(etag[i]) {
			return false
		}
	}
	return true
}

func idByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}

// parseKeptID reads an ID that newKeptID made; anything else is not the
// ID of a kept version.
func parseKeptID(id string) (keptID, bool) {
	if len(id) < idFixed || len(id) > maxIDLen || id[13] != '-' || id[15] != '-' || id[24] != '-' {
		return keptID{}, false
	}
	n, err := strconv.ParseInt(id[:13], 36, 64)
	if err != nil || n < 0 || strings.ToLower(id[:13]) != id[:13] {
		return keptID{}, false
	}
	reason, ok := reasonOf(id[14])
	if !ok {
		return keptID{}, false
	}
	if _, err := hex.DecodeString(id[16:24]); err != nil || strings.ToLower(id[16:24]) != id[16:24] {
		return keptID{}, false
	}
	k := keptID{replaced: time.Unix(0, n), reason: reason}
	switch rest := id[idFixed:]; id[25] {
	case 'e':
		if !keyableETag(rest) {
			return keptID{}, false
		}
		k.etag = rest
	case 'm':
		if rest != "" {
			return keptID{}, false
		}
		k.inMeta = true
	default:
		return keptID{}, false
	}
	return k, true
}

func encodeMeta(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// decodeMeta reads a value encodeMeta wrote; a damaged one reads as "".
func decodeMeta(s string) string {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return ""
	}
	return string(b)
}

// version describes the kept version id (k) of path from what a HEAD or
// GET of its object told (h).
func (k keptID) version(path, id string, h objectHead) backend.Version {
	v := backend.Version{Path: path, ID: id, ETag: k.etag, Size: h.size, Replaced: k.replaced, Reason: k.reason,
		Participant: decodeMeta(h.meta[keptByMeta])}
	if k.inMeta {
		v.ETag = decodeMeta(h.meta[keptETagMeta])
	}
	if s, err := strconv.ParseInt(h.meta[keptModTimeMeta], 10, 64); err == nil {
		v.ModTime = time.Unix(s, 0).UTC()
	}
	return v
}

// keep copies cur, the version of the file at path that a change is about
// to replace, to a new kept version replaced at now for reason, and
// returns the kept object's key. The copy is made on the server and
// guarded by cur's S3 ETag (x-amz-copy-source-if-match), which the change
// is then guarded by too, so that the version kept is the version
// replaced; a file that is no longer that version is a lost race (an error
// wrapping backend.ErrConflict) and keeps nothing. A copy whose request
// got no answer may have landed, and is removed once.
func (b *Backend) keep(ctx context.Context, path string, cur objectHead, k *backend.Keep, reason string, now time.Time) (string, error) {
	dir, hashed := b.versionsKey(path)
	etag := fileInfo(path, 0, time.Time{}, cur.etag, cur.commit).ETag
	id, inKey, err := newKeptID(now, reason, etag)
	if err != nil {
		return "", err
	}
	key := dir + leafMark + id
	meta := map[string]string{keptModTimeMeta: strconv.FormatInt(cur.modTime.Unix(), 10)}
	if p := backend.KeptParticipant(k.Participant); p != "" {
		meta[keptByMeta] = encodeMeta(p)
	}
	if hashed {
		meta[keptPathMeta] = encodeMeta(path)
	}
	if !inKey {
		meta[keptETagMeta] = encodeMeta(etag)
	}
	src := b.key(path)
	ifMatch := aws.String(cur.etag)
	if cur.size <= MaxPartSize {
		_, err := b.client.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket:            aws.String(b.bucket),
			Key:               aws.String(key),
			CopySource:        aws.String(copySource(b.bucket, src)),
			CopySourceIfMatch: ifMatch,
			MetadataDirective: types.MetadataDirectiveReplace,
			Metadata:          meta,
			ContentType:       optional(cur.contentType),
		})
		if err != nil {
			var undo error
			if !answered(err) {
				undo = b.forgetKept(ctx, key)
			}
			return "", errors.Join(b.sourceChanged(ctx, src, ifMatch, err), undo)
		}
		return key, nil
	}
	u := &upload{b: b, key: key, contentType: cur.contentType, metadata: meta}
	if err := u.copyParts(ctx, src, ifMatch, 0, cur.size); err != nil {
		return "", errors.Join(b.sourceChanged(ctx, src, ifMatch, err), u.abort(ctx, once))
	}
	if _, err := u.complete(ctx, &s3.CompleteMultipartUploadInput{}); err != nil {
		return "", errors.Join(err, u.abort(ctx, once), b.forgetKept(ctx, key))
	}
	return key, nil
}

// forgetKept removes the kept version at key, made for a change that did
// not happen, once on the cleanup budget. One that cannot be removed
// carries the ETag of the file that is still current, which the Engine
// never shows and forgets after its grace.
func (b *Backend) forgetKept(ctx context.Context, key string) error {
	if err := b.deleteTemp(ctx, key, once); err != nil {
		return fmt.Errorf("forget the kept version: %w", err)
	}
	return nil
}

// settleKept forgets the kept version at key ("" for none) when err, the
// failure of the change it was made for, says that the change did not
// happen: a lost race or a failed precondition, or any refusal by the
// server. A change whose outcome is unknown (no answer, a 5xx, a context
// that ended) leaves it: it may be the only copy of a version that was
// replaced after all.
func (b *Backend) settleKept(ctx context.Context, key string, err error) error {
	if key == "" || err == nil || !undone(err) {
		return nil
	}
	return b.forgetKept(ctx, key)
}

// undone reports an error that says the change it reports did not
// happen.
func undone(err error) bool {
	return errors.Is(err, backend.ErrConflict) || errors.Is(err, backend.ErrPrecondition) ||
		errors.Is(err, fs.ErrExist) || answered(err)
}

// objectsUnder yields the objects whose keys start with prefix (after
// startAfter, when set), one flat ListObjectsV2 page at a time; a failed
// page yields one classified error and ends the sequence.
func (b *Backend) objectsUnder(ctx context.Context, prefix, startAfter string) iter.Seq2[types.Object, error] {
	return func(yield func(types.Object, error) bool) {
		pages := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{
			Bucket:     aws.String(b.bucket),
			Prefix:     aws.String(prefix),
			StartAfter: optional(startAfter),
			MaxKeys:    aws.Int32(b.listPageSize),
		})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				yield(types.Object{}, classify(err))
				return
			}
			for _, obj := range page.Contents {
				if !yield(obj, nil) {
					return
				}
			}
		}
	}
}

// Versions yields the kept versions of the file at path: one listing of
// the keys of its versions, and a HEAD of each for what its key leaves
// out (Participant, ModTime).
func (b *Backend) Versions(ctx context.Context, path string) iter.Seq2[backend.Version, error] {
	dir, hashed := b.versionsKey(path)
	return func(yield func(backend.Version, error) bool) {
		for obj, err := range b.objectsUnder(ctx, dir+leafMark, "") {
			if err != nil {
				yield(backend.Version{}, err)
				return
			}
			key := aws.ToString(obj.Key)
			id := strings.TrimPrefix(key, dir+leafMark)
			k, ok := parseKeptID(id)
			if !ok {
				continue
			}
			h, err := b.head(ctx, key, nil)
			switch {
			case isNotFound(err):
				continue // forgotten since the listing
			case err != nil:
				yield(backend.Version{}, classify(err))
				return
			case hashed && decodeMeta(h.meta[keptPathMeta]) != path:
				continue
			}
			if !yield(k.version(path, id, h), nil) {
				return
			}
		}
	}
}

// Kept yields the kept versions at or beneath dir from a flat listing of
// their keys, which tell all Kept must (Size is the listing's), and leaves
// Participant and ModTime empty. A version whose path is too long for its
// key, or whose ETag is in its metadata, costs a HEAD.
func (b *Backend) Kept(ctx context.Context, dir string) iter.Seq2[backend.Version, error] {
	return func(yield func(backend.Version, error) bool) {
		for _, prefix := range b.keptListings(dir) {
			for obj, err := range b.objectsUnder(ctx, prefix, "") {
				if err != nil {
					yield(backend.Version{}, err)
					return
				}
				key := aws.ToString(obj.Key)
				path, id, k, ok := b.parseKeptKey(key)
				if !ok {
					continue
				}
				v := backend.Version{Path: path, ID: id, ETag: k.etag, Size: aws.ToInt64(obj.Size), Replaced: k.replaced, Reason: k.reason}
				if path == "" || k.inMeta {
					h, err := b.head(ctx, key, nil)
					switch {
					case isNotFound(err):
						continue
					case err != nil:
						yield(backend.Version{}, classify(err))
						return
					}
					if path == "" {
						v.Path = decodeMeta(h.meta[keptPathMeta])
					}
					v.ETag = k.version(v.Path, id, h).ETag
				}
				if dir != "" && v.Path != dir && !strings.HasPrefix(v.Path, dir+"/") {
					continue
				}
				if !yield(v, nil) {
					return
				}
			}
		}
	}
}

// keptListings returns the key prefixes whose flat listings hold every
// kept version at or beneath dir: the folder's own, and, for a folder
// longer than cutBudget, the hashed paths that share its cut.
func (b *Backend) keptListings(dir string) []string {
	base := b.prefix + versionsDir
	switch {
	case dir == "":
		return []string{base}
	case len(dir) <= b.cutBudget():
		return []string{base + dir + "/"}
	}
	var out []string
	if len(dir) <= b.pathBudget() {
		out = append(out, base+dir+"/")
	}
	if cut := cutPath(dir, b.cutBudget()); cut != "" {
		base += cut + "/"
	}
	return append(out, base+hashMark)
}

// parseKeptKey reads the key of a kept version: its path ("" when the key
// names it by its hash), its ID and what the ID says. ok is false for any
// other key.
func (b *Backend) parseKeptKey(key string) (path, id string, k keptID, ok bool) {
	rest, ok := strings.CutPrefix(key, b.prefix+versionsDir)
	i := strings.LastIndexByte(rest, '/')
	if !ok || i <= 0 {
		return "", "", keptID{}, false
	}
	dir, leaf := rest[:i], rest[i+1:]
	if id, ok = strings.CutPrefix(leaf, leafMark); !ok {
		return "", "", keptID{}, false
	}
	if k, ok = parseKeptID(id); !ok {
		return "", "", keptID{}, false
	}
	if strings.HasPrefix(dir[strings.LastIndexByte(dir, '/')+1:], hashMark) {
		return "", id, k, true
	}
	if _, ok := objstore.FilePath("", dir); !ok {
		return "", "", keptID{}, false
	}
	return dir, id, k, true
}

// keptKey returns the key of the kept version id of path, or false when
// id is not one this backend makes.
func (b *Backend) keptKey(path, id string) (string, keptID, bool, bool) {
	k, ok := parseKeptID(id)
	if !ok {
		return "", keptID{}, false, false
	}
	dir, hashed := b.versionsKey(path)
	return dir + leafMark + id, k, hashed, true
}

// errNoVersion answers for an ID that names no kept version of the path.
func errNoVersion(id string, cause error) error {
	return backend.Errorf(fs.ErrNotExist, cause, "no kept version %q", id)
}

// ReadVersion streams length bytes (length < 0: to the end) of the kept
// version id of path from offset, with one ranged GET, as Read does. An
// unknown id yields fs.ErrNotExist, an offset past the end fs.ErrInvalid.
func (b *Backend) ReadVersion(ctx context.Context, path, id string, offset, length int64) (io.ReadCloser, backend.Version, error) {
	key, k, hashed, ok := b.keptKey(path, id)
	if !ok {
		return nil, backend.Version{}, errNoVersion(id, nil)
	}
	r, h, err := b.get(ctx, key, offset, length)
	switch {
	case isNotFound(err):
		return nil, backend.Version{}, errNoVersion(id, err)
	case err != nil:
		return nil, backend.Version{}, classify(err)
	case hashed && decodeMeta(h.meta[keptPathMeta]) != path:
		r.Close()
		return nil, backend.Version{}, errNoVersion(id, nil)
	}
	return r, k.version(path, id, h), nil
}

// Forget removes the kept version id of path: a HEAD, as S3 deletes a
// missing key without a word, then a DeleteObject. An unknown id yields
// fs.ErrNotExist. A reader already open may go on reading on servers that
// keep an open object's bytes (versitygw's posix backend does).
func (b *Backend) Forget(ctx context.Context, path, id string) error {
	key, _, hashed, ok := b.keptKey(path, id)
	if !ok {
		return errNoVersion(id, nil)
	}
	h, err := b.head(ctx, key, nil)
	switch {
	case isNotFound(err):
		return errNoVersion(id, err)
	case err != nil:
		return classify(err)
	case hashed && decodeMeta(h.meta[keptPathMeta]) != path:
		return errNoVersion(id, nil)
	}
	if _, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)}); err != nil {
		return classify(err)
	}
	return nil
}
