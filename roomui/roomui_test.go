package roomui_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/roomstore/roomstore/roomui"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server serves the file browser as roomstore serve mounts it.
func server(t *testing.T, o roomui.Options) *httptest.Server {
	t.Helper()
	h, err := roomui.Handler(o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// do makes one request, with no token, cookie nor credential of any kind.
func do(t *testing.T, s *httptest.Server, method, path string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := s.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// assetRefs are the src and href attributes of a page that name the
// server's own files.
var assetRefs = regexp.MustCompile(`(?:src|href)="(/[^"]*)"`)

func refs(t *testing.T, page string) []string {
	t.Helper()
	var out []string
	for _, m := range assetRefs.FindAllStringSubmatch(page, -1) {
		out = append(out, m[1])
	}
	return out
}

func checkSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": roomui.CSP,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"X-Frame-Options":         "DENY",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
}

func TestPages(t *testing.T) {
	s := server(t, roomui.Options{})
	for _, tc := range []struct{ name, path, marker string }{
		{"the sign-in form at /", "/", `data-page="signin"`},
		{"a room's page", "/ui/rooms/team", `data-page="room"`},
		{"a room whose name needs escaping", "/ui/rooms/" + "caf%C3%A9%20%26%20co", `data-page="room"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, s, http.MethodGet, tc.path, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %s", tc.path, resp.Status)
			}
			checkSecurityHeaders(t, tc.path, resp.Header)
			if got := resp.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", got)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("Cache-Control %q, want no-cache: a page is revalidated on every load", got)
			}
			if resp.Header.Get("ETag") == "" {
				t.Error("no ETag on a page")
			}
			if !strings.Contains(body, tc.marker) {
				t.Errorf("the page lacks %s", tc.marker)
			}
			if strings.Contains(body, "<style") || strings.Contains(body, " style=") || regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]`).MatchString(body) || strings.Contains(body, " on") && regexp.MustCompile(`\son[a-z]+=`).MatchString(body) {
				t.Error("the page has an inline script, style or event handler, which the CSP refuses")
			}
			if strings.Contains(body, "http://") || strings.Contains(body, "https://") || strings.Contains(body, "//cdn") {
				t.Error("the page names another origin")
			}
		})
	}
	t.Run("every page's references resolve to assets served with long caching", func(t *testing.T) {
		seen := 0
		for _, page := range []string{"/", "/ui/rooms/team"} {
			_, body := do(t, s, http.MethodGet, page, nil)
			rs := refs(t, body)
			if len(rs) < 3 {
				t.Fatalf("%s references %d files (%v), want its script, style sheet and icon", page, len(rs), rs)
			}
			for _, ref := range rs {
				if ref == "/" {
					continue // the sign-in link
				}
				if !strings.HasPrefix(ref, roomui.AssetPrefix) {
					t.Errorf("%s references %s, outside %s", page, ref, roomui.AssetPrefix)
					continue
				}
				resp, b := do(t, s, http.MethodGet, ref, nil)
				if resp.StatusCode != http.StatusOK || len(b) == 0 {
					t.Errorf("%s: %s, %d bytes", ref, resp.Status, len(b))
					continue
				}
				seen++
				checkSecurityHeaders(t, ref, resp.Header)
				if got := resp.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
					t.Errorf("%s: Cache-Control %q", ref, got)
				}
				wantType := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
				for ext, ct := range wantType {
					if strings.HasSuffix(ref, ext) && resp.Header.Get("Content-Type") != ct {
						t.Errorf("%s: Content-Type %q, want %q", ref, resp.Header.Get("Content-Type"), ct)
					}
				}
				if strings.Contains(b, "sourceMappingURL") {
					t.Errorf("%s points to a source map", ref)
				}
			}
		}
		if seen < 6 {
			t.Errorf("%d asset references resolved, want the 3 of each page", seen)
		}
	})
}

func TestNoTokenNeeded(t *testing.T) {
	s := server(t, roomui.Options{})
	plain, body := do(t, s, http.MethodGet, "/ui/rooms/team", nil)
	withBad, body2 := do(t, s, http.MethodGet, "/ui/rooms/team", map[string]string{"Authorization": "Bearer not-a-token"})
	if plain.StatusCode != http.StatusOK || withBad.StatusCode != http.StatusOK || body != body2 {
		t.Errorf("without a token %s, with a bad one %s, same page %v: the page must not depend on a token", plain.Status, withBad.Status, body == body2)
	}
	if strings.Contains(body, "token=") {
		t.Error("the page names a token")
	}
}

