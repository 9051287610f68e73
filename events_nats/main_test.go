package events_nats_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives its tests. Run as
// a child of the two-process test, the binary is that child instead.
//
// Two goroutines of the embedded nats-server itself are let be: when a
// stream is created while the server shuts down (an engine re-creating
// its stream as the restart tests stop the server), nats-server v2.15.2
// leaves that stream's file store's flush loop and its access-time ticker
// running after Shutdown. They belong to the server under test, not to
// this package.
func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*fileStore).flushStreamStateLoop"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server/ats.Register.func1"),
	)
}
