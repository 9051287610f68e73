package roomserver_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"

	"github.com/roomstore/roomstore"
	_ "github.com/roomstore/roomstore/backend_disk" // registers file://
	"github.com/roomstore/roomstore/internal/wire"
	"github.com/roomstore/roomstore/roomserver"
)

var urlKey = []byte("roomserver test download url key, 32+ bytes")

// diskRooms is a server whose rooms are directories below a temporary
// one, opened as roomstore serve opens them: created only for a caller
// that may write. It counts the resolver's calls, by create.
type diskRooms struct {
	dir     string
	creates atomic.Int64
	reads   atomic.Int64
	f       *fixture
	files   string // base URL of the signed download URLs
}

func newDiskRooms(t *testing.T, tweak func(*roomserver.Options)) *diskRooms {
	t.Helper()
	d := &diskRooms{dir: t.TempDir()}
	var ts *httptest.Server
	d.f = newFixture(t, func(o *roomserver.Options) {
		o.SigningKey = urlKey
		o.Resolve = func(ctx context.Context, room string, create bool) (*roomstore.Engine, error) {
			open := roomstore.OpenExistingURL
			if create {
				d.creates.Add(1)
				open = roomstore.OpenURL
			} else {
				d.reads.Add(1)
			}
			return open(ctx, "file://"+filepath.ToSlash(filepath.Join(d.dir, room))+"?fsync=false",
				roomstore.WithSigningKey(urlKey), roomstore.WithBaseURL(ts.URL+"/files/"+room+"/"), roomstore.WithLogger(slog.New(slog.DiscardHandler)))
		}
		if tweak != nil {
			tweak(o)
		}
	})
	mux := http.NewServeMux()
	mux.Handle("/rooms/", d.f.srv)
	mux.Handle("/files/", d.f.srv.Files("/files/"))
	ts = httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	d.f.base, d.files = ts.URL, ts.URL+"/files/"
	return d
}

// rooms lists the room directories on disk.
func (d *diskRooms) rooms(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// Nothing before authentication: unsigned, forged and expired download
// URLs for new room names open nothing and create nothing; a validly
// signed URL of a room whose store does not exist gets 404 and creates
// nothing either.
func TestDownloadURLsOpenNothingBeforeTheirSignatureIsChecked(t *testing.T) {
	d := newDiskRooms(t, nil)
	const n = 2000
	for i := range n {
		u := fmt.Sprintf("%snew-room-%d/a.txt", d.files, i)
		switch i % 4 {
		case 1:
			u += "?exp=99999999999&sig=AAAA"
		case 2:
			u += "?exp=1&sig=" + strings.Repeat("A", 43)
		case 3:
			u += "?exp=99999999999&v=x&sig=" + strings.Repeat("B", 43)
		}
		if code, _ := get(t, u); code != http.StatusForbidden {
			t.Fatalf("GET %s: %d, want 403", u, code)
		}
	}
	if got := d.reads.Load() + d.creates.Load(); got != 0 {
		t.Fatalf("the resolver ran %d times for unsigned URLs", got)
	}
	if rooms := d.rooms(t); len(rooms) != 0 {
		t.Fatalf("unsigned URLs created %d room directories: %v", len(rooms), rooms[:min(5, len(rooms))])
	}
	if got := d.f.srv.Stats().Refused[roomserver.RefusedUnauthorized]; got != n {
		t.Fatalf("Refused[unauthorized] = %d, want %d", got, n)
	}

	// A URL signed with the server's key, for a room that does not exist.
	ghost, err := roomstore.OpenURL(t.Context(), "mem://", roomstore.WithSigningKey(urlKey), roomstore.WithBaseURL(d.files+"ghost/"), roomstore.WithPresign(false))
	if err != nil {
		t.Fatal(err)
	}
	defer ghost.Shutdown(context.Background())
	if _, err := ghost.Upload(t.Context(), "a.txt", strings.NewReader("boo"), roomstore.OpenOptions{}); err != nil {
		t.Fatal(err)
	}
	u, err := ghost.DownloadURL(t.Context(), "a.txt")
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, u); code != http.StatusNotFound {
		t.Fatalf("a signed URL of a room that does not exist: %d, want 404", code)
	}
	if d.reads.Load() != 1 || d.creates.Load() != 0 {
		t.Fatalf("the resolver ran %d times to read, %d to create; want once, to read", d.reads.Load(), d.creates.Load())
	}
	if rooms := d.rooms(t); len(rooms) != 0 {
		t.Fatalf("a signed URL created a room: %v", rooms)
	}

	// And a room that exists serves its URLs.
	w := d.f.dial("real", "writer")
	if c := w.upload("u1", "a.txt", []byte("hello"), false); c.Method != "close" {
		t.Fatalf("upload: %+v", c)
	}
	var got struct{ URL string }
	jsonOf(t, w.call("download_url", map[string]any{"path": "a.txt"}), &got)
	if code, body := get(t, got.URL); code != http.StatusOK || body != "hello" {
		t.Fatalf("GET a signed URL: %d %q", code, body)
	}
}

