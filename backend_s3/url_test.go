package backend_s3_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_s3"
)

// TestOpenURL opens stores through the registered "s3" scheme, with
// credentials from the environment as the default AWS chain reads them.
func TestOpenURL(t *testing.T) {
	g := startGateway(t)
	bucket := g.NewBucket(t)
	isolateAWSEnv(t, g.AccessKey, g.SecretKey)
	query := func(extra string) string {
		return fmt.Sprintf("region=us-east-1&endpoint=%s&path_style=true%s", url.QueryEscape(g.Endpoint), extra)
	}

	t.Run("the s3 scheme is registered", func(t *testing.T) {
		if !slices.Contains(backend.Schemes(), "s3") {
			t.Fatalf("Schemes() = %v, want s3 among them", backend.Schemes())
		}
	})

	t.Run("a store under a prefix writes prefix/path keys", func(t *testing.T) {
		b, err := backend.Open(t.Context(), "s3://"+bucket+"/rooms/r1?"+query(""))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { g.assertNoLeftovers(t, bucket, "rooms/r1") })
		data := content(1, part+1)
		put(t, b, "hello.txt", data)
		assertContent(t, b, "hello.txt", data)
		if _, err := g.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("rooms/r1/hello.txt")}); err != nil {
			t.Errorf("object rooms/r1/hello.txt: %v", err)
		}
		if err := b.Remove(t.Context(), "hello.txt", backend.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a store without prefix uses the whole bucket", func(t *testing.T) {
		b, err := backend.Open(t.Context(), "s3://"+bucket+"?"+query("&part_size=6291456"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { g.assertNoLeftovers(t, bucket, "") })
		if got := b.(*backend_s3.Backend).PartSize(); got != 6<<20 {
			t.Errorf("part size %d, want 6 MiB", got)
		}
		put(t, b, "top", []byte("x"))
		if _, err := g.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("top")}); err != nil {
			t.Errorf("object top: %v", err)
		}
		if err := b.Remove(t.Context(), "top", backend.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	for name, tc := range map[string]struct {
		url  string
		want error
	}{
		"a missing bucket":        {"s3://no-such-bucket-x?" + query(""), backend.ErrStoreUnavailable},
		"no bucket":               {"s3:///prefix?" + query(""), fs.ErrInvalid},
		"credentials in the URL":  {"s3://key:secret@" + bucket + "?" + query(""), fs.ErrInvalid},
		"an unknown parameter":    {"s3://" + bucket + "?" + query("&colour=blue"), fs.ErrInvalid},
		"a bad path_style":        {"s3://" + bucket + "?" + query("&path_style=maybe"), fs.ErrInvalid},
		"a small part_size":       {"s3://" + bucket + "?" + query("&part_size=1024"), fs.ErrInvalid},
		"an endpoint without URL": {"s3://" + bucket + "?endpoint=localhost", fs.ErrInvalid},
		"a reserved prefix":       {"s3://" + bucket + "/.roomstore?" + query(""), fs.ErrInvalid},
	} {
		t.Run(name+" fails", func(t *testing.T) {
			_, err := backend.Open(t.Context(), tc.url)
			if !errors.Is(err, tc.want) {
				t.Errorf("Open: %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("refused credentials fail with ErrPermission", func(t *testing.T) {
		t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
		_, err := backend.Open(t.Context(), "s3://"+bucket+"?"+query(""))
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("Open: %v, want fs.ErrPermission", err)
		}
	})
}

// isolateAWSEnv points the default AWS chain at static credentials only:
// no shared files, no instance metadata, nothing beyond loopback.
func isolateAWSEnv(t *testing.T, access, secret string) {
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           access,
		"AWS_SECRET_ACCESS_KEY":       secret,
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_REGION":                  "",
		"AWS_DEFAULT_REGION":          "",
		"AWS_CONFIG_FILE":             none,
		"AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_S3":         "",
	} {
		t.Setenv(k, v)
	}
}

// TestRoomsOpenedThroughURLsLeaveNoConnections opens rooms on s3:// URLs,
// writes to each and shuts them down: the HTTP clients that OpenURL built
// must take their connections (and the goroutines that serve them) along.
func TestRoomsOpenedThroughURLsLeaveNoConnections(t *testing.T) {
	g := startGateway(t)
	bucket := g.NewBucket(t)
	isolateAWSEnv(t, g.AccessKey, g.SecretKey)
	ctx := t.Context()
	before := runtime.NumGoroutine()
	const rooms = 50
	for i := range rooms {
		u := fmt.Sprintf("s3://%s/room%d?region=us-east-1&endpoint=%s&path_style=true", bucket, i, url.QueryEscape(g.Endpoint))
		e, err := roomstore.OpenURL(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		h, err := e.Open(ctx, "f", roomstore.OpenOptions{Overwrite: true})
		if err == nil {
			err = e.Write(ctx, h, []byte("x"))
		}
		if err == nil {
			err = e.Close(ctx, h)
		}
		if err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = e.Shutdown(sctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after %d rooms came and went, %d before", runtime.NumGoroutine(), rooms, before)
		}
		time.Sleep(time.Millisecond) // connection goroutines end on their own once closed
	}
}
