package roomstore_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_disk"
	"github.com/spf13/afero"
)

// FuzzSignedURL sends arbitrary request targets to the signed-URL handler
// of an engine over a disk store. Only a URL that the engine issued
// (same path, expiry and signature) may be answered with content, and no
// answer may reveal where the store lives on the host.
func FuzzSignedURL(f *testing.F) {
	root := f.TempDir()
	e, err := roomstore.New(backend_disk.NewAfero(afero.NewBasePathFs(afero.NewOsFs(), root), backend_disk.WithFsync(false)),
		roomstore.WithBaseURL("http://files.test/dl"), roomstore.WithSigningKey([]byte(strings.Repeat("s", 32))))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := e.Shutdown(context.Background()); err != nil {
			f.Errorf("Shutdown: %v", err)
		}
	})
	ctx := context.Background()
	issued := map[[3]string]bool{}
	for _, p := range []string{"a.txt", "dir/b c.txt", "dir/%41", "secret/key"} {
		h, err := e.Open(ctx, p, roomstore.OpenOptions{Overwrite: true})
		if err != nil {
			f.Fatal(err)
		}
		if err := e.Write(ctx, h, []byte("content of "+p)); err != nil {
			f.Fatal(err)
		}
		if err := e.Close(ctx, h); err != nil {
			f.Fatal(err)
		}
		raw, err := e.DownloadURL(ctx, p)
		if err != nil {
			f.Fatal(err)
		}
		u, err := url.Parse(raw)
		if err != nil {
			f.Fatal(err)
		}
		issued[[3]string{p, u.Query().Get("exp"), u.Query().Get("sig")}] = true
		f.Add(u.RequestURI())
		f.Add(strings.Replace(u.RequestURI(), "sig=", "sig=A", 1))
		f.Add(strings.Replace(u.RequestURI(), "/dl/", "/dl/secret/../", 1))
	}
	f.Add("/dl/secret/key?exp=99999999999&sig=")
	f.Add("/dl/%2e%2e/%2e%2e/etc/passwd?exp=1&sig=x")
	f.Add("/dl/a.txt?exp=-1&sig=x&sig=y")
	f.Fuzz(func(t *testing.T, target string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: files.test\r\n\r\n")))
		if err != nil {
			return // not a request a server would see
		}
		rec := httptest.NewRecorder()
		e.Handler().ServeHTTP(rec, req)
		body := rec.Body.String()
		for k, vs := range rec.Header() {
			for _, v := range vs {
				if strings.Contains(v, root) {
					t.Fatalf("header %s reveals the store's location: %q", k, v)
				}
			}
		}
		if strings.Contains(body, root) {
			t.Fatalf("body reveals the store's location: %q", body)
		}
		if rec.Code != http.StatusOK && rec.Code != http.StatusPartialContent && !strings.Contains(body, "content of") {
			return
		}
		q := req.URL.Query()
		p := strings.TrimPrefix(req.URL.Path, "/dl/")
		if !issued[[3]string{p, q.Get("exp"), q.Get("sig")}] {
			t.Fatalf("%q served %d %q without an issued signature", target, rec.Code, body)
		}
	})
}
