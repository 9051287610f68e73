package roomclient_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// TestDialRefusals: the server's refusals of the upgrade fail Dial at
// once, with Reconnect too, as ErrForbidden (403) or fs.ErrNotExist (404).
func TestDialRefusals(t *testing.T) {
	e := newEnv(t, stores[0].url(t))
	token := func(claims roomserver.Claims, secret []byte) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
		must(t, err)
		return tok
	}
	grants := func(room string) []roomserver.Grant { return []roomserver.Grant{{Name: "room", Scope: room}} }
	otherSecret, err := roomserver.NewToken([]byte("another-secret-entirely-0123456789"), "mallory", "r1", time.Hour)
	must(t, err)
	for _, tc := range []struct {
		name, url, token string
		want             error
	}{
		{"a token signed with another secret is forbidden", e.roomURL("r1"), otherSecret, roomclient.ErrForbidden},
		{"a token that is no JWT is forbidden", e.roomURL("r1"), "not-a-jwt", roomclient.ErrForbidden},
		{"no token is forbidden", e.roomURL("r1"), "", roomclient.ErrForbidden},
		{"an expired token is forbidden", e.roomURL("r1"), token(roomserver.Claims{Name: "late", Grants: grants("r1"),
			RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Minute))}}, e.secret), roomclient.ErrForbidden},
		{"a token for another room is forbidden", e.roomURL("r1"), e.token(t, "alice", "r2"), roomclient.ErrForbidden},
		{"a token naming no participant is forbidden", e.roomURL("r1"), token(roomserver.Claims{Grants: grants("r1")}, e.secret), roomclient.ErrForbidden},
		{"an invalid room name is not found", e.roomURL(".hidden"), e.token(t, "alice", "r1"), fs.ErrNotExist},
		{"a path outside /rooms/ is not found", "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/elsewhere/r1", e.token(t, "alice", "r1"), fs.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := roomclient.Dial(deadline(t), tc.url, roomclient.Options{Token: tc.token, Reconnect: true, Logger: quiet()})
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			wantErr(t, "Dial", err, tc.want)
		})
	}

	t.Run("a room whose store cannot be opened fails Dial with the store's reason", func(t *testing.T) {
		broken := newEnv(t, func(room string) string { return "file:///proc/" + room })
		_, err := roomclient.Dial(deadline(t), broken.roomURL("r1"), roomclient.Options{Token: broken.token(t, "alice", "r1"), Logger: quiet()})
		wantErr(t, "Dial", err, roomstore.ErrStoreUnavailable)
		var re *roomclient.Error
		if !errors.As(err, &re) || re.Code != 503 || !strings.HasPrefix(re.Error(), "room store unavailable: ") || len(re.Error()) == len("room store unavailable: ") {
			t.Errorf("Dial: %v, want a 503 *Error saying why the room's store is unavailable", err)
		}
		for _, leak := range []string{"/proc", "status code", "101"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("Dial: %q says %q", err, leak)
			}
		}
	})

	t.Run("an unreachable server fails Dial with its cause", func(t *testing.T) {
		_, err := roomclient.Dial(deadline(t), "ws://127.0.0.1:1/rooms/r1", roomclient.Options{Logger: quiet()})
		if err == nil || errors.Is(err, roomclient.ErrForbidden) {
			t.Fatalf("Dial: %v", err)
		}
	})

	t.Run("a valid token connects", func(t *testing.T) {
		c := e.dial(t, "alice", "r1", roomclient.Options{})
		if c.ParticipantID() == "" {
			t.Error("no participant id")
		}
	})

	t.Run("Dial honours its context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := roomclient.Dial(ctx, e.roomURL("r1"), roomclient.Options{Token: e.token(t, "alice", "r1"), Logger: quiet()})
		wantErr(t, "Dial with a cancelled context", err, context.Canceled)
	})
}
