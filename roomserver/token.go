package roomserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomstore/roomstore"
)

// Identity is who a verified token names: the participant's name, the
// attributes sent to it in the connected message, what it may do with
// the room's files, and when it stops being valid.
type Identity struct {
	Name       string
	Attributes map[string]any
	// Policy decides every storage call of the participant and which
	// events reach it (see roomstore.Policy); nil grants everything, as
	// Verifiers written before policies existed expect. HS256 builds it
	// from the token's storage grant (see StorageGrant).
	Policy roomstore.Policy
	// Expires is when the identity ends (zero: never): the connection is
	// closed then with 1008 "token expired", its uploads aborted, and no
	// download URL the participant obtains lives past it.
	Expires time.Time
}

// Verifier checks the token of a connection to room and returns who it
// names. Any error refuses the connection with HTTP 403; the error is
// logged, never sent. The embedding server may plug its own: one that
// wraps HS256 and looks the token up in a denylist refuses a revoked
// token at connect, and one whose Identity.Policy consults the denylist
// on every call cuts off a connection already open (see the package
// example).
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
// them: the participant's name, its grants (one names the room, the api
// grant holds the storage grant) and the version of the client that made
// it.
type Claims struct {
	Name    string  `json:"name"`
	Grants  []Grant `json:"grants"`
	Version string  `json:"version,omitempty"`
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

// MinSecretLen is the shortest token secret HS256 and NewToken accept, in
// bytes: an HS256 key shorter than its hash is open to brute force.
const MinSecretLen = 32

// Leeway is how far past its exp claim HS256 still accepts a token, for
// clocks that disagree; the Identity it returns expires as late.
const Leeway = 5 * time.Second

// TokenOption tunes NewToken.
type TokenOption func(*Claims)

// WithStorage gives the token this storage grant (the api grant's
// storage key) instead of every path.
func WithStorage(g StorageGrant) TokenOption {
	return func(c *Claims) {
		for i := range c.Grants {
			if c.Grants[i].Name == "api" {
				c.Grants[i].Scope = apiScope{Storage: &g}
			}
		}
	}
}

// NewToken returns an HS256 token for participant name in room, signed
// with secret, expiring after ttl (never when ttl is 0), as the MeshAgent
// clients mint them: grants room, role "user" and api, whose storage
// grant covers every path unless WithStorage narrows it. It fails on a
// secret shorter than MinSecretLen, an empty name, or a room that is not
// a valid room name.
func NewToken(secret []byte, name, room string, ttl time.Duration, opts ...TokenOption) (string, error) {
	switch {
	case len(secret) < MinSecretLen:
		return "", fmt.Errorf("roomserver: a token secret of %d bytes; at least %d are needed", len(secret), MinSecretLen)
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
			{Name: "api", Scope: apiScope{Storage: &StorageGrant{}}},
		},
		RegisteredClaims: jwt.RegisteredClaims{IssuedAt: jwt.NewNumericDate(now)},
	}
	for _, o := range opts {
		o(&c)
	}
	if ttl > 0 {
		c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// HS256 returns the Verifier for tokens signed with secret (HS256 only):
// the room grant must name the room, the name claim must be set, an exp
// claim is honoured (with Leeway, and again while connected: the
// Identity expires then), and the api grant's storage grant becomes the
// Identity's Policy (see Claims.Policy: no storage grant, no storage). A
// malformed api grant refuses the token. HS256 panics on a secret shorter
// than MinSecretLen, a programming error: check the length of a secret
// read from configuration first.
func HS256(secret []byte) Verifier {
	if len(secret) < MinSecretLen {
		panic(fmt.Sprintf("roomserver: HS256 with a secret of %d bytes; at least %d are needed", len(secret), MinSecretLen))
	}
	key := append([]byte(nil), secret...)
	parser := jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithLeeway(Leeway))
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
		policy, err := c.Policy()
		if err != nil {
			return Identity{}, fmt.Errorf("%w: %w", ErrBadToken, err)
		}
		id := Identity{Name: c.Name, Attributes: map[string]any{"name": c.Name}, Policy: policy}
		if c.ExpiresAt != nil {
			id.Expires = c.ExpiresAt.Add(Leeway)
		}
		return id, nil
	}
}
