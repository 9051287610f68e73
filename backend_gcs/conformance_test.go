package backend_gcs

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/conformance"
	"github.com/roomstore/roomstore/internal/testserver"
	"github.com/roomstore/roomstore/roompath"
)

// TestConformance runs the shared suite against fake-gcs-server: one
// server for the whole suite, a fresh bucket per store, and presigning with
// a throwaway key so that DownloadURL goes through native V4 URLs. The
// server-death cases get a server of their own, on disk so that its
// buckets and objects survive a crash.
func TestConformance(t *testing.T) {
	ep := testserver.StartFakeGCS(t)
	_, keyPEM := throwawayKey(t)
	opts := []Option{WithChunkSize(conformanceChunk), WithURLEndpoint(ep), WithSigner(testSigner, keyPEM)}
	openOn := func(t *testing.T, ep, bucket string, opts ...Option) *Backend {
		b, err := New(testserver.FakeGCSClient(t, ep), bucket, "room", opts...)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return b
	}
	open := func(t *testing.T, bucket string) *Backend {
		return openOn(t, ep, bucket, opts...)
	}
	conformance.Run(t, conformance.Harness{
		New: func(t *testing.T) backend.Backend {
			return open(t, testserver.NewFakeGCSBucket(t, ep))
		},
		Reopen: func(t *testing.T, b backend.Backend) backend.Backend {
			return open(t, b.(*Backend).bucketName)
		},
		PartSize:               conformanceChunk,
		URLSignaturesUnchecked: true,
		CommitIgnoresFolders:   true,
		Leftovers: func(t *testing.T, b backend.Backend) []string {
			return reservedObjects(t, b.(*Backend).client, b.(*Backend).bucketName, "room")
		},
		Broken: func(t *testing.T) []conformance.BrokenStore {
			return []conformance.BrokenStore{{Name: "the bucket is missing", Backend: open(t, "no-such-bucket-"+strings.ToLower(rand.Text())), Gone: true}}
		},
		Mortal: func(t *testing.T) conformance.MortalStore {
			own := testserver.StartFakeGCSOnDisk(t)
			b := openOn(t, own.Endpoint, testserver.NewFakeGCSBucket(t, own.Endpoint), WithChunkSize(conformanceChunk), WithURLEndpoint(own.Endpoint))
			return conformance.MortalStore{Backend: b, Kill: own.Kill, Restart: own.Restart}
		},
	})
}

// reservedObjects lists the objects under the store's reserved prefix
// that a finished call must not leave: upload temporaries and append
// claims, not the kept versions, which the store keeps on purpose.
func reservedObjects(t *testing.T, client *storage.Client, bucket, prefix string) []string {
	t.Helper()
	var out []string
	it := client.Bucket(bucket).Objects(context.Background(), &storage.Query{Prefix: prefix + "/" + roompath.ReservedPrefix + "/"})
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			t.Fatalf("list bucket: %v", err)
		}
		if !strings.HasPrefix(a.Name, prefix+"/"+versionsDir+"/") {
			out = append(out, a.Name)
		}
	}
}

// conformanceChunk keeps the suite's 64 MiB case quick: fake-gcs-server
// re-hashes the whole upload at every chunk, so its cost grows with the
// number of chunks squared.
const conformanceChunk = 1 << 20
