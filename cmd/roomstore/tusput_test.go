package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roomstore/roomstore/internal/cutproxy"
)

// TestPutOverTusResumesAfterDroppedConnections puts a file of 24 MiB
// through a proxy that drops the connection twice mid-body: put resumes
// from what the server kept, the file is byte-exact, and the room hears
// of it once.
func TestPutOverTusResumesAfterDroppedConnections(t *testing.T) {
	r := serveRoom(t)
	proxy, err := cutproxy.Start(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	_, events, _ := startWatch(t, r.opts) // direct to the server

	data := randomBytes(t, 24<<20)
	local := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(local, data, 0o600); err != nil {
		t.Fatal(err)
	}
	via := r.opts
	via.env = map[string]string{storeEnv: "ws://" + proxy.Addr() + "/rooms/r1", tokenEnv: r.opts.env[tokenEnv]}
	proxy.CutAfter(5<<20, 7<<20)
	mustRun(t, via, "put", local, "media/big.bin")
	if proxy.Cuts() != 2 || proxy.Requests("POST") != 1 || proxy.Requests("HEAD") < 2 || proxy.Requests("PATCH") < 3 {
		t.Fatalf("cuts %d, POST %d, HEAD %d, PATCH %d: want 2 cuts, 1 POST, and a HEAD and a PATCH for each resumption",
			proxy.Cuts(), proxy.Requests("POST"), proxy.Requests("HEAD"), proxy.Requests("PATCH"))
	}
	if proxy.Requests("GET") != 0 {
		t.Fatalf("%d GETs through the proxy: put used the room protocol", proxy.Requests("GET"))
	}
	got, err := os.ReadFile(filepath.Join(r.dir, "media", "big.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the stored file: %d bytes (%v), want the %d put", len(got), err, len(data))
	}
	in := r.opts
	in.stdin = strings.NewReader("m")
	mustRun(t, in, "put", "-", "marker")
	updates := 0
	for {
		line := events.next(t, "event line")
		if strings.Contains(line, "  marker  ") {
			break
		}
		if regexp.MustCompile(`  file\.updated  media/big\.bin  alice$`).MatchString(line) {
			updates++
		}
	}
	if updates != 1 {
		t.Fatalf("%d file.updated events of the put, want 1", updates)
	}
}

func TestPutOverTusFailsAtOnceOnARefusal(t *testing.T) {
	r := serveRoom(t)
	proxy, err := cutproxy.Start(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	local := filepath.Join(t.TempDir(), "a.bin")
	if err := os.WriteFile(local, randomBytes(t, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	via := r.opts
	via.env = map[string]string{storeEnv: "ws://" + proxy.Addr() + "/rooms/r1", tokenEnv: r.opts.env[tokenEnv]}
	mustRun(t, via, "put", "--resumable-threshold", "1", local, "a.bin")
	if proxy.Requests("POST") != 1 {
		t.Fatalf("%d POSTs: put did not use tus above its threshold", proxy.Requests("POST"))
	}
	line := failedWithOneLine(t, runCmd(t, via, "put", "--resumable-threshold", "1", local, "a.bin"))
	if line != "put a.bin: file already exists (--overwrite replaces it)" {
		t.Fatalf("put over an existing file: %q", line)
	}
	if proxy.Requests("POST") != 2 {
		t.Fatalf("%d POSTs: a refusal was retried", proxy.Requests("POST"))
	}
	mustRun(t, via, "put", "--resumable-threshold", "1", "--overwrite", local, "a.bin")
	bad := via
	bad.env = map[string]string{storeEnv: via.env[storeEnv], tokenEnv: mustToken(t, "another secret, 32 bytes or longer!", "r1")}
	line = failedWithOneLine(t, runCmd(t, bad, "put", "--resumable-threshold", "1", local, "b.bin"))
	if !strings.Contains(line, "refused the token") {
		t.Fatalf("put with a bad token: %q", line)
	}
	// Below the threshold, put uses the room protocol.
	mustRun(t, via, "put", local, "c.bin")
	if proxy.Requests("POST") != 4 || proxy.Requests("GET") == 0 {
		t.Fatalf("%d POSTs, %d GETs: want the small put over the room protocol", proxy.Requests("POST"), proxy.Requests("GET"))
	}
}

func TestAnInterruptedPutOverTusAbandonsItsUpload(t *testing.T) {
	r := serveRoom(t)
	proxy, err := cutproxy.Start(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	local := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(local, randomBytes(t, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	via := r.opts
	via.env = map[string]string{storeEnv: "ws://" + proxy.Addr() + "/rooms/r1", tokenEnv: r.opts.env[tokenEnv]}
	cut := proxy.Cut()
	proxy.CutAfter(3 << 20)
	p := startWith(t, via, "put", local, "big.bin")
	select {
	case <-cut: // put now pauses before it resumes
	case <-p.done:
		t.Fatalf("put exited with %d before the cut: %s", p.code, p.stderr.String())
	case <-time.After(runTimeout):
		t.Fatal("no cut")
	}
	uploads := filepath.Join(r.dir, ".roomstore", "uploads")
	if ents, _ := os.ReadDir(uploads); len(ents) == 0 {
		t.Fatal("no upload waits in the room's store after the cut")
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, runTimeout); code != 1 {
		t.Errorf("an interrupted put: exit %d, want 1", code)
	}
	if got := p.stderr.String(); got != "roomstore: put big.bin: interrupted\n" {
		t.Errorf("an interrupted put said %q", got)
	}
	if ents, err := os.ReadDir(uploads); err != nil || len(ents) != 0 {
		t.Errorf("an interrupted put left %d uploads in the room's store (%v)", len(ents), err)
	}
	if proxy.Requests("DELETE") != 1 {
		t.Errorf("%d DELETEs, want the one that abandons the upload", proxy.Requests("DELETE"))
	}
}

func TestResumableFlagsRefuseWhatIsNotPositive(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--store", "mem://", "--resumable-age", "0s"},
		{"serve", "--store", "mem://", "--resumable-per-participant", "0"},
	} {
		line := failedWithOneLine(t, runCmd(t, procOptions{secret: testSecret}, args...))
		if !strings.Contains(line, "--resumable-age and --resumable-per-participant must be positive") {
			t.Errorf("roomstore %s: %q", strings.Join(args, " "), line)
		}
	}
	o, _ := diskStore(t)
	r := runCmd(t, o, "sweep", "--resumable-age", "-1h")
	if r.code != 2 || !strings.Contains(r.stderr, "--resumable-age") {
		t.Errorf("sweep --resumable-age -1h: exit %d, %q", r.code, r.stderr)
	}
}
