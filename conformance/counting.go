package conformance

import (
	"context"
	"io"
	"iter"
	"sync/atomic"

	"github.com/roomstore/roomstore/backend"
)

// counting is a Backend that counts the calls made to it, so that a case
// can check that the Engine refused something before asking the store.
type counting struct {
	backend.Backend
	calls atomic.Int64
}

func (c *counting) reset() { c.calls.Store(0) }

func (c *counting) Stat(ctx context.Context, p string) (backend.Info, error) {
	c.calls.Add(1)
	return c.Backend.Stat(ctx, p)
}

func (c *counting) Create(ctx context.Context, p string, o backend.WriteOptions) (backend.Writer, error) {
	c.calls.Add(1)
	return c.Backend.Create(ctx, p, o)
}

func (c *counting) Append(ctx context.Context, p string, o backend.WriteOptions) (backend.Writer, error) {
	c.calls.Add(1)
	return c.Backend.Append(ctx, p, o)
}

func (c *counting) Read(ctx context.Context, p string, off, n int64) (io.ReadCloser, backend.Info, error) {
	c.calls.Add(1)
	return c.Backend.Read(ctx, p, off, n)
}

func (c *counting) Presign(ctx context.Context, p string, o backend.PresignOptions) (string, error) {
	c.calls.Add(1)
	return c.Backend.Presign(ctx, p, o)
}

func (c *counting) List(ctx context.Context, dir string) iter.Seq2[backend.Info, error] {
	c.calls.Add(1)
	return c.Backend.List(ctx, dir)
}

func (c *counting) Remove(ctx context.Context, p string, o backend.RemoveOptions) error {
	c.calls.Add(1)
	return c.Backend.Remove(ctx, p, o)
}

func (c *counting) Move(ctx context.Context, src, dst string, o backend.MoveOptions) (backend.Info, error) {
	c.calls.Add(1)
	return c.Backend.Move(ctx, src, dst, o)
}
