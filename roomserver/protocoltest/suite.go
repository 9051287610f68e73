// Package protocoltest checks a server of the MeshAgent room protocol's
// storage part against every client generation, frame by frame: the
// handshake each completes, the toolkit calls and streams of the 0.30
// and later clients with replies, stream headers and events of exactly
// the fields the protocol defines (the strict Python clients refuse any
// other), requests with the null and unknown fields the newest clients
// send, the handle-era messages of the clients before 0.30, and
// roomstore's own extensions (preconditions and the history included),
// which only a client that asks for them gets. roomserver's tests run it; a server of the protocol written
// elsewhere, or a change to roomserver, is checked by the same suite:
//
//	protocoltest.Run(t, protocoltest.Target{URL: "ws://127.0.0.1:8080", Token: mint})
package protocoltest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomstore/roomstore/internal/wire"
)

// Target is the server under test.
type Target struct {
	// URL is the server's base (ws://host:port): a room is at
	// URL/rooms/{room}. Every check uses rooms of its own, which it
	// expects empty at first.
	URL string
	// Token mints a token that gives participant name every right on
	// room's storage.
	Token func(room, name string) string
	// HTTPClient fetches download URLs (nil: http.DefaultClient).
	HTTPClient *http.Client
	// MaxMessageSize is the server's bound on one message, which bounds
	// a handle-era download (0: 4 MiB, roomserver's default).
	MaxMessageSize int
}

var rooms atomic.Int64

// room returns a fresh room name.
func room(t *testing.T) string {
	n := strings.NewReplacer("/", "-", " ", "-", "_", "-").Replace(t.Name())
	if len(n) > 150 {
		n = n[len(n)-150:]
	}
	return fmt.Sprintf("%s-%d", strings.Trim(n, "-"), rooms.Add(1))
}

// annAndBob dials ann, then bob, into a new room.
func (tg Target) annAndBob(t *testing.T) (a, b *Peer) {
	t.Helper()
	rm := room(t)
	return tg.dial(t, rm, "ann", ""), tg.dial(t, rm, "bob", "")
}

// dial connects participant name to rm with ?token=, as the 0.39 and
// handle-era clients do.
func (tg Target) dial(t *testing.T, rm, name, query string) *Peer {
	t.Helper()
	p, resp, err := dial(t, tg.URL+"/rooms/"+rm, DialOptions{Query: "?token=" + tg.Token(rm, name) + query})
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", rm, err, resp)
	}
	return p
}

// Run runs every check against tg, each as a subtest.
func Run(t *testing.T, tg Target) {
	if tg.MaxMessageSize == 0 {
		tg.MaxMessageSize = 4 << 20
	}
	if tg.HTTPClient == nil {
		tg.HTTPClient = http.DefaultClient
	}
	for _, c := range []struct {
		name string
		run  func(*testing.T, Target)
	}{
		{"Handshake", handshake},
		{"EveryWayToConnect", connectForms},
		{"SetAttributesIsAcceptedQuietly", setAttributes},
		{"ToolkitSessionIsStrict", toolkitSession},
		{"RequestsWithNullsAndUnknownFields", tolerantRequests},
		{"HandleEraWorkflow", handleEraWorkflow},
		{"HandleEraForeignHandle", foreignHandle},
		{"HandleEraHandleDiesWithItsConnection", handleDiesWithConnection},
		{"HandleEraRefusals", handleEraRefusals},
		{"HandleEraDownloadBound", downloadBound},
		{"ExtensionsOnlyWhenAsked", extensionsOnlyWhenAsked},
		{"ResumeAfterAPosition", resumeAfterAPosition},
		{"PreconditionsWhenAsked", preconditionsWhenAsked},
		{"HistoryWhenAsked", historyWhenAsked},
		{"InlineWhenAsked", inlineWhenAsked},
		{"NoTraceOfPreconditionsAndHistoryWithoutAsking", noTraceWithoutExtensions},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, tg) })
	}
}

