package backend_gcs

import (
	"fmt"
	"io/fs"
	"net/url"
)

// DefaultChunkSize is the upload chunk size when WithChunkSize is not
// given: the SDK's own default. Every open writer holds one chunk in memory.
const DefaultChunkSize = 16 << 20

// Option tunes a Backend built by New.
type Option func(*config) error

type config struct {
	chunkSize   int
	signer      *signer
	urlHost     string
	urlInsecure bool
}

// signer is the identity Presign signs V4 URLs with.
type signer struct {
	email string
	key   []byte
	sign  func([]byte) ([]byte, error)
}

// WithChunkSize sets how many bytes a writer buffers before sending them
// (storage.Writer.ChunkSize); the SDK rounds it up to a multiple of
// 256 KiB. Memory per open writer is about one chunk. n must be positive.
func WithChunkSize(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("backend_gcs: chunk size %d: %w", n, fs.ErrInvalid)
		}
		c.chunkSize = n
		return nil
	}
}

// WithSigner makes Presign sign V4 URLs as the service account email with
// its PEM-encoded private key (the "private_key" of a JSON key file).
// Without WithSigner or WithSignBytes, Presign returns
// errors.ErrUnsupported.
func WithSigner(email string, privateKeyPEM []byte) Option {
	return func(c *config) error {
		if email == "" || len(privateKeyPEM) == 0 {
			return fmt.Errorf("backend_gcs: WithSigner needs an email and a key: %w", fs.ErrInvalid)
		}
		c.signer = &signer{email: email, key: privateKeyPEM}
		return nil
	}
}

// WithSignBytes makes Presign sign V4 URLs as the service account email
// with sign, which returns an RSA-SHA256 signature of its input (for
// example the IAM Credentials signBlob API).
func WithSignBytes(email string, sign func([]byte) ([]byte, error)) Option {
	return func(c *config) error {
		if email == "" || sign == nil {
			return fmt.Errorf("backend_gcs: WithSignBytes needs an email and a function: %w", fs.ErrInvalid)
		}
		c.signer = &signer{email: email, sign: sign}
		return nil
	}
}

// WithURLEndpoint sets the scheme and host ("http://127.0.0.1:4443") that
// presigned URLs point at. By default they use the client's endpoint host
// over HTTPS, which is right for Cloud Storage; an emulator served over
// plain HTTP needs this option (the gs:// opener sets it from endpoint=).
func WithURLEndpoint(endpoint string) Option {
	return func(c *config) error {
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("backend_gcs: URL endpoint %q is not http(s)://host[:port]: %w", endpoint, fs.ErrInvalid)
		}
		c.urlHost = u.Host
		c.urlInsecure = u.Scheme == "http"
		return nil
	}
}
