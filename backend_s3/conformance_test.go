package backend_s3_test

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_s3"
	"github.com/roomstore/roomstore/conformance"
)

// TestConformance runs the shared suite on versitygw: one gateway for the
// whole suite, a fresh bucket per case; the server-death cases get a
// gateway of their own to kill.
func TestConformance(t *testing.T) {
	g := startGateway(t)
	conformance.Run(t, conformance.Harness{
		New: func(t *testing.T) backend.Backend {
			return g.newStore(t)
		},
		Reopen: func(t *testing.T, b backend.Backend) backend.Backend {
			s := b.(*store)
			// A client of its own, as another process would have.
			return g.storeIn(t, s.bucket, s.prefix, g.Client())
		},
		PartSize:               backend_s3.MinPartSize,
		ListOmitsETags:         true,
		DeletePreconditionRacy: true,
		Leftovers: func(t *testing.T, b backend.Backend) []string {
			s := b.(*store)
			return s.gw.leftovers(t, s.bucket, s.prefix)
		},
		Broken: func(t *testing.T) []conformance.BrokenStore {
			missing, err := backend_s3.New(g.Client(), "no-such-bucket-"+strings.ToLower(rand.Text()), "room")
			if err != nil {
				t.Fatal(err)
			}
			return []conformance.BrokenStore{{Name: "the bucket is missing", Backend: missing, Gone: true}}
		},
		Mortal: func(t *testing.T) conformance.MortalStore {
			own := startGateway(t)
			// The SDK's default retryer, as a real client meets a dead
			// gateway; a cleanup timeout that outlasts a restart.
			s := own.storeIn(t, own.NewBucket(t), "room", own.Client(), backend_s3.WithCleanupTimeout(10*time.Second))
			return conformance.MortalStore{Backend: s, Kill: own.Kill, Restart: own.Restart}
		},
	})
}