// A participant that may only read cannot create its room: it gets 404
// and nothing is made; once a writer has created the room, it joins.
func TestAReadOnlyParticipantCreatesNoRoom(t *testing.T) {
	d := newDiskRooms(t, nil)
	reader, err := roomserver.NewToken(secret, "reader", "empty", time.Hour,
		roomserver.WithStorage(roomserver.StorageGrant{Paths: []roomserver.StoragePathGrant{{Path: "", ReadOnly: true}}}))
	if err != nil {
		t.Fatal(err)
	}
	_, resp, err := d.f.tryDial("empty", "?token="+reader, nil, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a reader joining a room that does not exist: %v (%v), want 404", err, resp)
	}
	if rooms := d.rooms(t); len(rooms) != 0 {
		t.Fatalf("a reader created a room: %v", rooms)
	}
	if got := d.f.srv.Stats().Refused[roomserver.RefusedNoRoom]; got != 1 {
		t.Fatalf("Refused[no_room] = %d, want 1", got)
	}
	w := d.f.dial("empty", "writer")
	if c := w.upload("u1", "a.txt", []byte("x"), false); c.Method != "close" {
		t.Fatalf("upload: %+v", c)
	}
	r, _, err := d.f.tryDial("empty", "?token="+reader, nil, nil)
	if err != nil {
		t.Fatalf("a reader joining a room that exists: %v", err)
	}
	var ex struct{ Exists bool }
	jsonOf(t, r.call("exists", map[string]any{"path": "a.txt"}), &ex)
	if !ex.Exists {
		t.Fatal("the reader does not see the writer's file")
	}
}

// newQuietFixture is newPipeFixture with tweak's options and no pings
// within a test's time.
func newQuietFixture(t *testing.T, tweak func(*roomserver.Options)) *fixture {
	t.Helper()
	return newPipeFixture(t, func(o *roomserver.Options) {
		tweak(o)
		o.PingInterval = time.Hour
	})
}

// newReaderFixture is a quiet fixture whose server holds at most buffer
// bytes for a participant and drops one whose writes stall for
// writeTimeout, with the participant "reader" in room r1.
func newReaderFixture(t *testing.T, buffer int, writeTimeout time.Duration) (*fixture, *raw) {
	t.Helper()
	f := newQuietFixture(t, func(o *roomserver.Options) {
		o.SendBuffer = buffer
		o.WriteTimeout = writeTimeout
	})
	return f, f.dial("r1", "reader")
}

// dialStatus dials and returns the HTTP status of a refused upgrade, or
// 101 and the participant.
func (f *fixture) dialStatus(room, name string) (int, *raw) {
	f.t.Helper()
	r, resp, err := f.tryDial(room, "?token="+token(f.t, name, room, time.Hour), nil, nil)
	if err != nil {
		if resp == nil {
			f.t.Fatalf("dial %s as %s: %v", room, name, err)
		}
		return resp.StatusCode, nil
	}
	return http.StatusSwitchingProtocols, r
}

// startDownload opens a download of p and sends its start, without ever
// pulling: the server opens the file's reader and holds it. It returns
// the open reply's error code (0 when open).
func (r *raw) startDownload(callID, p string) int {
	r.t.Helper()
	c := r.open("download", callID)
	if c.Type == wire.KindError {
		return c.Code
	}
	r.chunk(callID, wire.Binary(map[string]any{"kind": "start", "path": p}), nil)
	if c, _ := r.streamed(callID); c.Headers["kind"] != "start" {
		r.t.Fatalf("download start: %+v", c)
	}
	return 0
}

