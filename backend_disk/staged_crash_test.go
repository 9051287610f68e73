package backend_disk_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roompath"
)

// crashUploadEnv names the resumable upload the crash child writes to.
const crashUploadEnv = "ROOMSTORE_CRASH_UPLOAD"

// uploadByte is byte i of the crash test's upload: every offset has its
// own, so a byte out of place shows.
func uploadByte(i int64) byte { return byte(i*7 + i/251) }

func uploadBytes(off, n int64) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = uploadByte(off + int64(i))
	}
	return b
}

// crashUploadChild writes the upload named by crashUploadEnv from where
// it stands, in pieces of random size, printing "kept <offset>" after
// each write, until it is complete; then it waits to be killed.
func crashUploadChild(dir string) {
	ctx := context.Background()
	b, err := openDisk(os.Getenv("ROOMSTORE_CRASH_STORE"), dir, true)
	if err != nil {
		panic(err)
	}
	e, err := roomstore.New(b)
	if err != nil {
		panic(err)
	}
	id := os.Getenv(crashUploadEnv)
	st, err := e.Resumable(ctx, id)
	if err != nil {
		panic(err)
	}
	r := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	fmt.Println("committing") // the parent kills only from here on
	for st.Offset < st.Size {
		n := min(st.Size-st.Offset, 1+r.Int64N(64<<10))
		if st, err = e.WriteResumable(ctx, id, st.Offset, bytes.NewReader(uploadBytes(st.Offset, n))); err != nil {
			panic(err)
		}
		fmt.Printf("kept %d\n", st.Offset)
	}
	select {}
}

// TestCrashesNeverLoseAResumableUploadsBytes kills a process writing a
// resumable upload at random moments: after each kill the upload holds
// at least what the dead process was told it kept, every byte in its
// place, and another process continues it to a whole file.
func TestCrashesNeverLoseAResumableUploadsBytes(t *testing.T) {
	dir := t.TempDir()
	const size = 2 << 20
	id := func() string {
		b := diskBackend(t, "file", dir)
		e, err := roomstore.New(b)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Shutdown(context.Background())
		st, err := e.CreateResumable(t.Context(), "up.bin", roomstore.ResumableOptions{Size: size})
		if err != nil {
			t.Fatal(err)
		}
		return st.ID
	}()
	r := killMoments(t)
	kills := 0
	var offset int64
	for kill := 0; offset < size && kill < 40; kill++ {
		kind := diskKinds[kill%len(diskKinds)]
		lines := killChild(t, r, kill, dir, "ROOMSTORE_CRASH_RESUMABLE=1", "ROOMSTORE_CRASH_STORE="+kind, crashUploadEnv+"="+id)
		kills++
		told := int64(0)
		for _, l := range lines {
			if v, ok := strings.CutPrefix(l, "kept "); ok {
				if told, _ = strconv.ParseInt(v, 10, 64); told == 0 {
					t.Fatalf("kill %d: child printed %q", kill, l)
				}
			}
		}
		data, err := os.ReadFile(filepath.Join(dir, roompath.ReservedPrefix, "uploads", id, "data"))
		if err != nil {
			t.Fatalf("after kill %d: %v", kill, err)
		}
		if int64(len(data)) < told {
			t.Fatalf("after kill %d: the upload holds %d bytes, the child was told %d were kept", kill, len(data), told)
		}
		if !bytes.Equal(data, uploadBytes(0, int64(len(data)))) {
			t.Fatalf("after kill %d: the upload's %d bytes are not those written", kill, len(data))
		}
		offset = int64(len(data))
	}
	b := diskBackend(t, "file", dir)
	e, err := roomstore.New(b)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	ctx := t.Context()
	st, err := e.Resumable(ctx, id)
	if err != nil || st.Offset != offset {
		t.Fatalf("Resumable after %d kills = %+v, %v; want Offset %d", kills, st, err, offset)
	}
	if st.Offset < size {
		if _, err := e.WriteResumable(ctx, id, st.Offset, bytes.NewReader(uploadBytes(st.Offset, size-st.Offset))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.CommitResumable(ctx, id); err != nil {
		t.Fatal(err)
	}
	f, err := e.Download(ctx, "up.bin")
	if err != nil || !bytes.Equal(f.Data, uploadBytes(0, size)) {
		t.Fatalf("the committed file: %v", err)
	}
	t.Logf("%d kills survived; %d of %d bytes written by the killed processes", kills, offset, size)
}
