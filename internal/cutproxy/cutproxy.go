// Package cutproxy is a loopback HTTP/1.1 proxy that drops connections in
// the middle of a request's body, as a network would: what tests of
// resumable uploads put between a client and a server. It counts the
// requests it sees by method, and the bodies by their Content-Length (a
// chunked body is passed on uncounted, and so is everything after a
// request to upgrade the connection, a WebSocket's).
package cutproxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// Proxy forwards connections to a target, cutting them when told to.
type Proxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	armed    int64   // body bytes left before the next cut; -1: none
	next     []int64 // the cuts armed after it, in turn
	cuts     int
	methods  map[string]int
	conns    map[net.Conn]struct{}
	cutEvent chan struct{} // closed at the next cut
	closed   bool
	wg       sync.WaitGroup
}

// Start listens on 127.0.0.1 and forwards every connection to target
// (HOST:PORT). Close stops it.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, armed: -1, methods: map[string]int{}, conns: map[net.Conn]struct{}{}, cutEvent: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's HOST:PORT.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// CutAfter arms a cut: after n more bytes of request bodies (across
// requests), the connection carrying the nth is closed both ways. Each of
// then, if any, is armed in turn as the cut before it is made: a cut
// after so many more bytes again.
func (p *Proxy) CutAfter(n int64, then ...int64) {
	p.mu.Lock()
	p.armed = n
	p.next = append([]int64(nil), then...)
	p.mu.Unlock()
}

// Cut returns a channel closed at the next cut.
func (p *Proxy) Cut() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cutEvent
}

// Cuts is how many cuts the proxy made.
func (p *Proxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

// Requests is how many requests with method the proxy saw.
func (p *Proxy) Requests(method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.methods[method]
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, up) {
			return
		}
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(c, up)
			c.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.requests(c, up)
			up.Close()
			c.Close()
			p.untrack(c, up)
		}()
	}
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

// requests forwards the requests of c to up, head by head, counting
// their bodies, until c ends or a cut.
func (p *Proxy) requests(c, up net.Conn) {
	br := bufio.NewReader(c)
	for {
		head, err := readHead(br)
		if err != nil {
			return
		}
		method, _, _ := strings.Cut(string(head), " ")
		length := contentLength(head)
		p.mu.Lock()
		p.methods[method]++
		p.mu.Unlock()
		if _, err := up.Write(head); err != nil {
			return
		}
		if upgrade(head) { // a WebSocket: bytes from here on, uncounted
			_, _ = io.Copy(up, br)
			return
		}
		buf := make([]byte, 32<<10)
		for length > 0 {
			n := int64(len(buf))
			p.mu.Lock()
			armed := p.armed
			p.mu.Unlock()
			if armed >= 0 && armed < n {
				n = armed
			}
			n = min(n, length)
			if n == 0 { // armed at 0: the cut
				p.cut()
				return
			}
			m, err := br.Read(buf[:n])
			if m > 0 {
				if _, err := up.Write(buf[:m]); err != nil {
					return
				}
				length -= int64(m)
				p.mu.Lock()
				if p.armed >= 0 {
					p.armed -= int64(m)
				}
				p.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}
}

// cut counts a cut and tells the waiters; the caller then closes the
// connection both ways.
func (p *Proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = -1
	if len(p.next) > 0 {
		p.armed, p.next = p.next[0], p.next[1:]
	}
	p.cuts++
	close(p.cutEvent)
	p.cutEvent = make(chan struct{})
}

// readHead reads a request's head, through its blank line.
func readHead(br *bufio.Reader) ([]byte, error) {
	var head bytes.Buffer
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		head.Write(line)
		if head.Len() > 1<<20 {
			return nil, errors.New("cutproxy: a request head over 1 MiB")
		}
		if bytes.Equal(line, []byte("\r\n")) {
			return head.Bytes(), nil
		}
	}
}

// upgrade reports whether a request asks to switch protocols.
func upgrade(head []byte) bool {
	for line := range strings.SplitSeq(string(head), "\r\n") {
		k, _, ok := strings.Cut(line, ":")
		if ok && http.CanonicalHeaderKey(strings.TrimSpace(k)) == "Upgrade" {
			return true
		}
	}
	return false
}

func contentLength(head []byte) int64 {
	for line := range strings.SplitSeq(string(head), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && http.CanonicalHeaderKey(strings.TrimSpace(k)) == "Content-Length" {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return 0
}
