package roomstore_test

import (
	"context"
	"errors"
	"iter"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_mem"
)

// landsThenCancels is a store whose commits land and then report their
// context's end, as a remote store's may when the context ends in
// flight: the engine cannot tell whether the commit happened.
type landsThenCancels struct {
	backend.Backend
	cancel context.CancelFunc
}

func (l landsThenCancels) Create(ctx context.Context, p string, o backend.WriteOptions) (backend.Writer, error) {
	w, err := l.Backend.Create(ctx, p, o)
	if err != nil {
		return nil, err
	}
	return cancelling{w, l.cancel}, nil
}

type cancelling struct {
	backend.Writer
	cancel context.CancelFunc
}

func (c cancelling) Commit(ctx context.Context) (backend.Info, error) {
	info, err := c.Writer.Commit(ctx)
	if err != nil {
		return info, err
	}
	c.cancel()
	return backend.Info{}, ctx.Err()
}

// A commit whose outcome is unknown is learned at the next need, so that
// the quota holds what the store holds.
func TestACommitOfUnknownOutcomeIsCountedAgain(t *testing.T) {
	mem := backend_mem.New()
	ctx, cancel := context.WithCancel(t.Context())
	e, err := roomstore.New(landsThenCancels{mem, cancel}, roomstore.WithQuota(roomstore.Quota{Bytes: 1000}))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	if _, err := e.Upload(ctx, "a", strings.NewReader(strings.Repeat("a", 900)), roomstore.OpenOptions{Overwrite: true}); !errors.Is(err, context.Canceled) {
		t.Fatalf("the commit whose context ended: %v", err)
	}
	u, err := e.Usage(t.Context())
	if err != nil || u.Bytes != 900 {
		t.Fatalf("usage after a commit that landed unseen: %+v %v, want 900 bytes", u, err)
	}
	_, err = e.Upload(t.Context(), "b", strings.NewReader(strings.Repeat("b", 900)), roomstore.OpenOptions{})
	if !errors.Is(err, roomstore.ErrQuotaExceeded) {
		t.Fatalf("900 bytes more past a 1000-byte quota holding 900: %v", err)
	}
}

// A Close whose context ended before its commit began changes nothing
// and costs no scan of the store.
func TestACloseCancelledBeforeItsCommitCostsNoScan(t *testing.T) {
	b := &listCounting{Backend: backend_mem.New()}
	e, err := roomstore.New(b, roomstore.WithQuota(roomstore.Quota{Bytes: 1000}))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	if _, err := e.Usage(t.Context()); err != nil {
		t.Fatal(err)
	}
	scans := b.lists.Load()
	for range 10 {
		h, err := e.Open(t.Context(), "a", roomstore.OpenOptions{Overwrite: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Write(t.Context(), h, []byte("x")); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := e.Close(ctx, h); !errors.Is(err, context.Canceled) {
			t.Fatalf("Close on an ended context: %v", err)
		}
	}
	if _, err := e.Usage(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := b.lists.Load() - scans; got != 0 {
		t.Fatalf("10 Closes that committed nothing cost %d listings of the store", got)
	}
}

// listCounting counts its backend's listings.
type listCounting struct {
	backend.Backend
	lists atomic.Int64
}

func (l *listCounting) List(ctx context.Context, dir string) iter.Seq2[backend.Info, error] {
	l.lists.Add(1)
	return l.Backend.List(ctx, dir)
}
