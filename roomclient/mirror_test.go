package roomclient_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// read returns the content of p through c, or its error.
func read(t *testing.T, c *roomclient.Client, p string) (string, error) {
	t.Helper()
	f, err := c.Download(deadline(t), p)
	if err != nil {
		return "", err
	}
	return string(f.Data), nil
}

// A remote handle is the engine's: nothing visible before Close, its
// options mean what they mean to Engine.Open, Abort and the end of its
// context leave the old content, a finished handle refuses.
func TestHandlesMirrorTheEngine(t *testing.T) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			e := newEnv(t, s.url(t))
			c := e.dial(t, "ann", "r", roomclient.Options{ChunkSize: 1 << 10})
			other := e.dial(t, "bob", "r", roomclient.Options{})
			ctx := deadline(t)
			events := record(t, other)

			h, err := c.Open(ctx, "doc.txt", roomstore.OpenOptions{Overwrite: true})
			must(t, err)
			big := bytes.Repeat([]byte("0123456789"), 500) // five chunks of 1 KiB
			for _, part := range [][]byte{[]byte("head "), big} {
				if n, err := h.Write(part); err != nil || n != len(part) {
					t.Fatalf("Write: %d %v", n, err)
				}
			}
			if ok, err := other.Exists(ctx, "doc.txt"); ok || err != nil {
				t.Fatalf("visible before Close: %v %v", ok, err)
			}
			must(t, h.Close())
			if got, err := read(t, other, "doc.txt"); err != nil || got != "head "+string(big) {
				t.Fatalf("after Close: %d bytes, %v", len(got), err)
			}
			if ev := events.next(t); ev.Type != roomstore.EventFileUpdated || ev.Path != "doc.txt" || ev.ParticipantID != c.ParticipantID() {
				t.Errorf("the commit's event: %+v", ev)
			}
			wantErr(t, "Close twice", h.Close(), fs.ErrClosed)
			_, err = h.Write([]byte("x"))
			wantErr(t, "Write after Close", err, fs.ErrClosed)

			// Neither Overwrite nor Exclusive appends, as Engine.Open does.
			h, err = c.Open(ctx, "doc.txt", roomstore.OpenOptions{})
			must(t, err)
			_, err = h.Write([]byte(" tail"))
			must(t, err)
			must(t, h.Close())
			if got, _ := read(t, other, "doc.txt"); !strings.HasSuffix(got, string(big)+" tail") {
				t.Errorf("after an append: ...%q", got[max(0, len(got)-20):])
			}

			// Exclusive is refused at Open.
			_, err = c.Open(ctx, "doc.txt", roomstore.OpenOptions{Exclusive: true})
			wantErr(t, "Open Exclusive of an existing file", err, fs.ErrExist)

			// Abort and an ended context leave the old content.
			before, _ := read(t, other, "doc.txt")
			h, err = c.Open(ctx, "doc.txt", roomstore.OpenOptions{Overwrite: true})
			must(t, err)
			_, err = h.Write([]byte("discarded"))
			must(t, err)
			must(t, h.Abort())
			wantErr(t, "Abort twice", h.Abort(), fs.ErrClosed)
			_, err = h.Write([]byte("x"))
			wantErr(t, "Write after Abort", err, fs.ErrClosed)
			hctx, cancel := context.WithCancel(ctx)
			h, err = c.Open(hctx, "doc.txt", roomstore.OpenOptions{Overwrite: true})
			must(t, err)
			_, err = h.Write([]byte("discarded too"))
			must(t, err)
			cancel()
			if err := h.Close(); !errors.Is(err, context.Canceled) {
				t.Errorf("Close after its context ended: %v, want context.Canceled", err)
			}
			if got, _ := read(t, other, "doc.txt"); got != before {
				t.Errorf("aborted writes changed the file to %d bytes", len(got))
			}

			// An announced size that is not met fails the Close.
			h, err = c.Open(ctx, "sized.txt", roomstore.OpenOptions{Overwrite: true, Size: 10})
			must(t, err)
			_, err = h.Write([]byte("short"))
			must(t, err)
			wantErr(t, "Close short of the size", h.Close(), fs.ErrInvalid)
			if ok, _ := other.Exists(ctx, "sized.txt"); ok {
				t.Errorf("a short handle was committed")
			}

			// Writes from several goroutines all land, each Write's bytes
			// together (a Write is bigger than a chunk here).
			h, err = c.Open(ctx, "many.txt", roomstore.OpenOptions{Overwrite: true})
			must(t, err)
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() {
					if _, err := h.Write(bytes.Repeat([]byte{byte('a' + i)}, 5000)); err != nil {
						t.Errorf("Write: %v", err)
					}
				})
			}
			wg.Wait()
			must(t, h.Close())
			got, _ := read(t, other, "many.txt")
			runs := 0
			for i := range got {
				if i == 0 || got[i] != got[i-1] {
					runs++
				}
			}
			if len(got) != 8*5000 || runs != 8 {
				t.Errorf("concurrent writes: %d bytes in %d runs, want %d in 8", len(got), runs, 8*5000)
			}
		})
	}
}