// handshake: room_ready carries exactly room_name, room_url and
// session_id, then connected.
func handshake(t *testing.T, tg Target) {
	rm := room(t)
	p := tg.dial(t, rm, "ann", "")
	exactly(t, "room_ready", p.Ready, "room_name,room_url,session_id")
	if p.Ready["room_name"] != rm {
		t.Errorf("room_ready names room %v, want %q", p.Ready["room_name"], rm)
	}
	u, _ := p.Ready["room_url"].(string)
	if !(strings.HasPrefix(u, "ws://") || strings.HasPrefix(u, "wss://")) || !strings.HasSuffix(u, "/rooms/"+rm) || strings.Contains(u, "token") {
		t.Errorf("room_url %q: want the room's ws(s) URL, without the token", u)
	}
	if s, _ := p.Ready["session_id"].(string); s == "" {
		t.Errorf("room_ready without a session_id: %v", p.Ready)
	}
	// A client that reaches the room at room_url reaches the same room.
	q, resp, err := dial(t, u, DialOptions{Query: "?token=" + tg.Token(rm, "bob")})
	if err != nil {
		t.Fatalf("dial room_url %s: %v (%v)", u, err, resp)
	}
	if q.Ready["room_name"] != rm {
		t.Errorf("room_url led to room %v", q.Ready["room_name"])
	}
}

// connectForms: ?token= (with Python's &v=), Authorization: Bearer, the
// subprotocol (echoed), with permessage-deflate offered.
func connectForms(t *testing.T, tg Target) {
	rm := room(t)
	tok := tg.Token(rm, "ann")
	for _, c := range []struct {
		name string
		o    DialOptions
	}{
		{"query and version", DialOptions{Query: "?token=" + tok + "&v=0.56.0"}},
		{"bearer", DialOptions{Header: http.Header{"Authorization": {"Bearer " + tok}}, Query: "?v=0.56.0", Compress: true}},
		{"subprotocol", DialOptions{Subprotocol: "meshagent-room." + tok, Compress: true}},
		{"query with deflate offered", DialOptions{Query: "?token=" + tok, Compress: true}},
	} {
		p, resp, err := dial(t, tg.URL+"/rooms/"+rm, c.o)
		if err != nil {
			t.Errorf("%s: %v (%v)", c.name, err, resp)
			continue
		}
		if c.o.Subprotocol != "" && p.Proto != c.o.Subprotocol {
			t.Errorf("%s: the server chose subprotocol %q, want it echoed", c.name, p.Proto)
		}
		if r := p.Tool("exists", map[string]any{"path": "nothing"}); r.Type != wire.KindJSON {
			t.Errorf("%s: exists answered %+v", c.name, r)
		}
	}
	// And none of them without a token.
	if _, resp, err := dial(t, tg.URL+"/rooms/"+rm, DialOptions{Query: "?v=0.56.0"}); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("no token: %v (%v), want 403", err, resp)
	}
}

// setAttributes: the message older TypeScript clients send after
// connected gets no answer, and the connection goes on.
func setAttributes(t *testing.T, tg Target) {
	p := tg.dial(t, room(t), "ann", "")
	attrs := p.Send(wire.TypeSetAttributes, map[string]any{"name": "ann"}, nil)
	c := p.Tool("exists", map[string]any{"path": "x"})
	if c.Type != wire.KindJSON {
		t.Fatalf("a call after set_attributes: %+v", c)
	}
	for _, m := range p.seen {
		if m.Type == wire.TypeResponse && m.ID == attrs {
			t.Errorf("set_attributes was answered: %s", m.Data)
		}
	}
}

// event is one event a peer received.
type event struct {
	typ  string
	body map[string]any
}

// events returns the storage events p has read so far, and checks that
// each has exactly the fields the protocol defines.
func (p *Peer) events(t *testing.T) []event {
	t.Helper()
	var evs []event
	for _, m := range p.seen {
		switch m.Type {
		case wire.TypeFileUpdated, wire.TypeFileDeleted:
			b := p.object(m)
			exactly(t, m.Type, b, "participant_id,path")
			evs = append(evs, event{m.Type, b})
		case wire.TypeFileMoved:
			b := p.object(m)
			exactly(t, m.Type, b, "destination_path,participant_id,source_path")
			evs = append(evs, event{m.Type, b})
		case wire.TypeEventsOverflow:
			t.Errorf("%s sent to a client that did not ask for roomstore's extensions", m.Type)
		}
	}
	return evs
}

// waitEvent waits until p has an event of typ for path (a move: its
// destination) and returns it.
func (p *Peer) waitEvent(typ, path string) map[string]any {
	p.t.Helper()
	m := p.Until(func(m *wire.Message) bool {
		if m.Type != typ {
			return false
		}
		b := p.object(m)
		return b["path"] == path || b["destination_path"] == path
	})
	return p.object(m)
}

