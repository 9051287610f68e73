package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_disk"
	_ "github.com/roomstore/roomstore/backend_gcs" // registers gs://
	_ "github.com/roomstore/roomstore/backend_mem" // registers mem://
	_ "github.com/roomstore/roomstore/backend_s3"  // registers s3://
	"github.com/roomstore/roomstore/events_nats"
	"github.com/roomstore/roomstore/roomserver"
	"github.com/roomstore/roomstore/roomui"
)

// serveConfig is what `roomstore serve` is given.
type serveConfig struct {
	store, listen, publicURL, addrFile string
	storeGiven                         bool // --store was given: no default applies
	events, metrics                    string
	insecureDev, presign               bool
	roomIdle, shutdownTimeout          time.Duration
	logFormat, logLevel                string

	// budgets (roomserver.Options)
	maxConns, maxIdentityConns, maxParticipants    int
	maxStreams, maxIdentityStreams, maxOpenStreams int
	callRate                                       float64
	callBurst, maxList, maxDownloads, sendQueue    int
	sendBuffer, maxPending, maxMessage             int64
	compression                                    bool
	messageTimeout                                 time.Duration
	quotaBytes, quotaFiles                         int64
	history                                        historyFlags   // roomstore.WithHistory
	resumable                                      resumableFlags // roomstore.WithResumable

	// outside changes (roomstore.WithWatch)
	watch                bool
	scanInterval, settle time.Duration
	s3Events, s3Subject  string
}

// watchOptions is what --watch, --scan-interval and --settle ask of each
// room's engine.
func (c *serveConfig) watchOptions() roomstore.Watch {
	w := roomstore.Watch{Scan: c.scanInterval, Settle: c.settle}
	if w.Scan <= 0 {
		w.Scan = -1
	}
	return w
}

// Paths the server answers below: rooms, and the download URLs the
// engines sign.
const (
	roomsPrefix = "/rooms/"
	filesPrefix = "/files/"
	tusPrefix   = "/tus/" // resumable uploads (roomserver.Uploads)
)

// defaultRoomsStore is serve's default --store: beside the file
// commands' default store (defaultStore, file://./roomstore-data), never
// in it, so that a file command run in the same directory without
// --store cannot reach the rooms (rm -r / would remove them all).
const defaultRoomsStore = "file://./roomstore-rooms/{room}"

// downloadKeyLabel derives the download-URL signing key from the token
// secret, so that one secret gives every replica the same key without the
// two keys ever being the same bytes.
const downloadKeyLabel = "roomstore download urls"

