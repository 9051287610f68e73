package backend_s3_test

import (
	"bytes"
	"io/fs"
	"net/http"
	"testing"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/testserver"
)

func TestPresign(t *testing.T) {
	g := startGateway(t)
	s := g.newStore(t)
	data := content(1, 3*kib)
	w, err := s.Create(t.Context(), "docs/report.txt", backend.WriteOptions{ContentType: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, data, kib)
	if _, err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}

	signed, err := s.Presign(t.Context(), "docs/report.txt", backend.PresignOptions{Expiry: time.Minute})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a plain GET fetches the file with its content type", func(t *testing.T) {
		status, body, header := fetch(t, signed)
		if status != http.StatusOK || !bytes.Equal(body, data) {
			t.Fatalf("GET = %d with %d bytes, want 200 with %d", status, len(body), len(data))
		}
		if ct := header.Get("Content-Type"); ct != "text/plain" {
			t.Errorf("Content-Type = %q", ct)
		}
	})

	// Refused tampering (signature, path, expiry, disposition changed,
	// dropped or added) and expiry are the conformance suite's URL cases;
	// what follows is S3's own.

	t.Run("a signed inline disposition is served as it is", func(t *testing.T) {
		u, err := s.Presign(t.Context(), "docs/report.txt", backend.PresignOptions{Expiry: time.Minute, ContentDisposition: "inline"})
		if err != nil {
			t.Fatal(err)
		}
		status, body, header := fetch(t, u)
		if status != http.StatusOK || !bytes.Equal(body, data) {
			t.Fatalf("GET = %d with %d bytes, want 200 with %d", status, len(body), len(data))
		}
		if got := header.Values("Content-Disposition"); len(got) != 1 || got[0] != "inline" {
			t.Errorf("Content-Disposition = %q, want exactly inline", got)
		}
	})

	t.Run("an expiry out of SigV4's range is invalid", func(t *testing.T) {
		for _, d := range []time.Duration{0, -time.Second, 8 * 24 * time.Hour} {
			_, err := s.Presign(t.Context(), "docs/report.txt", backend.PresignOptions{Expiry: d})
			assertIs(t, err, fs.ErrInvalid)
		}
	})
}

// fetch GETs u with a plain client, as a browser would.
func fetch(t *testing.T, u string) (int, []byte, http.Header) {
	t.Helper()
	status, header, body := testserver.Get(t, u)
	return status, body, header
}
