package testserver

import (
	"io"
	"net/http"
	"testing"
)

// Get fetches u with a plain HTTP GET, as a browser follows a download
// URL, and returns the status, header and body; a request that fails
// fails the test.
func Get(t testing.TB, u string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read the body: %v", u, err)
	}
	return resp.StatusCode, resp.Header, body
}
