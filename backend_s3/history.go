package backend_s3

import (
	"context"
	"errors"
	"io"
	"iter"

	"github.com/roomstore/roomstore/backend"
)

// Versions implements backend.History.
func (b *Backend) Versions(context.Context, string) iter.Seq2[backend.Version, error] {
	return func(yield func(backend.Version, error) bool) { yield(backend.Version{}, errors.ErrUnsupported) }
}

// Kept implements backend.History.
func (b *Backend) Kept(context.Context, string) iter.Seq2[backend.Version, error] {
	return func(yield func(backend.Version, error) bool) { yield(backend.Version{}, errors.ErrUnsupported) }
}

// ReadVersion implements backend.History.
func (b *Backend) ReadVersion(context.Context, string, string, int64, int64) (io.ReadCloser, backend.Version, error) {
	return nil, backend.Version{}, errors.ErrUnsupported
}

// Forget implements backend.History.
func (b *Backend) Forget(context.Context, string, string) error { return errors.ErrUnsupported }