// One identity cannot take every connection or stream: past its budgets
// it is refused, and a participant of another room connects and uploads
// as usual.
func TestOneIdentityIsRefusedPastItsBudgetsAndOthersAreServed(t *testing.T) {
	f := newFixture(t, func(o *roomserver.Options) {
		o.MaxConnectionsPerIdentity = 6
		o.MaxStreams = 4
		o.MaxStreamsPerIdentity = 10
	})
	seed := f.dial("r1", "seed")
	if c := seed.upload("s", "big.bin", bytes.Repeat([]byte("x"), 1<<20), false); c.Method != "close" {
		t.Fatalf("upload: %+v", c)
	}
	var mallory []*raw
	for i := range 20 {
		code, r := f.dialStatus("r1", "mallory")
		switch {
		case i < 6 && code != http.StatusSwitchingProtocols:
			t.Fatalf("connection %d of mallory: %d", i, code)
		case i >= 6 && code != http.StatusTooManyRequests:
			t.Fatalf("connection %d of mallory: %d, want 429", i, code)
		}
		if r != nil {
			mallory = append(mallory, r)
		}
	}
	opened, refused := 0, 0
	for i, r := range mallory {
		for j := range 8 {
			switch code := r.startDownload(fmt.Sprintf("d%d-%d", i, j), "big.bin"); code {
			case 0:
				opened++
			case roomserver.CodeTooMany:
				refused++
			default:
				t.Fatalf("download %d on connection %d: code %d", j, i, code)
			}
		}
	}
	if opened != 10 || refused != 6*8-10 {
		t.Fatalf("mallory opened %d downloads and was refused %d; want 10 and %d", opened, refused, 6*8-10)
	}
	st := f.srv.Stats()
	if st.Streams != 10 || st.Connections != 7 {
		t.Fatalf("stats %+v: want 10 streams and 7 connections", st)
	}
	if st.Refused[roomserver.BudgetIdentityConnections] != 14 || st.Refused[roomserver.BudgetStreams]+st.Refused[roomserver.BudgetIdentityStreams] != 38 {
		t.Fatalf("refusals %v: want 14 connections and 38 streams", st.Refused)
	}
	alice := f.dial("r2", "alice")
	if c := alice.upload("u", "mine.txt", []byte("mine"), false); c.Method != "close" {
		t.Fatalf("alice's upload: %+v", c)
	}
	for j := range 4 {
		if code := alice.startDownload(fmt.Sprint("a", j), "mine.txt"); code != 0 {
			t.Fatalf("alice's download %d: %d", j, code)
		}
	}
}

// The server's own budgets: connections in all and per room, and
// streams in all.
func TestServerWideBudgets(t *testing.T) {
	f := newFixture(t, func(o *roomserver.Options) {
		o.MaxConnections = 4
		o.MaxParticipants = 2
		o.MaxOpenStreams = 3
	})
	a := f.dial("r1", "a")
	f.dial("r1", "b")
	if code, _ := f.dialStatus("r1", "c"); code != http.StatusTooManyRequests {
		t.Fatalf("a third participant of a room of 2: %d, want 429", code)
	}
	c := f.dial("r2", "c")
	f.dial("r2", "d")
	if code, _ := f.dialStatus("r3", "e"); code != http.StatusServiceUnavailable {
		t.Fatalf("a fifth connection of 4: %d, want 503", code)
	}
	if u := a.upload("u", "f.txt", []byte("x"), false); u.Method != "close" {
		t.Fatalf("upload: %+v", u)
	}
	for i := range 3 {
		if code := a.startDownload(fmt.Sprint("d", i), "f.txt"); code != 0 {
			t.Fatalf("download %d: %d", i, code)
		}
	}
	if oc := c.open("download", "x"); oc.Type != wire.KindError || oc.Code != roomserver.CodeUnavailable {
		t.Fatalf("a fourth stream of 3: %+v, want 503", oc)
	}
	st := f.srv.Stats()
	if st.Refused[roomserver.BudgetParticipants] != 1 || st.Refused[roomserver.BudgetConnections] != 1 || st.Refused[roomserver.BudgetOpenStreams] != 1 {
		t.Fatalf("refusals %v", st.Refused)
	}
}

