package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/user"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_disk"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/roomclient"
)

// The environment variables that are the defaults of --store and
// --token, and the store the file commands work on without either:
// beside serve's default rooms (defaultRoomsStore), neither inside the
// other.
const (
	storeEnv     = "ROOMSTORE_STORE"
	tokenEnv     = "ROOMSTORE_TOKEN"
	defaultStore = "file://./roomstore-data"
)

// connectTimeout bounds opening a store or dialling a room server.
const connectTimeout = 30 * time.Second

// store is what the file commands work on: an Engine over a store URL, or
// a room server's room through the Go client. Both give the same errors
// (the fs sentinels and the roomstore ones, ErrPrecondition included), so
// a command handles them once.
type store interface {
	Stat(ctx context.Context, p string) (roomstore.Entry, error)
	List(ctx context.Context, p string) ([]roomstore.Entry, error)
	// Upload writes r to p as opts say (opts.Size is r's length when
	// known, else 0).
	Upload(ctx context.Context, p string, r io.Reader, opts roomstore.OpenOptions) (roomstore.Entry, error)
	// Open streams the whole file at p.
	Open(ctx context.Context, p string) (reader, error)
	Delete(ctx context.Context, p string, opts roomstore.DeleteOptions) error
	RemoveAll(ctx context.Context, p string, opts roomstore.DeleteOptions) error
	Move(ctx context.Context, src, dst string, opts roomstore.MoveOptions) error
	DownloadURL(ctx context.Context, p string, attachment bool) (string, error)
	history
	Close(ctx context.Context) error
}

// history is the past versions of a store's files (see
// roomstore.WithHistory), as versions, restore, deleted and get
// --version reach them.
type history interface {
	Versions(ctx context.Context, p string) ([]roomstore.Version, error)
	// OpenVersion streams the whole past version id of the file at p.
	OpenVersion(ctx context.Context, p, id string) (reader, error)
	Restore(ctx context.Context, p, id string) (roomstore.Entry, error)
	Deleted(ctx context.Context, dir string) ([]roomstore.Version, error)
	RestoreAll(ctx context.Context, dir string) ([]roomstore.Entry, error)
}

// keptCounter is a store that tells the bytes of the past versions it
// keeps, all paths together: a store opened directly (a room server
// tells its participants no usage).
type keptCounter interface {
	Kept(ctx context.Context) (int64, error)
}

// reader is a file being read, with the version it reads.
type reader interface {
	io.ReadCloser
	Entry() roomstore.Entry
}

// storeFlags are the root command's --store, --token and --timeout.
type storeFlags struct {
	url, token string
	timeout    time.Duration
}

// target returns --store, else $ROOMSTORE_STORE, else the default.
func (f *storeFlags) target() string {
	switch {
	case f.url != "":
		return f.url
	case os.Getenv(storeEnv) != "":
		return os.Getenv(storeEnv)
	}
	return defaultStore
}

// scheme returns the lower-case scheme of the store the flags name, or "".
func (f *storeFlags) scheme() string {
	u, err := url.Parse(f.target())
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Scheme)
}

// isRoom reports whether the flags name a room server's room.
func (f *storeFlags) isRoom() bool {
	switch f.scheme() {
	case "ws", "wss", "http", "https":
		return true
	}
	return false
}

// open opens the store the flags name. A disk store's directory is
// created only when create is set (by put): anything else on a directory
// that is not there fails rather than leave an empty store behind.
func (f *storeFlags) open(ctx context.Context, create bool) (store, error) {
	raw := f.target()
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--store: %s is not a URL", redactedURL(raw))
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	switch scheme := strings.ToLower(u.Scheme); scheme {
	case "ws", "wss", "http", "https":
		return f.dial(ctx, u)
	case "file":
		if !create {
			if err := storeDirExists(u); err != nil {
				return nil, err
			}
		}
	case "":
		return nil, fmt.Errorf("--store %s: want a store URL (%s) or a room server's ws://HOST:PORT/rooms/ROOM", redactedURL(raw), schemeList())
	default:
		if !slices.Contains(backend.Schemes(), scheme) {
			return nil, fmt.Errorf("--store %s: unknown scheme %q (known: %s)", redactedURL(raw), u.Scheme, schemeList())
		}
	}
	// The Engine's default history, which serve's --history-versions and
	// --history-age default to as well: an rm keeps what restore brings
	// back, as it would through a room server.
	e, err := roomstore.OpenURL(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("--store %s: %s", redactedURL(raw), reason(err))
	}
	return &engineStore{e: e, participant: participant()}, nil
}

