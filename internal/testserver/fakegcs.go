package testserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"
)

// FakeGCSInstall is the command that installs the pinned fake-gcs-server.
const FakeGCSInstall = "go install github.com/fsouza/fake-gcs-server@v1.56.1"

// StartFakeGCS runs fake-gcs-server (in-memory, plain HTTP) on a free
// loopback port, stops it when t ends, and returns its base URL, such as
// "http://127.0.0.1:41234", as STORAGE_EMULATOR_HOST or a gs:// URL's
// endpoint= would name it. Starting one takes about a tenth of a second,
// so a top-level test may own one and hand out buckets (NewFakeGCSBucket)
// to its subtests. A missing binary fails t.
//
// The public host and external URL are the loopback address, so that
// path-style object URLs (XML reads, V4 signed URLs) and the upload
// session URLs the server hands out all point back at it.
func StartFakeGCS(t testing.TB) (endpoint string) {
	t.Helper()
	return startFakeGCS(t, "-backend", "memory").Endpoint
}

// FakeGCS is a fake-gcs-server that keeps its buckets and objects on disk,
// so that it can be crashed and brought back with its data; see
// StartFakeGCSOnDisk.
type FakeGCS struct {
	// Endpoint is the server's base URL, as StartFakeGCS returns it.
	Endpoint string
	// Process is the server's child process.
	Process *Process
}

// StartFakeGCSOnDisk runs fake-gcs-server like StartFakeGCS, but with its
// filesystem backend over a temporary folder (removed when t ends), so
// that buckets and finalised objects survive Kill and Restart. Upload
// sessions live in the server's memory whatever the backend: a restart
// forgets every resumable upload in progress, as a crash of the real
// service's frontend would not, so a client that resumes one afterwards
// gets a 404. It is slower than the in-memory server; use it only to test
// crashes.
func StartFakeGCSOnDisk(t testing.TB) *FakeGCS {
	t.Helper()
	root := filepath.Join(t.TempDir(), "gcs")
	return startFakeGCS(t, "-backend", "filesystem", "-filesystem-root", root)
}

func startFakeGCS(t testing.TB, backendArgs ...string) *FakeGCS {
	t.Helper()
	bin := Binary(t, "fake-gcs-server", FakeGCSInstall)
	p := Start(t, bin, func(addr string) []string {
		_, port, _ := strings.Cut(addr, ":") // addr is 127.0.0.1:port, from a listener
		return append(slices.Clip(backendArgs),
			"-scheme", "http",
			"-host", "127.0.0.1",
			"-port", port,
			"-public-host", addr,
			"-external-url", "http://"+addr,
			"-log-level", "error",
		)
	})
	return &FakeGCS{Endpoint: "http://" + p.Addr(), Process: p}
}

// Kill crashes the server with SIGKILL and returns once it has exited;
// see Process.Kill. It is safe from any goroutine.
func (f *FakeGCS) Kill() { f.Process.Kill() }

// Restart starts the server again on the same address over the same
// folder, killing it first if it still runs, and returns once it listens;
// see Process.Restart.
func (f *FakeGCS) Restart() error { return f.Process.Restart() }

var fakeGCSBucketSeq atomic.Int64

// NewFakeGCSBucket creates an empty bucket with a unique, valid name on
// the fake-gcs-server at endpoint and returns its name. The bucket lives
// as long as the server.
func NewFakeGCSBucket(t testing.TB, endpoint string) string {
	t.Helper()
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatalf("random: %v", err)
	}
	name := fmt.Sprintf("rs-%d-%s", fakeGCSBucketSeq.Add(1), hex.EncodeToString(r[:]))
	body, _ := json.Marshal(map[string]string{"name": name})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/storage/v1/b", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(res.Body)
		t.Fatalf("create bucket %s: %s: %s", name, res.Status, msg)
	}
	return name
}

// FakeGCSClient returns a storage client for the fake-gcs-server at
// endpoint: no credentials, no metrics export, nothing but the server on
// the wire. It is closed when t ends.
func FakeGCSClient(t testing.TB, endpoint string) *storage.Client {
	t.Helper()
	c, err := storage.NewClient(context.Background(),
		option.WithEndpoint(endpoint+"/storage/v1/"),
		option.WithoutAuthentication(),
		storage.WithDisabledClientMetrics(),
	)
	if err != nil {
		t.Fatalf("storage client for %s: %v", endpoint, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