// One identity holds at most half of a room's handles, so that it can
// never take the last one.
func TestAParticipantCannotTakeTheRoomsLastHandle(t *testing.T) {
	f := newFixture(t, func(o *roomserver.Options) {
		o.MaxStreams = 8
		inner := o.Resolve
		o.Resolve = func(ctx context.Context, room string, create bool) (*roomstore.Engine, error) {
			e, err := inner(ctx, room, create)
			if err != nil {
				return nil, err
			}
			_ = e.Shutdown(ctx)
			return roomstore.OpenURL(ctx, "mem://", roomstore.WithMaxOpenHandles(6))
		}
	})
	m1, m2 := f.dial("r1", "mallory"), f.dial("r1", "mallory")
	held := 0
	for i, r := range []*raw{m1, m2, m1, m2, m1} {
		id := fmt.Sprint("up", i)
		c, _ := r.startUpload(id, map[string]any{"path": fmt.Sprintf("f%d.txt", i)})
		switch {
		case c.Headers["kind"] == "pull":
			held++
		case c.Type == wire.KindError && c.Code == roomserver.CodeTooMany && strings.Contains(c.Text, "at most 3 per identity"):
		default:
			t.Fatalf("upload %d: %+v", i, c)
		}
	}
	if held != 3 {
		t.Fatalf("mallory holds %d of the room's 6 handles, want 3", held)
	}
	bob := f.dial("r1", "bob")
	if c := bob.upload("b", "bob.txt", []byte("bob"), false); c.Method != "close" {
		t.Fatalf("bob's upload while mallory holds her share: %+v", c)
	}
	if got := f.srv.Stats().Refused[roomserver.BudgetRoomHandles]; got != 2 {
		t.Fatalf("Refused[room_handles] = %d, want 2", got)
	}
}

// A list reply is bounded: a folder with more entries is refused with
// 413, one with as many is listed.
func TestListRepliesAreBounded(t *testing.T) {
	f := newFixture(t, func(o *roomserver.Options) { o.MaxListEntries = 5 })
	r := f.dial("r1", "a")
	e := f.engine("r1")
	for i := range 6 {
		dir := "small"
		if i == 5 {
			dir = "big"
		}
		if _, err := e.Upload(t.Context(), fmt.Sprintf("%s/%d", dir, i), strings.NewReader(""), roomstore.OpenOptions{}); err != nil {
			t.Fatal(err)
		}
		if dir == "big" {
			for j := range 5 {
				if _, err := e.Upload(t.Context(), fmt.Sprintf("big/x%d", j), strings.NewReader(""), roomstore.OpenOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	var ls struct{ Files []wire.Entry }
	jsonOf(t, r.call("list", map[string]any{"path": "small"}), &ls)
	if len(ls.Files) != 5 {
		t.Fatalf("small: %d entries", len(ls.Files))
	}
	c := r.call("list", map[string]any{"path": "big"})
	if c.Type != wire.KindError || c.Code != roomserver.CodeTooLarge || c.Text != "list big: more than 5 entries" {
		t.Fatalf("big: %+v", c)
	}
}

// Each identity's calls (its connections count as calls too) come from
// a token bucket of its own: past it a call is refused at once, and the
// connection that made it reads nothing more until the bucket holds a
// call again, so that a flood waits in its own socket; another identity
// is not touched, and the bucket refills with time.
func TestTheCallRateIsPerIdentity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuietFixture(t, func(o *roomserver.Options) {
			o.CallRate, o.CallBurst = 10, 10
		})
		start := time.Now() // the bubble's clock
		m1, m2 := f.dial("r1", "mallory"), f.dial("r1", "mallory")
		bob := f.dial("r1", "bob")
		ok, limited := 0, 0
		var refusedAt time.Time
		for i := range 30 {
			r := m1
			if i%2 == 1 {
				r = m2
			}
			c := r.call("exists", map[string]any{"path": "a"})
			switch {
			case c.Type == wire.KindJSON:
				ok++
			case c.Type == wire.KindError && c.Code == roomserver.CodeTooMany && strings.HasPrefix(c.Text, "rate limited"):
				limited++
				refusedAt = time.Now()
			default:
				t.Fatalf("call %d: %+v", i, c)
			}
		}
		elapsed := time.Since(start)
		// The bucket held 10, of which the two connections took 2, and
		// refilled 10 a second meanwhile.
		if most := 8 + int(elapsed.Seconds()*10) + 1; ok < 8 || ok > most || limited == 0 {
			t.Fatalf("mallory: %d calls served and %d refused in %v; want 8 to %d served and some refused", ok, limited, elapsed, most)
		}
		if elapsed < time.Duration(limited)*10*time.Millisecond/2 {
			t.Fatalf("%d refusals in %v: the refused connections did not pause", limited, elapsed)
		}
		if c := bob.call("exists", map[string]any{"path": "a"}); c.Type != wire.KindJSON {
			t.Fatalf("bob's call: %+v", c)
		}
		time.Sleep(time.Second) // the bubble's clock: the bucket refills
		if c := m1.call("exists", map[string]any{"path": "a"}); c.Type != wire.KindJSON {
			t.Fatalf("mallory's call a second after her last refusal (%v): %+v", time.Since(refusedAt), c)
		}
		if got := f.srv.Stats().Refused[roomserver.BudgetCallRate]; got != uint64(limited) {
			t.Fatalf("Refused[call_rate] = %d, want %d", got, limited)
		}
	})
}

// Connecting again gives an identity no calls back: its bucket outlives
// its connections until it has refilled.
func TestReconnectingDoesNotRefillTheCallRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuietFixture(t, func(o *roomserver.Options) {
			o.CallRate, o.CallBurst = 1, 3
		})
		start := time.Now() // the bubble's clock
		served, connected := 0, 0
		for range 5 {
			code, r := f.dialStatus("r1", "mallory")
			if code != http.StatusSwitchingProtocols {
				continue // the connection itself was refused: it costs a call
			}
			connected++
			for range 3 {
				if c := r.call("exists", map[string]any{"path": "a"}); c.Type == wire.KindJSON {
					served++
				}
			}
			_ = r.ws.Close(websocket.StatusNormalClosure, "")
			synctest.Wait()
		}
		// 3 in the bucket, and 1 a second over the time the test took
		// (the refused connections' pauses); each connection took one.
		elapsed := time.Since(start)
		if most := 3 + int(elapsed.Seconds()) + 1; served+connected > most {
			t.Fatalf("%d calls served and %d connections over %v; the bucket allowed %d", served, connected, elapsed, most)
		}
	})
}