// dial connects to a room server's room.
func (f *storeFlags) dial(ctx context.Context, u *url.URL) (store, error) {
	token := f.token
	if token == "" {
		token = os.Getenv(tokenEnv)
	}
	shown := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String() // never a token in the query
	if u.Query().Has("token") {
		return nil, fmt.Errorf("--store %s: give the token with --token or %s, not in the URL", shown, tokenEnv)
	}
	if token == "" {
		return nil, fmt.Errorf("--store %s: a room server needs a participant token: give --token or set %s (see roomstore token)", shown, tokenEnv)
	}
	room, ok := strings.CutPrefix(u.Path, roomsPrefix)
	if u.Host == "" || !ok || room == "" || strings.Contains(room, "/") {
		return nil, fmt.Errorf("--store %s: want ws://HOST:PORT/rooms/ROOM", shown)
	}
	// The client's own logs would add lines to the command's one-line
	// errors; what they say reaches the command as errors anyway.
	c, err := roomclient.Dial(ctx, u.String(), roomclient.Options{Token: token, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		switch {
		case errors.Is(err, roomclient.ErrForbidden):
			return nil, fmt.Errorf("--store %s: the room server refused the token (bad, expired, or for another room)", shown)
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("--store %s: the server has no such room", shown)
		case errors.Is(err, context.DeadlineExceeded):
			return nil, fmt.Errorf("--store %s: no answer from the room server within %v", shown, connectTimeout)
		}
		var refused *roomclient.Error
		if errors.As(err, &refused) {
			return nil, fmt.Errorf("--store %s: %s", shown, refused.Error()) // the server's reason
		}
		return nil, fmt.Errorf("--store %s: cannot reach the room server: %s", shown, reason(err))
	}
	return clientStore{c}, nil
}

// storeDirExists reports a file:// store whose directory is missing, the
// way the file:// opener reads the URL (malformed ones are left to it).
func storeDirExists(u *url.URL) error {
	dir, err := backend_disk.FileDir(u)
	if err != nil {
		return nil // the opener says why
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("--store %s: no store there (its directory does not exist; put creates it)", redactedURL(u.String()))
	case err == nil && !fi.IsDir():
		return fmt.Errorf("--store %s: not a store (not a directory)", redactedURL(u.String()))
	}
	return nil
}

func schemeList() string { return strings.Join(append(backend.Schemes(), "ws"), ", ") }

// redactedURL returns raw with a password hidden, and for a room server
// without its query (where a token could be).
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "(a malformed URL)"
	case u.RawQuery != "" && (u.Scheme == "ws" || u.Scheme == "wss" || u.Scheme == "http" || u.Scheme == "https"):
		u.RawQuery = ""
		return u.Redacted()
	case u.User == nil:
		return raw
	}
	return u.Redacted()
}

// participant names the command's changes in their events: the user and
// the host it runs as.
func participant() string {
	name := "roomstore"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		name += "@" + h
	}
	return name
}

// engineStore is a store opened directly.
type engineStore struct {
	e           *roomstore.Engine
	participant string
}

func (s *engineStore) ctx(ctx context.Context) context.Context {
	return roomstore.WithParticipant(ctx, s.participant)
}

func (s *engineStore) Stat(ctx context.Context, p string) (roomstore.Entry, error) {
	return s.e.Stat(ctx, p)
}

func (s *engineStore) List(ctx context.Context, p string) ([]roomstore.Entry, error) {
	return s.e.List(ctx, p)
}

func (s *engineStore) Upload(ctx context.Context, p string, r io.Reader, opts roomstore.OpenOptions) (roomstore.Entry, error) {
	return s.e.Upload(s.ctx(ctx), p, r, opts)
}

func (s *engineStore) Open(ctx context.Context, p string) (reader, error) {
	return s.e.OpenReader(ctx, p, 0, -1)
}

func (s *engineStore) Delete(ctx context.Context, p string, opts roomstore.DeleteOptions) error {
	return s.e.Delete(s.ctx(ctx), p, opts)
}

func (s *engineStore) RemoveAll(ctx context.Context, p string, opts roomstore.DeleteOptions) error {
	return s.e.RemoveAll(s.ctx(ctx), p, opts)
}

func (s *engineStore) Move(ctx context.Context, src, dst string, opts roomstore.MoveOptions) error {
	return s.e.Move(s.ctx(ctx), src, dst, opts)
}

func (s *engineStore) Versions(ctx context.Context, p string) ([]roomstore.Version, error) {
	return s.e.Versions(ctx, p)
}

func (s *engineStore) OpenVersion(ctx context.Context, p, id string) (reader, error) {
	return s.e.OpenVersion(ctx, p, id)
}

