package roomserver_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomserver"
	"github.com/roomstore/roomstore/roomserver/protocoltest"
)

// TestProtocol runs the protocol suite against roomserver as `roomstore
// serve` mounts it: rooms at /rooms/, download URLs at /files/.
func TestProtocol(t *testing.T) {
	key := []byte("protocol suite signing key, 32 bytes")
	var base string
	srv, err := roomserver.New(roomserver.Options{
		Logger:     slog.New(slog.DiscardHandler),
		Verify:     roomserver.HS256(secret),
		SigningKey: key,
		Resolve: func(ctx context.Context, room string, _ bool) (*roomstore.Engine, error) {
			return roomstore.OpenURL(ctx, "mem://", roomstore.WithBaseURL(base+"/files/"+url.PathEscape(room)+"/"), roomstore.WithSigningKey(key))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/rooms/", srv)
	mux.Handle("/files/", srv.Files("/files/"))
	hs := httptest.NewServer(mux)
	base = hs.URL
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		hs.CloseClientConnections()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
	})
	protocoltest.Run(t, protocoltest.Target{
		URL: "ws" + strings.TrimPrefix(hs.URL, "http"),
		Token: func(room, name string) string {
			tok, err := roomserver.NewToken(secret, name, room, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		},
	})
}
