package roomclient_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	_ "github.com/roomstore/roomstore/backend_disk" // registers file://
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/wire"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// wait bounds every wait of the tests.
const wait = 20 * time.Second

// quiet is the logger of the servers and clients under test; set
// ROOMCLIENT_TEST_LOG=1 to see their logs.
func quiet() *slog.Logger {
	if os.Getenv("ROOMCLIENT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// store names a kind of store and makes the store URL of each room.
type store struct {
	name string
	url  func(t testing.TB) func(room string) string
}

// stores are the stores every scenario runs on.
var stores = []store{
	{"mem", func(testing.TB) func(string) string {
		return func(string) string { return "mem://" }
	}},
	{"file", func(t testing.TB) func(string) string {
		dir := t.TempDir()
		return func(room string) string {
			d := filepath.Join(dir, room)
			if err := os.MkdirAll(d, 0o755); err != nil {
				panic(err) // a temp dir that cannot take a folder: nothing to test
			}
			return "file://" + d
		}
	}},
}

// env is a room server on a loopback httptest server, with HS256
// tokens, whose connections a test can drop.
type env struct {
	secret []byte
	ts     *httptest.Server
	srv    *roomserver.Server
	http   *http.Client // for signed URLs

	mu    sync.Mutex
	conns map[net.Conn]struct{} // hijacked: the room connections
}

func newEnv(t testing.TB, storeURL func(room string) string) *env {
	t.Helper()
	return newEnvWith(t, storeURL, nil)
}

// newEnvWith is newEnv with server options of the test's own: tweak may
// change the options before the server is made.
func newEnvWith(t testing.TB, storeURL func(room string) string, tweak func(*roomserver.Options)) *env {
	t.Helper()
	return newEnvFull(t, storeURL, tweak, false)
}

// newPlainEnv is newEnv whose server does not hear a client ask for
// roomstore's extensions: it answers as a server of the bare MeshAgent
// protocol would (no extensions named in room_ready, strict replies).
func newPlainEnv(t testing.TB, storeURL func(room string) string) *env {
	t.Helper()
	return newEnvFull(t, storeURL, nil, true)
}

func newEnvFull(t testing.TB, storeURL func(room string) string, tweak func(*roomserver.Options), plain bool) *env {
	t.Helper()
	e := &env{secret: []byte("roomclient-test-secret-0123456789"), conns: map[net.Conn]struct{}{}}
	key := []byte("roomclient-test-download-url-key-0123")
	o := roomserver.Options{
		Resolve: func(ctx context.Context, room string, create bool) (*roomstore.Engine, error) {
			open := roomstore.OpenURL
			if !create {
				open = roomstore.OpenExistingURL
			}
			return open(ctx, storeURL(room), roomstore.WithSigningKey(key),
				roomstore.WithBaseURL(e.ts.URL+"/files/"+room+"/"), roomstore.WithLogger(quiet()))
		},
		Verify:     roomserver.HS256(e.secret),
		Logger:     quiet(),
		SigningKey: key,
	}
	if tweak != nil {
		tweak(&o)
	}
	srv, err := roomserver.New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	mux := http.NewServeMux()
	if !plain {
		mux.Handle("/rooms/", srv)
	}
	if plain {
		mux.Handle("/rooms/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			q.Del(wire.ExtensionsParam)
			r.URL.RawQuery = q.Encode()
			srv.ServeHTTP(w, r)
		}))
	}
	mux.Handle("/files/", srv.Files("/files/"))
	e.ts = httptest.NewUnstartedServer(mux)
	e.ts.Config.ConnState = func(c net.Conn, s http.ConnState) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if s == http.StateHijacked {
			e.conns[c] = struct{}{}
		}
	}
	e.ts.Start()
	e.http = &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
		e.ts.Close()
		e.http.CloseIdleConnections()
	})
	return e
}

// roomURL is the WebSocket URL of room.
func (e *env) roomURL(room string) string {
	return "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/rooms/" + room
}

func (e *env) token(t testing.TB, name, room string, opts ...roomserver.TokenOption) string {
	t.Helper()
	tok, err := roomserver.NewToken(e.secret, name, room, time.Hour, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dial connects participant name to room, and closes it when t ends.
func (e *env) dial(t testing.TB, name, room string, o roomclient.Options) *roomclient.Client {
	t.Helper()
	if o.Token == "" {
		o.Token = e.token(t, name, room)
	}
	if o.Logger == nil {
		o.Logger = quiet()
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	c, err := roomclient.Dial(ctx, e.roomURL(room), o)
	if err != nil {
		t.Fatalf("Dial %s as %s: %v", room, name, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// drop cuts every room connection under the server's feet, as a network
// failure would: the clients see no close frame.
func (e *env) drop() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := len(e.conns)
	for c := range e.conns {
		_ = c.Close()
		delete(e.conns, c)
	}
	return n
}

// recorder collects the events a subscription receives.
type recorder struct {
	ch chan events.Event
}

// record subscribes to every file topic of c.
func record(t *testing.T, c *roomclient.Client) *recorder {
	t.Helper()
	r := &recorder{ch: make(chan events.Event, 1024)}
	sub := c.Subscribe(func(ev events.Event) { r.ch <- ev })
	t.Cleanup(sub.Unsubscribe)
	return r
}

// next returns the next event, failing t after the deadline.
func (r *recorder) next(t *testing.T) events.Event {
	t.Helper()
	select {
	case ev := <-r.ch:
		return ev
	case <-time.After(wait):
		t.Fatalf("no event within %v", wait)
		return events.Event{}
	}
}

// expect takes the next event and checks its type, path, source path
// and participant.
func (r *recorder) expect(t *testing.T, typ, path, source, participant string) {
	t.Helper()
	ev := r.next(t)
	if ev.Type != typ || ev.Path != path || ev.SourcePath != source || ev.ParticipantID != participant {
		t.Fatalf("event %s %q (from %q) by %q, want %s %q (from %q) by %q",
			ev.Type, ev.Path, ev.SourcePath, ev.ParticipantID, typ, path, source, participant)
	}
}

// none checks that nothing is queued: call it after an event that came
// after any the recorder should not have had.
func (r *recorder) none(t *testing.T) {
	t.Helper()
	select {
	case ev := <-r.ch:
		t.Fatalf("unexpected event %s %q by %q", ev.Type, ev.Path, ev.ParticipantID)
	default:
	}
}

// deadline is a context for the steps of a test, bounded by wait.
func deadline(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), wait)
	t.Cleanup(cancel)
	return c
}

// must fails t on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantErr fails t unless errors.Is(err, target).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: %v, want an error matching %v", what, err, target)
	}
}

// fill is n bytes of a pattern that depends on seed.
func fill(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7+i/251)
	}
	return b
}

func describe(es []roomstore.Entry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%s(%v,%d) ", e.Path, e.IsFolder, e.Size)
	}
	return b.String()
}