// A participant that asks for a download and stops reading holds at most
// its send buffer, and is dropped once its writes stall.
func TestAReaderThatStopsHoldsNoMoreThanItsSendBuffer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const buffer = 8 << 20
		f, r := newReaderFixture(t, buffer, 5*time.Second)
		if _, err := f.engine("r1").Upload(t.Context(), "big.bin", bytes.NewReader(make([]byte, 64<<20)), roomstore.OpenOptions{}); err != nil {
			t.Fatal(err)
		}
		pulls := r.pullBlind("big.bin", 4<<20, 16) // and no read from here on
		var peak int64
		for range 100 {
			synctest.Wait()
			st := f.srv.Stats()
			peak = max(peak, st.Queued)
			if st.Connections == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if st := f.srv.Stats(); st.Connections != 0 {
			t.Fatalf("the reader that stopped is still connected: %+v", st)
		}
		if peak == 0 || peak > buffer {
			t.Fatalf("the stopped reader's queue peaked at %d bytes; want some, at most %d", peak, buffer)
		}
		if st := f.srv.Stats(); st.Queued != 0 || st.Streams != 0 || st.Refused[roomserver.BudgetSendBuffer] != 1 {
			t.Fatalf("after the drop: %+v", st)
		}
		_ = r.ws.CloseNow()
		<-pulls
	})
}

// A message that does not arrive in full within MessageTimeout of its
// first byte closes its connection and frees what it held.
func TestAHalfSentMessageIsDroppedAtItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuietFixture(t, func(o *roomserver.Options) {
			o.MessageTimeout = 30 * time.Second
		})
		r := f.dial("r1", "slow")
		half := halfMessage(t, 7, 1<<20)
		r.sendFrames(half...)
		synctest.Wait()
		if got := f.srv.Stats().PendingBytes; got != 1<<20 {
			t.Fatalf("pending %d bytes, want %d", got, 1<<20)
		}
		time.Sleep(29 * time.Second)
		synctest.Wait()
		if st := f.srv.Stats(); st.Connections != 1 {
			t.Fatalf("closed before the deadline: %+v", st)
		}
		time.Sleep(2 * time.Second)
		if got := r.closeStatus(); got != websocket.StatusPolicyViolation {
			t.Fatalf("closed with %d, want 1008", got)
		}
		synctest.Wait()
		if st := f.srv.Stats(); st.PendingBytes != 0 || st.Connections != 0 || st.Refused[roomserver.BudgetMessageTimeout] != 1 {
			t.Fatalf("after the deadline: %+v", st)
		}
	})
}