// Upload's options mean what Engine.Upload's mean: the same sequence on
// an engine and through the client ends with the same contents and the
// same errors.
func TestUploadOptionsMeanWhatTheEnginesMean(t *testing.T) {
	ctx := deadline(t)
	eng, err := roomstore.OpenURL(ctx, "mem://")
	must(t, err)
	defer eng.Shutdown(context.Background())
	e := newEnv(t, stores[0].url(t))
	c := e.dial(t, "ann", "r", roomclient.Options{})
	steps := []struct {
		opts roomstore.OpenOptions
		data string
	}{
		{roomstore.OpenOptions{}, "created by an append;"},
		{roomstore.OpenOptions{}, " appended;"},
		{roomstore.OpenOptions{Exclusive: true}, "refused"},
		{roomstore.OpenOptions{Overwrite: true}, "replaced;"},
		{roomstore.OpenOptions{Overwrite: true, Exclusive: true}, "refused too"},
		{roomstore.OpenOptions{Size: 3}, "abc"},
	}
	for i, s := range steps {
		_, errE := eng.Upload(ctx, "f.txt", strings.NewReader(s.data), s.opts)
		_, errC := c.Upload(ctx, "f.txt", strings.NewReader(s.data), s.opts)
		for _, sentinel := range []error{fs.ErrExist, fs.ErrInvalid} {
			if errors.Is(errE, sentinel) != errors.Is(errC, sentinel) {
				t.Errorf("step %d %+v: engine %v, client %v", i, s.opts, errE, errC)
			}
		}
		if (errE == nil) != (errC == nil) {
			t.Errorf("step %d %+v: engine %v, client %v", i, s.opts, errE, errC)
		}
		f, err := eng.Download(ctx, "f.txt")
		must(t, err)
		if got, err := read(t, c, "f.txt"); err != nil || got != string(f.Data) {
			t.Fatalf("step %d %+v: the client's file holds %q (%v), the engine's %q", i, s.opts, got, err, f.Data)
		}
	}
	// The one difference, documented: the protocol's size is exact, so a
	// reader that yields another number of bytes fails the upload (the
	// engine takes Size as a hint) and changes nothing.
	for _, data := range []string{"ab", "abcd"} {
		_, err = c.Upload(ctx, "f.txt", strings.NewReader(data), roomstore.OpenOptions{Size: 3})
		wantErr(t, fmt.Sprintf("%d bytes announced as 3", len(data)), err, fs.ErrInvalid)
	}
	if got, _ := read(t, c, "f.txt"); got != "replaced;abc" {
		t.Errorf("failed uploads changed the file to %q", got)
	}
}

// A server of the bare protocol cannot append: the client says so rather
// than create or refuse; everything else works as it does with
// roomserver.
func TestWithoutExtensionsAnAppendIsUnsupported(t *testing.T) {
	e := newPlainEnv(t, stores[0].url(t))
	c := e.dial(t, "ann", "r", roomclient.Options{})
	ctx := deadline(t)
	_, err := c.Upload(ctx, "f.txt", strings.NewReader("x"), roomstore.OpenOptions{})
	wantErr(t, "an append to a server without the extension", err, errors.ErrUnsupported)
	_, err = c.Open(ctx, "f.txt", roomstore.OpenOptions{})
	wantErr(t, "an appending Open on a server without the extension", err, errors.ErrUnsupported)
	if ok, _ := c.Exists(ctx, "f.txt"); ok {
		t.Fatal("an unsupported append created the file")
	}
	h, err := c.Open(ctx, "f.txt", roomstore.OpenOptions{Exclusive: true})
	must(t, err)
	_, err = h.Write([]byte("made"))
	must(t, err)
	must(t, h.Close())
	if got, err := read(t, c, "f.txt"); got != "made" || err != nil {
		t.Fatalf("a handle on a server without extensions: %q %v", got, err)
	}
	r, err := c.OpenReader(ctx, "f.txt", 0, -1)
	must(t, err)
	defer r.Close()
	if ent := r.Entry(); ent.ETag != "" || !ent.ModTime.IsZero() || ent.Size != 4 {
		t.Errorf("a strict server's download start gave %+v", ent)
	}
}

