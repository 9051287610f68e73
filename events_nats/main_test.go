package events_nats_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives its tests. Run as
// a child of the two-process test, the binary is that child instead.
//
// Two goroutines of the embedded nats-server itself are let be: in about
// one run in eight, a server that the restart tests shut down (while the
// engines keep publishing and re-creating their streams) leaves a file
// store's flush loop and its access-time ticker running after Shutdown
// has returned (nats-server v2.15.2; both were created by the server for
// a stream's file store). They belong to the server under test, not to
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
