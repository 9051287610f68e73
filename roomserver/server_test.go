package roomserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/internal/wire"
	"github.com/roomstore/roomstore/roomserver"
)

func jsonOf(t *testing.T, c wire.Content, v any) {
	t.Helper()
	if c.Type != wire.KindJSON {
		t.Fatalf("reply %+v, want json", c)
	}
	if err := json.Unmarshal(c.JSON, v); err != nil {
		t.Fatal(err)
	}
}

func wantError(t *testing.T, c wire.Content, code int) {
	t.Helper()
	if c.Type != wire.KindError || c.Code != code {
		t.Fatalf("reply %+v, want error %d", c, code)
	}
}

func TestCallsMapOntoTheEngine(t *testing.T) {
	f := newFixture(t, nil)
	p := f.dial("r1", "alice")
	if c := p.upload("u1", "docs/a.txt", []byte("hello"), false); c.Type != wire.KindControl || c.Method != "close" {
		t.Fatalf("upload: %+v", c)
	}
	var ex struct{ Exists bool }
	jsonOf(t, p.call("exists", map[string]any{"path": "docs/a.txt"}), &ex)
	if !ex.Exists {
		t.Fatal("exists: false after upload")
	}
	var st struct {
		Exists   bool
		Name     string
		IsFolder bool   `json:"is_folder"`
		Size     *int64 `json:"size"`
		Updated  string `json:"updated_at"`
	}
	jsonOf(t, p.call("stat", map[string]any{"path": "docs/a.txt"}), &st)
	if !st.Exists || st.Name != "a.txt" || st.IsFolder || st.Size == nil || *st.Size != 5 || st.Updated == "" {
		t.Fatalf("stat: %+v", st)
	}
	jsonOf(t, p.call("stat", map[string]any{"path": "nope"}), &st)
	if st.Exists {
		t.Fatal("stat of a missing file exists")
	}
	var ls struct {
		Files []struct {
			Name     string
			IsFolder bool `json:"is_folder"`
		}
	}
	jsonOf(t, p.call("list", map[string]any{"path": ""}), &ls)
	if len(ls.Files) != 1 || ls.Files[0].Name != "docs" || !ls.Files[0].IsFolder {
		t.Fatalf("list: %+v", ls)
	}
	wantError(t, p.call("list", map[string]any{"path": "missing"}), roomserver.CodeNotFound)
	if c := p.call("move", map[string]any{"source_path": "docs/a.txt", "destination_path": "b.txt"}); c.Type != wire.KindEmpty {
		t.Fatalf("move: %+v", c)
	}
	e := f.engine("r1")
	if ok, _ := e.Exists(t.Context(), "b.txt"); !ok {
		t.Fatal("move did not reach the engine")
	}
	// The memory store cannot sign URLs without a base URL.
	wantError(t, p.call("download_url", map[string]any{"path": "b.txt"}), roomserver.CodeUnsupported)
	wantError(t, p.call("delete", map[string]any{"path": "nope"}), roomserver.CodeNotFound)
	if c := p.call("delete", map[string]any{"path": "b.txt"}); c.Type != wire.KindEmpty {
		t.Fatalf("delete: %+v", c)
	}
	if ok, _ := e.Exists(t.Context(), "b.txt"); ok {
		t.Fatal("delete did not reach the engine")
	}
}

func TestDeleteRecursive(t *testing.T) {
	f := newFixture(t, nil)
	p := f.dial("r1", "alice")
	p.upload("a", "d/x", []byte("x"), false)
	p.upload("b", "d/e/y", []byte("y"), false)
	wantError(t, p.call("delete", map[string]any{"path": "d"}), roomserver.CodeConflict)
	if c := p.call("delete", map[string]any{"path": "d", "recursive": true}); c.Type != wire.KindEmpty {
		t.Fatalf("recursive delete: %+v", c)
	}
	if ok, _ := f.engine("r1").Exists(t.Context(), "d"); ok {
		t.Fatal("the folder survived a recursive delete")
	}
}

