package backend_gcs

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore/backend"
)

// stampField matches the server timestamps of an object in a JSON answer.
var stampField = regexp.MustCompile(`"(timeCreated|updated)"\s*:\s*"([^"]+)"`)

// skewedStore is a store whose Backend sees every server timestamp moved
// by skew, as if the server's clock were that far from the local one.
func skewedStore(t *testing.T, endpoint string, skew time.Duration) *store {
	t.Helper()
	return storeWith(t, endpoint, roundTripper(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			return resp, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		body = stampField.ReplaceAllFunc(body, func(m []byte) []byte {
			sub := stampField.FindSubmatch(m)
			ts, err := time.Parse(time.RFC3339Nano, string(sub[2]))
			if err != nil {
				t.Errorf("server timestamp %q: %v", sub[2], err)
				return m
			}
			return []byte(`"` + string(sub[1]) + `":"` + ts.Add(skew).Format(time.RFC3339Nano) + `"`)
		})
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return resp, nil
	}))
}

// A claim ages by the server's clock, whatever the local one says.
func TestClaimLeaseInServerTime(t *testing.T) {
	ep := newServer(t)

	t.Run("a live claim is kept when the server's clock is behind", func(t *testing.T) {
		s := skewedStore(t, ep, -10*time.Minute)
		before := mustCreate(t, s, "f", []byte("a"))
		release := s.holdClaim(t, "f", before.ETag)
		claim := s.claimName(s.key("f"), generationOf(t, before))
		w, err := s.Append(t.Context(), "f", backend.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		write(t, w, []byte("b"), 1)
		for range 2 {
			if _, err := w.Commit(t.Context()); !errors.Is(err, backend.ErrConflict) {
				t.Fatalf("Commit under a claim held for a moment = %v, want backend.ErrConflict", err)
			}
			if !slices.Contains(s.objects(t), claim) {
				t.Fatal("the live claim was broken: its age was taken from the local clock")
			}
		}
		release()
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatalf("Commit after the claim was released: %v", err)
		}
		mustEqual(t, "f", readAll(t, s, "f"), []byte("ab"))
	})

	t.Run("a dead claim is broken when the server's clock is ahead", func(t *testing.T) {
		s := skewedStore(t, ep, 10*time.Minute)
		before := mustCreate(t, s, "f", []byte("a"))
		s.holdClaim(t, "f", before.ETag) // never released: its holder "crashed"
		s.claimLease = 0
		w, err := s.Append(t.Context(), "f", backend.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		write(t, w, []byte("b"), 1)
		if _, err := w.Commit(t.Context()); !errors.Is(err, backend.ErrConflict) {
			t.Fatalf("first Commit = %v, want backend.ErrConflict (claim held)", err)
		}
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatalf("Commit after the stale claim was broken: %v", err)
		}
		mustEqual(t, "f", readAll(t, s, "f"), []byte("ab"))
		s.noneReserved(t)
	})
}
