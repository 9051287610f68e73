package backend_s3_test

import (
	"bytes"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_s3"
)

// A staged upload's parts of at least MinPartSize are copied on the
// server at the commit (UploadPartCopy), and only the small ones, the
// tails of the appends, and what joins them to the next part are sent
// again; the file holds the appended bytes in order.
func TestAStagedUploadCopiesItsLargePartsOnTheServer(t *testing.T) {
	g := startGateway(t)
	var mu sync.Mutex
	copied, sent := int64(0), int64(0)
	s := g.storeIn(t, g.NewBucket(t), "room", g.watchedClient(func(op string, input any) {
		mu.Lock()
		defer mu.Unlock()
		switch in := input.(type) {
		case *s3.UploadPartCopyInput:
			copied++
		case *s3.UploadPartInput:
			sent += aws.ToInt64(in.ContentLength)
		}
	}))
	ctx := t.Context()
	const id = "CCCCCCCCCCCCCCCCCCCCCC"
	if err := s.Stage(ctx, id, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	part := backend_s3.MinPartSize
	data := content(9, 2*part+510)
	// A cut append of 10 bytes, then one of two parts and 500 bytes: its
	// first staged part (two parts long) fills the first multipart part
	// after the 10 bytes, and its rest is copied.
	cuts := []int{0, 10, len(data)}
	for i := 1; i < len(cuts); i++ {
		if n, err := s.AppendStaged(ctx, id, int64(cuts[i-1]), bytes.NewReader(data[cuts[i-1]:cuts[i]])); err != nil || n != int64(cuts[i]-cuts[i-1]) {
			t.Fatalf("AppendStaged = %d, %v", n, err)
		}
	}
	st, err := s.Staged(ctx, id)
	if err != nil || st.Size != int64(len(data)) {
		t.Fatalf("Staged = %+v, %v", st, err)
	}
	info, err := s.CommitStaged(ctx, id, "f.bin", backend.WriteOptions{Exclusive: true})
	if err != nil || info.Size != int64(len(data)) {
		t.Fatalf("CommitStaged = %+v, %v", info, err)
	}
	r, _, err := s.Read(ctx, "f.bin", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := got.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("the file holds %d bytes, not the %d appended", got.Len(), len(data))
	}
	mu.Lock()
	nCopied, nSent := copied, sent
	mu.Unlock()
	if nCopied < 1 || nSent > int64(part+1000) {
		t.Fatalf("the commit copied %d parts on the server and sent %d bytes of %d, want a copy and at most one part sent", nCopied, nSent, len(data))
	}
	if _, err := s.Staged(ctx, id); err == nil {
		t.Fatal("the upload outlives its commit")
	}
}