func TestDownloadStreamsTheVersionItAnnounced(t *testing.T) {
	f := newFixture(t, nil)
	p := f.dial("r1", "alice")
	data := bytes.Repeat([]byte("0123456789"), 30000)
	p.upload("u", "f.txt", data, false)
	if c := p.open("download", "d1"); c.Method != "open" {
		t.Fatalf("open: %+v", c)
	}
	p.chunk("d1", wire.Binary(map[string]any{"kind": "start", "path": "f.txt", "chunk_size": 100000}), nil)
	start, _ := p.streamed("d1")
	if start.Headers["kind"] != "start" || start.Headers["size"].(float64) != float64(len(data)) || start.Headers["name"] != "f.txt" {
		t.Fatalf("start: %+v", start)
	}
	// A new version committed mid-download does not change the bytes.
	if _, err := f.engine("r1").Upload(t.Context(), "f.txt", bytes.NewReader([]byte("new")), roomstore.OpenOptions{Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for len(got) < len(data) {
		p.chunk("d1", wire.Binary(map[string]any{"kind": "pull"}), nil)
		c, payload := p.streamed("d1")
		if c.Headers["kind"] != "data" {
			t.Fatalf("pull: %+v", c)
		}
		got = append(got, payload...)
	}
	if c, _ := p.streamed("d1"); c.Type != wire.KindControl || c.Method != "close" {
		t.Fatalf("after the last bytes: %+v", c)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("downloaded bytes differ")
	}
	// The stream has ended: a close is answered, a pull refused.
	if c := p.chunk("d1", wire.Control("close"), nil); c.Type != wire.KindEmpty {
		t.Fatalf("close after end: %+v", c)
	}
	wantError(t, p.chunk("d1", wire.Binary(map[string]any{"kind": "pull"}), nil), roomserver.CodeNotFound)
}

func TestErrorCodes(t *testing.T) {
	f := newFixture(t, nil)
	p := f.dial("r1", "alice")
	p.upload("u", "a", []byte("1"), false)
	for _, tc := range []struct {
		name string
		got  wire.Content
		code int
	}{
		{"an invalid path", p.call("exists", map[string]any{"path": "../x"}), roomserver.CodeBadRequest},
		{"a NUL in a path", p.call("stat", map[string]any{"path": "a\x00b"}), roomserver.CodeBadRequest},
		{"a missing argument", p.call("exists", map[string]any{}), roomserver.CodeBadRequest},
		{"an unknown tool", p.call("chmod", map[string]any{"path": "a"}), roomserver.CodeNotFound},
		{"an upload over an existing file", p.upload("u2", "a", []byte("2"), false), roomserver.CodeConflict},
		{"an upload to an invalid path", p.upload("u3", "a//b", []byte("2"), false), roomserver.CodeBadRequest},
		{"a move onto an existing file", p.call("move", map[string]any{"source_path": "a", "destination_path": "a"}), roomserver.CodeBadRequest},
		{"a download of a missing file", func() wire.Content {
			p.open("download", "dm")
			p.chunk("dm", wire.Binary(map[string]any{"kind": "start", "path": "missing"}), nil)
			c, _ := p.streamed("dm")
			return c
		}(), roomserver.CodeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) { wantError(t, tc.got, tc.code) })
	}
	got, err := f.engine("r1").Download(t.Context(), "a")
	if err != nil || string(got.Data) != "1" {
		t.Fatalf("refused uploads changed the file: %v %q", err, got.Data)
	}
	if _, err := f.engine("r1").Stat(t.Context(), "a/b"); !errors.Is(err, fs.ErrInvalid) && !errors.Is(err, roomstore.ErrNotFolder) && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat a/b: %v", err)
	}
}

