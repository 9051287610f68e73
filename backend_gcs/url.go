package backend_gcs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"syscall"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
	"google.golang.org/api/option"
)

func init() { backend.Register("gs", openURL) }

// openURL builds a Backend for gs://bucket/prefix[?endpoint=URL]. With
// endpoint= it talks to an emulator at that base URL (as
// STORAGE_EMULATOR_HOST would name it) without credentials; without it the
// client uses Application Default Credentials. The Backend owns the client
// and its Close closes it. Its requests are retried as the SDK does
// (storage.ShouldRetry), except that a refused connection is tried
// refusedAttempts times in all, so that a store with no server behind it
// fails within seconds, as an S3 store does, instead of being retried
// until the caller's deadline.
func openURL(ctx context.Context, u *url.URL) (backend.Backend, error) {
	if u.Host == "" {
		return nil, fmt.Errorf("backend_gcs: %q names no bucket (gs://bucket/prefix): %w", u.Redacted(), fs.ErrInvalid)
	}
	q := u.Query()
	for k := range q {
		if k != "endpoint" {
			return nil, fmt.Errorf("backend_gcs: unknown parameter %q in %q (known: endpoint): %w", k, u.Redacted(), fs.ErrInvalid)
		}
	}
	var (
		client *storage.Client
		opts   []Option
		err    error
	)
	if ep := q.Get("endpoint"); ep != "" {
		opts = append(opts, WithURLEndpoint(ep))
		client, err = newEmulatorClient(ctx, ep)
	} else {
		client, err = storage.NewClient(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("backend_gcs: %w", err)
	}
	client.SetRetry(storage.WithErrorFuncWithContext(shouldRetry))
	b, err := New(client, u.Host, u.Path, opts...)
	if err != nil {
		client.Close()
		return nil, err
	}
	b.ownClient = true
	return b, nil
}

// newEmulatorClient returns a client for the emulator at the base URL
// endpoint, set up as the SDK does for STORAGE_EMULATOR_HOST but without
// touching the process environment: JSON API at endpoint/storage/v1/, no
// credentials, no metrics export. Reads use the JSON API too, so they work
// whatever public host the emulator was started with.
func newEmulatorClient(ctx context.Context, endpoint string) (*storage.Client, error) {
	return storage.NewClient(ctx,
		option.WithEndpoint(strings.TrimRight(endpoint, "/")+"/storage/v1/"),
		option.WithoutAuthentication(),
		storage.WithJSONReads(),
		storage.WithDisabledClientMetrics(),
	)
}

// refusedAttempts is how many times the gs:// opener's client tries a
// request whose connection is refused: a server that is restarting gets a
// moment, a server that is not there is reported at once.
const refusedAttempts = 3

// shouldRetry is the retry decision of the gs:// opener's client.
func shouldRetry(err error, rc *storage.RetryContext) bool {
	if errors.Is(err, syscall.ECONNREFUSED) && (rc == nil || rc.Attempt >= refusedAttempts) {
		return false
	}
	return storage.ShouldRetry(err)
}
