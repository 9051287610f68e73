package roomclient_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// A room's quota reaches the client as the engine's ErrQuotaExceeded
// (code 507), before the first byte when the upload announces its size;
// the identity's call rate as ErrRateLimited (429).
func TestQuotaAndRateRefusalsAreTheEnginesErrors(t *testing.T) {
	e := newEnvWith(t, stores[0].url(t), func(o *roomserver.Options) {
		o.CallRate, o.CallBurst = 100, 100
		o.Resolve = func(ctx context.Context, room string, _ bool) (*roomstore.Engine, error) {
			return roomstore.OpenURL(ctx, "mem://", roomstore.WithQuota(roomstore.Quota{Bytes: 10}))
		}
	})
	ctx := deadline(t)
	c := e.dial(t, "ann", "r1", roomclient.Options{})
	if _, err := c.Upload(ctx, "a", strings.NewReader("0123456789"), roomstore.OpenOptions{Exclusive: true}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []roomstore.OpenOptions{{Exclusive: true}, {Exclusive: true, Size: 1}} {
		_, err := c.Upload(ctx, "b", strings.NewReader("x"), o)
		var re *roomclient.Error
		if !errors.Is(err, roomstore.ErrQuotaExceeded) || !errors.As(err, &re) || re.Code != roomserver.CodeQuota {
			t.Fatalf("upload past the quota (%+v): %v, want ErrQuotaExceeded with code 507", o, err)
		}
	}
	if ok, err := c.Exists(ctx, "b"); ok || err != nil {
		t.Fatalf("b after refused uploads: %v %v", ok, err)
	}
	var limited error
	for i := 0; i < 2_000 && limited == nil; i++ {
		if _, err := c.Exists(ctx, "a"); err != nil {
			limited = err
		}
	}
	if !errors.Is(limited, roomclient.ErrRateLimited) {
		t.Fatalf("calls past the rate: %v, want ErrRateLimited", limited)
	}
}

// A budget of the whole server spent is ErrBusy, which a caller may
// retry, not the fs.ErrClosed of a client that is closed.
func TestAServerBudgetSpentIsErrBusy(t *testing.T) {
	e := newEnvWith(t, stores[0].url(t), func(o *roomserver.Options) { o.MaxOpenStreams = 1 })
	ctx := deadline(t)
	c := e.dial(t, "ann", "r1", roomclient.Options{})
	if _, err := c.Upload(ctx, "a", strings.NewReader("a"), roomstore.OpenOptions{Exclusive: true}); err != nil {
		t.Fatal(err)
	}
	r, err := c.OpenReader(ctx, "a", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = c.OpenReader(ctx, "a", 0, -1)
	if !errors.Is(err, roomclient.ErrBusy) || errors.Is(err, fs.ErrClosed) {
		t.Fatalf("a second stream past the server's one: %v, want ErrBusy", err)
	}
}

// A stream's budgets are given back before its last answer: a client
// that has its answer may open the next stream at once, with one stream
// of the server's, one of the connection's and one upload of the room's.
func TestAnAnsweredStreamHoldsNoBudget(t *testing.T) {
	e := newEnvWith(t, stores[0].url(t), func(o *roomserver.Options) {
		o.MaxOpenStreams, o.MaxStreams = 1, 1
		o.Resolve = func(ctx context.Context, room string, _ bool) (*roomstore.Engine, error) {
			return roomstore.OpenURL(ctx, "mem://", roomstore.WithMaxOpenHandles(2))
		}
	})
	ctx := deadline(t)
	c := e.dial(t, "ann", "r1", roomclient.Options{})
	uploads, reads, refused := 0, 0, 0
	for i := range 200 {
		o := roomstore.OpenOptions{Overwrite: true}
		if i%3 == 2 {
			o = roomstore.OpenOptions{Exclusive: true} // refused: the file exists
		}
		if _, err := c.Upload(ctx, "a", strings.NewReader("abc"), o); err == nil {
			uploads++
		} else if errors.Is(err, fs.ErrExist) {
			refused++
		} else {
			t.Fatalf("upload %d: %v", i, err)
		}
		r, err := c.OpenReader(ctx, "a", 0, -1)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		b, err := io.ReadAll(r)
		if err != nil || string(b) != "abc" {
			t.Fatalf("read %d: %q %v", i, b, err)
		}
		must(t, r.Close())
		reads++
	}
	if uploads != 134 || refused != 66 || reads != 200 {
		t.Fatalf("%d uploads, %d refused, %d reads; want 134, 66, 200", uploads, refused, reads)
	}
}

// A send buffer smaller than a chunk still lets every stream through:
// what a stream sends together (a pull's answer and its bytes, a pushed
// download's start, bytes and close) takes its room at once, never a
// part of it while waiting for room only its own going out frees.
func TestASendBufferSmallerThanAChunk(t *testing.T) {
	e := newEnvWith(t, stores[0].url(t), func(o *roomserver.Options) { o.SendBuffer = 64 << 10 })
	ctx := deadline(t)
	c := e.dial(t, "ann", "r1", roomclient.Options{})
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	if _, err := c.Upload(ctx, "big", bytes.NewReader(data), roomstore.OpenOptions{Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	f, err := c.Download(ctx, "big") // pushed: start, 1 MiB and close in one batch
	if err != nil || !bytes.Equal(f.Data, data) {
		t.Fatalf("Download: %v", err)
	}
	r, err := c.OpenReader(ctx, "big", 0, -1) // pulled: each pull's answer with its bytes
	must(t, err)
	got, err := io.ReadAll(r)
	must(t, err)
	must(t, r.Close())
	if !bytes.Equal(got, data) {
		t.Fatalf("OpenReader read %d bytes, want %d", len(got), len(data))
	}
	if q := e.srv.Stats().Queued; q != 0 {
		t.Errorf("%d bytes still counted in the send buffers", q)
	}
}