func TestEventsReachEveryParticipantOfTheRoomOnly(t *testing.T) {
	f := newFixture(t, nil)
	alice := f.dial("r1", "alice")
	bob := f.dial("r1", "bob")
	carol := f.dial("r2", "carol")
	alice.upload("u", "a.txt", []byte("x"), false)
	bob.call("move", map[string]any{"source_path": "a.txt", "destination_path": "b.txt"})
	alice.call("delete", map[string]any{"path": "b.txt"})
	type ev struct {
		typ, path, src, who string
	}
	want := []ev{
		{wire.TypeFileUpdated, "a.txt", "", alice.id},
		{wire.TypeFileMoved, "b.txt", "a.txt", bob.id},
		{wire.TypeFileDeleted, "b.txt", "", alice.id},
	}
	isEvent := func(m *wire.Message) bool {
		return m.Type == wire.TypeFileUpdated || m.Type == wire.TypeFileMoved || m.Type == wire.TypeFileDeleted
	}
	for _, p := range []*raw{alice, bob} {
		for _, w := range want {
			m := p.until(isEvent)
			body, _, _ := m.Split()
			var got struct {
				Path, SourcePath, DestinationPath, ParticipantID string
			}
			var fe wire.FileEvent
			var me wire.MoveEvent
			_ = json.Unmarshal(body, &fe)
			_ = json.Unmarshal(body, &me)
			got.Path, got.ParticipantID = fe.Path, fe.ParticipantID
			if m.Type == wire.TypeFileMoved {
				got.Path, got.SourcePath, got.ParticipantID = me.DestinationPath, me.SourcePath, me.ParticipantID
			}
			if e := (ev{m.Type, got.Path, got.SourcePath, got.ParticipantID}); e != w {
				t.Fatalf("event %+v, want %+v", e, w)
			}
		}
	}
	// carol's room saw none: her own change is the first event she gets.
	carol.upload("u", "c.txt", []byte("c"), false)
	m := carol.until(isEvent)
	var fe wire.FileEvent
	body, _, _ := m.Split()
	_ = json.Unmarshal(body, &fe)
	if fe.Path != "c.txt" || fe.ParticipantID != carol.id {
		t.Fatalf("carol's first event is %s %+v", m.Type, fe)
	}
}