// toolkitSession: a full session of the 0.39 client's calls, every reply,
// stream header and event checked against the exact fields of the
// protocol.
func toolkitSession(t *testing.T, tg Target) {
	a, b := tg.annAndBob(t)
	var sh shapes

	if c := a.Tool("exists", map[string]any{"path": "docs/a.txt"}); c.Type != wire.KindJSON {
		t.Fatalf("exists: %+v", c)
	} else {
		exactlyJSON(t, "exists", c, "exists")
	}
	exactlyJSON(t, "stat of a missing file", a.Tool("stat", map[string]any{"path": "docs/a.txt"}), "exists")
	if e := a.upload("docs/a.txt", []byte("hello"), false, nil, &sh); e != nil {
		t.Fatalf("upload: %+v", e)
	}
	b.waitEvent(wire.TypeFileUpdated, "docs/a.txt")
	exactlyJSON(t, "exists", a.Tool("exists", map[string]any{"path": "docs/a.txt"}), "exists")
	st := jsonOf(t, a.Tool("stat", map[string]any{"path": "docs/a.txt"}))
	within(t, "stat", st, "created_at,exists,is_folder,name,size,updated_at")
	if st["exists"] != true || st["size"] != float64(5) {
		t.Errorf("stat: %v", st)
	}
	l := jsonOf(t, a.Tool("list", map[string]any{"path": "docs"}))
	exactly(t, "list", l, "files")
	if files, _ := l["files"].([]any); len(files) != 1 {
		t.Errorf("list: %v", l)
	}
	data, _, e := a.download("docs/a.txt", nil, &sh)
	if e != nil || string(data) != "hello" {
		t.Fatalf("download: %q %+v", data, e)
	}
	exactlyJSON(t, "download_url", a.Tool("download_url", map[string]any{"path": "docs/a.txt"}), "url")
	if c := a.Tool("move", map[string]any{"source_path": "docs/a.txt", "destination_path": "docs/b.txt", "overwrite": false}); c.Type == wire.KindError {
		t.Fatalf("move: %+v", c)
	}
	b.waitEvent(wire.TypeFileMoved, "docs/b.txt")
	if c := a.Tool("delete", map[string]any{"path": "docs/b.txt", "recursive": false}); c.Type == wire.KindError {
		t.Fatalf("delete: %+v", c)
	}
	ev := b.waitEvent(wire.TypeFileDeleted, "docs/b.txt")
	if ev["participant_id"] != a.ID {
		t.Errorf("the deletion names participant %v, want the deleter %s", ev["participant_id"], a.ID)
	}
	// A refused download is an error chunk, not a start.
	if _, _, e := a.download("docs/none.txt", nil, nil); e == nil || e.Code != 404 {
		t.Errorf("download of a missing file: %+v, want error 404", e)
	}

	for _, h := range sh.pulls {
		if _, ok := h["chunk_size"]; ok {
			exactly(t, "an upload pull", h, "chunk_size,kind")
		} else {
			exactly(t, "an upload pull", h, "kind")
		}
	}
	for _, h := range sh.starts {
		exactly(t, "a download start", h, "kind,mime_type,name,size")
	}
	for _, h := range sh.datas {
		exactly(t, "a data chunk", h, "kind")
	}
	if len(sh.pulls) == 0 || len(sh.starts) == 0 || len(sh.datas) == 0 {
		t.Errorf("the session saw %d pulls, %d starts, %d data chunks", len(sh.pulls), len(sh.starts), len(sh.datas))
	}
	if n := len(b.events(t)); n != 3 {
		t.Errorf("bob got %d events, want 3 (updated, moved, deleted)", n)
	}
	a.events(t)
}

