package roomserver_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore/internal/wire"
	"github.com/roomstore/roomstore/roomserver"
)

// legacy sends a handle-era message and returns its id.
func (r *raw) legacy(typ string, body map[string]any, payload []byte) uint64 {
	r.t.Helper()
	return r.request(typ, body, payload)
}

// handle opens a handle-era handle on p and returns its id.
func (r *raw) handle(p string, overwrite bool) string {
	r.t.Helper()
	c := r.response(r.legacy(wire.TypeLegacyOpen, map[string]any{"path": p, "overwrite": overwrite}, nil))
	var v struct {
		Handle string `json:"handle"`
	}
	if c.Type != wire.KindJSON || json.Unmarshal(c.JSON, &v) != nil || v.Handle == "" {
		r.t.Fatalf("storage.open %s: %+v", p, c)
	}
	return v.Handle
}

// openFiles counts this process's descriptors open on files under dir.
func openFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(target, dir+"/") {
			n++
		}
	}
	return n
}

// A participant that asks for many handle-era downloads and reads none
// holds no descriptor for them: each takes its place in the send buffer
// before its file is opened, and is read whole and closed at once.
func TestHandleEraDownloadsHoldNoDescriptorsWhileTheyWait(t *testing.T) {
	d := newDiskRooms(t, nil)
	p := d.f.dial("r1", "reader")
	h := p.handle("big.bin", true)
	big := bytes.Repeat([]byte("x"), 3<<20)
	if c := p.response(p.legacy(wire.TypeLegacyWrite, map[string]any{"handle": h}, big)); c.Type != wire.KindEmpty {
		t.Fatalf("write: %+v", c)
	}
	if c := p.response(p.legacy(wire.TypeLegacyClose, map[string]any{"handle": h}, nil)); c.Type != wire.KindEmpty {
		t.Fatalf("close: %+v", c)
	}
	h = p.handle("small.txt", true)
	p.response(p.legacy(wire.TypeLegacyWrite, map[string]any{"handle": h}, []byte("small")))
	if c := p.response(p.legacy(wire.TypeLegacyClose, map[string]any{"handle": h}, nil)); c.Type != wire.KindEmpty {
		t.Fatalf("close: %+v", c)
	}
	base := openFiles(t, d.dir) // the engine's own: its folders
	const asked = 32            // MaxRequests: every one of them runs
	for i := range asked {
		name := "big.bin"
		if i%2 == 1 {
			name = "small.txt"
		}
		p.legacy(wire.TypeLegacyDownload, map[string]any{"path": name}, nil)
	}
	// Whatever the server does with them, it holds a handful of the
	// room's files open at most, and none once they wait.
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := openFiles(t, d.dir) - base
		if n <= 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the room's files are open while %d downloads wait for an idle reader", n, asked)
		}
		time.Sleep(10 * time.Millisecond) // polling a count the kernel keeps, bounded by the deadline
	}
	// Every download comes once the participant reads.
	sizes := map[int]int{}
	for range asked {
		m := p.until(func(m *wire.Message) bool { return m.Type == wire.TypeResponse })
		_, payload, err := m.Split()
		if err != nil {
			t.Fatal(err)
		}
		sizes[len(payload)]++
	}
	if sizes[len(big)] != asked/2 || sizes[len("small")] != asked/2 {
		t.Fatalf("downloads by size: %v", sizes)
	}
}

// Handle-era calls sent back to back, without waiting for their answers,
// run in the order they came and all succeed.
func TestHandleEraCallsSentAtOnceRunInOrder(t *testing.T) {
	f := newFixture(t, nil)
	p := f.dial("r1", "ann")
	for round := range 50 {
		h := p.handle("f.txt", true)
		ids := []uint64{
			p.legacy(wire.TypeLegacyWrite, map[string]any{"handle": h}, bytes.Repeat([]byte("a"), 256<<10)),
			p.legacy(wire.TypeLegacyWrite, map[string]any{"handle": h}, []byte("b")),
			p.legacy(wire.TypeLegacyWrite, map[string]any{"handle": h}, []byte("c")),
			p.legacy(wire.TypeLegacyClose, map[string]any{"handle": h}, nil),
		}
		for i, id := range ids {
			if c := p.response(id); c.Type != wire.KindEmpty {
				t.Fatalf("round %d, call %d: %+v", round, i, c)
			}
		}
	}
	file, err := f.engine("r1").Download(t.Context(), "f.txt")
	if err != nil || len(file.Data) != 256<<10+2 || !strings.HasSuffix(string(file.Data), "abc") {
		t.Fatalf("the file holds %d bytes ending %q, %v", len(file.Data), file.Data[max(0, len(file.Data)-3):], err)
	}
}

// A handle-era handle gives back its budgets before its close is
// answered: with one stream of the server's and one of the connection's,
// a participant opens the next handle as soon as it has that answer.
func TestHandleEraClosedHandleHoldsNoBudget(t *testing.T) {
	f := newFixture(t, func(o *roomserver.Options) { o.MaxOpenStreams, o.MaxStreams = 1, 1 })
	p := f.dial("r1", "ann")
	for round := range 200 {
		h := p.handle("f.txt", round%2 == 0)
		for i, id := range []uint64{
			p.legacy(wire.TypeLegacyWrite, map[string]any{"handle": h}, []byte("ab")),
			p.legacy(wire.TypeLegacyClose, map[string]any{"handle": h}, nil),
		} {
			if c := p.response(id); c.Type != wire.KindEmpty {
				t.Fatalf("round %d, call %d: %+v", round, i, c)
			}
		}
	}
	// Rounds alternate overwrite and append: the last (199) appended to
	// what round 198 wrote.
	file, err := f.engine("r1").Download(t.Context(), "f.txt")
	if err != nil || string(file.Data) != "abab" {
		t.Fatalf("the file holds %q, %v; want abab", file.Data, err)
	}
}

// Shutdown lets a handle-era handle finish, as it lets uploads: its
// writes and its close are served while new calls are refused.
func TestShutdownLetsHandlesFinish(t *testing.T) {
	d := newDiskRooms(t, nil)
	f := d.f
	p := f.dial("r1", "alice")
	h := p.handle("whole.txt", true)
	if c := p.response(p.legacy(wire.TypeLegacyWrite, map[string]any{"handle": h}, []byte("all "))); c.Type != wire.KindEmpty {
		t.Fatalf("write: %+v", c)
	}
	done := f.shutdownRefusing(p)
	if c := p.response(p.legacy(wire.TypeLegacyWrite, map[string]any{"handle": h}, []byte("of it"))); c.Type != wire.KindEmpty {
		t.Fatalf("a write during Shutdown: %+v", c)
	}
	if c := p.response(p.legacy(wire.TypeLegacyClose, map[string]any{"handle": h}, nil)); c.Type != wire.KindEmpty {
		t.Fatalf("the close during Shutdown: %+v", c)
	}
	shutdownEnds(t, p, done)
	if b, err := os.ReadFile(filepath.Join(d.dir, "r1", "whole.txt")); err != nil || string(b) != "all of it" {
		t.Fatalf("after Shutdown the file holds %q, %v", b, err)
	}
}
