package tusclient_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/internal/cutproxy"
	"github.com/roomstore/roomstore/internal/tusclient"
	"github.com/roomstore/roomstore/roomserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var secret = []byte("tusclient test secret, 32 bytes or more")

// server is a room server with its tus endpoint, on mem:// rooms, behind
// a proxy that cuts when told to.
type server struct {
	srv   *roomserver.Server
	http  *httptest.Server
	proxy *cutproxy.Proxy
	eng   atomic.Pointer[roomstore.Engine]
}

func newServer(t *testing.T) *server {
	t.Helper()
	s := &server{}
	srv, err := roomserver.New(roomserver.Options{
		Logger: slog.New(slog.DiscardHandler),
		Verify: roomserver.HS256(secret),
		Resolve: func(ctx context.Context, room string, _ bool) (*roomstore.Engine, error) {
			e, err := roomstore.OpenURL(ctx, "mem://")
			if err == nil {
				s.eng.Store(e)
			}
			return e, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.srv = srv
	mux := http.NewServeMux()
	mux.Handle("/tus/", srv.Uploads("/tus/"))
	s.http = httptest.NewServer(mux)
	s.proxy, err = cutproxy.Start(strings.TrimPrefix(s.http.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.proxy.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s.http.CloseClientConnections()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		s.http.Close()
	})
	return s
}

func (s *server) endpoint() string { return "http://" + s.proxy.Addr() + "/tus/r1/" }

func client(t *testing.T, tok string) *tusclient.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &tusclient.Client{HTTP: &http.Client{Transport: tr}, Token: tok, Backoff: time.Millisecond}
}

func tokenFor(t *testing.T, name string, opts ...roomserver.TokenOption) string {
	tok, err := roomserver.NewToken(secret, name, "r1", time.Hour, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestUploadResumesAfterCutsFromWhatTheServerKept(t *testing.T) {
	s := newServer(t)
	data := make([]byte, 4<<20)
	rand.Read(data)
	c := client(t, tokenFor(t, "alice"))
	var top atomic.Int64
	c.Progress = func(o int64) {
		if o > top.Load() {
			top.Store(o)
		}
	}
	var retried atomic.Int32
	c.Retried = func(error) { retried.Add(1) }
	s.proxy.CutAfter(512<<10, 1<<20)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	loc, err := c.Upload(ctx, s.endpoint(), bytes.NewReader(data), int64(len(data)), map[string]string{"path": "a/big.bin"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(loc, "/tus/r1/") {
		t.Fatalf("upload URL %q", loc)
	}
	if s.proxy.Cuts() != 2 || s.proxy.Requests("POST") != 1 || s.proxy.Requests("HEAD") < 2 || s.proxy.Requests("PATCH") < 3 {
		t.Fatalf("cuts %d, POST %d, HEAD %d, PATCH %d: want 2 cuts, 1 POST, a HEAD and a PATCH for each resumption",
			s.proxy.Cuts(), s.proxy.Requests("POST"), s.proxy.Requests("HEAD"), s.proxy.Requests("PATCH"))
	}
	if retried.Load() < 2 || top.Load() != int64(len(data)) {
		t.Fatalf("%d retries told, progress up to %d: want 2 and %d", retried.Load(), top.Load(), len(data))
	}
	rd, err := s.eng.Load().OpenReader(ctx, "a/big.bin", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rd)
	rd.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("the uploaded file: %d bytes, not the %d sent", len(got), len(data))
	}
}

func TestARefusalIsNotRetried(t *testing.T) {
	s := newServer(t)
	tok := tokenFor(t, "inbox", roomserver.WithStorage(roomserver.StorageGrant{Paths: []roomserver.StoragePathGrant{{Path: "inbox/"}}}))
	c := client(t, tok)
	_, err := c.Upload(t.Context(), s.endpoint(), strings.NewReader("x"), 1, map[string]string{"path": "secret/x"})
	var se *tusclient.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusForbidden || se.Retryable() || !strings.Contains(se.Text, "secret/x") {
		t.Fatalf("an upload the grant refuses: %v, want a 403", err)
	}
	if n := s.proxy.Requests("POST"); n != 1 {
		t.Fatalf("%d POSTs, want the one refused", n)
	}
}

func TestRetriesAreBounded(t *testing.T) {
	s := newServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c := client(t, tokenFor(t, "alice"))
	c.Retries = 3
	_, err := c.Upload(ctx, s.endpoint(), strings.NewReader("x"), 1, map[string]string{"path": "x"})
	var se *tusclient.StatusError
	if !errors.Is(err, tusclient.ErrRetriesExhausted) || !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable {
		t.Fatalf("an upload to a server shutting down: %v, want the retries exhausted on 503", err)
	}
	if n := s.proxy.Requests("POST"); n != 4 {
		t.Fatalf("%d POSTs, want the first and 3 retries", n)
	}
}

func TestEncodeMetadata(t *testing.T) {
	got := tusclient.EncodeMetadata(map[string]string{"path": "a b", "overwrite": "true"})
	if got != "overwrite dHJ1ZQ==,path YSBi" {
		t.Fatalf("metadata %q", got)
	}
}