// OpenReader reads any range, at and around chunk boundaries, from a
// server that cuts the range (roomserver) and from one that does not
// (the client drops the bytes before it), with the Entry of the whole
// file.
func TestRangedReadsAtChunkBoundaries(t *testing.T) {
	const chunk = 1000
	data := make([]byte, 3*chunk+17)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	size := int64(len(data))
	for _, kind := range []string{"ranges cut by the server", "ranges cut by the client"} {
		t.Run(kind, func(t *testing.T) {
			var e *env
			if kind == "ranges cut by the server" {
				e = newEnv(t, stores[0].url(t))
			} else {
				e = newPlainEnv(t, stores[0].url(t))
			}
			c := e.dial(t, "ann", "r", roomclient.Options{ChunkSize: chunk})
			ctx := deadline(t)
			_, err := c.Upload(ctx, "f.bin", bytes.NewReader(data), roomstore.OpenOptions{Overwrite: true})
			must(t, err)
			reads := 0
			for _, off := range []int64{0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, size - 1, size} {
				for _, n := range []int64{-1, 0, 1, chunk - 1, chunk, chunk + 1, 2*chunk + 1, size + 5} {
					r, err := c.OpenReader(ctx, "f.bin", off, n)
					if err != nil {
						t.Fatalf("OpenReader(%d, %d): %v", off, n, err)
					}
					got, err := io.ReadAll(r)
					must(t, r.Close())
					end := size
					if n >= 0 {
						end = min(size, off+n)
					}
					if err != nil || !bytes.Equal(got, data[off:end]) {
						t.Fatalf("OpenReader(%d, %d): %d bytes %v, want %d", off, n, len(got), err, end-off)
					}
					if r.Entry().Size != size {
						t.Fatalf("OpenReader(%d, %d): Entry().Size %d, want the file's %d", off, n, r.Entry().Size, size)
					}
					reads++
				}
			}
			for _, off := range []int64{-1, size + 1} {
				_, err := c.OpenReader(ctx, "f.bin", off, -1)
				wantErr(t, fmt.Sprintf("OpenReader at %d", off), err, fs.ErrInvalid)
			}
			t.Logf("%d ranges read", reads)
		})
	}
}

// A handle's bytes go out as they are written, not once a chunk is full:
// a writer that pauses between small Writes for longer in all than the
// server's idle limit for streams, but never that long at once, keeps
// its handle.
func TestASlowWritersHandleLives(t *testing.T) {
	e := newEnvWith(t, stores[0].url(t), func(o *roomserver.Options) { o.StreamIdle = 600 * time.Millisecond })
	c := e.dial(t, "ann", "r", roomclient.Options{})
	h, err := c.Open(deadline(t), "log.txt", roomstore.OpenOptions{Overwrite: true})
	must(t, err)
	var want strings.Builder
	for i := range 20 {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		_, err := h.Write([]byte(line))
		must(t, err)
		time.Sleep(100 * time.Millisecond) // the writer's pace, the scenario itself: 2 s in all, over 3x the idle limit
	}
	must(t, h.Close())
	if got, err := read(t, c, "log.txt"); got != want.String() || err != nil {
		t.Fatalf("the slow writer's file holds %q, %v", got, err)
	}
}

// A handle whose stream the server ended for idling is told so: its
// Close fails at once (code 408) rather than wait for a commit.
func TestAHandleIdledOutByTheServerFailsItsClose(t *testing.T) {
	e := newEnvWith(t, stores[0].url(t), func(o *roomserver.Options) { o.StreamIdle = 200 * time.Millisecond })
	c := e.dial(t, "ann", "r", roomclient.Options{})
	h, err := c.Open(deadline(t), "idle.txt", roomstore.OpenOptions{Overwrite: true})
	must(t, err)
	_, err = h.Write([]byte("x"))
	must(t, err)
	// Until the server has ended the stream (it holds none then).
	for end := time.Now().Add(wait); e.srv.Stats().Streams > 0; {
		if time.Now().After(end) {
			t.Fatal("the server never ended the idle stream")
		}
		time.Sleep(10 * time.Millisecond) // polling the server's own count, bounded by the deadline
	}
	err = h.Close()
	var re *roomclient.Error
	if !errors.As(err, &re) || re.Code != 408 {
		t.Fatalf("Close of an idled-out handle: %v, want code 408", err)
	}
	if ok, _ := c.Exists(deadline(t), "idle.txt"); ok {
		t.Fatal("an idled-out handle was committed")
	}
}

// A handle never closed ends with its context, or with its client: its
// goroutine and its stream go (the package's goleak check sees to it),
// and its Write and Close report why.
func TestAHandleNeverClosedEndsWithItsContextOrItsClient(t *testing.T) {
	e := newEnv(t, stores[0].url(t))
	c := e.dial(t, "ann", "r", roomclient.Options{})
	ctx, cancel := context.WithCancel(deadline(t))
	h1, err := c.Open(ctx, "one.txt", roomstore.OpenOptions{Overwrite: true})
	must(t, err)
	_, err = h1.Write([]byte("staged"))
	must(t, err)
	h2, err := c.Open(context.Background(), "two.txt", roomstore.OpenOptions{Overwrite: true})
	must(t, err)
	cancel()
	wantErr(t, "Close of a handle whose context ended", h1.Close(), context.Canceled)
	must(t, c.Close())
	_, err = h2.Write([]byte("late"))
	// The upload ends as the client closes; until then a Write stages.
	for end := time.Now().Add(wait); err == nil && time.Now().Before(end); {
		_, err = h2.Write([]byte("late"))
	}
	wantErr(t, "Write after Client.Close", err, fs.ErrClosed)
	wantErr(t, "Close after Client.Close", h2.Close(), fs.ErrClosed)
	other := e.dial(t, "bob", "r", roomclient.Options{})
	for _, p := range []string{"one.txt", "two.txt"} {
		if ok, err := other.Exists(deadline(t), p); ok || err != nil {
			t.Errorf("%s after its handle ended: %v %v", p, ok, err)
		}
	}
}
