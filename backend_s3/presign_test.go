package backend_s3_test

import (
	"bytes"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore/backend"
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
	put(t, s, "docs/other.txt", []byte("other"))

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

	tampered := map[string]func(u *url.URL){
		"a changed signature": func(u *url.URL) {
			q := u.Query()
			sig := []byte(q.Get("X-Amz-Signature"))
			if sig[0] == '0' {
				sig[0] = '1'
			} else {
				sig[0] = '0'
			}
			q.Set("X-Amz-Signature", string(sig))
			u.RawQuery = q.Encode()
		},
		"another path": func(u *url.URL) {
			u.Path = strings.Replace(u.Path, "report.txt", "other.txt", 1)
			u.RawPath = ""
		},
		"a longer expiry": func(u *url.URL) {
			q := u.Query()
			q.Set("X-Amz-Expires", "604800")
			u.RawQuery = q.Encode()
		},
		"a signature for another key": func(u *url.URL) {
			other, err := s.Presign(t.Context(), "docs/other.txt", backend.PresignOptions{Expiry: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			o, err := url.Parse(other)
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			q.Set("X-Amz-Signature", o.Query().Get("X-Amz-Signature"))
			u.RawQuery = q.Encode()
		},
	}
	for name, tamper := range tampered {
		t.Run("a URL with "+name+" is refused with 403", func(t *testing.T) {
			u, err := url.Parse(signed)
			if err != nil {
				t.Fatal(err)
			}
			tamper(u)
			status, body, _ := fetch(t, u.String())
			if status != http.StatusForbidden {
				t.Errorf("GET %s = %d, want 403", u, status)
			}
			if bytes.Contains(body, data[:64]) {
				t.Error("the refusal reveals the content")
			}
		})
	}

	dispositions := []string{
		`attachment; filename="report.txt"`,
		mime.FormatMediaType("attachment", map[string]string{"filename": "résumé 1.txt"}),
		"inline",
	}
	for _, cd := range dispositions {
		t.Run("the signed Content-Disposition "+cd+" is served as it is", func(t *testing.T) {
			u, err := s.Presign(t.Context(), "docs/report.txt", backend.PresignOptions{Expiry: time.Minute, ContentDisposition: cd})
			if err != nil {
				t.Fatal(err)
			}
			status, body, header := fetch(t, u)
			if status != http.StatusOK || !bytes.Equal(body, data) {
				t.Fatalf("GET = %d with %d bytes, want 200 with %d", status, len(body), len(data))
			}
			if got := header.Values("Content-Disposition"); len(got) != 1 || got[0] != cd {
				t.Errorf("Content-Disposition = %q, want exactly %q", got, cd)
			}
		})
	}

	t.Run("a URL whose disposition was changed, dropped or added is refused with 403", func(t *testing.T) {
		const param = "response-content-disposition"
		withCD, err := s.Presign(t.Context(), "docs/report.txt", backend.PresignOptions{Expiry: time.Minute, ContentDisposition: dispositions[1]})
		if err != nil {
			t.Fatal(err)
		}
		for name, tc := range map[string]struct {
			signed string
			tamper func(q url.Values)
			want   int
		}{
			// The control: re-encoding the query alone keeps the URL valid.
			"kept":    {withCD, func(url.Values) {}, http.StatusOK},
			"changed": {withCD, func(q url.Values) { q.Set(param, `attachment; filename="evil.html"`) }, http.StatusForbidden},
			"dropped": {withCD, func(q url.Values) { q.Del(param) }, http.StatusForbidden},
			"added":   {signed, func(q url.Values) { q.Set(param, "attachment") }, http.StatusForbidden},
		} {
			u, err := url.Parse(tc.signed)
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			tc.tamper(q)
			u.RawQuery = q.Encode()
			if status, _, header := fetch(t, u.String()); status != tc.want {
				t.Errorf("GET with the disposition %s = %d (Content-Disposition %q), want %d", name, status, header.Get("Content-Disposition"), tc.want)
			}
		}
	})

	t.Run("an expired URL is refused with 403", func(t *testing.T) {
		short, err := s.Presign(t.Context(), "docs/report.txt", backend.PresignOptions{Expiry: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2100 * time.Millisecond)
		if status, _, _ := fetch(t, short); status != http.StatusForbidden {
			t.Errorf("GET after expiry = %d, want 403", status)
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
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body, resp.Header
}