// halfMessage is the header frame of a message of two data frames, and
// its first data frame of n bytes.
func halfMessage(t *testing.T, id uint64, n int) [][]byte {
	t.Helper()
	m, err := wire.Encode(id, wire.TypeInvokeTool, wire.InvokeTool{Toolkit: "storage", Tool: "exists", Arguments: wire.Content{Type: wire.KindJSON, JSON: []byte(`{"path":"a"}`)}}, make([]byte, n))
	if err != nil {
		t.Fatal(err)
	}
	header := append([]byte(nil), m.Header...)
	copy(header[12:], be32(2)) // two data frames
	first := append(append([]byte(nil), m.Body[:12]...), m.Body[12:12+n]...)
	return [][]byte{header, first}
}

// The bytes of messages partly received are bounded across connections:
// one that would pass the server's budget is closed with 1013, while the
// others complete theirs.
func TestPartlyReceivedMessagesHaveAServerWideBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuietFixture(t, func(o *roomserver.Options) {
			o.MaxPendingBytes = 3 << 19 // 1.5 MiB
		})
		a, b := f.dial("r1", "a"), f.dial("r1", "b")
		a.sendFrames(halfMessage(t, 7, 1<<20)...)
		synctest.Wait()
		b.sendFrames(halfMessage(t, 7, 1<<20)...)
		if got := b.closeStatus(); got != websocket.StatusTryAgainLater {
			t.Fatalf("b closed with %d, want 1013", got)
		}
		synctest.Wait()
		if st := f.srv.Stats(); st.PendingBytes != 1<<20 || st.Refused[roomserver.BudgetPendingBytes] != 1 {
			t.Fatalf("after b: %+v", st)
		}
		// a's second frame completes its message, which is answered.
		a.sendFrames(append(append([]byte(nil), uint64be(7)...), append(be32(2), []byte(`{}`)...)...))
		var ex struct{ Exists *bool }
		if jsonOf(t, a.response(7), &ex); ex.Exists == nil {
			t.Fatal("a's message was not answered as the call it is")
		}
		if st := f.srv.Stats(); st.PendingBytes != 0 {
			t.Fatalf("pending after a's message: %+v", st)
		}
	})
}

func uint64be(n uint64) []byte {
	b := make([]byte, 8)
	for i := range 8 {
		b[7-i] = byte(n >> (8 * i))
	}
	return b
}

// Refusals are logged at a bounded rate, each value shortened.
func TestRefusalsAreLoggedAtABoundedRateAndShortened(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	h := slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		lines = append(lines, string(p))
		mu.Unlock()
		return len(p), nil
	}), nil)
	start := time.Now()
	f := newFixture(t, func(o *roomserver.Options) { o.Logger = slog.New(h) })
	const n = 300
	long := strings.Repeat("x", 100_000)
	for range n {
		_, resp, err := f.tryDial("r1", "?token="+long, nil, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("a bad token: %v %v", err, resp)
		}
	}
	elapsed := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	refusals, notLogged := 0, false
	for _, l := range lines {
		if !strings.Contains(l, "room connection refused") {
			continue
		}
		refusals++
		if len(l) > 1024 {
			t.Fatalf("a refusal's log line of %d bytes", len(l))
		}
		notLogged = notLogged || strings.Contains(l, "not_logged=")
	}
	if most := 20 + int(elapsed.Seconds()*10) + 1; refusals > most || refusals == 0 {
		t.Fatalf("%d refusals logged in %v; want 1 to %d", refusals, elapsed, most)
	}
	if refusals < n && !notLogged && refusals > 20 {
		t.Fatal("no line says how many refusals were not logged")
	}
	if got := f.srv.Stats().Refused[roomserver.RefusedUnauthorized]; got != n {
		t.Fatalf("Refused[unauthorized] = %d, want %d", got, n)
	}
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// An upload that announces more than the room's quota can hold is
// refused at its start, with 507, before the server pulls one byte.
func TestAnOversizeUploadIsRefusedBeforeItsFirstByte(t *testing.T) {
	f := newFixture(t, func(o *roomserver.Options) {
		o.Resolve = func(ctx context.Context, room string, _ bool) (*roomstore.Engine, error) {
			return roomstore.OpenURL(ctx, "mem://", roomstore.WithQuota(roomstore.Quota{Bytes: 1 << 20}))
		}
	})
	r := f.dial("r1", "a")
	c, _ := r.startUpload("u", map[string]any{"path": "huge.bin", "size": 1 << 50})
	if c.Type != wire.KindError || c.Code != roomserver.CodeQuota || !strings.Contains(c.Text, "quota exceeded") {
		t.Fatalf("the start of a 1 PiB upload: %+v, want a 507 before any pull", c)
	}
	r.chunk("u", wire.Control("close"), nil)
	var ex struct{ Exists bool }
	jsonOf(t, r.call("exists", map[string]any{"path": "huge.bin"}), &ex)
	if ex.Exists {
		t.Fatal("the refused upload left a file")
	}
}

