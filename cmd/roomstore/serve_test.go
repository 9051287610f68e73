package main

import (
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
)

func TestStoreTemplateRefusesWhatCouldMixOrEscapeRooms(t *testing.T) {
	for _, c := range []struct{ store, want string }{
		{"file:///var/lib/rooms", "has no {room}"},
		{"s3://bucket/prefix", "has no {room}"},
		{"mem://shared", "has no {room}"},
		{"ftp://host/{room}", "unknown scheme"},
		{"s3://{room}/prefix", "only appear in the URL's path"},
		{"file:///rooms/{room}?fsync={room}", "only appear in the URL's path"},
		{"gs://bucket/x#{room}", "only appear in the URL's path"},
		{"file://%zz/{room}", "is not a URL"},
	} {
		if _, err := parseStoreTemplate(c.store); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.store, err, c.want)
		}
	}
	for _, ok := range []string{"mem://", "mem://rooms/{room}", "file://./roomstore-data/{room}", "file:///srv/{room}/files?fsync=false", "s3://bucket/rooms/{room}?region=eu-west-1", "gs://bucket/{room}"} {
		if _, err := parseStoreTemplate(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

func TestStoreTemplatePutsTheRoomNameInOnePathElementExactly(t *testing.T) {
	rooms := []string{"r1", "with space", "%41", "q?x", "h#x", "a+b", `quo"te`, "emoji 🎉", "x..", "semi;colon", "colon:x", "at@x"}
	for _, tmpl := range []string{"file://./data/{room}", "file:///srv/rooms/{room}/files?fsync=false", "s3://bucket/rooms/{room}?region=us-east-1", "gs://bucket/{room}", "mem://rooms/{room}"} {
		st, err := parseStoreTemplate(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		want0, _ := url.Parse(strings.ReplaceAll(tmpl, "{room}", "ROOM"))
		for _, room := range rooms {
			u, err := url.Parse(st.url(room))
			if err != nil {
				t.Errorf("%s, room %q: %v", tmpl, room, err)
				continue
			}
			wantPath := strings.ReplaceAll(want0.Path, "ROOM", room)
			if u.Path != wantPath || u.Host != want0.Host || u.RawQuery != want0.RawQuery || u.Fragment != "" {
				t.Errorf("%s, room %q: host %q path %q query %q fragment %q; want host %q path %q query %q",
					tmpl, room, u.Host, u.Path, u.RawQuery, u.Fragment, want0.Host, wantPath, want0.RawQuery)
			}
		}
	}
}

// The listener holds at most n connections open: past that an Accept
// waits until one closes, and Close ends a waiting Accept.
func TestLimitListenerHoldsAtMostN(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inner := &chanListener{conns: make(chan net.Conn, 3), done: make(chan struct{})}
		for range 3 {
			server, client := net.Pipe()
			defer client.Close()
			inner.conns <- server
		}
		ln := limitListener(inner, 2)
		accepted := make(chan net.Conn, 3)
		done := make(chan error, 1)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					done <- err
					return
				}
				accepted <- c
			}
		}()
		synctest.Wait()
		if len(accepted) != 2 {
			t.Fatalf("%d connections accepted, want 2 of the 3 waiting", len(accepted))
		}
		(<-accepted).Close()
		synctest.Wait()
		if len(accepted) != 2 {
			t.Fatalf("%d connections accepted after one closed, want 2", len(accepted))
		}
		ln.Close()
		synctest.Wait()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	})
}

// chanListener hands out the connections put in conns.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }
