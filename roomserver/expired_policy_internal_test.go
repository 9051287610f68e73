package roomserver

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_mem"
)

// A call admitted in the moment before its participant's token expired
// meets the ended identity in the policy: it is refused with 403 "token
// expired", as a call after the expiry is, never as a missing right (a
// participant told "no read access" would think its grants had changed).
func TestACallThatMeetsTheExpiryInThePolicySaysTheTokenExpired(t *testing.T) {
	e, err := roomstore.New(backend_mem.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	ctx := context.Background()
	if _, err := e.Upload(ctx, "f", strings.NewReader("x"), roomstore.OpenOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		policy roomstore.Policy
	}{
		{"every right", nil},
		{"a grant of its own", StorageGrant{Paths: []StoragePathGrant{{Path: ""}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			alive := roomstore.WithPolicy(ctx, connPolicy{p: c.policy, expires: time.Now().Add(time.Hour)})
			if ok, err := e.Exists(alive, "f"); !ok || err != nil {
				t.Fatalf("before the expiry: %v %v", ok, err)
			}
			gone := roomstore.WithPolicy(ctx, connPolicy{p: c.policy, expires: time.Now().Add(-time.Millisecond)})
			calls := map[string]error{}
			_, calls["exists"] = e.Exists(gone, "f")
			_, calls["list"] = e.List(gone, "")
			_, calls["upload"] = e.Upload(gone, "g", strings.NewReader("y"), roomstore.OpenOptions{})
			for op, err := range calls {
				got := errorContent(err)
				if got.Code != CodeForbidden || got.Text != "token expired" {
					t.Errorf("%s after the expiry answered %d %q (from %v), want 403 \"token expired\"", op, got.Code, got.Text, err)
				}
			}
			if ok, _ := e.Exists(ctx, "g"); ok {
				t.Error("an upload after the expiry was stored")
			}
		})
	}
}
