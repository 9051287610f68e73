package roomstore_test

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_mem"
)

func TestSetBaseURLOnceTheServerListens(t *testing.T) {
	e, err := roomstore.New(backend_mem.New())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	put(t, e, "docs/a.txt", "hello")
	if _, err := e.DownloadURL(t.Context(), "docs/a.txt"); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("DownloadURL before any base URL: %v, want errors.ErrUnsupported", err)
	}

	// The engine exists first; the server, and so its address, after.
	mux := http.NewServeMux()
	mux.Handle("/files/", e.Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, bad := range []string{"", "ftp://x/y", "/files", srv.URL + "/files?x=1"} {
		if err := e.SetBaseURL(bad); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("SetBaseURL(%q): %v, want fs.ErrInvalid", bad, err)
		}
	}
	if err := e.SetBaseURL(srv.URL + "/files/"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 { // concurrent with DownloadURL and Handler
		wg.Go(func() {
			u, err := e.DownloadURL(t.Context(), "docs/a.txt")
			if err != nil || !strings.HasPrefix(u, srv.URL+"/files/docs/a.txt?") {
				t.Errorf("DownloadURL: %q, %v", u, err)
				return
			}
			if resp, body := do(t, http.MethodGet, u, nil); resp.StatusCode != http.StatusOK || body != "hello" {
				t.Errorf("GET %s: %d %q", u, resp.StatusCode, body)
			}
		})
		wg.Go(func() {
			if err := e.SetBaseURL(srv.URL + "/files"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