func (s *engineStore) Restore(ctx context.Context, p, id string) (roomstore.Entry, error) {
	return s.e.Restore(s.ctx(ctx), p, id)
}

func (s *engineStore) Deleted(ctx context.Context, dir string) ([]roomstore.Version, error) {
	return s.e.Deleted(ctx, dir)
}

func (s *engineStore) RestoreAll(ctx context.Context, dir string) ([]roomstore.Entry, error) {
	return s.e.RestoreAll(s.ctx(ctx), dir)
}

func (s *engineStore) Kept(ctx context.Context) (int64, error) {
	u, err := s.e.Usage(ctx)
	return u.Kept, err
}

func (s *engineStore) DownloadURL(ctx context.Context, p string, attachment bool) (string, error) {
	var opts []roomstore.URLOption
	if attachment {
		opts = append(opts, roomstore.Attachment(""))
	}
	u, err := s.e.DownloadURL(ctx, p, opts...)
	if errors.Is(err, errors.ErrUnsupported) {
		return "", errNoURLs
	}
	return u, err
}

func (s *engineStore) Close(ctx context.Context) error { return s.e.Shutdown(ctx) }

// clientStore is a room reached through its room server.
type clientStore struct{ c *roomclient.Client }

func (s clientStore) Stat(ctx context.Context, p string) (roomstore.Entry, error) {
	return s.c.Stat(ctx, p)
}

func (s clientStore) List(ctx context.Context, p string) ([]roomstore.Entry, error) {
	return s.c.List(ctx, p)
}

func (s clientStore) Upload(ctx context.Context, p string, r io.Reader, opts roomstore.OpenOptions) (roomstore.Entry, error) {
	return s.c.Upload(ctx, p, r, opts)
}

func (s clientStore) Open(ctx context.Context, p string) (reader, error) {
	return s.c.OpenReader(ctx, p, 0, -1)
}

func (s clientStore) Delete(ctx context.Context, p string, opts roomstore.DeleteOptions) error {
	return s.c.Delete(ctx, p, opts)
}

func (s clientStore) RemoveAll(ctx context.Context, p string, opts roomstore.DeleteOptions) error {
	return s.c.RemoveAll(ctx, p, opts)
}

func (s clientStore) Versions(ctx context.Context, p string) ([]roomstore.Version, error) {
	return s.c.Versions(ctx, p)
}

func (s clientStore) OpenVersion(ctx context.Context, p, id string) (reader, error) {
	return s.c.OpenVersion(ctx, p, id)
}

func (s clientStore) Restore(ctx context.Context, p, id string) (roomstore.Entry, error) {
	return s.c.Restore(ctx, p, id)
}

func (s clientStore) Deleted(ctx context.Context, dir string) ([]roomstore.Version, error) {
	return s.c.Deleted(ctx, dir)
}

func (s clientStore) RestoreAll(ctx context.Context, dir string) ([]roomstore.Entry, error) {
	return s.c.RestoreAll(ctx, dir)
}

func (s clientStore) Move(ctx context.Context, src, dst string, opts roomstore.MoveOptions) error {
	return s.c.Move(ctx, src, dst, opts)
}

func (s clientStore) DownloadURL(ctx context.Context, p string, attachment bool) (string, error) {
	u, err := s.c.DownloadURL(ctx, p, roomclient.URLOptions{Attachment: attachment})
	if errors.Is(err, errors.ErrUnsupported) {
		return "", errors.New("the room server makes no download URLs")
	}
	return u, err
}

func (s clientStore) Subscribe(handler func(events.Event)) *roomstore.Subscription {
	return s.c.Subscribe(handler)
}

// Alive reports an error once the room server can no longer be reached.
func (s clientStore) Alive(ctx context.Context) error {
	_, err := s.c.Exists(ctx, "")
	return err
}

func (s clientStore) Close(context.Context) error { return s.c.Close() }

// reason is what an error says beneath the operation and path that every
// command's message names itself: "file does not exist" of "stat x:
// file does not exist".
func reason(err error) string {
	for {
		var pe *fs.PathError
		if !errors.As(err, &pe) || pe.Err == nil {
			break
		}
		err = pe.Err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	// "invalid path: invalid argument: the root is not a file" says it
	// twice, "backend: invalid argument: unknown parameter" once too often.
	if before, after, ok := strings.Cut(msg, fs.ErrInvalid.Error()+": "); ok && before != "" {
		msg = before + after
	}
	return strings.TrimPrefix(msg, "backend: ")
}

// baseName is the last element of a store path.
func baseName(p string) string { return path.Base(strings.TrimSuffix(p, "/")) }
