package roomstore_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_mem"
)

// readCounting counts the reads of its backend.
type readCounting struct {
	backend.Backend
	reads atomic.Int64
}

func (r *readCounting) Read(ctx context.Context, p string, off, n int64) (io.ReadCloser, backend.Info, error) {
	r.reads.Add(1)
	return r.Backend.Read(ctx, p, off, n)
}

// A request for tens of thousands of ranges costs what one for a few
// does: overlapping and adjacent ranges are merged, and past 16 the
// Range header is ignored and the file served whole, in one read.
func TestManyRangesCostOneRead(t *testing.T) {
	b := &readCounting{Backend: backend_mem.New()}
	e, err := roomstore.New(b)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	data := strings.Repeat("0123456789", 20_000) // 200,000 bytes
	if _, err := e.Upload(t.Context(), "f.bin", strings.NewReader(data), roomstore.OpenOptions{}); err != nil {
		t.Fatal(err)
	}
	ranges := func(n int, spec func(i int) string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = spec(i)
		}
		return "bytes=" + strings.Join(parts, ",")
	}
	for _, c := range []struct {
		name, rng string
		code      int
		body      string
		reads     int64
		multipart bool
	}{
		{"60,000 disjoint ranges: the whole file", ranges(60_000, func(i int) string { return fmt.Sprintf("%d-%d", 3*i, 3*i) }), 200, data, 1, false},
		{"60,000 overlapping ranges: one", ranges(60_000, func(i int) string { return fmt.Sprintf("%d-%d", i%10, 10+i%10) }), 206, data[:20], 1, false},
		{"60,000 adjacent ranges: one", ranges(60_000, func(i int) string { return fmt.Sprintf("%d-%d", i, i) }), 206, data[:60_000], 1, false},
		{"60,000 disjoint ranges with blanks: the whole file", ranges(60_000, func(i int) string { return fmt.Sprintf(" %d -%d", 3*i, 3*i) }), 200, data, 1, false},
		{"60,000 disjoint ranges after an empty one: the whole file", "bytes=," + strings.TrimPrefix(ranges(60_000, func(i int) string { return fmt.Sprintf("%d-%d", 3*i, 3*i) }), "bytes="), 200, data, 1, false},
		{"60,000 ranges, one unreadable: the whole file", ranges(60_000, func(i int) string { return fmt.Sprintf("%d-%d", 3*i, 3*i) }) + ",x-y", 200, data, 1, false},
		{"3 disjoint ranges: as asked", "bytes=0-1,10-11,20-21", 206, "", 3, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := b.reads.Load()
			r := httptest.NewRequest(http.MethodGet, "/f.bin", nil)
			r.Header.Set("Range", c.rng)
			w := httptest.NewRecorder()
			e.ServeFile(w, r, "f.bin")
			if w.Code != c.code {
				t.Fatalf("status %d, want %d", w.Code, c.code)
			}
			if ct := w.Header().Get("Content-Type"); c.multipart != strings.HasPrefix(ct, "multipart/byteranges") {
				t.Fatalf("Content-Type %q", ct)
			}
			if !c.multipart && w.Body.String() != c.body {
				t.Fatalf("body of %d bytes, want %d", w.Body.Len(), len(c.body))
			}
			if got := b.reads.Load() - before; got != c.reads {
				t.Fatalf("%d reads of the store, want %d", got, c.reads)
			}
		})
	}
}