// tolerantRequests: every null and unknown field the newest clients send
// is accepted and ignored; recursive: null and download: null are false.
func tolerantRequests(t *testing.T, tg Target) {
	rm := room(t)
	a := tg.dial(t, rm, "ann", "&v=0.56.0")
	if e := a.upload("f/one.txt", []byte("1"), false, map[string]any{"unknown": true, "size": nil}, nil); e != nil {
		t.Fatalf("upload with a null size and an unknown field: %+v", e)
	}
	args := func(m map[string]any) map[string]any {
		m["unknown_field"] = "ignored"
		return m
	}
	for _, c := range []struct {
		tool string
		args map[string]any
		kind string
	}{
		{"exists", args(map[string]any{"path": "f/one.txt"}), wire.KindJSON},
		{"stat", args(map[string]any{"path": "f/one.txt"}), wire.KindJSON},
		{"list", args(map[string]any{"path": "f"}), wire.KindJSON},
		{"download_url", args(map[string]any{"path": "f/one.txt", "download": nil}), wire.KindJSON},
		{"move", args(map[string]any{"source_path": "f/one.txt", "destination_path": "f/two.txt", "overwrite": nil}), ""},
	} {
		if r := a.Tool(c.tool, c.args); r.Type == wire.KindError || (c.kind != "" && r.Type != c.kind) {
			t.Errorf("%s with null and unknown fields: %+v", c.tool, r)
		}
	}
	// recursive: null is false: a folder is not removed by it.
	if r := a.Tool("delete", args(map[string]any{"path": "f", "recursive": nil})); r.Type != wire.KindError {
		t.Errorf("delete of a folder with recursive null: %+v, want a refusal", r)
	}
	if r := a.Tool("delete", args(map[string]any{"path": "f/two.txt", "recursive": nil})); r.Type == wire.KindError {
		t.Errorf("delete with recursive null: %+v", r)
	}
	// download: null makes no attachment URL.
	a.upload("g.txt", []byte("g"), true, nil, nil)
	u, _ := jsonOf(t, a.Tool("download_url", map[string]any{"path": "g.txt", "download": nil}))["url"].(string)
	if strings.Contains(u, "attachment") {
		t.Errorf("download null made an attachment URL: %s", u)
	}
}

// legacy sends a handle-era message and returns its reply.
func (p *Peer) legacy(typ string, body map[string]any, payload []byte) (map[string]any, wire.Content, []byte) {
	p.t.Helper()
	return p.Reply(p.Send(typ, body, payload))
}

// open opens a handle-era handle and returns its id.
func (p *Peer) open(path string, overwrite bool) string {
	p.t.Helper()
	_, c, _ := p.legacy(wire.TypeLegacyOpen, map[string]any{"path": path, "overwrite": overwrite}, nil)
	j := jsonOf(p.t, c)
	exactly(p.t, "storage.open's reply", j, "handle")
	h, ok := j["handle"].(string)
	if !ok || h == "" {
		p.t.Fatalf("storage.open answered %v: want a string handle", j)
	}
	return h
}

// must fails unless c is the reply kind want.
func must(t *testing.T, what string, c wire.Content, want string) {
	t.Helper()
	if c.Type != want {
		t.Fatalf("%s: %+v, want a reply of type %s", what, c, want)
	}
}

