package testserver

import (
	"context"
	"testing"
	"time"

	"github.com/roomstore/roomstore/backend"
)

// Within runs f and fails the test if it has not returned after d, so
// that a call stuck on a dead server shows up as a failure rather than a
// hung test.
func Within(t testing.TB, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s still blocked after %v", what, d)
	}
}

// WriteUntilError writes data through w in pieces of piece bytes and
// returns the first error (nil when every piece was written).
func WriteUntilError(ctx context.Context, w backend.Writer, data []byte, piece int) error {
	for len(data) > 0 {
		n := min(piece, len(data))
		if err := w.Write(ctx, data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}