func TestTokens(t *testing.T) {
	f := newFixture(t, nil)
	other, err := roomserver.NewToken([]byte("another secret, also 32 bytes long"), "eve", "r1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired := signed(t, roomserver.Claims{
		Name:             "eve",
		Grants:           []roomserver.Grant{{Name: "room", Scope: "r1"}},
		RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Minute))},
	})
	noName := signed(t, roomserver.Claims{Grants: []roomserver.Grant{{Name: "room", Scope: "r1"}}})
	noRoom := signed(t, roomserver.Claims{Name: "eve"})
	for _, tc := range []struct {
		name, query string
		hdr         http.Header
	}{
		{"no token", "", nil},
		{"a token signed with another secret", "?token=" + other, nil},
		{"a token for another room", "?token=" + token(t, "eve", "r2", time.Hour), nil},
		{"an expired token", "?token=" + expired, nil},
		{"garbage", "?token=not.a.jwt", nil},
		{"a token without a name", "?token=" + noName, nil},
		{"a token without a room grant", "?token=" + noRoom, nil},
		{"an unsigned token", "?token=" + unsigned(t), nil},
		{"a bad bearer header", "", http.Header{"Authorization": {"Bearer " + other}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			ws, resp, err := websocket.Dial(ctx, f.url("r1")+tc.query, &websocket.DialOptions{HTTPHeader: tc.hdr})
			if err == nil {
				_ = ws.CloseNow()
				t.Fatal("connected")
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("response %v, want 403", resp)
			}
		})
	}
	for _, tc := range []struct {
		name, query string
		hdr         http.Header
		protos      []string
	}{
		{"query", "?token=" + token(t, "a", "r1", time.Hour), nil, nil},
		{"bearer", "", http.Header{"Authorization": {"Bearer " + token(t, "a", "r1", time.Hour)}}, nil},
		{"subprotocol", "", nil, []string{"meshagent-room." + token(t, "a", "r1", time.Hour)}},
	} {
		t.Run("a good token by "+tc.name, func(t *testing.T) {
			r, resp, err := f.tryDial("r1", tc.query, tc.hdr, tc.protos)
			if err != nil {
				t.Fatal(err)
			}
			if tc.protos != nil && resp.Header.Get("Sec-WebSocket-Protocol") != tc.protos[0] {
				t.Fatalf("subprotocol not echoed: %q", resp.Header.Get("Sec-WebSocket-Protocol"))
			}
			var ex struct{ Exists bool }
			jsonOf(t, r.call("exists", map[string]any{"path": ""}), &ex)
		})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, room := range []string{"..", ".hidden", "a%2Fb", "a\\b"} {
		_, resp, err := websocket.Dial(ctx, f.url(room)+"?token="+token(t, "a", "r1", time.Hour), nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
			t.Errorf("room %q: %v %v, want 404", room, err, resp)
		}
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t, func(o *roomserver.Options) { o.MaxMessageSize = 256 << 10 })
	bystander := f.dial("r1", "bystander")
	closes := []struct {
		name string
		send func(r *raw)
		code websocket.StatusCode
	}{
		{"a frame shorter than its prefix", func(r *raw) { r.sendFrames([]byte{1, 2, 3}) }, websocket.StatusProtocolError},
		{"a data frame without a header", func(r *raw) {
			r.sendFrames(append(append(be32(0), be32(7)...), append(be32(1), 'x')...))
		}, websocket.StatusProtocolError},
		{"a header frame with no type", func(r *raw) {
			r.sendFrames(append(append(be32(0), be32(7)...), append(be32(0), be32(1)...)...))
		}, websocket.StatusProtocolError},
		{"frames of two messages interleaved", func(r *raw) {
			h1, _ := wire.Frames(50, wire.TypeInvokeTool, []byte("x"))
			h2, _ := wire.Frames(51, wire.TypeInvokeTool, []byte("y"))
			r.sendFrames(h1, h2)
		}, websocket.StatusProtocolError},
		{"a text frame", func(r *raw) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			_ = r.ws.Write(ctx, websocket.MessageText, []byte("hello"))
		}, websocket.StatusUnsupportedData},
		{"an oversized message", func(r *raw) {
			h, b := wire.Frames(9, wire.TypeInvokeTool, make([]byte, 200<<10))
			h[15] = 2 // two data frames announced, together over the bound
			r.sendFrames(h, b, append(append(be32(0), be32(9)...), append(be32(2), make([]byte, 100<<10)...)...))
		}, websocket.StatusMessageTooBig},
		{"a frame over the read limit", func(r *raw) {
			h, b := wire.Frames(9, wire.TypeInvokeTool, make([]byte, 1<<20))
			r.sendFrames(h)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			_ = r.ws.Write(ctx, websocket.MessageBinary, b)
		}, websocket.StatusMessageTooBig},
	}
	for _, tc := range closes {
		t.Run(tc.name+" closes that connection", func(t *testing.T) {
			r := f.dial("r1", "mallory")
			tc.send(r)
			if got := r.closeStatus(); got != tc.code {
				t.Fatalf("close code %d, want %d", got, tc.code)
			}
		})
	}
	m := f.dial("r1", "mallory")
	replies := []struct {
		name string
		id   func() uint64
		code int
	}{
		{"a message data shorter than its length", func() uint64 {
			id := m.next
			m.next++
			h, b := wire.Frames(id, wire.TypeInvokeTool, []byte{0, 0, 0, 0, 0, 0, 1, 0, '{'})
			m.sendFrames(h, b)
			return id
		}, roomserver.CodeBadRequest},
		{"invalid JSON", func() uint64 {
			id := m.next
			m.next++
			data := append(append(be32(0), be32(5)...), []byte("{nope")...)
			h, b := wire.Frames(id, wire.TypeInvokeTool, data)
			m.sendFrames(h, b)
			return id
		}, roomserver.CodeBadRequest},
		{"an unknown message type", func() uint64 { return m.request("room.frobnicate", map[string]any{}, nil) }, roomserver.CodeBadRequest},
		{"an unknown toolkit", func() uint64 {
			return m.request(wire.TypeInvokeTool, wire.InvokeTool{Toolkit: "sync", Tool: "open", Arguments: wire.JSONOf(map[string]any{})}, nil)
		}, roomserver.CodeNotFound},
		{"a chunk of an unknown stream", func() uint64 {
			return m.request(wire.TypeRequestChunk, wire.Chunk{ToolCallID: "nope", Chunk: wire.Binary(map[string]any{"kind": "data"})}, []byte("bytes"))
		}, roomserver.CodeNotFound},
		{"a stream of a tool that does not stream", func() uint64 {
			return m.request(wire.TypeInvokeTool, wire.InvokeTool{Toolkit: "storage", Tool: "exists", ToolCallID: "s", Arguments: wire.Control("open")}, nil)
		}, roomserver.CodeBadRequest},
		{"JSON arguments of the wrong shape", func() uint64 {
			return m.request(wire.TypeInvokeTool, wire.InvokeTool{Toolkit: "storage", Tool: "exists", Arguments: wire.JSONOf([]int{1})}, nil)
		}, roomserver.CodeBadRequest},
	}
	for _, tc := range replies {
		t.Run(tc.name+" gets an error reply", func(t *testing.T) { wantError(t, m.response(tc.id()), tc.code) })
	}
	// An upload refused midway leaves nothing, and the stream is gone.
	t.Run("an unpulled data chunk aborts the upload", func(t *testing.T) {
		pull, _ := m.startUpload("bad", map[string]any{"path": "x.bin", "overwrite": false})
		size := int(pull.Headers["chunk_size"].(float64))
		wantError(t, m.chunk("bad", wire.Binary(map[string]any{"kind": "data"}), make([]byte, size+1)), roomserver.CodeBadRequest)
		if c, _ := m.streamed("bad"); c.Type != wire.KindError {
			t.Fatalf("stream end: %+v", c)
		}
		wantError(t, m.chunk("bad", wire.Binary(map[string]any{"kind": "data"}), []byte("late")), roomserver.CodeNotFound)
	})
	if ok, _ := f.engine("r1").Exists(t.Context(), "x.bin"); ok {
		t.Fatal("bad input wrote a file")
	}
	// Through all of it the others were served.
	var ex struct{ Exists bool }
	jsonOf(t, m.call("exists", map[string]any{"path": ""}), &ex)
	jsonOf(t, bystander.call("exists", map[string]any{"path": ""}), &ex)
	if c := bystander.upload("ok", "fine.txt", []byte("fine"), false); c.Method != "close" {
		t.Fatalf("bystander upload: %+v", c)
	}
}