func TestNotFound(t *testing.T) {
	s := server(t, roomui.Options{})
	for _, p := range []string{
		"/ui/rooms/.hidden",                     // a leading dot
		"/ui/rooms/a/b",                         // two elements
		"/ui/rooms/a%2Fb",                       // an escaped slash
		"/ui/rooms/a%5Cb",                       // a backslash
		"/ui/rooms/a%01b",                       // a control character
		"/ui/rooms/" + strings.Repeat("x", 256), // too long
		"/ui/assets/app.js",                     // an asset by its unhashed name
		"/ui/assets/app.0000000000000000.js",
		"/ui/assets/",
		"/index.html",
		"/favicon.ico",
	} {
		resp, _ := do(t, s, http.MethodGet, p, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", p, resp.Status)
		}
		checkSecurityHeaders(t, p, resp.Header)
	}
	for _, p := range []string{"/ui", "/ui/", "/ui/rooms/"} {
		resp, _ := do(t, s, http.MethodGet, p, nil)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/" {
			t.Errorf("GET %s: %s to %q, want 302 to /", p, resp.Status, resp.Header.Get("Location"))
		}
	}
}

func TestMethods(t *testing.T) {
	s := server(t, roomui.Options{})
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions, "PROPFIND"} {
		for _, p := range []string{"/", "/ui/rooms/team", "/nowhere"} {
			resp, _ := do(t, s, m, p, nil)
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %s, Allow %q; want 405 and GET, HEAD", m, p, resp.Status, resp.Header.Get("Allow"))
			}
		}
	}
	t.Run("HEAD answers GET's headers without a body", func(t *testing.T) {
		get, body := do(t, s, http.MethodGet, "/ui/rooms/team", nil)
		head, hbody := do(t, s, http.MethodHead, "/ui/rooms/team", nil)
		if head.StatusCode != http.StatusOK || hbody != "" {
			t.Fatalf("HEAD: %s with %d bytes", head.Status, len(hbody))
		}
		for _, k := range []string{"Content-Length", "ETag", "Content-Type", "Cache-Control", "Content-Security-Policy"} {
			if head.Header.Get(k) != get.Header.Get(k) {
				t.Errorf("HEAD %s = %q, GET's %q", k, head.Header.Get(k), get.Header.Get(k))
			}
		}
		if get.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
			t.Errorf("Content-Length %s for %d bytes", get.Header.Get("Content-Length"), len(body))
		}
	})
}

func TestRevalidation(t *testing.T) {
	s := server(t, roomui.Options{})
	_, page := do(t, s, http.MethodGet, "/ui/rooms/team", nil)
	paths := append([]string{"/", "/ui/rooms/team", "/ui/rooms/other"}, refs(t, page)...)
	for _, p := range paths {
		first, _ := do(t, s, http.MethodGet, p, nil)
		etag := first.Header.Get("ETag")
		if etag == "" {
			t.Errorf("%s: no ETag", p)
			continue
		}
		again, body := do(t, s, http.MethodGet, p, map[string]string{"If-None-Match": etag})
		if again.StatusCode != http.StatusNotModified || body != "" {
			t.Errorf("%s with If-None-Match %s: %s and %d bytes, want 304 and none", p, etag, again.Status, len(body))
		}
		checkSecurityHeaders(t, p+" (304)", again.Header)
		other, _ := do(t, s, http.MethodGet, p, map[string]string{"If-None-Match": `"stale"`})
		if other.StatusCode != http.StatusOK {
			t.Errorf("%s with a stale ETag: %s, want 200", p, other.Status)
		}
	}
	t.Run("the same page for every room", func(t *testing.T) {
		a, _ := do(t, s, http.MethodGet, "/ui/rooms/team", nil)
		b, _ := do(t, s, http.MethodGet, "/ui/rooms/other", nil)
		if a.Header.Get("ETag") != b.Header.Get("ETag") {
			t.Error("two rooms' pages differ")
		}
	})
}

func TestOptions(t *testing.T) {
	s := server(t, roomui.Options{Title: `Team <files> & "co"`, RoomsPath: "/ws/rooms/", TusPath: "/up/"})
	_, body := do(t, s, http.MethodGet, "/ui/rooms/team", nil)
	for _, want := range []string{`data-rooms="/ws/rooms/"`, `data-tus="/up/"`, `Team &lt;files&gt; &amp; &#34;co&#34;`} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if strings.Contains(body, "<files>") {
		t.Error("the title went into the page unescaped")
	}
	for _, bad := range []roomui.Options{{RoomsPath: "rooms/"}, {RoomsPath: "/rooms"}, {TusPath: "/a/../b/"}, {TusPath: "//x/"}} {
		if _, err := roomui.Handler(bad); err == nil {
			t.Errorf("Handler(%+v) accepted", bad)
		}
	}
}