// handleEraWorkflow: the seed's example, message by message.
func handleEraWorkflow(t *testing.T, tg Target) {
	rm := room(t)
	a := tg.dial(t, rm, "ann", "&v=0.25.0")
	b := tg.dial(t, rm, "bob", "") // a 0.39 client watching

	_, c, _ := a.legacy(wire.TypeLegacyExists, map[string]any{"path": "notes/hello.txt"}, nil)
	if j := jsonOf(t, c); keys(j) != "exists" || j["exists"] != false {
		t.Fatalf("storage.exists of a new file: %v", j)
	}
	h := a.open("notes/hello.txt", false)
	for _, part := range []string{"Hello, ", "room!"} {
		_, c, _ = a.legacy(wire.TypeLegacyWrite, map[string]any{"handle": h}, []byte(part))
		must(t, "storage.write", c, wire.KindEmpty)
	}
	// Nothing is visible before close, to anyone.
	_, c, _ = a.legacy(wire.TypeLegacyExists, map[string]any{"path": "notes/hello.txt"}, nil)
	if jsonOf(t, c)["exists"] != false {
		t.Errorf("the file is visible before close")
	}
	if j := jsonOf(t, b.Tool("exists", map[string]any{"path": "notes/hello.txt"})); j["exists"] != false {
		t.Errorf("the file is visible to another participant before close")
	}
	raw, c, _ := a.legacy(wire.TypeLegacyClose, map[string]any{"handle": h}, nil)
	must(t, "storage.close", c, wire.KindEmpty)
	exactly(t, "storage.close's reply", raw, "type")
	ev := b.waitEvent(wire.TypeFileUpdated, "notes/hello.txt")
	if ev["participant_id"] != a.ID {
		t.Errorf("the close's event names %v, want the writer %s", ev["participant_id"], a.ID)
	}

	get := func(path string) string {
		t.Helper()
		raw, c, payload := a.legacy(wire.TypeLegacyDownload, map[string]any{"path": path}, nil)
		exactly(t, "storage.download's reply", raw, "mime_type,name,type")
		if c.Type != wire.KindFile || c.Name != "hello.txt" || !strings.HasPrefix(c.MimeType, "text/plain") {
			t.Errorf("storage.download: %v", raw)
		}
		return string(payload)
	}
	if got := get("notes/hello.txt"); got != "Hello, room!" {
		t.Fatalf("downloaded %q", got)
	}
	// open without overwrite appends, as the seed says; with it, replaces.
	h = a.open("notes/hello.txt", false)
	a.legacy(wire.TypeLegacyWrite, map[string]any{"handle": h}, []byte(" Again."))
	_, c, _ = a.legacy(wire.TypeLegacyClose, map[string]any{"handle": h}, nil)
	must(t, "storage.close of an append", c, wire.KindEmpty)
	if got := get("notes/hello.txt"); got != "Hello, room! Again." {
		t.Errorf("after an append: %q", got)
	}
	h = a.open("notes/hello.txt", true)
	a.legacy(wire.TypeLegacyWrite, map[string]any{"handle": h}, []byte("Replaced."))
	a.legacy(wire.TypeLegacyClose, map[string]any{"handle": h}, nil)
	if got := get("notes/hello.txt"); got != "Replaced." {
		t.Errorf("after an overwrite: %q", got)
	}

	_, c, _ = a.legacy(wire.TypeLegacyStat, map[string]any{"path": "notes/hello.txt"}, nil)
	st := jsonOf(t, c)
	exactly(t, "storage.stat's reply", st, "created_at,exists,is_folder,name,updated_at")
	_, c, _ = a.legacy(wire.TypeLegacyList, map[string]any{"path": ""}, nil)
	l := jsonOf(t, c)
	exactly(t, "storage.list's reply", l, "files")
	files, _ := l["files"].([]any)
	if len(files) != 1 {
		t.Fatalf("storage.list of the root: %v", l)
	}
	for _, f := range files {
		e, _ := f.(map[string]any)
		exactly(t, "a storage.list entry", e, "created_at,is_folder,name,updated_at")
		for _, k := range []string{"created_at", "updated_at"} {
			if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(e[k])); err != nil {
				t.Errorf("entry %v: %s is no timestamp: %v", e, k, err)
			}
		}
	}

	_, c, _ = a.legacy(wire.TypeLegacyDownloadURL, map[string]any{"path": "notes/hello.txt"}, nil)
	u := jsonOf(t, c)
	exactly(t, "storage.download_url's reply", u, "url")
	if got := fetch(t, tg, fmt.Sprint(u["url"])); got != "Replaced." {
		t.Errorf("the download URL served %q", got)
	}

	raw, c, _ = a.legacy(wire.TypeLegacyDelete, map[string]any{"path": "notes/hello.txt"}, nil)
	if c.Type != wire.KindJSON || string(c.JSON) != "{}" {
		t.Errorf("storage.delete answered %v, want json {}", raw)
	}
	b.waitEvent(wire.TypeFileDeleted, "notes/hello.txt")
	// A move reaches a handle-era participant as the events its
	// generation knows.
	if e := b.upload("m/src.txt", []byte("m"), true, nil, nil); e != nil {
		t.Fatal(e)
	}
	b.Tool("move", map[string]any{"source_path": "m/src.txt", "destination_path": "m/dst.txt"})
	a.waitEvent(wire.TypeFileDeleted, "m/src.txt")
	if ev := a.waitEvent(wire.TypeFileUpdated, "m/dst.txt"); ev["participant_id"] != b.ID {
		t.Errorf("the move's update names %v, want the mover %s", ev["participant_id"], b.ID)
	}
	for _, e := range a.events(t) {
		if e.typ == wire.TypeFileMoved {
			t.Errorf("a handle-era participant got %s", e.typ)
		}
	}
	b.events(t)
}

// fetch GETs a download URL.
func fetch(t *testing.T, tg Target, u string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tg.HTTPClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", u, resp.Status, b)
	}
	return string(b)
}

// foreignHandle: another connection's handle is refused, and the refusal
// leaves it alone.
func foreignHandle(t *testing.T, tg Target) {
	a, b := tg.annAndBob(t)
	h := a.open("mine.txt", true)
	a.legacy(wire.TypeLegacyWrite, map[string]any{"handle": h}, []byte("ann's"))
	for _, typ := range []string{wire.TypeLegacyWrite, wire.TypeLegacyClose} {
		_, c, _ := b.legacy(typ, map[string]any{"handle": h}, []byte("bob's"))
		if c.Type != wire.KindError || c.Code != 403 || strings.Contains(c.Text, "mine.txt") {
			t.Errorf("%s on another's handle: %+v, want 403 naming no file", typ, c)
		}
	}
	_, c, _ := a.legacy(wire.TypeLegacyClose, map[string]any{"handle": h}, nil)
	must(t, "the owner's close", c, wire.KindEmpty)
	raw, _, payload := a.legacy(wire.TypeLegacyDownload, map[string]any{"path": "mine.txt"}, nil)
	if string(payload) != "ann's" {
		t.Errorf("after another's attempts the file holds %q (%v)", payload, raw)
	}
}

