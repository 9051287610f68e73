package testserver

import (
	"net"
	"testing"
)

// NATSServerInstall is the command that installs the nats-server binary
// StartNATS runs (`make test` does).
const NATSServerInstall = "go install github.com/nats-io/nats-server/v2@v2.15.2"

// NATS is a nats-server child process with JetStream, its data in a
// folder of the test's; Kill and Restart crash it and bring it back on the
// same address with the same streams.
type NATS struct {
	*Process
	// URL is the client URL: nats://127.0.0.1:PORT.
	URL string
}

// StartNATS starts nats-server with JetStream on a free loopback port and
// stops it when the test ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	bin := Binary(t, "nats-server", NATSServerInstall)
	dir := t.TempDir()
	p := Start(t, bin, func(addr string) []string {
		host, port, _ := net.SplitHostPort(addr) // addr is host:port, from a listener
		return []string{"-a", host, "-p", port, "-js", "-sd", dir}
	})
	return &NATS{Process: p, URL: "nats://" + p.Addr()}
}
