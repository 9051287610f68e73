package roomserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Identity is who a verified token names: the participant's name and the
// attributes sent to it in the connected message.
type Identity struct {
	Name       string
	Attributes map[string]any
}

// Verifier checks the token of a connection to room and returns who it
// names. Any error refuses the connection with HTTP 403; the error is
// logged, never sent. The embedding server may plug its own.
type Verifier func(ctx context.Context, room, token string) (Identity, error)

// ErrBadToken reports a token that is missing, malformed, badly signed,
// expired or not for the room.
var ErrBadToken = errors.New("roomserver: bad token")

// Grant is one entry of a token's grants claim.
type Grant struct {
	Name  string `json:"name"`
	Scope any    `json:"scope"`
}

// Claims are a participant token's claims, as the MeshAgent clients make
// them: the participant's name and its grants, one of which names the
// room.
type Claims struct {
	Name   string  `json:"name"`
	Grants []Grant `json:"grants"`
	jwt.RegisteredClaims
}

// Room returns the room the token's room grant names, or "".
func (c *Claims) Room() string {
	for _, g := range c.Grants {
		if g.Name == "room" {
			if s, ok := g.Scope.(string); ok {
				return s
			}
		}
	}
	return ""
}

// NewToken returns an HS256 token for participant name in room, signed
// with secret, expiring after ttl (never when ttl is 0). It fails on an
// empty secret or name, or a room that is not a valid room name.
func NewToken(secret []byte, name, room string, ttl time.Duration) (string, error) {
	switch {
	case len(secret) == 0:
		return "", fmt.Errorf("roomserver: an empty token secret")
	case name == "":
		return "", fmt.Errorf("roomserver: a token needs a participant name")
	case !ValidRoom(room):
		return "", fmt.Errorf("roomserver: %q is not a valid room name", room)
	case ttl < 0:
		return "", fmt.Errorf("roomserver: a negative token lifetime")
	}
	now := time.Now()
	c := Claims{
		Name: name,
		Grants: []Grant{
			{Name: "room", Scope: room},
			{Name: "role", Scope: "user"},
		},
		RegisteredClaims: jwt.RegisteredClaims{IssuedAt: jwt.NewNumericDate(now)},
	}
	if ttl > 0 {
		c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// HS256 returns the Verifier for tokens signed with secret (HS256 only):
// the room grant must name the room, an exp claim is honoured, and the
// name claim must be set. It panics on an empty secret, a programming
// error.
func HS256(secret []byte) Verifier {
	if len(secret) == 0 {
		panic("roomserver: HS256 with an empty secret")
	}
	key := append([]byte(nil), secret...)
	parser := jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithLeeway(5*time.Second))
	return func(_ context.Context, room, token string) (Identity, error) {
		var c Claims
		if _, err := parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return key, nil }); err != nil {
			return Identity{}, fmt.Errorf("%w: %w", ErrBadToken, err)
		}
		if got := c.Room(); got != room {
			return Identity{}, fmt.Errorf("%w: the token is for room %q, not %q", ErrBadToken, got, room)
		}
		if c.Name == "" {
			return Identity{}, fmt.Errorf("%w: the token names no participant", ErrBadToken)
		}
		return Identity{Name: c.Name, Attributes: map[string]any{"name": c.Name}}, nil
	}
}
