package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roomstore/roomstore/internal/natstest"
	"github.com/roomstore/roomstore/roompath"
)

// metricsURL is the --metrics address serve logged.
func metricsURL(t *testing.T, p *proc) string {
	t.Helper()
	m := regexp.MustCompile(`msg="serving metrics" addr=(127\.0\.0\.1:\d+) `).FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatalf("no serving metrics log line:\n%s", p.stderr.String())
	}
	return "http://" + m[1] + "/metrics"
}

// descriptors counts the process's open file descriptors.
func descriptors(t *testing.T, p *proc) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// streams lists the JetStream streams of the NATS server at url.
func streams(t *testing.T, url string) []string {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var names []string
	lister := js.StreamNames(ctx)
	for n := range lister.Name() {
		// The lease bucket and the states stream are the server's, shared
		// by every room: a room's own stream is ROOMSTORE_EVENTS_HASH.
		if strings.HasSuffix(n, "_LEASES") || strings.HasSuffix(n, "_STATES") {
			continue
		}
		names = append(names, n)
	}
	if err := lister.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// 2,000 unsigned /files/ requests for new room names open nothing: no
// directory, no event stream, and the server's descriptors and
// goroutines come back to where they were.
func TestServeOpensNothingForUnsignedDownloadURLs(t *testing.T) {
	ns := natstest.Start(t)
	base := t.TempDir()
	srv, addr := startServe(t, testSecret, "--store", "file://"+base+"/{room}", "--metrics", "127.0.0.1:0", "--events", ns.URL())
	metrics := metricsURL(t, srv)
	o := procOptions{env: map[string]string{storeEnv: "ws://" + addr + "/rooms/r1", tokenEnv: mustToken(t, testSecret, "r1")}}
	o.stdin = strings.NewReader("hello")
	mustRun(t, o, "put", "-", "a.txt")
	client := &http.Client{Timeout: runTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	get := func(path string) int {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Once, so that the server's connection and handler goroutines of a
	// request exist before the baseline is taken.
	get("/files/warm-up/a.txt")
	client.CloseIdleConnections()
	settled := func(what string, want int, now func() int) {
		t.Helper()
		for deadline := time.Now().Add(runTimeout); ; {
			n := now()
			if n <= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d, were %d before the requests", what, n, want)
			}
			select {
			case <-srv.done:
				t.Fatalf("serve exited:\n%s", srv.stderr.String())
			case <-time.After(50 * time.Millisecond): // the server closes what the client closed
			}
		}
	}
	goroutines := func() int { return int(scrape(t, metrics)["go_goroutines"]) }
	fds0, gs0 := descriptors(t, srv), goroutines()
	streams0 := streams(t, ns.URL())
	if len(streams0) != 1 {
		t.Fatalf("streams before: %v, want r1's", streams0)
	}

	for i := range 2000 {
		path := fmt.Sprintf("/files/new-%d/a.txt", i)
		if i%2 == 1 {
			path += "?exp=99999999999&sig=" + strings.Repeat("A", 43)
		}
		if code := get(path); code != http.StatusForbidden {
			t.Fatalf("GET %s: %d, want 403", path, code)
		}
	}
	client.CloseIdleConnections()
	settled("descriptors", fds0, func() int { return descriptors(t, srv) })
	settled("goroutines", gs0, goroutines)
	if got := streams(t, ns.URL()); !slices.Equal(got, streams0) {
		t.Fatalf("streams after: %d (%v...), want %v", len(got), got[:min(3, len(got))], streams0)
	}
	ents, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	ents = slices.DeleteFunc(ents, func(e os.DirEntry) bool { return roompath.IsReserved(e.Name()) }) // serve's own, no room
	if len(ents) != 1 || ents[0].Name() != "r1" {
		t.Fatalf("%d room directories, want r1 alone", len(ents))
	}
	if got := scrape(t, metrics)[`roomstore_server_refused_total{budget="unauthorized"}`]; got != 2001 {
		t.Fatalf("roomstore.server.refused{budget=unauthorized} = %v, want 2001", got)
	}
}

// serve --quota-bytes bounds each room: put past it exits 1 with one
// line and changes nothing; usage counts what the room holds.
func TestServeQuotaRefusesPutPastItAndUsageCountsTheRoom(t *testing.T) {
	base := t.TempDir()
	_, addr := startServe(t, testSecret, "--store", "file://"+base+"/{room}", "--quota-bytes", "100", "--quota-files", "3")
	o := procOptions{env: map[string]string{storeEnv: "ws://" + addr + "/rooms/r1", tokenEnv: mustToken(t, testSecret, "r1")}}
	put := func(p string, n int) result {
		in := o
		in.stdin = strings.NewReader(strings.Repeat("x", n))
		return runCmd(t, in, "put", "-", p)
	}
	if r := put("a.txt", 60); r.code != 0 {
		t.Fatalf("put of 60 bytes: %d %s", r.code, r.stderr)
	}
	r := put("b.txt", 41)
	if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "quota exceeded") {
		t.Fatalf("put of 41 bytes more: exit %d, %q; want 1 and one line saying the quota is exceeded", r.code, r.stderr)
	}
	if r := runCmd(t, o, "stat", "b.txt"); r.code != 1 {
		t.Fatalf("b.txt is there after a refused put: %d", r.code)
	}
	if got := mustRun(t, o, "usage"); got != "/: 60 bytes in 1 files\n" {
		t.Fatalf("usage: %q", got)
	}
	if r := put("dir/b.txt", 40); r.code != 0 {
		t.Fatalf("put of 40 bytes: %d %s", r.code, r.stderr)
	}
	if got := mustRun(t, o, "usage", "--json", "dir"); got != `{"path":"dir","bytes":40,"files":1}`+"\n" {
		t.Fatalf("usage dir: %q", got)
	}
}
