package conformance

import (
	"fmt"
	"io"
	"io/fs"
	"mime"
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
			u, err := url.Parse(raw)
			noErr(t, "parse", err)
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

// withQuery returns a copy of u with its query changed by change.
func withQuery(u *url.URL, change func(url.Values)) *url.URL {
	c := *u
	q := c.Query()
	change(q)
	c.RawQuery = q.Encode()
	return &c
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fetchHeader GETs u and returns the response's header and body.
func fetchHeader(t *testing.T, u string) (http.Header, []byte, int) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	noErr(t, "request "+u, err)
	resp, err := http.DefaultClient.Do(req)
	noErr(t, "GET "+u, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	noErr(t, "read body", err)
	return resp.Header, body, resp.StatusCode
}

var attachmentCases = []tcase{
	{"an attachment url makes the response a download under the file's name", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		const p = "docs/résumé 1.txt"
		e.put(t, p, []byte("cv"), overwrite)
		for name, opt := range map[string]roomstore.URLOption{"résumé 1.txt": roomstore.Attachment(""), `my "cv".txt`: roomstore.Attachment(`my "cv".txt`)} {
			u, err := e.DownloadURL(e.ctx, p, opt)
			noErr(t, "DownloadURL", err)
			header, body, status := fetchHeader(t, u)
			if status != http.StatusOK || string(body) != "cv" {
				t.Fatalf("GET attachment URL: %d %q", status, body)
			}
			d, params, err := mime.ParseMediaType(header.Get("Content-Disposition"))
			if err != nil || d != "attachment" || params["filename"] != name {
				t.Fatalf("Content-Disposition %q (%v), want an attachment named %q", header.Get("Content-Disposition"), err, name)
			}
		}
		header, _, status := fetchHeader(t, e.url(t, p))
		if status != http.StatusOK || strings.HasPrefix(header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("a plain URL answers %d with Content-Disposition %q", status, header.Get("Content-Disposition"))
		}
		for _, bad := range []string{"a/b", "nl\nname", "bad\xff", strings.Repeat("n", 256)} {
			_, err := e.DownloadURL(e.ctx, p, roomstore.Attachment(bad))
			wantErr(t, fmt.Sprintf("Attachment(%q)", bad), err, fs.ErrInvalid)
		}
		_, err := e.DownloadURL(e.ctx, p, nil)
		wantErr(t, "DownloadURL with a nil option", err, fs.ErrInvalid)
	}},
	{"an attachment url's disposition cannot be changed", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "f.txt", []byte("secret"), overwrite)
		raw, err := e.DownloadURL(e.ctx, "f.txt", roomstore.Attachment(""))
		noErr(t, "DownloadURL", err)
		u, err := url.Parse(raw)
		noErr(t, "parse", err)
		q := u.Query()
		key := queryParam(q, func(k string) bool { return k == "att" || strings.HasSuffix(k, "content-disposition") })
		if key == "" || !strings.Contains(q.Get(key), "f.txt") {
			t.Fatalf("URL %s carries no disposition parameter naming the file", raw)
		}
		if h.URLSignaturesUnchecked {
			return // the server cannot tell; the parameter is there, signed
		}
		plain, err := url.Parse(e.url(t, "f.txt"))
		noErr(t, "parse", err)
		for what, forged := range map[string]*url.URL{
			"changed": withQuery(u, func(q url.Values) { q.Set(key, strings.Replace(q.Get(key), "f.txt", "evil.exe", 1)) }),
			"dropped": withQuery(u, func(q url.Values) { q.Del(key) }),
			"added":   withQuery(plain, func(q url.Values) { q.Set(key, q.Get(key)+`attachment; filename="evil.exe"`) }),
		} {
			if body, status := fetch(t, forged.String(), nil); status != http.StatusForbidden || strings.Contains(string(body), "secret") {
				t.Fatalf("disposition %s: %d %q, want 403", what, status, body)
			}
		}
		// The control: re-encoding the query alone keeps the URL valid.
		if body, status := fetch(t, withQuery(u, func(url.Values) {}).String(), nil); status != http.StatusOK || string(body) != "secret" {
			t.Fatalf("the untouched attachment URL, its query re-encoded: %d %q", status, body)
		}
	}},
}