func TestADroppedConnectionLeavesNoUpload(t *testing.T) {
	f := newFixture(t, nil)
	p := f.dial("r1", "alice")
	p.startUpload("u", map[string]any{"path": "half.bin"})
	p.chunk("u", wire.Binary(map[string]any{"kind": "data"}), []byte("first half"))
	_ = p.ws.CloseNow()
	// The engine's handle goes with the connection: an exclusive create
	// of the same path by someone else then succeeds, and sees no file.
	q := f.dial("r1", "bob")
	if c := q.upload("u", "half.bin", []byte("whole"), false); c.Method != "close" {
		t.Fatalf("upload after the drop: %+v", c)
	}
	got, err := f.engine("r1").Download(t.Context(), "half.bin")
	if err != nil || string(got.Data) != "whole" {
		t.Fatalf("after the drop: %v %q", err, got.Data)
	}
}

func TestStreamLimit(t *testing.T) {
	f := newFixture(t, func(o *roomserver.Options) { o.MaxStreams = 2 })
	p := f.dial("r1", "alice")
	p.open("upload", "s1")
	p.open("upload", "s2")
	wantError(t, p.open("upload", "s3"), roomserver.CodeTooMany)
	wantError(t, p.open("upload", "s1"), roomserver.CodeConflict)
	// A stream closed before it began ends at once and frees its slot.
	if c := p.chunk("s1", wire.Control("close"), nil); c.Type != wire.KindEmpty {
		t.Fatalf("close: %+v", c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := p.open("upload", "s4")
		if c.Type == wire.KindControl {
			break
		}
		wantError(t, c, roomserver.CodeTooMany) // the slot frees once the stream's goroutine ends
		if time.Now().After(deadline) {
			t.Fatal("the closed stream's slot never came back")
		}
	}
}

func signed(t *testing.T, c roomserver.Claims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func unsigned(t *testing.T) string {
	t.Helper()
	c := roomserver.Claims{Name: "eve", Grants: []roomserver.Grant{{Name: "room", Scope: "r1"}}}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