// handleDiesWithConnection: a handle whose connection dropped is gone,
// and its bytes with it.
func handleDiesWithConnection(t *testing.T, tg Target) {
	a, b := tg.annAndBob(t)
	h := a.open("dropped.txt", true)
	a.legacy(wire.TypeLegacyWrite, map[string]any{"handle": h}, []byte("never seen"))
	_ = a.ws.CloseNow()
	// Until the server has noticed, the handle is another's (403); then
	// it is gone (404).
	deadline := time.Now().Add(wait)
	for {
		_, c, _ := b.legacy(wire.TypeLegacyWrite, map[string]any{"handle": h}, []byte("x"))
		if c.Type != wire.KindError || (c.Code != 403 && c.Code != 404) {
			t.Fatalf("write to a dropped connection's handle: %+v", c)
		}
		if c.Code == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dropped connection's handle still lives after %v", wait)
		}
		b.Tool("exists", map[string]any{"path": "dropped.txt"}) // a round trip between tries
	}
	_, c, _ := b.legacy(wire.TypeLegacyExists, map[string]any{"path": "dropped.txt"}, nil)
	if jsonOf(t, c)["exists"] != false {
		t.Errorf("a dropped handle's bytes became visible")
	}
	for _, e := range b.events(t) {
		if e.body["path"] == "dropped.txt" {
			t.Errorf("an event for a dropped handle: %v", e)
		}
	}
}

// handleEraRefusals: a write after close, a handle of the wrong form, an
// invalid path, a missing file, a malformed call.
func handleEraRefusals(t *testing.T, tg Target) {
	rm := room(t)
	a := tg.dial(t, rm, "ann", "")
	h := a.open("sub/in.txt", true)
	a.legacy(wire.TypeLegacyClose, map[string]any{"handle": h}, nil)
	h = a.open("done.txt", true)
	a.legacy(wire.TypeLegacyClose, map[string]any{"handle": h}, nil)
	for _, c := range []struct {
		what    string
		typ     string
		body    map[string]any
		payload []byte
		code    int
	}{
		{"a write after close", wire.TypeLegacyWrite, map[string]any{"handle": h}, []byte("late"), 404},
		{"a close after close", wire.TypeLegacyClose, map[string]any{"handle": h}, nil, 404},
		{"a handle that is a number", wire.TypeLegacyWrite, map[string]any{"handle": 7}, []byte("x"), 400},
		{"a handle of no form", wire.TypeLegacyWrite, map[string]any{"handle": "nope"}, []byte("x"), 400},
		{"an invalid path", wire.TypeLegacyOpen, map[string]any{"path": "../up.txt", "overwrite": true}, nil, 400},
		{"an invalid path", wire.TypeLegacyExists, map[string]any{"path": "a//../b"}, nil, 400},
		{"a missing file", wire.TypeLegacyDownload, map[string]any{"path": "none.txt"}, nil, 404},
		{"a missing path", wire.TypeLegacyStat, map[string]any{}, nil, 400},
		{"a folder", wire.TypeLegacyDownload, map[string]any{"path": "sub"}, nil, 409},
		{"the root", wire.TypeLegacyDownload, map[string]any{"path": ""}, nil, 400},
		{"a folder opened", wire.TypeLegacyOpen, map[string]any{"path": "sub", "overwrite": true}, nil, 409},
	} {
		_, r, _ := a.legacy(c.typ, c.body, c.payload)
		if r.Type != wire.KindError || r.Code != c.code || r.Text == "" || strings.Contains(r.Text, "\n") {
			t.Errorf("%s (%s): %+v, want a one-line error %d", c.what, c.typ, r, c.code)
		}
	}
	_, r, _ := a.legacy(wire.TypeLegacyDownload, map[string]any{"path": "done.txt"}, nil)
	if r.Type != wire.KindFile {
		t.Errorf("the refusals changed what was committed: %+v", r)
	}
	// The connection survived every refusal.
	if r := a.Tool("exists", map[string]any{"path": "done.txt"}); jsonOf(t, r)["exists"] != true {
		t.Errorf("after the refusals: %+v", r)
	}
}

