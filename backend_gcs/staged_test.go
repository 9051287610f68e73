package backend_gcs

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/roomstore/roomstore/backend"
)

// A staged upload's commit composes its parts on the server, in rounds
// of temporaries past 32 parts, and reads none of them back: 40 parts
// make the file, the bytes in order, and nothing of the upload or of the
// rounds is left.
func TestAStagedUploadIsComposedOnTheServer(t *testing.T) {
	s := newStore(t, "", "p")
	const id = "DDDDDDDDDDDDDDDDDDDDDD"
	var mu sync.Mutex
	var composes, reads int
	// Last: the hooked client's requests went through the default
	// transport, whose idle connections would outlive the test.
	t.Cleanup(http.DefaultTransport.(*http.Transport).CloseIdleConnections)
	watched := *s
	watched.client = hookedClient(t, s.endpoint, func(r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/compose"):
			composes++
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/uploads/"+id+"/p/"):
			reads++ // a part's object, read (a listing's path ends at /o)
		}
	})
	b, err := New(watched.client, s.bucket, "p", WithChunkSize(testChunk), WithURLEndpoint(s.endpoint))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := b.Stage(ctx, id, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	var want []byte
	for i := range 40 {
		line := fmt.Appendf(nil, "part %02d\n", i)
		if n, err := b.AppendStaged(ctx, id, int64(len(want)), bytes.NewReader(line)); err != nil || n != int64(len(line)) {
			t.Fatalf("AppendStaged %d = %d, %v", i, n, err)
		}
		want = append(want, line...)
	}
	mu.Lock()
	reads = 0
	mu.Unlock()
	info, err := b.CommitStaged(ctx, id, "f.txt", backend.WriteOptions{Exclusive: true})
	if err != nil || info.Size != int64(len(want)) {
		t.Fatalf("CommitStaged = %+v, %v", info, err)
	}
	mu.Lock()
	if composes != 3 || reads != 0 {
		t.Errorf("the commit made %d composes and read %d parts, want 3 (two rounds, then the file) and none", composes, reads)
	}
	mu.Unlock()
	r, _, err := s.Read(ctx, "f.txt", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the file holds %q (%v), want %q", got, err, want)
	}
	if got := s.objects(t); len(got) != 1 || got[0] != "p/f.txt" {
		t.Fatalf("objects after the commit: %q, want only the file", got)
	}
	if _, err := b.CommitStaged(ctx, id, "f.txt", backend.WriteOptions{}); err == nil {
		t.Fatal("a second commit of the upload succeeded")
	}
}
