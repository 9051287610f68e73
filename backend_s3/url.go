package backend_s3

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"

	"github.com/roomstore/roomstore/backend"
)

// Scheme is the URL scheme this package registers with backend.Register.
const Scheme = "s3"

// DefaultRegion is the region OpenURL uses when neither the URL nor the
// AWS configuration names one; S3-compatible servers usually accept it.
const DefaultRegion = "us-east-1"

func init() {
	backend.Register(Scheme, func(ctx context.Context, u *url.URL) (backend.Backend, error) {
		return OpenURL(ctx, u)
	})
}

// OpenURL opens the store that u names:
//
//	s3://bucket/prefix?region=us-east-1&endpoint=http://127.0.0.1:7070&path_style=true
//
// The host is the bucket and the path the optional prefix. Query
// parameters, all optional:
//
//   - region: the bucket's region; else the AWS configuration's
//     (AWS_REGION, shared config), else DefaultRegion.
//   - endpoint: the base URL of an S3-compatible server, instead of AWS.
//   - path_style: "true" addresses the bucket in the URL path rather than
//     the host name, as most S3-compatible servers need.
//   - part_size: the Writer part size in bytes (see WithPartSize).
//
// Credentials come from the default AWS chain (config.LoadDefaultConfig:
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, shared files, SSO, instance
// roles), for an S3-compatible server named by endpoint too; OpenURL is
// the only place in roomstore that reads them. When the chain yields none,
// the first request fails with an error wrapping fs.ErrPermission that
// says so and how to give them, rather than as the server's refusal. The
// SDK's own log output is turned off. A URL
// with user info, an unknown parameter or a bad value fails with an error
// wrapping fs.ErrInvalid. OpenURL checks the bucket with HeadBucket, so a
// missing bucket fails here, with an error wrapping
// backend.ErrStoreUnavailable, and refused credentials with
// fs.ErrPermission. The Backend owns its HTTP client: Close closes its
// idle connections.
func OpenURL(ctx context.Context, u *url.URL) (*Backend, error) {
	if !strings.EqualFold(u.Scheme, Scheme) {
		return nil, fmt.Errorf("backend_s3: %w: scheme %q is not %q", fs.ErrInvalid, u.Scheme, Scheme)
	}
	if u.User != nil {
		return nil, fmt.Errorf("backend_s3: %w: credentials do not belong in the store URL; use the AWS credential chain", fs.ErrInvalid)
	}
	bucket := u.Host
	if bucket == "" {
		return nil, fmt.Errorf("backend_s3: %w: store URL %q names no bucket", fs.ErrInvalid, u.Redacted())
	}
	var (
		region, endpoint string
		pathStyle        bool
		opts             []Option
	)
	for name, values := range u.Query() {
		if len(values) != 1 {
			return nil, fmt.Errorf("backend_s3: %w: parameter %q given %d times", fs.ErrInvalid, name, len(values))
		}
		v := values[0]
		switch name {
		case "region":
			region = v
		case "endpoint":
			e, err := url.Parse(v)
			if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
				return nil, fmt.Errorf("backend_s3: %w: endpoint %q is not an http(s) base URL", fs.ErrInvalid, v)
			}
			endpoint = v
		case "path_style":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("backend_s3: %w: path_style=%q: %w", fs.ErrInvalid, v, err)
			}
			pathStyle = b
		case "part_size":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("backend_s3: %w: part_size=%q: %w", fs.ErrInvalid, v, err)
			}
			opts = append(opts, WithPartSize(n))
		default:
			return nil, fmt.Errorf("backend_s3: %w: unknown parameter %q (known: region, endpoint, path_style, part_size)", fs.ErrInvalid, name)
		}
	}

	// A client of its own, so that Close can drop its idle connections
	// (and their goroutines) when the store is closed.
	var transport atomic.Pointer[http.Transport]
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) { transport.Store(t) })
	load := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		// The SDK logs to standard error on its own (falling back to
		// IMDSv1, skipped checksums); a library must not, and every
		// failure reaches the caller as an error anyway.
		config.WithLogger(logging.Nop{}),
	}
	if region != "" {
		load = append(load, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("backend_s3: load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.Credentials != nil {
		cfg.Credentials = credentials{
			CredentialsProvider: cfg.Credentials,
			instanceOnly:        aws.IsCredentialsProvider(cfg.Credentials, (*ec2rolecreds.Provider)(nil)),
		}
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.UsePathStyle = pathStyle
		// Servers that return no checksum (most S3-compatible ones) would
		// otherwise log one line per download.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	b, err := New(client, bucket, u.Path, opts...)
	if err != nil {
		return nil, err
	}
	b.closeIdle = func() {
		if t := transport.Load(); t != nil {
			t.CloseIdleConnections()
		}
	}
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		b.Close()
		if isNotFound(err) {
			return nil, backend.Errorf(backend.ErrStoreUnavailable, err, "bucket %q not found", bucket)
		}
		return nil, classify(err)
	}
	return b, nil
}

// credentials is the provider the AWS configuration chose, with its
// failures marked as a credentialsError, so that they are told apart from
// the server's refusal of a request (a 403 either way) and say how to give
// credentials.
type credentials struct {
	aws.CredentialsProvider
	// instanceOnly: the chain found nothing before the instance metadata
	// service, its last resort, so a failure means no credentials at all.
	instanceOnly bool
}

// Retrieve implements aws.CredentialsProvider.
func (c credentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	v, err := c.CredentialsProvider.Retrieve(ctx)
	if err != nil {
		return v, &credentialsError{instanceOnly: c.instanceOnly, err: err}
	}
	return v, nil
}