func newServeCmd() *cobra.Command {
	var c serveConfig
	cmd := &cobra.Command{
		Use:   "serve [--store URL] [--listen ADDR]",
		Short: "Serve rooms over the MeshAgent room protocol",
		Long: `serve serves every room at ws://ADDR/rooms/{room}, each on its own store:
--store is a store URL in which {room} stands for the room's name (one path
element, escaped), such as file://./roomstore-rooms/{room} (the default),
file:///var/lib/rooms/{room}, s3://bucket/rooms/{room}?region=eu-west-1,
gs://bucket/rooms/{room} or mem://rooms/{room} (in memory for the life of
the process; a bare mem:// keeps each room only while it is open). It is a
flag of serve's own: $ROOMSTORE_STORE, the file commands' default, does not
apply. For file:// serve creates the directory that holds the rooms' stores
(the path before {room}) when it starts, if it does not exist, but not the
directories above it; a room's directory is created when a participant
that may write first joins the room.

By default the rooms are in ./roomstore-rooms, beside the file commands'
default store ./roomstore-data rather than in it, where serve's former
default (file://./roomstore-data/{room}) put them and a file command's
rm -r / removed them. Without --store, serve refuses to start while
./roomstore-data holds rooms and ./roomstore-rooms does not exist, and
says how to move them. With a file:// --store, serve logs a warning when
the rooms' directory overlaps the file commands' default store here
($ROOMSTORE_STORE, else ./roomstore-data), and holds a lock on
.roomstore/serve.lock in that directory while it runs: a file command
whose file:// store is the directory, lies inside it or holds it as a
subfolder warns that what it changes there changes the rooms.

Connections need a token signed with the HS256 secret in ` + secretEnv + `
(at least 32 bytes; see roomstore token); without one serve refuses to
start unless --insecure-dev, which admits everyone. A token's storage
grant decides every call of its participant (read for exists, stat, list
and downloads; write for uploads, deletes and both paths of a move) and
which events reach it; a token with an exp claim ends its connection at
that time. Download URLs are served on the same listener below /files/,
signed with a key derived from the secret, bound to the version of the
file they were issued for and never valid past the token that asked for
them. With --presign, s3:// and gs:// rooms hand out the store's own
presigned URLs instead: downloads then bypass the server, but such a URL
names the path rather than the version.

Nothing is opened before a request is authenticated: a connection's token
and a download URL's signature are checked first, a participant that may
only read cannot create its room (it gets 404), and no participant can
exhaust the server for the others. Each identity (a token's name) holds at
most --max-connections-per-identity connections, --max-streams-per-identity
uploads and downloads, half of a room's handles, and --call-rate calls a
second; each connection --max-streams streams and --send-buffer bytes
waiting to go out (a participant that stops reading is dropped); each room
--max-participants connections; the server --max-connections connections,
--max-open-streams streams and --max-pending-bytes of messages partly
received, each of which must arrive within --message-timeout, and
--max-downloads signed URLs served at once. A refusal is
an HTTP 429 or 503 that closes its connection (for a call: code 429,
503, or 413 for a folder too big to list; for a connection: close code
1008 or 1013), counted in the metric roomstore.server.refused by budget
and logged at most 10 lines a second; serve accepts no more sockets than
--max-connections plus --max-downloads plus 1,024.
--quota-bytes and --quota-files bound what each room may hold: a commit
past either fails with code 507 and changes nothing, an upload that
announces a size past it is refused before its first byte (see roomstore
usage).

Each room keeps the versions its changes replace (every overwrite,
append, delete and move): the latest --history-versions of each file
(default 10; 0 keeps none), each for --history-age once replaced (default
720h, 30 days; 0: no age limit), in the room's store, counted by
--quota-bytes. Participants list and restore them (roomstore versions,
restore, deleted through ws://); each room's engine removes the expired
ones every hour.

Resumable uploads (tus 1.0) are served on the same listener at
http://ADDR/tus/{room}/, with the same tokens (Authorization: Bearer) and
grants; the room path comes from the Upload-Metadata key "path" (and
"overwrite": "true" to replace a file). An upload cut by a dropped
connection resumes from the last byte the server kept, and appears at
its path at once, when its last byte arrives. An unfinished upload is
removed --resumable-age after its last write (default 24h; roomstore
sweep removes them too), and one identity holds at most
--resumable-per-participant of them in a room (default 16); each counts
against --quota-bytes until it ends. roomstore put sends large files
this way (see its --resumable-threshold).

On SIGINT or SIGTERM serve stops accepting connections, lets uploads and
downloads under way finish for --shutdown-timeout, then aborts the rest
(an aborted upload leaves nothing behind), shuts every room down and exits 0.
With --events nats://HOST:4222 the replicas of serve on one store push each
other's changes to their participants through NATS JetStream: a change
made through any replica reaches every participant of the room on every
replica, once (see package events_nats). serve starts whether or not NATS
is reachable, serves each replica's own changes meanwhile, and connects in
the background. Every replica must open the same store for a room (for
file:// the same absolute directory).

With --watch (the default) each room's engine tells its participants of
changes that others make to the room's store: files written, replaced,
renamed or removed by other programs, or by a replica that died between
its commit and its publish. Such an event has no participant id and comes
once: on a file:// store within --settle of the change (inotify), and
everywhere within --scan-interval, the period of a scan that compares the
store with what the engine knows (see roomstore.WithWatch). With --events
the replicas of a room take turns at that scan (a NATS lease), and what it
compares against is kept in NATS, so that changes made while no replica
served the room are told when one next opens it. With an s3://
store, --s3-events nats://HOST:4222 and --s3-events-subject SUBJECT take
the bucket notifications that the S3 server publishes to NATS (versitygw's
--event-nats-url and --event-nats-topic) as a feed, so that other S3
clients' changes are told within --settle of their notification;
notifications come at most once, so the scan still runs.

With --metrics ADDR it serves the rooms' metrics (calls, latency, bytes,
open handles, commits, events; see docs/operations.md) for
Prometheus at http://ADDR/metrics, with the Go runtime's and the process's,
and logs "serving metrics addr=HOST:PORT".

Once it listens it logs "listening addr=HOST:PORT" on stderr (and writes
HOST:PORT to --addr-file), so that --listen 127.0.0.1:0 can be used.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c.storeGiven = cmd.Flags().Changed("store")
			return serve(cmd.Context(), c, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.store, "store", defaultRoomsStore, "store URL; {room} is replaced by the room's name")
	f.StringVar(&c.listen, "listen", "127.0.0.1:8080", "address to listen on (port 0 picks a free one)")
	f.StringVar(&c.publicURL, "public-url", "", "base URL clients reach this server at, for download URLs (default http://ADDR)")
	f.StringVar(&c.events, "events", "", "NATS server URL(s), comma-separated, that carry events between replicas (JetStream)")
	f.BoolVar(&c.watch, "watch", true, "tell participants of changes others make to a room's store (other programs, replicas that died before publishing)")
	f.DurationVar(&c.scanInterval, "scan-interval", roomstore.DefaultScanInterval, "how often --watch compares a whole room's store with what it knows (0: only when a feed lost track); with --events one replica at a time does it")
	f.StringVar(&c.s3Events, "s3-events", "", "NATS server URL(s) where the S3 server publishes its bucket notifications (versitygw: --event-nats-url), so that --watch hears of other S3 clients' changes at once")
	f.StringVar(&c.s3Subject, "s3-events-subject", "", "the NATS subject of --s3-events (versitygw: --event-nats-topic)")
	f.DurationVar(&c.settle, "settle", 0, "how long --watch waits after a change it was told of before it looks (default 200ms, 2s with --events)")
	f.StringVar(&c.metrics, "metrics", "", "serve Prometheus metrics at http://ADDR/metrics (such as 127.0.0.1:9464)")
	f.StringVar(&c.addrFile, "addr-file", "", "write the address listened on to this file once listening")
	f.BoolVar(&c.insecureDev, "insecure-dev", false, "admit connections without a token (development only)")
	f.BoolVar(&c.presign, "presign", false, "hand out the store's own presigned download URLs (s3://, gs://) instead of URLs this server serves below /files/ (see above)")
	f.DurationVar(&c.roomIdle, "room-idle", time.Minute, "how long a room stays open after its last participant left")
	f.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long uploads and downloads may finish on shutdown before they are aborted")
	f.IntVar(&c.maxConns, "max-connections", 10_000, "room connections open at once; one more gets 503")
	f.IntVar(&c.maxIdentityConns, "max-connections-per-identity", 32, "connections of one token identity at once; one more gets 429")
	f.IntVar(&c.maxParticipants, "max-participants", 1_000, "connections to one room at once; one more gets 429")
	f.IntVar(&c.maxStreams, "max-streams", 16, "uploads and downloads open at once on one connection; one more gets 429")
	f.IntVar(&c.maxIdentityStreams, "max-streams-per-identity", 64, "uploads and downloads of one identity open at once; one more gets 429")
	f.IntVar(&c.maxOpenStreams, "max-open-streams", 4_096, "uploads and downloads open at once in the server (each holds a descriptor on disk); one more gets 503")
	f.Float64Var(&c.callRate, "call-rate", 500, "calls a second one identity may start (a token bucket; negative: unlimited); one more gets 429")
	f.IntVar(&c.callBurst, "call-burst", 1_000, "the call-rate bucket's size")
	f.Int64Var(&c.sendBuffer, "send-buffer", 8<<20, "bytes waiting to go out to one connection; a participant that stops reading is dropped")
	f.IntVar(&c.sendQueue, "send-queue", 256, "events waiting to go out to one connection; past it a participant loses events (told how many, or reconnected)")
	f.BoolVar(&c.compression, "compression", false, "accept permessage-deflate from clients that offer it (costs CPU; see BENCHMARKS.md section 15)")
	f.Int64Var(&c.maxMessage, "max-message-size", 4<<20, "bytes of one message either way (at least 128 KiB): a handle-era write, a handle-era download's file")
	f.DurationVar(&c.messageTimeout, "message-timeout", 30*time.Second, "time from a message's first byte to its last")
	f.Int64Var(&c.maxPending, "max-pending-bytes", 256<<20, "bytes of messages partly received across all connections")
	f.IntVar(&c.maxList, "max-list-entries", 100_000, "entries one list may return; a bigger folder gets 413")
	f.IntVar(&c.maxDownloads, "max-downloads", 1_024, "downloads of signed URLs served at once; one more gets 503")
	f.Int64Var(&c.quotaBytes, "quota-bytes", 0, "bytes each room may hold (0: unbounded); a commit past it fails with code 507")
	f.Int64Var(&c.quotaFiles, "quota-files", 0, "files each room may hold (0: unbounded); a commit past it fails with code 507")
	c.history.add(cmd, "how many past versions of each file a room keeps (0: none, no history)")
	c.resumable.add(cmd)
	f.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

func serve(ctx context.Context, c serveConfig, stderr io.Writer) error {
	log, err := newLogger(stderr, c.logFormat, c.logLevel)
	if err != nil {
		return err
	}
	secret := tokenSecret()
	if secret == nil && !c.insecureDev {
		return errors.New(secretEnv + " is not set: set it to the secret participant tokens are signed with (HS256, see roomstore token), or pass --insecure-dev to admit connections without tokens (development only)")
	}
	if secret != nil {
		if err := checkSecret(secret); err != nil {
			return err
		}
	}
	if c.roomIdle <= 0 || c.shutdownTimeout <= 0 || c.messageTimeout <= 0 {
		return errors.New("--room-idle, --shutdown-timeout and --message-timeout must be positive")
	}
	if err := c.checkBudgets(); err != nil {
		return err
	}
	keep, err := c.history.option()
	if err != nil {
		return err
	}
	resumable, err := c.resumable.option()
	if err != nil {
		return err
	}
	if !c.storeGiven {
		if err := checkFormerRooms(); err != nil {
			return err
		}
	}
	store, err := parseStoreTemplate(c.store)
	if err != nil {
		return err
	}
	if err := store.prepareDisk(log); err != nil {
		return err
	}
	base, roomLast, _ := store.diskFolders()
	if base != "" {
		warnDefaultOverlap(base, log)
		defer markServed(base, log)()
	}

	transport, closeEvents, err := openEvents(c.events, log)
	if err != nil {
		return err
	}
	defer closeEvents()
	s3nc, err := openS3Events(&c, store, log)
	if err != nil {
		return err
	}
	if s3nc != nil {
		defer s3nc.Close()
	}
	meters, closeMetrics, err := openMetrics(c.metrics, log)
	if err != nil {
		return err
	}
	defer closeMetrics()

	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	public, err := publicBase(c.publicURL, ln.Addr(), log)
	if err != nil {
		return err
	}

	var key []byte
	if secret != nil {
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(downloadKeyLabel))
		key = mac.Sum(nil)
	} else {
		key = make([]byte, 32)
		rand.Read(key)
	}
	opts := roomserver.Options{
		Resolve: func(ctx context.Context, room string, create bool) (*roomstore.Engine, error) {
			if !roomserver.ValidRoom(room) {
				return nil, fmt.Errorf("invalid room name %q", room)
			}
			ropts := []roomstore.Option{
				roomstore.WithBaseURL(public + filesPrefix + url.PathEscape(room) + "/"),
				roomstore.WithSigningKey(key),
				roomstore.WithPresign(c.presign),
				roomstore.WithLogger(log.With("room", room)),
				keep, resumable,
			}
			if transport != nil {
				ropts = append(ropts, roomstore.WithEventTransport(transport))
			}
			if c.quotaBytes > 0 || c.quotaFiles > 0 {
				ropts = append(ropts, roomstore.WithQuota(roomstore.Quota{Bytes: c.quotaBytes, Files: c.quotaFiles}))
			}
			if meters != nil {
				ropts = append(ropts, roomstore.WithMeterProvider(meters))
			}
			if c.watch {
				w := c.watchOptions()
				if s3nc != nil {
					feed, err := s3Feed(s3nc, c.s3Subject, store.url(room), log.With("room", room))
					if err != nil {
						return nil, err
					}
					w.Feeds = append(w.Feeds, feed)
				}
				ropts = append(ropts, roomstore.WithWatch(w))
			}
			if !create {
				return roomstore.OpenExistingURL(ctx, store.url(room), ropts...)
			}
			if !roomLast {
				// {room} names a directory above the store's own one
				// (file:///rooms/{room}/files), which the opener does
				// not create.
				if err := store.mkdirRoom(room); err != nil {
					return nil, err
				}
			}
			return roomstore.OpenURL(ctx, store.url(room), ropts...)
		},
		Insecure:   c.insecureDev,
		Logger:     log,
		RoomIdle:   c.roomIdle,
		SigningKey: key,

		MaxConnections:            c.maxConns,
		MaxConnectionsPerIdentity: c.maxIdentityConns,
		MaxParticipants:           c.maxParticipants,
		MaxStreams:                c.maxStreams,
		MaxStreamsPerIdentity:     c.maxIdentityStreams,
		MaxOpenStreams:            c.maxOpenStreams,
		CallRate:                  c.callRate,
		CallBurst:                 c.callBurst,
		SendBuffer:                int(c.sendBuffer),
		SendQueue:                 c.sendQueue,
		MessageTimeout:            c.messageTimeout,
		MaxPendingBytes:           c.maxPending,
		MaxListEntries:            c.maxList,
		MaxMessageSize:            int(min(c.maxMessage, 1<<30)),
		PublicURL:                 public,
		Compression:               c.compression,
		MaxDownloads:              c.maxDownloads,
		MeterProvider:             meters,
	}
	if secret != nil {
		opts.Verify = roomserver.HS256(secret)
	}
	srv, err := roomserver.New(opts)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(roomsPrefix, srv)
	mux.Handle(filesPrefix, srv.Files(filesPrefix))
	mux.Handle(tusPrefix, srv.Uploads(tusPrefix))
	ui, err := roomui.Handler(roomui.Options{})
	if err != nil {
		_ = srv.Shutdown(context.Background())
		return err
	}
	mux.Handle("/", ui) // the file browser: /, /ui/rooms/{room}, /ui/assets/
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	served := make(chan error, 1)
	// Every socket counts, authenticated or not: past the connections the
	// budgets allow (and slack for the requests being refused), the
	// listener accepts no more until some close, so that no flood of
	// sockets takes the descriptors the rooms need.
	sockets := c.maxConns + c.maxDownloads + socketSlack
	go func() { served <- hs.Serve(limitListener(ln, sockets)) }()

	if secret == nil {
		log.Warn("insecure development mode: connections need no token and download URLs die with the process")
	}
	log.Info("listening", "addr", addr, "rooms", "ws://"+addr+roomsPrefix+"{room}", "files", public+filesPrefix, "tus", public+tusPrefix+"{room}/", "store", c.store)
	log.Info("file browser", "url", public+"/", "room", public+roomui.RoomPrefix+"{room}#token=JWT")
	if c.addrFile != "" {
		if err := writeAddrFile(c.addrFile, addr); err != nil {
			hs.Close()
			_ = srv.Shutdown(context.Background())
			return err
		}
	}

	select {
	case err := <-served:
		_ = srv.Shutdown(context.Background())
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", c.shutdownTimeout)
	return shutdown(hs, srv, c.shutdownTimeout, log)
}

// shutdown stops accepting, lets streams under way finish for timeout,
// then aborts the rest and waits for every room to shut down.
func shutdown(hs *http.Server, srv *roomserver.Server, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	httpDone := make(chan error, 1)
	go func() { httpDone <- hs.Shutdown(ctx) }()
	err := srv.Shutdown(ctx)
	if err != nil {
		// The streams still open are aborted now, their bytes discarded;
		// a later Shutdown waits for that and for the rooms' engines.
		log.Warn("shutdown timeout reached, aborting the uploads and downloads still open")
		final, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = srv.Shutdown(final)
	}
	if herr := <-httpDone; herr != nil {
		hs.Close() // downloads of signed URLs still running
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("shutdown complete")
	return nil
}

// openEvents connects to the NATS servers of --events, if any, and returns
// the transport the rooms' engines attach to, and what closes it and the
// connection (after the rooms have shut down, publishing what they
// queued). An unreachable server is no error: the connection retries in
// the background, and is logged when it comes and goes.
func openEvents(servers string, log *slog.Logger) (*events_nats.Transport, func(), error) {
	if servers == "" {
		return nil, func() {}, nil
	}
	nc, err := connectNATS("--events", servers, log, "other replicas' changes wait until it is back")
	if err != nil {
		return nil, nil, err
	}
	t, err := events_nats.New(nc, events_nats.WithLogger(log))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return t, func() {
		ctx, cancel := context.WithTimeout(context.Background(), events_nats.DefaultFlushTimeout)
		defer cancel()
		_ = t.Close(ctx)
		nc.Close()
	}, nil
}

// connectNATS connects to the NATS servers a flag names (comma-separated
// nats:// or tls:// URLs), in the background when none is reachable yet;
// meanwhile says what waits while NATS is away.
func connectNATS(flag, servers string, log *slog.Logger, meanwhile string) (*nats.Conn, error) {
	for _, s := range strings.Split(servers, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
			shown := "a malformed URL"
			if err == nil {
				shown = strconv.Quote(u.Redacted()) // never a password
			}
			return nil, fmt.Errorf("%s: %s: want nats://HOST:PORT (or tls://), comma-separated", flag, shown)
		}
	}
	what := strings.TrimPrefix(flag, "--")
	opts := append(events_nats.ConnOptions(),
		nats.Name("roomstore serve"),
		nats.ConnectHandler(func(nc *nats.Conn) { log.Info(what+": connected to NATS", "server", nc.ConnectedUrlRedacted()) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info(what+": reconnected to NATS", "server", nc.ConnectedUrlRedacted()) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn(what+": disconnected from NATS; "+meanwhile, "err", err)
		}),
	)
	nc, err := nats.Connect(servers, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if !nc.IsConnected() {
		log.Warn(what + ": NATS is not reachable yet; connecting in the background")
	}
	return nc, nil
}

// openS3Events connects to the NATS servers of --s3-events, for the
// rooms' S3 notification feeds (s3Feed); nil without the flag.
func openS3Events(c *serveConfig, store storeTemplate, log *slog.Logger) (*nats.Conn, error) {
	if c.s3Events == "" {
		return nil, nil
	}
	if !strings.HasPrefix(store.raw, "s3://") {
		return nil, fmt.Errorf("--s3-events needs an s3:// --store, not %s", strings.SplitN(store.raw, "://", 2)[0]+"://")
	}
	if !c.watch {
		return nil, errors.New("--s3-events needs --watch")
	}
	if c.s3Subject == "" || strings.ContainsAny(c.s3Subject, " \t\r\n") {
		return nil, fmt.Errorf("--s3-events-subject %q: want the subject the S3 server publishes its notifications to (versitygw: --event-nats-topic)", c.s3Subject)
	}
	return connectNATS("--s3-events", c.s3Events, log, "changes other S3 clients make are found by the scan until it is back")
}

// s3Feed is the feed of the bucket notifications of the room store at
// rawURL (s3://bucket/prefix?...).
func s3Feed(nc *nats.Conn, subject, rawURL string, log *slog.Logger) (*events_nats.S3Feed, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	return events_nats.NewS3Feed(nc, subject, u.Host, strings.Trim(u.Path, "/"), events_nats.WithS3FeedLogger(log))
}

// newLogger returns the structured logger on stderr.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// publicBase returns the base URL download URLs start with: --public-url,
// or http:// and the address listened on.
func publicBase(flag string, addr net.Addr, log *slog.Logger) (string, error) {
	if flag != "" {
		u, err := url.Parse(flag)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return "", fmt.Errorf("--public-url %q: want an absolute http(s) URL without query", flag)
		}
		return strings.TrimSuffix(u.String(), "/"), nil
	}
	host := addr.String()
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		host = net.JoinHostPort("127.0.0.1", fmt.Sprint(ta.Port))
		log.Warn("listening on every interface: download URLs name " + host + "; pass --public-url for clients on other hosts")
	}
	return "http://" + host, nil
}

// writeAddrFile writes addr to path in one rename, so that a reader never
// sees half of it.
func writeAddrFile(path, addr string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".roomstore-addr-*")
	if err != nil {
		return fmt.Errorf("--addr-file: %w", err)
	}
	_, err = tmp.WriteString(addr + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("--addr-file: %w", err)
	}
	return nil
}

// roomPlaceholder is what --store holds where a room's name goes.
const roomPlaceholder = "{room}"

// storeTemplate is a --store URL with {room} in its path.
type storeTemplate struct{ raw string }

// parseStoreTemplate checks a --store URL: a registered scheme, {room}
// only in the path (where the escaped name is one path element), and
// {room} present unless the store is a bare mem://, whose every opening
// is a store of its own.
func parseStoreTemplate(raw string) (storeTemplate, error) {
	// A stand-in that is valid in every part of a URL shows where {room} is.
	const mark = "roomstore-room-name-placeholder"
	u, err := url.Parse(strings.ReplaceAll(raw, roomPlaceholder, mark))
	if err != nil {
		return storeTemplate{}, fmt.Errorf("--store %q is not a URL: %w", raw, errors.Unwrap(err))
	}
	scheme := strings.ToLower(u.Scheme)
	if !slices.Contains(backend.Schemes(), scheme) {
		return storeTemplate{}, fmt.Errorf("--store %q: unknown scheme %q (known: %s)", raw, u.Scheme, strings.Join(backend.Schemes(), ", "))
	}
	outside := u.Host + u.Opaque + u.RawQuery + u.Fragment
	if u.User != nil {
		outside += u.User.String()
	}
	if strings.Contains(outside, mark) {
		return storeTemplate{}, fmt.Errorf("--store %q: {room} may only appear in the URL's path", raw)
	}
	bareMem := scheme == "mem" && u.Host == "" && u.Opaque == "" && strings.Trim(u.Path, "/") == ""
	if !strings.Contains(u.Path, mark) && !bareMem {
		return storeTemplate{}, fmt.Errorf("--store %q has no {room}: every room would share one store; put {room} in its path, such as %s", raw, defaultRoomsStore)
	}
	return storeTemplate{raw: raw}, nil
}

// diskFolders is, for a file:// template, the directory that holds the
// rooms' stores (the part of the path before the element with {room})
// and whether {room} is in the path's last element; "" for other
// schemes. A file URL of a form that names some other directory is
// refused, as the file:// opener refuses it.
func (t storeTemplate) diskFolders() (base string, last bool, err error) {
	const mark = "roomstore-room-name-placeholder"
	u, err := url.Parse(strings.ReplaceAll(t.raw, roomPlaceholder, mark))
	if err != nil || strings.ToLower(u.Scheme) != "file" {
		return "", false, nil
	}
	dir, err := backend_disk.FileDir(u)
	if err != nil {
		return "", false, fmt.Errorf("--store %q: %s", t.raw, reason(err))
	}
	elems := strings.Split(filepath.ToSlash(dir), "/")
	i := slices.IndexFunc(elems, func(e string) bool { return strings.Contains(e, mark) })
	base = filepath.FromSlash(strings.Join(elems[:i], "/"))
	if base == "" {
		base = string(filepath.Separator)
	}
	return base, i == len(elems)-1, nil
}

// prepareDisk creates, for a file:// template, the directory that holds
// the rooms' stores if it does not exist yet (never its parents: a
// mistyped path fails here, before serve listens). Each room's own
// directory is created when a participant that may write first joins it.
func (t storeTemplate) prepareDisk(log *slog.Logger) error {
	base, _, err := t.diskFolders()
	if err != nil || base == "" {
		return err
	}
	err = os.Mkdir(base, 0o755)
	switch {
	case err == nil:
		log.Info("created the directory of the rooms' stores", "dir", base)
	case errors.Is(err, fs.ErrExist):
		if fi, serr := os.Stat(base); serr == nil && !fi.IsDir() {
			return fmt.Errorf("--store %q: %s is not a directory", t.raw, base)
		}
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("--store %q: the directory that would hold %s does not exist (serve creates the directory of the rooms' stores, not its parents)", t.raw, base)
	default:
		return fmt.Errorf("--store %q: creating %s: %s", t.raw, base, reason(err))
	}
	return nil
}

// mkdirRoom creates, for a file:// template whose {room} is not in the
// path's last element, the directories above room's store directory.
func (t storeTemplate) mkdirRoom(room string) error {
	u, err := url.Parse(t.url(room))
	if err != nil || strings.ToLower(u.Scheme) != "file" {
		return nil
	}
	dir, err := backend_disk.FileDir(u)
	if err != nil {
		return nil // the opener says why
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("creating the room's directory: %s", reason(err))
	}
	return nil
}

// url returns the store URL of room, a valid room name: escaped, the name
// decodes back to exactly one path element (it holds no '/').
func (t storeTemplate) url(room string) string {
	return strings.ReplaceAll(t.raw, roomPlaceholder, url.PathEscape(room))
}

// checkBudgets refuses a budget flag that is not positive (but a
// negative --call-rate, which is unlimited).
func (c serveConfig) checkBudgets() error {
	for _, b := range []struct {
		flag string
		n    int64
	}{
		{"--max-connections", int64(c.maxConns)}, {"--max-connections-per-identity", int64(c.maxIdentityConns)},
		{"--max-participants", int64(c.maxParticipants)}, {"--max-streams", int64(c.maxStreams)},
		{"--max-streams-per-identity", int64(c.maxIdentityStreams)}, {"--max-open-streams", int64(c.maxOpenStreams)},
		{"--call-burst", int64(c.callBurst)}, {"--send-buffer", c.sendBuffer},
		{"--max-pending-bytes", c.maxPending}, {"--max-list-entries", int64(c.maxList)},
		{"--max-downloads", int64(c.maxDownloads)}, {"--send-queue", int64(c.sendQueue)},
		{"--max-message-size", c.maxMessage},
	} {
		if b.n <= 0 {
			return fmt.Errorf("%s must be positive, got %d", b.flag, b.n)
		}
	}
	if c.quotaBytes < 0 || c.quotaFiles < 0 {
		return errors.New("--quota-bytes and --quota-files must not be negative (0: unbounded)")
	}
	if c.callRate == 0 || c.sendBuffer > 1<<31 {
		return errors.New("--call-rate must not be 0 (negative: unlimited), and --send-buffer at most 2 GiB")
	}
	return nil
}

// socketSlack is the sockets serve accepts beyond --max-connections and
// --max-downloads: requests being refused, metrics scrapes.
const socketSlack = 1_024

// maxHeaderBytes bounds a request's header, the request line included
// (a token in a room URL's query): what one request can make the server
// hold before any check.
const maxHeaderBytes = 64 << 10

// limitListener accepts at most n connections open at once; Accept waits
// for one to close past that (the kernel's backlog holds the rest).
func limitListener(ln net.Listener, n int) net.Listener {
	return &limitedListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	slots chan struct{}
	done  chan struct{} // closed by Close: an Accept waiting for a slot ends
	once  sync.Once
}

func (l *limitedListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
