package testserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// VersityGWInstall is the command that installs the pinned versitygw.
const VersityGWInstall = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// VersityGWRegion is the region the test gateway serves and signs for.
const VersityGWRegion = "us-east-1"

// VersityGW is a running versitygw S3 gateway over a posix root in a
// temporary folder, with one root account whose SigV4 signatures it checks.
type VersityGW struct {
	// Endpoint is the gateway's base URL, such as "http://127.0.0.1:41234".
	Endpoint string
	// AccessKey and SecretKey are the root account's credentials.
	AccessKey, SecretKey string
	// Process is the gateway's child process. Restarting it keeps the
	// address and the posix root, so buckets, objects and incomplete
	// multipart uploads survive a Kill and Restart.
	Process *Process
}

// Kill crashes the gateway with SIGKILL and returns once it has exited;
// see Process.Kill. It is safe from any goroutine, a client hook included.
func (g *VersityGW) Kill() { g.Process.Kill() }

// Restart starts the gateway again on the same address over the same posix
// root, killing it first if it still runs, and returns once it listens;
// see Process.Restart.
func (g *VersityGW) Restart() error { return g.Process.Restart() }

// StartVersityGW runs versitygw (posix backend) on a free loopback port and
// stops it, and removes its data, when t ends. The data outlives a Kill:
// Restart brings the same gateway back. Starting one takes about a
// tenth of a second, so a top-level test may own one and hand out buckets
// (NewBucket) to its subtests. A missing binary fails t.
func StartVersityGW(t testing.TB) *VersityGW {
	t.Helper()
	return startVersityGW(t)
}

// startVersityGW is StartVersityGW with global flags (events, for one)
// added before the backend subcommand.
func startVersityGW(t testing.TB, flags ...string) *VersityGW {
	t.Helper()
	bin := Binary(t, "versitygw", VersityGWInstall)
	root := filepath.Join(t.TempDir(), "gw")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatalf("versitygw root: %v", err)
	}
	g := &VersityGW{
		AccessKey: "roomstore-test",
		SecretKey: "secret-" + randomHex(t, 16),
	}
	// The global flags must precede the backend subcommand. Single-account
	// mode (no IAM flags) still authenticates every request: only the root
	// credentials given here verify as SigV4 signatures.
	g.Process = Start(t, bin, func(addr string) []string {
		args := []string{
			"--port", addr,
			"--access", g.AccessKey,
			"--secret", g.SecretKey,
			"--region", VersityGWRegion,
			"--quiet",
		}
		return append(append(args, flags...), "posix", root)
	})
	g.Endpoint = "http://" + g.Process.Addr()
	return g
}

// Client returns an S3 client for the gateway: static credentials,
// path-style addressing, region us-east-1. It never talks to anything but
// the gateway.
func (g *VersityGW) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       VersityGWRegion,
		BaseEndpoint: aws.String(g.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(g.AccessKey, g.SecretKey, ""),
	})
}

var bucketSeq atomic.Int64

// NewBucket creates an empty bucket with a unique, valid name on the
// gateway and returns its name. The bucket lives as long as the gateway.
func (g *VersityGW) NewBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("rs-%d-%s", bucketSeq.Add(1), randomHex(t, 6))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := g.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket %s: %v\n%s", name, err, g.Process.Output())
	}
	return name
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}

// SetCredentialEnv points the AWS credential chain of this process (and of
// the child processes it starts) at the gateway's root account and nothing
// else: no profile, config file, region, endpoint or instance metadata from
// the machine, so that s3:// URLs opened by the test reach only the
// gateway. It uses t.Setenv, so the test cannot run in parallel.
func (g *VersityGW) SetCredentialEnv(t testing.TB) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": g.AccessKey, "AWS_SECRET_ACCESS_KEY": g.SecretKey, "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "", "AWS_REGION": "", "AWS_DEFAULT_REGION": "", "AWS_CONFIG_FILE": none,
		"AWS_SHARED_CREDENTIALS_FILE": none, "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "",
	} {
		t.Setenv(k, v)
	}
}
