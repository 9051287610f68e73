package roomstore_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_mem"
)

// served returns an engine over memory whose Handler is served below
// /files on a loopback server.
func served(t *testing.T, opts ...roomstore.Option) (*roomstore.Engine, *httptest.Server) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	opts = append([]roomstore.Option{roomstore.WithBaseURL(srv.URL + "/files")}, opts...)
	e, err := roomstore.New(backend_mem.New(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Shutdown(context.Background()) })
	mux.Handle("/files/", e.Handler())
	return e, srv
}

func put(t *testing.T, e *roomstore.Engine, p, data string) {
	t.Helper()
	h, err := e.Open(t.Context(), p, roomstore.OpenOptions{Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Write(t.Context(), h, []byte(data)); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(t.Context(), h); err != nil {
		t.Fatal(err)
	}
}

// downloadURL returns p's download URL, failing the test on error.
func downloadURL(t *testing.T, e *roomstore.Engine, p string) string {
	t.Helper()
	u, err := e.DownloadURL(t.Context(), p)
	if err != nil {
		t.Fatalf("DownloadURL %q: %v", p, err)
	}
	return u
}

func do(t *testing.T, method, u string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the body of %s %s: %v", method, u, err)
	}
	return resp, string(b)
}

func TestSignedURLServesGetHeadRangeAndConditionalRequests(t *testing.T) {
	e, _ := served(t)
	put(t, e, "dir/page.html", "<p>hello</p>")
	u, err := e.DownloadURL(t.Context(), "dir/page.html")
	if err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, http.MethodGet, u, nil)
	if resp.StatusCode != 200 || body != "<p>hello</p>" || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		resp.Header.Get("ETag") == "" || resp.Header.Get("Last-Modified") == "" {
		t.Fatalf("GET: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	etag := resp.Header.Get("ETag")
	if resp, body := do(t, http.MethodHead, u, nil); resp.StatusCode != 200 || body != "" || resp.ContentLength != 12 {
		t.Fatalf("HEAD: %d %q len %d", resp.StatusCode, body, resp.ContentLength)
	}
	if resp, body := do(t, http.MethodGet, u, http.Header{"Range": {"bytes=3-7"}}); resp.StatusCode != 206 || body != "hello" {
		t.Fatalf("Range: %d %q", resp.StatusCode, body)
	}
	if resp, _ := do(t, http.MethodGet, u, http.Header{"If-None-Match": {etag}}); resp.StatusCode != 304 {
		t.Fatalf("If-None-Match: %d", resp.StatusCode)
	}
	if resp, _ := do(t, http.MethodPost, u, nil); resp.StatusCode != 405 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	put(t, e, "dir/page.html", "<p>changed</p>")
	// The URL names the version it was issued for, never a later one.
	for _, h := range []http.Header{nil, {"If-None-Match": {etag}}, {"Range": {"bytes=0-2"}}} {
		if resp, body := do(t, http.MethodGet, u, h); resp.StatusCode != 410 || strings.Contains(body, "<p>") {
			t.Fatalf("the old version's URL after a change (%v): %d %q", h, resp.StatusCode, body)
		}
	}
	fresh, err := e.DownloadURL(t.Context(), "dir/page.html")
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := do(t, http.MethodGet, fresh, http.Header{"If-None-Match": {etag}}); resp.StatusCode != 200 || body != "<p>changed</p>" {
		t.Fatalf("a new URL after a change: %d %q", resp.StatusCode, body)
	}
	if err := e.Delete(t.Context(), "dir/page.html"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := do(t, http.MethodGet, fresh, nil); resp.StatusCode != 404 {
		t.Fatalf("deleted file: %d", resp.StatusCode)
	}
}

func TestSignedURLNeverServesAnotherPath(t *testing.T) {
	e, srv := served(t)
	put(t, e, "a/b", "secret b")
	put(t, e, "a%2Fb", "secret encoded")
	put(t, e, "x", "secret x")
	u, err := e.DownloadURL(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	query := u[strings.IndexByte(u, '?'):]
	for _, p := range []string{"/files/a/b", "/files/a%2Fb", "/files/a%252Fb", "/files/./x", "/files/a/../x", "/files/%2E/x", "/files//x", "/files/x/", "/files/X", "/x", "/files/x%00"} {
		// A mux may clean "/files/./x" to x itself, which is fine; no other
		// file may ever come back.
		resp, body := do(t, http.MethodGet, srv.URL+p+query, nil)
		if (resp.StatusCode == 200 && body != "secret x") || strings.Contains(body, "secret b") || strings.Contains(body, "secret encoded") {
			t.Fatalf("%s with x's signature: %d %q", p, resp.StatusCode, body)
		}
	}
	if resp, body := do(t, http.MethodGet, u, nil); resp.StatusCode != 200 || body != "secret x" {
		t.Fatalf("genuine URL: %d %q", resp.StatusCode, body)
	}
}

func TestSignedURLsFromOneKeyWorkAcrossEngines(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	e1, _ := served(t, roomstore.WithSigningKey(key))
	e2, srv2 := served(t, roomstore.WithSigningKey(key))
	e3, srv3 := served(t) // a random key of its own
	for _, e := range []*roomstore.Engine{e1, e2, e3} {
		put(t, e, "f", "same")
	}
	u1, _ := e1.DownloadURL(t.Context(), "f")
	q := u1[strings.IndexByte(u1, '?'):]
	if resp, _ := do(t, http.MethodGet, srv2.URL+"/files/f"+q, nil); resp.StatusCode != 200 {
		t.Fatalf("same key: %d", resp.StatusCode)
	}
	if resp, _ := do(t, http.MethodGet, srv3.URL+"/files/f"+q, nil); resp.StatusCode != 403 {
		t.Fatalf("other key: %d", resp.StatusCode)
	}
}

func TestURLsOfOneRoomDoNotOpenAnotherMountedElsewhere(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	rooms := map[string]*roomstore.Engine{}
	for _, name := range []string{"public", "private"} {
		e, err := roomstore.New(backend_mem.New(), roomstore.WithSigningKey(key), roomstore.WithBaseURL(srv.URL+"/rooms/"+name))
		if err != nil {
			t.Fatal(err)
		}
		defer e.Shutdown(context.Background())
		mux.Handle("/rooms/"+name+"/", e.Handler())
		put(t, e, "notes.txt", name+" notes")
		rooms[name] = e
	}
	u := downloadURL(t, rooms["public"], "notes.txt")
	if resp, body := do(t, http.MethodGet, u, nil); resp.StatusCode != 200 || body != "public notes" {
		t.Fatalf("own room: %d %q", resp.StatusCode, body)
	}
	moved := strings.Replace(u, "/rooms/public/", "/rooms/private/", 1)
	if resp, body := do(t, http.MethodGet, moved, nil); resp.StatusCode != 403 || strings.Contains(body, "notes") {
		t.Fatalf("other room with the same key: %d %q", resp.StatusCode, body)
	}
}

func TestSignedURLsAreServedAsInertContent(t *testing.T) {
	e, _ := served(t)
	put(t, e, "x.html", "<script>alert(1)</script>")
	u := downloadURL(t, e, "x.html")
	resp, _ := do(t, http.MethodGet, u, nil)
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Content-Security-Policy") != "sandbox" {
		t.Fatalf("headers %v", resp.Header)
	}
}

func TestSigningOptionsAreChecked(t *testing.T) {
	if _, err := roomstore.New(backend_mem.New(), roomstore.WithSigningKey(make([]byte, 31))); err == nil {
		t.Fatal("a 31-byte signing key was accepted")
	}
	for _, base := range []string{"", "ftp://x", "/relative", "http://", "http://h/p?q=1"} {
		if _, err := roomstore.New(backend_mem.New(), roomstore.WithBaseURL(base)); err == nil {
			t.Fatalf("base URL %q was accepted", base)
		}
	}
	e, err := roomstore.New(backend_mem.New())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	put(t, e, "f", "x")
	_, err = e.DownloadURL(t.Context(), "f")
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("DownloadURL without a base URL: %v, want errors.ErrUnsupported", err)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != "f" {
		t.Fatalf("error %v is not a PathError for f", err)
	}
}

func TestSignedURLAfterShutdownIsUnavailable(t *testing.T) {
	e, _ := served(t, roomstore.WithURLExpiry(time.Minute))
	put(t, e, "f", "x")
	u := downloadURL(t, e, "f")
	if err := e.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if resp, _ := do(t, http.MethodGet, u, nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after Shutdown: %d", resp.StatusCode)
	}
	if _, err := url.Parse(u); err != nil {
		t.Fatal(err)
	}
}