// downloadBound: a handle-era download is one message: a file over the
// server's message bound is refused, pointing to download_url, and a
// write of a message's size goes through.
func downloadBound(t *testing.T, tg Target) {
	rm := room(t)
	a := tg.dial(t, rm, "ann", "")
	big := bytes.Repeat([]byte("0123456789abcdef"), (tg.MaxMessageSize+16)/16)
	h := a.open("big.bin", true)
	half := len(big) / 2
	for _, part := range [][]byte{big[:half], big[half:]} {
		_, c, _ := a.legacy(wire.TypeLegacyWrite, map[string]any{"handle": h}, part)
		must(t, "a write of half a message", c, wire.KindEmpty)
	}
	_, c, _ := a.legacy(wire.TypeLegacyClose, map[string]any{"handle": h}, nil)
	must(t, "close", c, wire.KindEmpty)
	_, c, _ = a.legacy(wire.TypeLegacyDownload, map[string]any{"path": "big.bin"}, nil)
	if c.Type != wire.KindError || c.Code != 413 || !strings.Contains(c.Text, "download_url") {
		t.Errorf("download of %d bytes: %+v, want 413 pointing to download_url", len(big), c)
	}
	_, c, _ = a.legacy(wire.TypeLegacyDownloadURL, map[string]any{"path": "big.bin"}, nil)
	if got := fetch(t, tg, fmt.Sprint(jsonOf(t, c)["url"])); got != string(big) {
		t.Errorf("the download URL served %d bytes, want %d", len(got), len(big))
	}
}

// extensionsOnlyWhenAsked: roomstore's extensions reach a client that
// asks for them, and no other.
func extensionsOnlyWhenAsked(t *testing.T, tg Target) {
	rm := room(t)
	x := tg.dial(t, rm, "ann", "&"+wire.ExtensionsParam+"=1")
	exts, _ := x.Ready["extensions"].([]any)
	if len(exts) == 0 {
		t.Fatalf("room_ready for a client that asked: %v, want its extensions", x.Ready)
	}
	have := map[string]bool{}
	for _, e := range exts {
		have[fmt.Sprint(e)] = true
	}
	if e := x.upload("r.txt", []byte("0123456789"), true, nil, nil); e != nil {
		t.Fatal(e)
	}
	if have[wire.ExtVersion] {
		_, h, _ := x.download("r.txt", nil, nil)
		for _, k := range []string{"etag", "updated_at", "chunk_size"} {
			if _, ok := h[k]; !ok {
				t.Errorf("a download start for a client that asked has no %s: %v", k, h)
			}
		}
	}
	if have[wire.ExtRange] {
		got, h, e := x.download("r.txt", map[string]any{"offset": 2, "length": 5}, nil)
		if e != nil || string(got) != "23456" || h["size"] != float64(5) || h["total_size"] != float64(10) {
			t.Errorf("a range: %q %v %+v", got, h, e)
		}
	}
	if have[wire.ExtAppend] {
		if e := x.upload("r.txt", []byte("+"), false, map[string]any{"append": true}, nil); e != nil {
			t.Errorf("an append: %+v", e)
		}
		if got, _, _ := x.download("r.txt", nil, nil); string(got) != "0123456789+" {
			t.Errorf("after an append: %q", got)
		}
	}
	// Without asking: exactly the protocol's fields (toolkitSession checks
	// the rest), and an exclusive upload is still refused.
	p := tg.dial(t, rm, "bob", "")
	if _, ok := p.Ready["extensions"]; ok {
		t.Errorf("room_ready for a client that did not ask: %v", p.Ready)
	}
	if e := p.upload("r.txt", []byte("x"), false, nil, nil); e == nil || e.Code != 409 {
		t.Errorf("an upload without overwrite onto a file: %+v, want 409", e)
	}
}