// A download of tiny chunks that its reader never takes holds no more
// than the send buffer: each chunk counts the pooled buffer it lies in,
// not the few bytes it carries.
func TestTinyChunksCountTheMemoryTheyHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const buffer = 1 << 20
		f, r := newReaderFixture(t, buffer, 5*time.Second)
		if _, err := f.engine("r1").Upload(t.Context(), "f.bin", bytes.NewReader(make([]byte, 100_000)), roomstore.OpenOptions{}); err != nil {
			t.Fatal(err)
		}
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		pulls := r.pullBlind("f.bin", 1, 5000)
		var peak int64
		var heap uint64
		for range 200 {
			synctest.Wait()
			st := f.srv.Stats()
			peak = max(peak, st.Queued)
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			heap = max(heap, ms.HeapAlloc)
			if st.Connections == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = r.ws.CloseNow()
		<-pulls
		if peak > buffer {
			t.Fatalf("the queue peaked at %d bytes, over the buffer of %d", peak, buffer)
		}
		if grew := int64(heap) - int64(before.HeapAlloc); grew > 32<<20 {
			t.Fatalf("the heap grew by %d MiB for a 1 MiB send buffer", grew>>20)
		}
	})
}

// A message sent as one data frame counts against the server's budget
// of partly received messages while it arrives.
func TestOneFrameMessagesCountAgainstThePendingBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuietFixture(t, func(o *roomserver.Options) {
			o.MaxPendingBytes = 1 << 20
		})
		r := f.dial("r1", "a")
		m, err := wire.Encode(7, wire.TypeInvokeTool, wire.InvokeTool{Toolkit: "storage", Tool: "exists"}, make([]byte, 3<<20))
		if err != nil {
			t.Fatal(err)
		}
		r.sendFrames(m.Header)
		w, err := r.ws.Writer(t.Context(), websocket.MessageBinary)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = w.Write(m.Body[:len(m.Body)-1]) }() // and never the last byte
		if got := r.closeStatus(); got != websocket.StatusTryAgainLater {
			t.Fatalf("closed with %d, want 1013", got)
		}
		synctest.Wait()
		if st := f.srv.Stats(); st.PendingBytes != 0 || st.Refused[roomserver.BudgetPendingBytes] != 1 {
			t.Fatalf("after: %+v", st)
		}
	})
}

// A message whose header came and whose data never does is dropped at the
// deadline too.
func TestAHeaderAloneIsDroppedAtTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuietFixture(t, func(o *roomserver.Options) {
			o.MessageTimeout = 30 * time.Second
		})
		r := f.dial("r1", "slow")
		r.sendFrames(halfMessage(t, 7, 10)[0])
		time.Sleep(31 * time.Second)
		if got := r.closeStatus(); got != websocket.StatusPolicyViolation {
			t.Fatalf("closed with %d, want 1008", got)
		}
	})
}

// An event is never refused because a reply of the participant waits for
// room in its send buffer: events are counted apart.
func TestAWaitingReplyDoesNotMakeEventsDropTheParticipant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, r := newReaderFixture(t, 1<<20, time.Minute)
		e := f.engine("r1")
		if _, err := e.Upload(t.Context(), "f.bin", bytes.NewReader(make([]byte, 4<<20)), roomstore.OpenOptions{}); err != nil {
			t.Fatal(err)
		}
		pulls := r.pullBlind("f.bin", 700<<10, 2) // the second chunk waits for room
		synctest.Wait()
		for i := range 10 {
			if _, err := e.Upload(roomstore.WithParticipant(t.Context(), "w"), fmt.Sprint("e", i), strings.NewReader("x"), roomstore.OpenOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if st := f.srv.Stats(); st.Connections != 1 || st.Refused[roomserver.BudgetSendBuffer] != 0 {
			t.Fatalf("a participant with a reply waiting was dropped for events: %+v", st)
		}
		_ = r.ws.CloseNow()
		<-pulls
	})
}

