package bench

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore/backend_gcs"
	"github.com/roomstore/roomstore/backend_s3"
	"github.com/roomstore/roomstore/bench/internal/measure"
	"github.com/roomstore/roomstore/bench/internal/rawsdk"
	"github.com/roomstore/roomstore/internal/testserver"
)

// s3Server starts one versitygw for a top-level benchmark the first time
// a sub-benchmark asks for it, so that cases without S3 never need it.
type s3Server struct {
	parent *testing.B
	once   sync.Once
	gw     *testserver.VersityGW
	bucket string
}

func (s *s3Server) get() (*testserver.VersityGW, string) {
	s.once.Do(func() {
		s.gw = testserver.StartVersityGW(s.parent)
		s.bucket = s.gw.NewBucket(s.parent)
		warmS3(s.parent, s.gw.Client(), s.bucket)
	})
	return s.gw, s.bucket
}

// gcsServer is s3Server for fake-gcs-server.
type gcsServer struct {
	parent   *testing.B
	once     sync.Once
	endpoint string
	client   *storage.Client
	bucket   string
}

func (g *gcsServer) get() (*storage.Client, string) {
	g.once.Do(func() {
		g.endpoint = testserver.StartFakeGCS(g.parent)
		g.client = testserver.FakeGCSClient(g.parent, g.endpoint)
		g.bucket = testserver.NewFakeGCSBucket(g.parent, g.endpoint)
		warmGCS(g.parent, g.client, g.bucket)
	})
	return g.client, g.bucket
}

// wireCounter counts the bytes an HTTP client writes to and reads from its
// TCP connections, and its requests: request lines, headers, bodies and
// chunk framing included, as they go on the wire.
type wireCounter struct {
	sent, received, requests atomic.Int64
}

// transport returns an http.Transport whose connections report to c,
// wrapped so that every round trip is counted.
func (c *wireCounter) transport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	dial := (&net.Dialer{}).DialContext
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: conn, c: c}, nil
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		c.requests.Add(1)
		return t.RoundTrip(r)
	})
}

// reset zeroes the counters.
func (c *wireCounter) reset() {
	c.sent.Store(0)
	c.received.Store(0)
	c.requests.Store(0)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type countingConn struct {
	net.Conn
	c *wireCounter
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.c.sent.Add(int64(n))
	return n, err
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.c.received.Add(int64(n))
	return n, err
}

// s3ClientCounting returns a client for gw whose HTTP traffic counts into c.
func s3ClientCounting(gw *testserver.VersityGW, c *wireCounter) *s3.Client {
	base := gw.Client()
	return s3.New(base.Options(), func(o *s3.Options) {
		o.HTTPClient = &http.Client{Transport: c.transport()}
	})
}

// warmBytes is how much a fresh server gets written and read before any
// measurement: a server's first large transfer is slower than the next
// ones (its heap and the connections grow), which would penalise whichever
// case happens to run first.
const warmBytes = 64 << 20

func warmS3(b *testing.B, client *s3.Client, bucket string) {
	ctx := context.Background()
	key := "warm-up.bin"
	w := rawsdk.NewS3Writer(ctx, client, bucket, key, backend_s3.MinPartSize)
	_, err := w.Write(make([]byte, warmBytes))
	check(b, err)
	check(b, w.Close())
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	check(b, err)
	_, err = measure.Drain(out.Body, make([]byte, 1<<20))
	check(b, err)
	check(b, out.Body.Close())
	_, err = client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &key})
	check(b, err)
}

func warmGCS(b *testing.B, client *storage.Client, bucket string) {
	ctx := context.Background()
	obj := client.Bucket(bucket).Object("warm-up.bin")
	w := obj.NewWriter(ctx)
	w.ChunkSize = backend_gcs.DefaultChunkSize
	_, err := w.Write(make([]byte, warmBytes))
	check(b, err)
	check(b, w.Close())
	r, err := obj.NewReader(ctx)
	check(b, err)
	_, err = measure.Drain(r, make([]byte, 1<<20))
	check(b, err)
	check(b, r.Close())
	check(b, obj.Delete(ctx))
}