// resumeAfterAPosition: a server that names the resume extension gives
// a client that asked for the extensions the position of each event and
// of its stream's start (room_ready's "position"); a client that comes
// back with roomstore_after set to one gets every event after it, once,
// in order, before any live one; one with a position the server cannot
// resume from gets one storage.events.overflow, naming where its stream
// goes on, before any event; a malformed position is refused with 400;
// and a client that did not ask for the extensions sends it in vain.
func resumeAfterAPosition(t *testing.T, tg Target) {
	rm := room(t)
	ext := "&" + wire.ExtensionsParam + "=1"
	after := func(p string) string { return ext + "&" + wire.AfterParam + "=" + url.QueryEscape(p) }
	x := tg.dial(t, rm, "ann", ext)
	exts, _ := x.Ready["extensions"].([]any)
	named := false
	for _, e := range exts {
		named = named || e == wire.ExtResume
	}
	if !named {
		return // the extension is the server's choice
	}
	start, _ := x.Ready["position"].(string)
	if start == "" {
		t.Fatalf("room_ready for a client that asked: %v, want its position", x.Ready)
	}
	pos := map[string]string{} // path -> the position of its event
	put := func(path string) {
		t.Helper()
		if e := x.upload(path, []byte(path), false, nil, nil); e != nil {
			t.Fatalf("upload %s: %+v", path, e)
		}
		ev := x.waitEvent(wire.TypeFileUpdated, path)
		within(t, wire.TypeFileUpdated, ev, "participant_id,participant_name,path,position")
		p, _ := ev["position"].(string)
		if p == "" || p == start {
			t.Fatalf("the event of %s has position %q: want one of its own", path, p)
		}
		pos[path] = p
	}
	// files returns the paths of the file events p got before (and
	// including) the one of last, in order.
	files := func(p *Peer, last string) []string {
		t.Helper()
		p.waitEvent(wire.TypeFileUpdated, last)
		var got []string
		for _, m := range p.seen {
			switch m.Type {
			case wire.TypeFileUpdated:
				ev := p.object(m)
				path, _ := ev["path"].(string)
				if ev["position"] != pos[path] {
					t.Errorf("the event of %s has position %v, want %q as the writer was told", path, ev["position"], pos[path])
				}
				got = append(got, path)
			case wire.TypeEventsOverflow:
				got = append(got, "overflow")
			}
		}
		return got
	}
	for _, f := range []string{"a", "b", "c"} {
		put(f)
	}

	y := tg.dial(t, rm, "ann", after(pos["a"]))
	z := tg.dial(t, rm, "ann", after(start))
	put("d")
	if got := fmt.Sprint(files(y, "d")); got != "[b c d]" {
		t.Errorf("resumed after a: %s, want [b c d]", got)
	}
	if got := fmt.Sprint(files(z, "d")); got != "[a b c d]" {
		t.Errorf("resumed from the start: %s, want [a b c d]", got)
	}

	foreign := tg.dial(t, rm, "ann", after("elsewhere.1"))
	ov := foreign.object(foreign.Until(func(m *wire.Message) bool { return m.Type == wire.TypeEventsOverflow }))
	if ov["position"] != foreign.Ready["position"] {
		t.Errorf("the overflow for a foreign position says %v, want the stream's start %v", ov, foreign.Ready["position"])
	}
	put("e")
	if got := fmt.Sprint(files(foreign, "e")); got != "[overflow e]" {
		t.Errorf("resumed at a foreign position: %s, want [overflow e]", got)
	}

	u := tg.URL + "/rooms/" + rm
	if _, resp, err := dial(t, u, DialOptions{Query: "?token=" + tg.Token(rm, "ann") + after("not a position")}); err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a malformed position: %v (%v), want 400", err, resp)
	}
	strict := tg.dial(t, rm, "bob", "&"+wire.AfterParam+"="+url.QueryEscape(pos["a"]))
	exactly(t, "room_ready", strict.Ready, "room_name,room_url,session_id")
	put("f")
	strict.waitEvent(wire.TypeFileUpdated, "f")
	if evs := strict.events(t); len(evs) != 1 {
		t.Errorf("a client that did not ask for the extensions got %v, want the live event alone", evs)
	}
}

// jsonOf decodes a json reply's object, failing on any other reply.
func jsonOf(t *testing.T, c wire.Content) map[string]any {
	t.Helper()
	if c.Type != wire.KindJSON {
		t.Fatalf("want a json reply, got %+v", c)
	}
	var v map[string]any
	if err := json.Unmarshal(c.JSON, &v); err != nil {
		t.Fatalf("json reply %s: %v", c.JSON, err)
	}
	return v
}

// exactlyJSON checks a json reply's fields.
func exactlyJSON(t *testing.T, what string, c wire.Content, want string) {
	t.Helper()
	exactly(t, what, jsonOf(t, c), want)
}

// within fails if v has a field outside allowed (comma separated).
func within(t *testing.T, what string, v map[string]any, allowed string) {
	t.Helper()
	ok := map[string]bool{}
	for _, k := range strings.Split(allowed, ",") {
		ok[k] = true
	}
	for k := range v {
		if !ok[k] {
			t.Errorf("%s has the field %q, outside %q: %v", what, k, allowed, v)
		}
	}
}