// Downloads of signed URLs have a budget of their own.
func TestSignedURLDownloadsHaveABudget(t *testing.T) {
	d := newDiskRooms(t, func(o *roomserver.Options) { o.MaxDownloads = 2 })
	w := d.f.dial("r1", "writer")
	if c := w.upload("u", "big.bin", make([]byte, 16<<20), false); c.Method != "close" {
		t.Fatalf("upload: %+v", c)
	}
	var got struct{ URL string }
	jsonOf(t, w.call("download_url", map[string]any{"path": "big.bin"}), &got)
	u, err := url.Parse(got.URL)
	if err != nil {
		t.Fatal(err)
	}
	var stalled []net.Conn
	for range 2 { // requests whose bodies nobody reads
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, c)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.RequestURI(), u.Host)
	}
	deadline := time.Now().Add(20 * time.Second)
	for d.f.srv.Stats().Downloads != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled downloads were not counted: %+v", d.f.srv.Stats())
		}
		<-time.After(10 * time.Millisecond) // the next look
	}
	if code, _ := get(t, got.URL); code != http.StatusServiceUnavailable {
		t.Fatalf("a third download: %d, want 503", code)
	}
	for _, c := range stalled {
		c.Close()
	}
	for d.f.srv.Stats().Downloads != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the downloads whose clients went away are still counted: %+v", d.f.srv.Stats())
		}
		<-time.After(10 * time.Millisecond) // the next look
	}
	if code, body := get(t, got.URL); code != http.StatusOK || len(body) != 16<<20 {
		t.Fatalf("a download after: %d, %d bytes", code, len(body))
	}
	if got := d.f.srv.Stats().Refused[roomserver.BudgetDownloads]; got != 1 {
		t.Fatalf("Refused[downloads] = %d, want 1", got)
	}
}

// The quota's refusal tells the participant no figures of the room.
func TestTheQuotasRefusalSaysNoFigures(t *testing.T) {
	f := newFixture(t, func(o *roomserver.Options) {
		o.Resolve = func(ctx context.Context, room string, _ bool) (*roomstore.Engine, error) {
			return roomstore.OpenURL(ctx, "mem://", roomstore.WithQuota(roomstore.Quota{Bytes: 10}))
		}
	})
	r := f.dial("r1", "a")
	c := r.upload("u", "f.bin", make([]byte, 11), false)
	if c.Type != wire.KindError || c.Code != roomserver.CodeQuota || c.Text != "upload f.bin: quota exceeded" {
		t.Fatalf("%+v, want exactly %q", c, "upload f.bin: quota exceeded")
	}
}

// pullBlind starts the download "d" of p in chunks of chunk bytes, then,
// on a goroutine of its own, sends n pulls and never reads what they
// bring. The channel is closed once the pulls are sent, or the
// connection refuses them.
func (r *raw) pullBlind(p string, chunk, n int) <-chan struct{} {
	r.t.Helper()
	r.open("download", "d")
	r.chunk("d", wire.Binary(map[string]any{"kind": "start", "path": p, "chunk_size": chunk}), nil)
	r.streamed("d")
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for i := range n {
			m, _ := wire.Encode(uint64(1000+i), wire.TypeRequestChunk, wire.Chunk{ToolCallID: "d", Chunk: wire.Binary(map[string]any{"kind": "pull"})}, nil)
			if r.ws.Write(ctx, websocket.MessageBinary, m.Header) != nil || r.ws.Write(ctx, websocket.MessageBinary, m.Body) != nil {
				return
			}
		}
	}()
	return done
}

// Messages the server answers without running a call (chunks of no
// stream, unknown types, stray answers) cost the identity calls too, and
// pause its connection past the rate.
func TestMessagesThatAreNoCallsCostCallsToo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuietFixture(t, func(o *roomserver.Options) {
			o.CallRate, o.CallBurst = 10, 10
		})
		start := time.Now() // the bubble's clock
		r := f.dial("r1", "mallory")
		const n = 100
		for range n {
			r.chunk("nothing", wire.Binary(map[string]any{"kind": "pull"}), nil) // 404 each
		}
		elapsed := time.Since(start)
		// 10 in the bucket (the connection took one), then per token two
		// answers at most: the one it pays for, and one refused (answered
		// all the same), after which the connection pauses for the next.
		if most := 10 + int(elapsed.Seconds()*2*10) + 2; n > most {
			t.Fatalf("%d chunks of no stream answered in %v; the rate allowed %d", n, elapsed, most)
		}
		if got := f.srv.Stats().Refused[roomserver.BudgetCallRate]; got == 0 {
			t.Fatal("no refusal counted")
		}
	})
}
