package roomstore_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_mem"
)

// levels records the level and message of every log record.
type levels struct {
	mu   sync.Mutex
	recs []string
}

func (l *levels) Enabled(context.Context, slog.Level) bool { return true }
func (l *levels) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *levels) WithGroup(string) slog.Handler            { return l }
func (l *levels) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Level.String()+" "+r.Message)
	return nil
}

func (l *levels) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.recs...)
}

func TestAClientThatGivesUpOnAStalledStoreIsLoggedAsNoError(t *testing.T) {
	b := backend_mem.New()
	logs := &levels{}
	e, err := roomstore.New(b, roomstore.WithLogger(slog.New(logs)))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	put(t, e, "f.txt", "x")
	stuck := make(chan struct{}, 1)
	b.Inject(backend_mem.Fault{Op: backend_mem.OpRead, Stall: true, Notify: func() {
		select {
		case stuck <- struct{}{}:
		default:
		}
	}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.ServeFile(w, r, "f.txt") }))
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-stuck:
	case <-time.After(20 * time.Second):
		t.Fatal("the read never reached the store")
	}
	cancel() // the client gives up
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the request outlived its context")
	}
	srv.Close() // waits for the handler
	got := logs.all()
	if len(got) != 1 || !strings.HasPrefix(got[0], "INFO ") || !strings.Contains(got[0], "gave up") {
		t.Errorf("logged %q, want one INFO record saying the client gave up", got)
	}
}
