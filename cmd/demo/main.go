// Command demo runs roomstore's storage workflow end to end on an embedded
// store: it checks that a file is missing, opens a handle, writes and
// closes it, downloads the file, fetches its download URL over HTTP from
// the engine's own handler on 127.0.0.1, lists the room and deletes the
// file, printing each step and each event as it arrives.
//
//	go run ./cmd/demo                 # a fresh local-disk store in a temp folder
//	go run ./cmd/demo -store mem://   # or any store URL
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/roomstore/roomstore"
	_ "github.com/roomstore/roomstore/backend_disk" // registers file://
)

func main() {
	store := flag.String("store", "", "store URL (default: file:// in a new temporary folder)")
	flag.Parse()
	if err := run(*store); err != nil {
		log.Fatalf("demo: %v", err)
	}
}

func run(storeURL string) error {
	ctx := context.Background()
	if storeURL == "" {
		dir, err := os.MkdirTemp("", "roomstore-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		storeURL = "file://" + dir
	}

	// The engine serves the URLs it signs itself, so it needs to know where.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String() + "/files"
	room, err := roomstore.OpenURL(ctx, storeURL, roomstore.WithBaseURL(base), roomstore.WithURLExpiry(5*time.Minute))
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/files/", room.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	fmt.Printf("store  %s\nserver %s\n\n", storeURL, base)

	// Events arrive on their own goroutine; the demo waits for each one so
	// that the printout reads in order.
	seen := make(chan string, 8)
	if _, err := room.On(roomstore.EventFileUpdated, func(path, participant string) {
		seen <- fmt.Sprintf("file.updated  path=%s participant=%s", path, participant)
	}); err != nil {
		return err
	}
	if _, err := room.On(roomstore.EventFileDeleted, func(ev roomstore.Event) {
		seen <- fmt.Sprintf("file.deleted  path=%s participant=%s", ev.Path, ev.ParticipantID)
	}); err != nil {
		return err
	}
	if _, err := room.On(roomstore.EventFileMoved, func(ev roomstore.Event) {
		seen <- fmt.Sprintf("file.moved    path=%s from=%s participant=%s", ev.Path, ev.SourcePath, ev.ParticipantID)
	}); err != nil {
		return err
	}
	event := func() error {
		select {
		case s := <-seen:
			fmt.Println("  event:", s)
			return nil
		case <-time.After(5 * time.Second):
			return fmt.Errorf("no event within 5s")
		}
	}

	alice := roomstore.WithParticipant(ctx, "alice")
	const path = "notes/welcome.md"

	ok, err := room.Exists(alice, path)
	if err != nil {
		return err
	}
	fmt.Printf("1. exists %s: %v\n", path, ok)

	h, err := room.Open(alice, path, roomstore.OpenOptions{Overwrite: true})
	if err != nil {
		return err
	}
	fmt.Printf("2. open   %s: handle %s… owned by %s\n", path, h.ID()[:8], h.Participant())
	for _, chunk := range []string{"# Welcome\n", "This room keeps its files in roomstore.\n"} {
		if err := room.Write(alice, h, []byte(chunk)); err != nil {
			return err
		}
		fmt.Printf("3. write  %d bytes (not visible yet)\n", len(chunk))
	}
	if err := room.Close(alice, h); err != nil {
		return err
	}
	fmt.Println("4. close  committed atomically")
	if err := event(); err != nil {
		return err
	}

	st, err := room.Stat(alice, path)
	if err != nil {
		return err
	}
	fmt.Printf("5. stat   size=%d modified=%s\n", st.Size, st.ModTime.Format(time.RFC3339))

	f, err := room.Download(alice, path)
	if err != nil {
		return err
	}
	fmt.Printf("6. download %s (%s):\n%s", f.Name, f.MimeType, f.Data)

	u, err := room.DownloadURL(alice, path)
	if err != nil {
		return err
	}
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	fmt.Printf("7. download_url %s\n   GET -> %s, %d bytes, Content-Type %s\n", u, resp.Status, len(body), resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK || string(body) != string(f.Data) {
		return fmt.Errorf("download URL served %s %q", resp.Status, body)
	}

	for _, dir := range []string{"/", "notes"} {
		entries, err := room.List(alice, dir)
		if err != nil {
			return err
		}
		fmt.Printf("8. list %s\n", dir)
		for _, e := range entries {
			kind := "file"
			if e.IsFolder {
				kind = "folder"
			}
			fmt.Printf("   %-6s %-12s %d bytes\n", kind, e.Name, e.Size)
		}
	}

	const archived = "archive/welcome.md"
	if err := room.Move(alice, path, archived, roomstore.MoveOptions{}); err != nil {
		return err
	}
	ok, _ = room.Exists(alice, "notes")
	fmt.Printf("9. move   %s -> %s (folder notes still exists: %v)\n", path, archived, ok)
	if err := event(); err != nil {
		return err
	}

	if err := room.Delete(alice, archived); err != nil {
		return err
	}
	ok, _ = room.Exists(alice, "archive")
	fmt.Printf("10. delete %s (folder archive still exists: %v)\n", archived, ok)
	if err := event(); err != nil {
		return err
	}

	return room.Shutdown(ctx)
}
