package protocoltest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/roomstore/roomstore/internal/wire"
)

// named reports whether the server named extension ext in p's room_ready.
func (p *Peer) named(ext string) bool {
	exts, _ := p.Ready["extensions"].([]any)
	for _, e := range exts {
		if e == ext {
			return true
		}
	}
	return false
}

// refused fails unless c is a one-line error reply of code.
func refused(t *testing.T, what string, c *wire.Content, code int) {
	t.Helper()
	if c == nil || c.Type != wire.KindError || c.Code != code || c.Text == "" || strings.Contains(c.Text, "\n") {
		t.Errorf("%s: %+v, want a one-line error %d", what, c, code)
	}
}

// refusal is the error reply of a simple call, nil for any other.
func refusal(c wire.Content) *wire.Content {
	if c.Type == wire.KindError {
		return &c
	}
	return nil
}

// etagOf is the etag of path in a stat reply of a client that asked for
// the extensions, whose fields are the protocol's and etag.
func etagOf(t *testing.T, p *Peer, path string) string {
	t.Helper()
	st := jsonOf(t, p.Tool("stat", map[string]any{"path": path}))
	exactly(t, "the stat of a client that asked for preconditions", st, "created_at,etag,exists,is_folder,name,size,updated_at")
	e, _ := st["etag"].(string)
	if e == "" {
		t.Fatalf("stat of %s: %v, want its etag", path, st)
	}
	return e
}

// preconditionsWhenAsked: a server that names the preconditions
// extension gives a client that asked for it the ETag in stat, and
// honours if_match and if_none_match on the calls that change a file:
// a change whose precondition fails is an error 412 and changes
// nothing, one whose precondition holds happens; a participant that did
// not ask sees the changes that happened, in the protocol's fields.
func preconditionsWhenAsked(t *testing.T, tg Target) {
	rm := room(t)
	x := tg.dial(t, rm, "ann", "&"+wire.ExtensionsParam+"=1")
	if !x.named(wire.ExtPreconditions) {
		return // the extension is the server's choice
	}
	b := tg.dial(t, rm, "bob", "")
	if e := x.upload("p.txt", []byte("one"), true, nil, nil); e != nil {
		t.Fatal(e)
	}
	e1 := etagOf(t, x, "p.txt")
	if e := x.upload("p.txt", []byte("two"), true, map[string]any{"if_match": e1}, nil); e != nil {
		t.Fatalf("an upload whose if_match holds: %+v", e)
	}
	e2 := etagOf(t, x, "p.txt")
	if e2 == e1 {
		t.Fatalf("the etag did not change with the content: %q", e2)
	}
	refused(t, "an upload with the if_match of a past version", x.upload("p.txt", []byte("lost"), true, map[string]any{"if_match": e1}, nil), 412)
	refused(t, `an upload with if_none_match "*" onto a file`, x.upload("p.txt", []byte("lost"), true, map[string]any{"if_none_match": "*"}, nil), 412)
	refused(t, "an upload with the if_none_match of the current version", x.upload("p.txt", []byte("lost"), true, map[string]any{"if_none_match": e2}, nil), 412)
	refused(t, "an upload whose if_match is no string", x.upload("p.txt", []byte("lost"), true, map[string]any{"if_match": 7}, nil), 400)
	refused(t, "a delete with the if_match of a past version", refusal(x.Tool("delete", map[string]any{"path": "p.txt", "recursive": false, "if_match": e1})), 412)
	refused(t, "a recursive delete with the if_match of a past version", refusal(x.Tool("delete", map[string]any{"path": "p.txt", "recursive": true, "if_match": e1})), 412)
	refused(t, "a move with the if_match of a past version", refusal(x.Tool("move", map[string]any{"source_path": "p.txt", "destination_path": "q.txt", "overwrite": false, "if_match": e1})), 412)
	if got, _, _ := x.download("p.txt", nil, nil); string(got) != "two" {
		t.Fatalf("after refused changes p.txt holds %q", got)
	}
	if c := x.Tool("move", map[string]any{"source_path": "p.txt", "destination_path": "q.txt", "overwrite": false, "if_match": e2}); c.Type == wire.KindError {
		t.Fatalf("a move whose if_match holds: %+v", c)
	}
	if c := x.Tool("delete", map[string]any{"path": "q.txt", "recursive": false, "if_match": e2}); c.Type == wire.KindError {
		t.Fatalf("a delete whose if_match holds: %+v", c)
	}
	if e := x.upload("p.txt", []byte("new"), true, map[string]any{"if_none_match": "*"}, nil); e != nil {
		t.Fatalf(`an upload with if_none_match "*" where no file is: %+v`, e)
	}
	b.waitEvent(wire.TypeFileUpdated, "p.txt")
	b.waitEvent(wire.TypeFileUpdated, "p.txt")
	b.waitEvent(wire.TypeFileMoved, "q.txt")
	b.waitEvent(wire.TypeFileDeleted, "q.txt")
	b.waitEvent(wire.TypeFileUpdated, "p.txt")
	// Five changes happened, and nothing else.
	if evs := b.events(t); len(evs) != 5 {
		t.Errorf("the participant that did not ask got %d events, want 5: %v", len(evs), evs)
	}
}

