package conformance

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
)

// url returns p's DownloadURL, failing the test on error.
func (e *env) url(t *testing.T, p string) string {
	t.Helper()
	u, err := e.DownloadURL(e.ctx, p)
	noErr(t, "DownloadURL "+p, err)
	return u
}

// fetch GETs u with a plain HTTP client and returns body and status.
func fetch(t *testing.T, u string, header http.Header) ([]byte, int) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	noErr(t, "request "+u, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	noErr(t, "GET "+u, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	noErr(t, "read body", err)
	return body, resp.StatusCode
}

// queryParam finds the first query parameter whose lower-cased name
// matches.
func queryParam(q url.Values, match func(string) bool) string {
	for k := range q {
		if match(strings.ToLower(k)) {
			return k
		}
	}
	return ""
}

func isSignature(k string) bool { return k == "sig" || strings.HasSuffix(k, "signature") }
func isExpiry(k string) bool    { return k == "exp" || strings.HasSuffix(k, "-expires") }

var urlCases = []tcase{
	{"a download url serves the file to a plain http get", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		data := pattern(100_000, 5)
		e.put(t, "docs/report.bin", data, overwrite)
		body, status := fetch(t, e.url(t, "docs/report.bin"), nil)
		if status != http.StatusOK || string(body) != string(data) {
			t.Fatalf("GET: %d, %s", status, show(body))
		}
		body, status = fetch(t, e.url(t, "docs/report.bin"), http.Header{"Range": {"bytes=10-19"}})
		if status != http.StatusPartialContent || string(body) != string(data[10:20]) {
			t.Fatalf("range GET: %d, %q", status, body)
		}
	}},
	{"a tampered or cross-path download url is refused", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "a.txt", []byte("secret a"), overwrite)
		e.put(t, "b.txt", []byte("secret b"), overwrite)
		raw := e.url(t, "a.txt")
		u, err := url.Parse(raw)
		noErr(t, "parse", err)
		q := u.Query()
		sigKey, expKey := queryParam(q, isSignature), queryParam(q, isExpiry)
		if sigKey == "" || expKey == "" {
			t.Fatalf("URL %s carries no signature or expiry parameter", raw)
		}
		if h.URLSignaturesUnchecked {
			// The server cannot tell a forged URL; check that the URL is
			// signed and bounded instead.
			if n, err := strconv.Atoi(q.Get(expKey)); err != nil || n <= 0 || n > int(roomstore.DefaultURLExpiry/time.Second) {
				t.Fatalf("expiry parameter %s=%q", expKey, q.Get(expKey))
			}
			if len(q.Get(sigKey)) < 32 {
				t.Fatalf("signature parameter %s=%q is too short", sigKey, q.Get(sigKey))
			}
			return
		}
		tampered := func(change func(url.Values)) string {
			v := u.Query()
			change(v)
			c := *u
			c.RawQuery = v.Encode()
			return c.String()
		}
		sig := q.Get(sigKey)
		flipped := sig[:len(sig)-1] + string("AB"[boolInt(sig[len(sig)-1] == 'A')])
		forged := map[string]string{
			"signature changed": tampered(func(v url.Values) { v.Set(sigKey, flipped) }),
			"signature removed": tampered(func(v url.Values) { v.Del(sigKey) }),
			"expiry extended":   tampered(func(v url.Values) { v.Set(expKey, q.Get(expKey)+"0") }),
			"other path":        strings.Replace(raw, "a.txt", "b.txt", 1),
		}
		for what, f := range forged {
			body, status := fetch(t, f, nil)
			// S3 servers answer a URL without a signature as a malformed
			// request (400), as AWS does; anything else forged is a 403.
			refused := status == http.StatusForbidden || (what == "signature removed" && status == http.StatusBadRequest)
			if !refused || strings.Contains(string(body), "secret") {
				t.Fatalf("%s: %d %q, want 403 without content", what, status, body)
			}
		}
		if body, status := fetch(t, raw, nil); status != http.StatusOK || string(body) != "secret a" {
			t.Fatalf("untouched URL: %d %q", status, body)
		}
	}},
	{"an expired download url is refused", func(t *testing.T, h Harness) {
		const expiry = 2 * time.Second
		e := fresh(t, h, roomstore.WithURLExpiry(expiry))
		e.put(t, "f.txt", []byte("soon gone"), overwrite)
		signed := time.Now()
		raw := e.url(t, "f.txt")
		if body, status := fetch(t, raw, nil); status != http.StatusOK || string(body) != "soon gone" {
			t.Fatalf("fresh URL: %d %q", status, body)
		}
		if h.URLSignaturesUnchecked {
			u, _ := url.Parse(raw)
			if k := queryParam(u.Query(), isExpiry); k == "" || u.Query().Get(k) != "2" {
				t.Fatalf("URL %s does not carry a 2-second expiry", raw)
			}
			return
		}
		// Expiries count whole seconds, so a URL may live up to a second
		// longer than asked.
		time.Sleep(time.Until(signed.Add(expiry + 1100*time.Millisecond)))
		if body, status := fetch(t, raw, nil); status != http.StatusForbidden || string(body) == "soon gone" {
			t.Fatalf("expired URL: %d %q, want 403", status, body)
		}
	}},
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
