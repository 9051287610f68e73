// Package roomui serves roomstore's file browser: a web page from which a
// participant, with the token it was given, browses a room's files,
// uploads (resumable, over tus), downloads, renames, deletes, lists and
// restores past versions, and sees the other participants' changes as
// they happen.
//
// Handler returns an http.Handler that an embedder mounts beside its
// roomserver.Server (roomstore serve mounts it on "/"):
//
//   - GET / is a sign-in form (room and token); it sends nothing to the
//     server, but opens /ui/rooms/{room}#token=JWT;
//   - GET /ui/rooms/{room} is the file browser, the same page for every
//     valid room name (roomserver.ValidRoom; any other is 404). The token
//     travels in the URL's fragment, which a browser never sends, so that
//     it reaches no log; the page moves it to the tab's sessionStorage and
//     removes it from the address bar. The page needs no token to load:
//     it presents the token to the room itself, over the room's WebSocket
//     (the subprotocol meshagent-room.JWT) and to the tus endpoint
//     (Authorization: Bearer), and the server checks it there;
//   - GET /ui/assets/NAME.HASH.EXT are its script, style sheet and icon,
//     embedded in the binary, named by a hash of their bytes and cached
//     for a year (immutable). The pages are revalidated on every load
//     (Cache-Control: no-cache, an ETag, 304 when unchanged).
//
// Every answer carries a strict Content-Security-Policy (no inline script
// or style, nothing from another origin; the page connects only to its
// own origin), X-Content-Type-Options: nosniff, Referrer-Policy:
// no-referrer and X-Frame-Options: DENY. The page makes no request to
// another origin: no CDN, no web font.
//
// The page speaks the room protocol with roomstore's extensions
// (roomserver's package docs; docs/protocol.md): list, move, delete,
// download_url, versions and restore, and it re-lists after a
// storage.events.overflow and after each reconnection. It reads the
// token's storage grant to hide what the participant may not do; the
// server decides regardless, and the page shows a refusal in one line.
//
// # Errors
//
// Handler fails only on Options it cannot use: a RoomsPath or TusPath that
// is not an absolute path ending in "/". The handler answers a method
// other than GET and HEAD with 405 (Allow: GET, HEAD), an unknown path or
// an invalid room name with 404.
package roomui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/roomstore/roomstore/roomserver"
)

// The built bundle (make ui writes assets/ from web/) and the pages.
//
//go:embed assets/app.js assets/app.css assets/icon.svg
var assetFS embed.FS

//go:embed pages/*.html
var pageFS embed.FS

// Options configure the file browser. The zero value serves roomstore
// serve's layout.
type Options struct {
	// Title names the application in the pages' titles and header
	// (default "roomstore").
	Title string
	// RoomsPath is where the rooms' WebSockets are, on the page's own
	// origin (default "/rooms/": ws://HOST/rooms/{room}).
	RoomsPath string
	// TusPath is where the rooms' tus endpoints are (default "/tus/":
	// /tus/{room}/).
	TusPath string
}

// Paths the handler serves.
const (
	// RoomPrefix precedes a room's name in the file browser's URL.
	RoomPrefix = "/ui/rooms/"
	// AssetPrefix precedes the assets' hashed names.
	AssetPrefix = "/ui/assets/"
)

// CSP is the Content-Security-Policy of every answer: nothing inline,
// nothing from another origin. connect-src 'self' covers the page's own
// ws: and wss: origin (CSP Level 3).
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// assetCache is how long a browser keeps an asset, whose name changes
// with its bytes.
const assetCache = "public, max-age=31536000, immutable"

// handler serves the pages and assets.
type handler struct {
	pages  map[string]*blob // "signin", "room"
	assets map[string]*blob // by hashed name
}

// blob is one answer's body, its type and its validator.
type blob struct {
	body  []byte
	ctype string
	etag  string
	cache string
}

