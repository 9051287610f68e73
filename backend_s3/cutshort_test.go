package backend_s3_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roompath"
)

// TestACloseCutShortAfterTheServerStagedLeavesNothing cuts a Close short
// at the worst moment: the server has completed the upload of an append's
// temporary, but the caller's context ends before the answer arrives. The
// temporary exists although no answer said so; the cleanup must remove it
// all the same.
func TestACloseCutShortAfterTheServerStagedLeavesNothing(t *testing.T) {
	g := startGateway(t)
	var (
		cancel atomic.Pointer[context.CancelFunc]
		cut    atomic.Int32
	)
	client := g.answeredClient(func(op string, input any, err error) error {
		in, ok := input.(*s3.CompleteMultipartUploadInput)
		if op != "CompleteMultipartUpload" || !ok || err != nil || !strings.Contains(aws.ToString(in.Key), roompath.ReservedPrefix+"/tmp/") {
			return err
		}
		if c := cancel.Load(); c != nil {
			cut.Add(1)
			(*c)()
			return context.Canceled
		}
		return nil
	})
	s := g.storeIn(t, g.NewBucket(t), "room", client) // asserts at cleanup that nothing is left
	e, err := roomstore.New(s.Backend)
	if err != nil {
		t.Fatal(err)
	}
	h, err := e.Open(t.Context(), "f", roomstore.OpenOptions{}) // an append to a new file
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Write(t.Context(), h, content(7, 12*mib)); err != nil {
		t.Fatal(err)
	}
	ctx, c := context.WithCancel(t.Context())
	defer c()
	cancel.Store(&c)
	if err := e.Close(ctx, h); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close cut short = %v, want context.Canceled", err)
	}
	if n := cut.Load(); n != 1 {
		t.Fatalf("the staging upload was cut short %d times, want 1", n)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	if err := e.Shutdown(sctx); err != nil { // waits for the handle's cleanup
		t.Fatal(err)
	}
	if left := g.leftovers(t, s.bucket, s.prefix); len(left) > 0 {
		t.Fatalf("left behind after the cut-short Close: %v", left)
	}
	if _, err := s.Stat(t.Context(), "f"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("f after the cut-short Close: %v, want fs.ErrNotExist", err)
	}
}
