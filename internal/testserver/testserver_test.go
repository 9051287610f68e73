package testserver

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// A server whose port another process took while it was down comes back
// only once the port is free, and a listener of another process on its
// port never passes for it.
func TestRestartWaitsForItsPortToBeFree(t *testing.T) {
	n := StartNATS(t)
	n.Kill()
	other, err := net.Listen("tcp", n.Addr())
	if err != nil {
		t.Fatalf("take the dead server's port: %v", err)
	}
	defer other.Close()
	restarted := make(chan error, 1)
	go func() { restarted <- n.Restart() }()

	deadline := time.Now().Add(startTimeout)
	for !strings.Contains(n.Output(), "address already in use") {
		select {
		case err := <-restarted:
			t.Fatalf("Restart returned %v while another process held the port", err)
		case <-time.After(10 * time.Millisecond): // polls the child's output, bounded by the deadline
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted server never met the taken port:\n%s", n.Output())
		}
	}
	other.Close()
	select {
	case err := <-restarted:
		if err != nil {
			t.Fatalf("Restart once the port is free: %v", err)
		}
	case <-time.After(startTimeout + 5*time.Second):
		t.Fatal("Restart did not return once the port was free")
	}
	c, err := net.DialTimeout("tcp", n.Addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial the restarted server: %v", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	greeting, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "INFO {") {
		t.Fatalf("the server on the port greets with %q (%v), want nats-server's INFO", greeting, err)
	}
}