// historyWhenAsked: a server that names the history extension lists a
// file's past versions (versions), streams one (a download start with
// version), restores one (restore, one storage.file.updated), lists the
// deleted files of a folder (deleted) and restores them (restore_all),
// each reply with exactly its fields.
func historyWhenAsked(t *testing.T, tg Target) {
	rm := room(t)
	x := tg.dial(t, rm, "ann", "&"+wire.ExtensionsParam+"=1")
	if !x.named(wire.ExtHistory) {
		return
	}
	b := tg.dial(t, rm, "bob", "")
	if e := x.upload("h.txt", []byte("one"), true, nil, nil); e != nil {
		t.Fatal(e)
	}
	var first string
	if x.named(wire.ExtPreconditions) {
		first = etagOf(t, x, "h.txt")
	}
	if e := x.upload("h.txt", []byte("second"), true, nil, nil); e != nil {
		t.Fatal(e)
	}
	versions := func(tool, path string) []map[string]any {
		t.Helper()
		j := jsonOf(t, x.Tool(tool, map[string]any{"path": path}))
		exactly(t, tool+"'s reply", j, "versions")
		list, _ := j["versions"].([]any)
		out := make([]map[string]any, len(list))
		for i, v := range list {
			out[i], _ = v.(map[string]any)
			exactly(t, "a version", out[i], "etag,id,modified_at,participant_id,path,reason,replaced_at,size")
		}
		return out
	}
	vs := versions("versions", "h.txt")
	if len(vs) != 1 {
		t.Fatalf("versions after two saves: %v, want one", vs)
	}
	v := vs[0]
	id, _ := v["id"].(string)
	if id == "" || v["path"] != "h.txt" || v["size"] != float64(3) || v["reason"] != "overwritten" || v["participant_id"] != x.ID || (first != "" && v["etag"] != first) {
		t.Errorf("the past version: %v, want h.txt's first, 3 bytes, overwritten by %s", v, x.ID)
	}
	got, h, e := x.download("h.txt", map[string]any{"version": id}, nil)
	if e != nil || string(got) != "one" || h["size"] != float64(3) || h["name"] != "h.txt" || (x.named(wire.ExtVersion) && h["etag"] != v["etag"]) {
		t.Fatalf("a download of the version: %q %v %+v", got, h, e)
	}
	_, _, e = x.download("h.txt", map[string]any{"version": id, "offset": 1}, nil)
	refused(t, "a download of a version from an offset", e, 400)
	_, _, e = x.download("h.txt", map[string]any{"version": "no-such-version"}, nil)
	refused(t, "a download of an unknown version", e, 404)

	r := jsonOf(t, x.Tool("restore", map[string]any{"path": "h.txt", "version": id}))
	exactly(t, "restore's reply", r, "created_at,etag,is_folder,name,path,size,updated_at")
	if r["path"] != "h.txt" || r["name"] != "h.txt" || r["size"] != float64(3) || r["is_folder"] != false || r["etag"] == "" || r["etag"] == v["etag"] {
		t.Errorf("restore's reply: %v", r)
	}
	if got, _, _ := x.download("h.txt", nil, nil); string(got) != "one" {
		t.Fatalf("after the restore h.txt holds %q", got)
	}
	refused(t, "restore of an unknown version", refusal(x.Tool("restore", map[string]any{"path": "h.txt", "version": "no-such-version"})), 404)
	refused(t, "restore of a bad version id", refusal(x.Tool("restore", map[string]any{"path": "h.txt", "version": "../x"})), 400)
	refused(t, "restore without a version", refusal(x.Tool("restore", map[string]any{"path": "h.txt"})), 400)
	refused(t, "versions of a path that never held a file", refusal(x.Tool("versions", map[string]any{"path": "never.txt"})), 404)
	refused(t, "versions without a path", refusal(x.Tool("versions", map[string]any{})), 400)

	if c := x.Tool("delete", map[string]any{"path": "h.txt", "recursive": false}); c.Type == wire.KindError {
		t.Fatal(c)
	}
	gone := versions("deleted", "")
	if len(gone) != 1 || gone[0]["path"] != "h.txt" || gone[0]["reason"] != "deleted" {
		t.Fatalf("deleted of the room: %v", gone)
	}
	all := jsonOf(t, x.Tool("restore_all", map[string]any{"path": ""}))
	exactly(t, "restore_all's reply", all, "files")
	files, _ := all["files"].([]any)
	if len(files) != 1 {
		t.Fatalf("restore_all of the room: %v", all)
	}
	f, _ := files[0].(map[string]any)
	exactly(t, "a file restore_all restored", f, "created_at,etag,is_folder,name,path,size,updated_at")
	if f["path"] != "h.txt" || f["size"] != float64(3) {
		t.Errorf("restore_all restored %v", f)
	}
	if got := versions("deleted", ""); len(got) != 0 {
		t.Errorf("deleted after restore_all: %v", got)
	}
	// Two saves, a restore, a delete, a restore_all: five events, in the
	// protocol's fields, for the participant that did not ask, each
	// naming the participant that made the change.
	for range 4 {
		b.waitEvent(wire.TypeFileUpdated, "h.txt")
	}
	b.waitEvent(wire.TypeFileDeleted, "h.txt")
	evs := b.events(t)
	var kinds []string
	for _, ev := range evs {
		kinds = append(kinds, ev.typ)
		if ev.body["participant_id"] != x.ID || ev.body["path"] != "h.txt" {
			t.Errorf("an event %s %v, want one of h.txt by %s", ev.typ, ev.body, x.ID)
		}
	}
	u, d := wire.TypeFileUpdated, wire.TypeFileDeleted
	if fmt.Sprint(kinds) != fmt.Sprint([]string{u, u, u, d, u}) {
		t.Errorf("the participant that did not ask got %v, want updated three times, deleted, updated", kinds)
	}
}