func newBlob(body []byte, ctype, cache string) *blob {
	sum := sha256.Sum256(body)
	return &blob{body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:16]) + `"`, cache: cache}
}

// Handler returns the file browser's handler (see the package docs), or an
// error for Options it cannot use.
func Handler(o Options) (http.Handler, error) {
	if o.Title == "" {
		o.Title = "roomstore"
	}
	if o.RoomsPath == "" {
		o.RoomsPath = "/rooms/"
	}
	if o.TusPath == "" {
		o.TusPath = "/tus/"
	}
	for _, p := range []struct{ name, v string }{{"RoomsPath", o.RoomsPath}, {"TusPath", o.TusPath}} {
		if !strings.HasPrefix(p.v, "/") || !strings.HasSuffix(p.v, "/") || path.Clean(p.v)+"/" != p.v && p.v != "/" {
			return nil, fmt.Errorf("roomui: %s %q is not an absolute, clean path ending in /", p.name, p.v)
		}
	}
	h := &handler{pages: map[string]*blob{}, assets: map[string]*blob{}}
	names := map[string]string{} // asset file -> its URL
	for _, a := range []struct{ file, ctype string }{
		{"app.js", "text/javascript; charset=utf-8"},
		{"app.css", "text/css; charset=utf-8"},
		{"icon.svg", "image/svg+xml"},
	} {
		body, err := fs.ReadFile(assetFS, "assets/"+a.file)
		if err != nil {
			return nil, fmt.Errorf("roomui: the embedded %s: %w", a.file, err)
		}
		b := newBlob(body, a.ctype, assetCache)
		ext := path.Ext(a.file)
		name := strings.TrimSuffix(a.file, ext) + "." + strings.Trim(b.etag, `"`)[:16] + ext
		h.assets[name] = b
		names[a.file] = AssetPrefix + name
	}
	tpl, err := template.ParseFS(pageFS, "pages/*.html")
	if err != nil {
		return nil, fmt.Errorf("roomui: the embedded pages: %w", err)
	}
	data := map[string]string{
		"Title": o.Title, "Rooms": o.RoomsPath, "Tus": o.TusPath,
		"JS": names["app.js"], "CSS": names["app.css"], "Icon": names["icon.svg"],
	}
	for _, p := range []string{"signin", "room"} {
		var buf bytes.Buffer
		if err := tpl.ExecuteTemplate(&buf, p+".html", data); err != nil {
			return nil, fmt.Errorf("roomui: the %s page: %w", p, err)
		}
		h.pages[p] = newBlob(buf.Bytes(), "text/html; charset=utf-8", "no-cache")
	}
	return h, nil
}

// errNotFound is the body of a 404.
var errNotFound = errors.New("not found")

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	switch {
	case p == "/":
		h.serve(w, r, h.pages["signin"])
	case p == "/ui" || p == "/ui/" || p == RoomPrefix:
		http.Redirect(w, r, "/", http.StatusFound)
	case strings.HasPrefix(p, RoomPrefix):
		if !roomserver.ValidRoom(p[len(RoomPrefix):]) {
			http.Error(w, errNotFound.Error(), http.StatusNotFound)
			return
		}
		h.serve(w, r, h.pages["room"])
	case strings.HasPrefix(p, AssetPrefix):
		b, ok := h.assets[p[len(AssetPrefix):]]
		if !ok {
			http.Error(w, errNotFound.Error(), http.StatusNotFound)
			return
		}
		h.serve(w, r, b)
	default:
		http.Error(w, errNotFound.Error(), http.StatusNotFound)
	}
}

// serve answers with b: HEAD, If-None-Match (304) and ranges through
// http.ServeContent.
func (h *handler) serve(w http.ResponseWriter, r *http.Request, b *blob) {
	hd := w.Header()
	hd.Set("Content-Type", b.ctype)
	hd.Set("Cache-Control", b.cache)
	hd.Set("ETag", b.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b.body))
}
