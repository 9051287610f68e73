package cutproxy_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roomstore/roomstore/internal/cutproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestACutEndsTheBodyAfterExactlyNBytes(t *testing.T) {
	got := make(chan int, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got <- int(n)
	}))
	defer srv.Close()
	p, err := cutproxy.Start(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	resp, err := hc.Post("http://"+p.Addr()+"/a", "application/octet-stream", bytes.NewReader(make([]byte, 5000)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := <-got; n != 5000 {
		t.Fatalf("an unarmed proxy passed %d bytes of 5000", n)
	}
	cut := p.Cut()
	p.CutAfter(70_000)
	if resp, err := hc.Post("http://"+p.Addr()+"/b", "application/octet-stream", bytes.NewReader(make([]byte, 1<<20))); err == nil {
		resp.Body.Close()
		t.Fatalf("a cut request: %d, want an error", resp.StatusCode)
	}
	select {
	case <-cut:
	case <-time.After(20 * time.Second):
		t.Fatal("no cut")
	}
	if n := <-got; n != 70_000 {
		t.Fatalf("the server read %d bytes of the cut body, want 70000", n)
	}
	if p.Cuts() != 1 || p.Requests("POST") != 2 {
		t.Fatalf("%d cuts, %d POSTs: want 1 and 2", p.Cuts(), p.Requests("POST"))
	}
}