// noTraceWithoutExtensions: a client that did not ask for roomstore's
// extensions sees none of what preconditions and history add, even
// while another participant uses them: its room_ready names nothing,
// its stat carries no etag, the history's tools are unknown to it as
// any tool the server lacks, and its events and stream headers have
// exactly the protocol's fields.
func noTraceWithoutExtensions(t *testing.T, tg Target) {
	rm := room(t)
	p := tg.dial(t, rm, "bob", "")
	x := tg.dial(t, rm, "ann", "&"+wire.ExtensionsParam+"=1")
	exactly(t, "room_ready", p.Ready, "room_name,room_url,session_id")
	var sh shapes
	for _, data := range []string{"one", "second"} {
		if e := p.upload("n.txt", []byte(data), true, nil, &sh); e != nil {
			t.Fatal(e)
		}
	}
	exactlyJSON(t, "stat", p.Tool("stat", map[string]any{"path": "n.txt"}), "created_at,exists,is_folder,name,size,updated_at")
	unknown := p.Tool("no_such_tool", map[string]any{"path": "n.txt"})
	if unknown.Type != wire.KindError {
		t.Fatalf("an unknown tool: %+v", unknown)
	}
	for _, tool := range []string{"versions", "restore", "deleted", "restore_all"} {
		c := p.Tool(tool, map[string]any{"path": "n.txt", "version": "v"})
		want := strings.ReplaceAll(unknown.Text, "no_such_tool", tool)
		if c.Type != wire.KindError || c.Code != unknown.Code || c.Text != want {
			t.Errorf("%s from a client that did not ask: %+v, want what any unknown tool gets: %d %q", tool, c, unknown.Code, want)
		}
	}
	// Another participant restores: this one gets a plain update.
	if x.named(wire.ExtHistory) {
		j := jsonOf(t, x.Tool("versions", map[string]any{"path": "n.txt"}))
		list, _ := j["versions"].([]any)
		if len(list) == 0 {
			t.Fatalf("versions: %v", j)
		}
		v, _ := list[0].(map[string]any)
		if c := x.Tool("restore", map[string]any{"path": "n.txt", "version": v["id"]}); c.Type == wire.KindError {
			t.Fatalf("restore: %+v", c)
		}
		p.waitEvent(wire.TypeFileUpdated, "n.txt")
		p.waitEvent(wire.TypeFileUpdated, "n.txt")
		p.waitEvent(wire.TypeFileUpdated, "n.txt")
	}
	if _, _, e := p.download("n.txt", nil, &sh); e != nil {
		t.Fatal(e)
	}
	for _, h := range sh.starts {
		exactly(t, "a download start", h, "kind,mime_type,name,size")
	}
	for _, h := range sh.datas {
		exactly(t, "a data chunk", h, "kind")
	}
	for _, h := range sh.pulls {
		if _, ok := h["chunk_size"]; ok {
			exactly(t, "an upload pull", h, "chunk_size,kind")
		} else {
			exactly(t, "an upload pull", h, "kind")
		}
	}
	for _, e := range p.events(t) {
		if e.typ != wire.TypeFileUpdated {
			t.Errorf("an event %s: %v", e.typ, e.body)
		}
	}
	for _, m := range p.seen {
		if m.Type != wire.TypeResponse && m.Type != wire.TypeResponseChunk && m.Type != wire.TypeRoomReady && m.Type != wire.TypeConnected && m.Type != wire.TypeFileUpdated {
			t.Errorf("a message %s for a client that did not ask", m.Type)
		}
	}
}
