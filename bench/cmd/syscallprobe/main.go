// Command syscallprobe runs the small-file cycle of BenchmarkSmallFile
// (open, write 4 KiB, close, download, stat, delete) -n times on one
// store, for counting its system calls from outside with strace:
//
//	strace -f -c -o OUT syscallprobe -store file -dir DIR -n 1000
//
// -store file is roomstore on what OpenURL("file://DIR?fsync=false")
// returns (-fsync for fsync on); -store os is the raw os calls the
// benchmark compares it with (temp file, write, rename, read, stat,
// remove; with -fsync the file and its folder fsynced). -op upload and
// -op move count an Upload of 4 KiB and a Delete, or a Move back and
// forth, instead. One warm-up cycle of each of ten names runs before the
// counted ones; make bench subtracts a run of -n 0 (setup and warm-up
// only) to leave the calls per cycle.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/roomstore/roomstore"
	_ "github.com/roomstore/roomstore/backend_disk" // registers file://
	"github.com/roomstore/roomstore/bench/internal/rawos"
)

func main() {
	store := flag.String("store", "file", "file (roomstore, OpenURL) or os (raw os calls)")
	dir := flag.String("dir", "", "an empty directory to work in")
	n := flag.Int("n", 1000, "cycles to run after the warm-up")
	fsync := flag.Bool("fsync", false, "fsync at commit")
	op := flag.String("op", "cycle", "cycle (BenchmarkSmallFile's), upload (Upload 4 KiB, Delete) or move (Move back and forth)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "syscallprobe: -dir is required")
		os.Exit(2)
	}
	payload := make([]byte, 4<<10)
	_, _ = rand.Read(payload)
	names := make([]string, 10)
	for i := range names {
		names[i] = fmt.Sprintf("doc-%04d.txt", i)
	}
	var cycle func(name string) error
	switch *store {
	case "file":
		u := url.URL{Scheme: "file", Path: filepath.ToSlash(*dir)}
		if !*fsync {
			u.RawQuery = "fsync=false"
		}
		e, err := roomstore.OpenURL(context.Background(), u.String())
		if err != nil {
			fail(err)
		}
		defer e.Shutdown(context.Background())
		switch *op {
		case "upload":
			cycle = func(name string) error { return engineUpload(e, name, payload) }
		case "move":
			if _, err := e.Upload(context.Background(), "a", bytes.NewReader(payload), roomstore.OpenOptions{}); err != nil {
				fail(err)
			}
			from, to := "a", "b"
			cycle = func(string) error {
				from, to = to, from
				return e.Move(context.Background(), to, from, roomstore.MoveOptions{})
			}
		default:
			cycle = func(name string) error { return engineCycle(e, name, payload) }
		}
	case "os":
		tmp := filepath.Join(*dir, ".tmp")
		if err := os.Mkdir(tmp, 0o755); err != nil {
			fail(err)
		}
		cycle = func(name string) error { return osCycle(tmp, filepath.Join(*dir, name), payload, *fsync) }
	default:
		fmt.Fprintf(os.Stderr, "syscallprobe: unknown -store %q\n", *store)
		os.Exit(2)
	}
	for _, name := range names {
		if err := cycle(name); err != nil {
			fail(err)
		}
	}
	for i := range *n {
		if err := cycle(names[i%len(names)]); err != nil {
			fail(err)
		}
	}
}

// engineCycle is one small-file cycle on e.
func engineCycle(e *roomstore.Engine, name string, payload []byte) error {
	ctx := context.Background()
	h, err := e.Open(ctx, name, roomstore.OpenOptions{Overwrite: true})
	if err != nil {
		return err
	}
	if err := e.Write(ctx, h, payload); err != nil {
		return err
	}
	if err := e.Close(ctx, h); err != nil {
		return err
	}
	if _, err := e.Download(ctx, name); err != nil {
		return err
	}
	if _, err := e.Stat(ctx, name); err != nil {
		return err
	}
	return e.Delete(ctx, name)
}

// engineUpload uploads payload to name on e and deletes it.
func engineUpload(e *roomstore.Engine, name string, payload []byte) error {
	ctx := context.Background()
	if _, err := e.Upload(ctx, name, bytes.NewReader(payload), roomstore.OpenOptions{Overwrite: true}); err != nil {
		return err
	}
	return e.Delete(ctx, name)
}

// osCycle is the raw os calls' small-file cycle, as BenchmarkSmallFile's
// baseline makes it.
func osCycle(tmp, name string, payload []byte, fsync bool) error {
	if err := rawos.WriteFile(tmp, name, payload, fsync); err != nil {
		return err
	}
	if _, err := os.ReadFile(name); err != nil {
		return err
	}
	if _, err := os.Stat(name); err != nil {
		return err
	}
	return os.Remove(name)
}

// fail reports err and exits 1; the probe's store is left as it is.
func fail(err error) {
	fmt.Fprintln(os.Stderr, "syscallprobe:", err)
	os.Exit(1)
}
