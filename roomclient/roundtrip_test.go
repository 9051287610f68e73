package roomclient_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomclient"
)

// turns counts the round trips a client makes through a loopback TCP
// proxy: the times it sends after something came from the server (or
// first). A client that waits for an answer before it sends again makes
// one turn per wait; messages it sends together, or events the server
// sends meanwhile, add none.
type turns struct {
	mu      sync.Mutex
	n       int
	fromSrv bool // the last bytes seen came from the server
	wg      sync.WaitGroup
}

// proxy listens on 127.0.0.1 and relays every connection to target,
// counting turns; it stops when t ends.
func (tr *turns) proxy(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	tr.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			tr.wg.Go(func() { tr.relay(s, c, true) })
			tr.wg.Go(func() { tr.relay(c, s, false) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		tr.wg.Wait()
	})
	return ln.Addr().String()
}

// relay copies from src to dst, noting who sent each read.
func (tr *turns) relay(dst, src net.Conn, fromClient bool) {
	defer dst.Close()
	buf := make([]byte, 256<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			tr.mu.Lock()
			if fromClient && tr.fromSrv {
				tr.n++
			}
			tr.fromSrv = !fromClient
			tr.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// take returns the turns counted since the last take.
func (tr *turns) take() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := tr.n
	tr.n, tr.fromSrv = 0, true // what the client sends next is a turn
	return n
}

// The round trips of each call, counted on the wire: against roomserver
// (which names roomstore's inline extension) a small upload or download,
// a stat, a delete each take one, as an HTTP request would; a file past
// one inline message streams. Against a server of the bare protocol
// (MeshAgent's clients' view), the streams take what the protocol
// makes them: open, start, data or pull, close.
func TestSmallCallsTakeOneRoundTrip(t *testing.T) {
	small := bytes.Repeat([]byte("s"), 4<<10)
	large := bytes.Repeat([]byte("L"), 1<<20)
	for _, tc := range []struct {
		name  string
		plain bool
		want  map[string]int
	}{
		{"roomserver", false, map[string]int{
			"upload 4 KiB": 1, "download 4 KiB": 1, "stat": 1, "exists": 1, "delete": 1, "list": 1,
			"upload 1 MiB": 3, "download 1 MiB": 1, "open, write, close 4 KiB": 3, "read 4 KiB": 2,
		}},
		{"bare protocol", true, map[string]int{
			"upload 4 KiB": 4, "download 4 KiB": 4, "stat": 1, "exists": 1, "delete": 1, "list": 1,
			"upload 1 MiB": 4, "download 1 MiB": 4, "open, write, close 4 KiB": 4, "read 4 KiB": 4,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *env
			if tc.plain {
				e = newPlainEnv(t, stores[0].url(t))
			} else {
				e = newEnv(t, stores[0].url(t))
			}
			var tr turns
			addr := tr.proxy(t, strings.TrimPrefix(e.ts.URL, "http://"))
			ctx := deadline(t)
			c, err := roomclient.Dial(ctx, "ws://"+addr+"/rooms/r", roomclient.Options{Token: e.token(t, "ann", "r"), Logger: quiet()})
			must(t, err)
			defer c.Close()
			calls := []struct {
				name string
				run  func() error
			}{
				{"upload 4 KiB", func() error {
					_, err := c.Upload(ctx, "d/a.txt", bytes.NewReader(small), roomstore.OpenOptions{Overwrite: true})
					return err
				}},
				{"download 4 KiB", func() error { return download(c, t, "d/a.txt", small) }},
				{"stat", func() error {
					ent, err := c.Stat(ctx, "d/a.txt")
					if err == nil && ent.Size != int64(len(small)) {
						err = errors.New("stat: wrong size")
					}
					return err
				}},
				{"exists", func() error { _, err := c.Exists(ctx, "d/a.txt"); return err }},
				{"list", func() error { _, err := c.List(ctx, "d"); return err }},
				{"delete", func() error { return c.Delete(ctx, "d/a.txt") }},
				{"upload 1 MiB", func() error {
					_, err := c.Upload(ctx, "d/b.bin", bytes.NewReader(large), roomstore.OpenOptions{Overwrite: true})
					return err
				}},
				{"download 1 MiB", func() error { return download(c, t, "d/b.bin", large) }},
				{"open, write, close 4 KiB", func() error {
					h, err := c.Open(ctx, "d/c.txt", roomstore.OpenOptions{Overwrite: true})
					if err != nil {
						return err
					}
					if _, err := h.Write(small); err != nil {
						return err
					}
					return h.Close()
				}},
				{"read 4 KiB", func() error {
					r, err := c.OpenReader(ctx, "d/c.txt", 0, -1)
					if err != nil {
						return err
					}
					b, err := io.ReadAll(r)
					if cerr := r.Close(); err == nil {
						err = cerr
					}
					if err == nil && !bytes.Equal(b, small) {
						err = errors.New("read: wrong bytes")
					}
					return err
				}},
			}
			for _, call := range calls {
				tr.take()
				if err := call.run(); err != nil {
					t.Fatalf("%s: %v", call.name, err)
				}
				if got := tr.take(); got != tc.want[call.name] {
					t.Errorf("%s: %d round trips, want %d", call.name, got, tc.want[call.name])
				}
			}
		})
	}
}

// download downloads p through c and checks its bytes.
func download(c *roomclient.Client, t *testing.T, p string, want []byte) error {
	f, err := c.Download(deadline(t), p)
	if err == nil && !bytes.Equal(f.Data, want) {
		err = errors.New("download: wrong bytes")
	}
	return err
}
