// Package natstest runs an embedded nats-server with JetStream for tests,
// on a loopback port it picks itself (so no other process can take the
// port between its choice and its use), with its streams in a folder of the test's, and
// lets a test restart it (same port, same streams) or cut one client's
// connection, to see what the event transport does about it.
package natstest

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is an embedded nats-server.
type Server struct {
	t    testing.TB
	opts server.Options

	mu  sync.Mutex
	srv *server.Server // nil while stopped
}

// Start starts a server with JetStream and registers its shutdown as a
// cleanup of the test.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, opts: server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT, // Resume keeps the port it got
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoSigs:    true,
		NoLog:     true,
	}}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Reserve returns a Server that is not running yet: its URL accepts no
// connection until Resume, as a server that is down when clients start.
func Reserve(t testing.TB) *Server {
	t.Helper()
	s := Start(t)
	s.Stop()
	return s
}

// URL is the client URL, the same across restarts.
func (s *Server) URL() string {
	return "nats://127.0.0.1:" + strconv.Itoa(s.opts.Port)
}

// Stop shuts the server down and waits until it is gone. It is idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

// Resume starts the server again, on the same port with the same streams,
// and waits (at most 30s) until it accepts connections. While it was down
// another process may have bound the port: Resume then tries again until
// the port is free or the 30s are over. It is safe from any goroutine; it
// reports failure as an error.
func (s *Server) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	deadline := time.Now().Add(resumeTimeout)
	for {
		opts := s.opts
		srv, err := server.NewServer(&opts)
		if err != nil {
			return err
		}
		srv.Start()
		if srv.ReadyForConnections(min(readyTimeout, time.Until(deadline))) {
			if s.opts.Port == server.RANDOM_PORT {
				s.opts.Port = srv.Addr().(*net.TCPAddr).Port
			}
			s.srv = srv
			return nil
		}
		srv.Shutdown()
		srv.WaitForShutdown()
		if time.Now().After(deadline) {
			return errNotReady
		}
	}
}

// resumeTimeout bounds Resume; readyTimeout bounds one try, which fails
// when the port is taken.
const (
	resumeTimeout = 30 * time.Second
	readyTimeout  = 5 * time.Second
)

// Restart stops the server and starts it again.
func (s *Server) Restart() error {
	s.Stop()
	return s.Resume()
}

// Disconnect cuts the connection of the client with the given id (a
// nats.Conn's ConnectedClientID... see GetClientID): the client sees a
// network failure and reconnects.
func (s *Server) Disconnect(id uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return errNotReady
	}
	return s.srv.DisconnectClientByID(id)
}

type notReady struct{}

func (notReady) Error() string { return "natstest: the server is not running" }

var errNotReady error = notReady{}
