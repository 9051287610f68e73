package backend_gcs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/testserver"
	"github.com/roomstore/roomstore/roompath"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
)

// testChunk is the smallest chunk the SDK allows (it rounds up to 256 KiB),
// so that size cases cross chunk boundaries with small files.
const testChunk = 256 << 10

// store is one Backend over a fresh bucket of a fake-gcs-server, with the
// raw client for looking behind the backend's back.
type store struct {
	*Backend
	endpoint string
	client   *storage.Client
	bucket   string
}

// newServer starts a fake-gcs-server owned by t.
func newServer(t *testing.T) string {
	t.Helper()
	return testserver.StartFakeGCS(t)
}

// newStore returns a Backend over a fresh bucket on the server at endpoint
// (a new server when endpoint is empty).
func newStore(t *testing.T, endpoint string, prefix string, opts ...Option) *store {
	t.Helper()
	if endpoint == "" {
		endpoint = newServer(t)
	}
	bucket := testserver.NewFakeGCSBucket(t, endpoint)
	client := testserver.FakeGCSClient(t, endpoint)
	opts = append([]Option{WithChunkSize(testChunk), WithURLEndpoint(endpoint)}, opts...)
	b, err := New(client, bucket, prefix, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &store{Backend: b, endpoint: endpoint, client: client, bucket: bucket}
}

// reopen returns a second Backend over the same bucket and prefix with its
// own client, as another process would have.
func (s *store) reopen(t *testing.T, opts ...Option) *store {
	t.Helper()
	client := testserver.FakeGCSClient(t, s.endpoint)
	opts = append([]Option{WithChunkSize(testChunk), WithURLEndpoint(s.endpoint)}, opts...)
	b, err := New(client, s.bucket, s.prefix, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &store{Backend: b, endpoint: s.endpoint, client: client, bucket: s.bucket}
}

// hookedClient returns a storage client for the server at endpoint that
// calls before with each HTTP request it is about to send.
func hookedClient(t *testing.T, endpoint string, before func(*http.Request)) *storage.Client {
	t.Helper()
	return clientWith(t, endpoint, roundTripper(func(r *http.Request) (*http.Response, error) {
		before(r)
		return http.DefaultTransport.RoundTrip(r)
	}))
}

// clientWith returns a storage client for the server at endpoint that
// sends its requests through rt. It is closed when t ends.
func clientWith(t *testing.T, endpoint string, rt http.RoundTripper) *storage.Client {
	t.Helper()
	c, err := storage.NewClient(context.Background(),
		option.WithEndpoint(endpoint+"/storage/v1/"),
		option.WithHTTPClient(&http.Client{Transport: rt}),
		storage.WithDisabledClientMetrics(),
	)
	if err != nil {
		t.Fatalf("storage client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// objects lists every object name in the bucket, reserved ones included.
func (s *store) objects(t *testing.T) []string {
	t.Helper()
	var names []string
	it := s.client.Bucket(s.bucket).Objects(t.Context(), nil)
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatalf("list bucket: %v", err)
		}
		names = append(names, a.Name)
	}
	slices.Sort(names)
	return names
}

// reserved lists the objects the backend keeps for itself.
func (s *store) reserved(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, n := range s.objects(t) {
		if strings.Contains(n, roompath.ReservedPrefix) {
			out = append(out, n)
		}
	}
	return out
}

// noneReserved fails t if a reserved object is left.
func (s *store) noneReserved(t *testing.T) {
	t.Helper()
	if r := s.reserved(t); len(r) != 0 {
		t.Fatalf("reserved objects left behind: %q", r)
	}
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// write stages data through w in pieces of at most piece bytes.
func write(t *testing.T, w backend.Writer, data []byte, piece int) {
	t.Helper()
	for len(data) > 0 {
		n := min(piece, len(data))
		if err := w.Write(t.Context(), data[:n]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		data = data[n:]
	}
}

// openWriter starts a Create (or, with appending, an Append) of path,
// failing the test on error.
func openWriter(t *testing.T, b backend.Backend, path string, appending bool, o backend.WriteOptions) backend.Writer {
	t.Helper()
	op, start := "Create", b.Create
	if appending {
		op, start = "Append", b.Append
	}
	w, err := start(t.Context(), path, o)
	if err != nil {
		t.Fatalf("%s %q: %v", op, path, err)
	}
	return w
}

func mustCreate(t *testing.T, b backend.Backend, path string, data []byte) backend.Info {
	t.Helper()
	w, err := b.Create(t.Context(), path, backend.WriteOptions{})
	if err != nil {
		t.Fatalf("Create %q: %v", path, err)
	}
	write(t, w, data, 64<<10)
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("Commit %q: %v", path, err)
	}
	return info
}

// mustAppend appends data in one Commit, retrying lost races as the engine
// does.
func mustAppend(t *testing.T, b backend.Backend, path string, data []byte) backend.Info {
	t.Helper()
	w, err := b.Append(t.Context(), path, backend.WriteOptions{})
	if err != nil {
		t.Fatalf("Append %q: %v", path, err)
	}
	write(t, w, data, 64<<10)
	info, err := commitRetrying(t.Context(), w)
	if err != nil {
		t.Fatalf("Commit append %q: %v", path, err)
	}
	return info
}

func commitRetrying(ctx context.Context, w backend.Writer) (backend.Info, error) {
	for i := 0; ; i++ {
		info, err := w.Commit(ctx)
		if !errors.Is(err, backend.ErrConflict) || i == 10000 {
			return info, err
		}
	}
}

func readAll(t *testing.T, b backend.Backend, path string) []byte {
	t.Helper()
	r, _, err := b.Read(t.Context(), path, 0, -1)
	if err != nil {
		t.Fatalf("Read %q: %v", path, err)
	}
	defer r.Close()
	p, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("Read %q: %v", path, err)
	}
	return p
}

func mustEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes, want %d (first difference at %d)", what, len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// list collects List(dir) as "name" and "name/" (folders), sorted.
func list(t *testing.T, b backend.Backend, dir string) []string {
	t.Helper()
	var out []string
	for info, err := range b.List(t.Context(), dir) {
		if err != nil {
			t.Fatalf("List %q: %v", dir, err)
		}
		if roompath.Parent(info.Path) != dir {
			t.Errorf("List %q yielded %q, which is not a child", dir, info.Path)
		}
		if info.IsFolder {
			out = append(out, info.Name()+"/")
		} else {
			out = append(out, info.Name())
		}
	}
	slices.Sort(out)
	return out
}
