package roomclient_test

import (
	"fmt"
	"net/url"
	"testing"

	_ "github.com/roomstore/roomstore/backend_s3" // registers s3://
	"github.com/roomstore/roomstore/internal/testserver"
)

// TestS3 runs the scenarios that touch the store's own behaviour (calls,
// events, round trips, names, cut uploads) on rooms in an S3 bucket
// served by versitygw, opened through s3:// URLs with credentials from
// the environment (so it cannot run in parallel).
func TestS3(t *testing.T) {
	gw := testserver.StartVersityGW(t)
	bucket := gw.NewBucket(t)
	gw.SetCredentialEnv(t)
	seq := 0
	storeURL := func(room string) string {
		return fmt.Sprintf("s3://%s/%s?region=us-east-1&endpoint=%s&path_style=true", bucket, room, url.QueryEscape(gw.Endpoint))
	}
	run := map[string]bool{
		"every call answers as the engine does":                        true,
		"participants see each other's events and another room's none": true,
		"an upload without Overwrite refuses an existing file":         true,
		"50 MiB streams through Upload and OpenReader unchanged":       true,
		"names with spaces, quotes, escapes and emoji round-trip":      true,
		"a client closed mid-upload leaves nothing visible":            true,
	}
	for _, sc := range scenarios {
		if !run[sc.name] {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			seq++
			prefix := fmt.Sprintf("case%d", seq) // a fresh store per case
			sc.run(t, newEnv(t, func(room string) string { return storeURL(prefix + "/" + room) }))
		})
	}
}
