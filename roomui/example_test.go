package roomui_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/roomstore/roomstore/roomui"
)

// An embedder mounts the file browser beside its room server (whose
// rooms are at /rooms/ and tus endpoints at /tus/); a participant opens
// /ui/rooms/{room}#token=JWT.
func Example() {
	ui, err := roomui.Handler(roomui.Options{Title: "Team files"})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	// mux.Handle("/rooms/", roomServer) and mux.Handle("/tus/", ...) here.
	mux.Handle("/", ui)

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ui/rooms/design", nil))
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	// Output: 200 text/html; charset=utf-8
}
