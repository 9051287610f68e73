package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/internal/wire"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// The flood case: the flooder's connections and the goroutines calling on
// each, the measured participant's pace (at most one cycle of four calls
// per floodInterval: 400 calls a second, within the default CallRate of
// 500), the measured cycles per phase, and the bound of every wait.
const (
	floodConns    = 8
	floodPerConn  = 4
	floodInterval = 10 * time.Millisecond
	floodBlock    = 50
	floodWait     = 30 * time.Second
)

// BenchmarkBudgetsFlood measures what a participant that floods the room
// server costs another participant of the same room: the latency of the
// measured participant's small-file cycles (BenchmarkRoomGrantCycle's:
// roomclient Upload 4 KiB with overwrite, Download, Stat, Delete, on
// 1,000 rotating names in mine/) with nobody else calling, against the
// same participant's cycles while the flooder calls as hard as it can.
// One room of a loopback room server with default options (newRoomEnv:
// every budget at its default, among them CallRate 500 calls a second
// with a burst of 1,000 per identity), whose engine is roomstore.OpenURL's
// (default options) on a file:// temp folder (fsync on) or mem://. The
// measured participant and the flooder are two identities (token names
// "measured" and "flooder"), each a roomclient with default options.
//
// The flooder holds floodConns connections, with floodPerConn goroutines
// on each that loop over Upload 4 KiB (overwrite) of a file of their own
// in flood/, Download, Stat and Exists of it, back to back, ignoring the
// server's 429 refusals (roomclient.ErrRateLimited, and
// roomstore.ErrTooManyHandles for the other budgets) and fs.ErrNotExist
// (a read after a refused upload); any other error fails the case.
//
// The measured participant starts a cycle at most every floodInterval
// (400 calls a second, within its own rate), timed from its start to the
// Delete's return. Iterations are measured cycles, in phases of
// floodBlock: alone (the flooder's connections open and idle) and
// flooded, alternating (which comes first alternates with
// ROOMSTORE_BENCH_REVERSE); a flooded phase begins once the flooder has
// been refused a first time (its burst spent) and an alone phase once
// every flooder goroutine has returned. 20 untimed cycles, and one
// flooded phase, warm up first. alone-* and flooded-* are the
// percentiles of each phase's cycles (µs), flooded/alone-p50 and
// flooded/alone-p99 their ratios; flood-served/s and flood-refused/s the
// flooder's calls answered and refused per second of flooded phases;
// flooded-CPUs and alone-CPUs this process's CPU time (server, engine
// and both participants' clients: getrusage) per second of each phase.
func BenchmarkBudgetsFlood(b *testing.B) {
	runCases(b, []benchCase{
		{"file", floodCase(func(b *testing.B) string { return fileURL(b.TempDir(), true) })},
		{"mem", floodCase(func(*testing.B) string { return "mem://" })},
	})
}

func floodCase(url func(b *testing.B) string) func(b *testing.B) {
	return func(b *testing.B) {
		ctx := context.Background()
		payload := randomBytes(smallFileSize)
		names := smallNamesIn("mine/")
		e := openURLEngine(b, url(b))
		env := newRoomEnv(b, map[string]*roomstore.Engine{"bench": e})
		me := env.dial(b, "bench", "measured")
		fl := &flooder{payload: payload}
		for range floodConns {
			fl.clients = append(fl.clients, env.dial(b, "bench", "flooder"))
		}
		b.Cleanup(func() { fl.stop(b) })
		cycle := func(name string) { clientCycle(b, ctx, me, name, payload) }
		pace := spacer{interval: floodInterval}
		for i := range 20 {
			pace.wait()
			cycle(names[i])
		}
		fl.start(b)
		fl.stop(b)
		fl.flooding, fl.cpu, fl.servedIn, fl.refusedIn = 0, 0, 0, 0

		firstFlooded := os.Getenv("ROOMSTORE_BENCH_REVERSE") == "1"
		var (
			alone, flooded   []time.Duration
			aloneT, aloneCPU time.Duration // the alone phases' time and CPU time, summed
			phaseT           time.Time     // when the alone phase under way began (zero: none is)
			phaseCPU0        time.Duration
		)
		endAlone := func() {
			if !phaseT.IsZero() {
				aloneT += time.Since(phaseT)
				aloneCPU += cpuTime() - phaseCPU0
				phaseT = time.Time{}
			}
		}
		i := 0
		for b.Loop() {
			if i%floodBlock == 0 {
				if want := (i/floodBlock%2 == 0) == firstFlooded; want && !fl.running {
					endAlone()
					fl.start(b)
				} else if !want && (fl.running || i == 0) {
					fl.stop(b)
					phaseT, phaseCPU0 = time.Now(), cpuTime()
				}
			}
			pace.wait()
			t0 := time.Now()
			cycle(names[i%len(names)])
			d := time.Since(t0)
			if fl.running {
				flooded = append(flooded, d)
			} else {
				alone = append(alone, d)
			}
			i++
		}
		fl.stop(b)
		endAlone()
		if len(alone) == 0 || len(flooded) == 0 {
			b.Fatalf("%d cycles alone and %d flooded: run at least %d iterations (-benchtime %dx)", len(alone), len(flooded), floodBlock+1, 2*floodBlock)
		}
		slices.Sort(alone)
		slices.Sort(flooded)
		reportPercentiles(b, "alone", alone)
		reportPercentiles(b, "flooded", flooded)
		p50a, p99a := percentile(alone, 0.50), percentile(alone, 0.99)
		p50f, p99f := percentile(flooded, 0.50), percentile(flooded, 0.99)
		b.ReportMetric(float64(p50f)/float64(p50a), "flooded/alone-p50")
		b.ReportMetric(float64(p99f)/float64(p99a), "flooded/alone-p99")
		secs := fl.flooding.Seconds()
		b.ReportMetric(float64(fl.servedIn)/secs, "flood-served/s")
		b.ReportMetric(float64(fl.refusedIn)/secs, "flood-refused/s")
		b.ReportMetric(fl.cpu.Seconds()/secs, "flooded-CPUs")
		b.ReportMetric(aloneCPU.Seconds()/aloneT.Seconds(), "alone-CPUs")
	}
}

// percentile returns the q-quantile of d, sorted, as reportPercentiles
// takes it.
func percentile(d []time.Duration, q float64) time.Duration {
	return d[min(int(q*float64(len(d))), len(d)-1)]
}

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// spacer starts each call no sooner than interval after the previous one
// started: a pace, closed loop (a late call delays the next).
type spacer struct {
	interval time.Duration
	next     time.Time
}

func (s *spacer) wait() {
	if d := time.Until(s.next); d > 0 {
		t := time.NewTimer(d)
		<-t.C
	}
	s.next = time.Now().Add(s.interval)
}

// flooder is one identity calling as hard as it can on several
// connections.
type flooder struct {
	clients []*roomclient.Client
	payload []byte

	running  bool
	began    time.Time
	cpuBegan time.Duration
	flooding time.Duration // the flooded phases' time, summed
	cpu      time.Duration // this process's CPU time in them, summed
	halt     atomic.Bool
	wg       sync.WaitGroup
	refusedC chan struct{} // closed at the phase's first refusal
	once     *sync.Once

	served, refused     atomic.Int64
	served0, refused0   int64 // at the phase's start
	servedIn, refusedIn int64 // in the flooded phases, summed
	errMu               sync.Mutex
	err                 error
}

// start starts the flooder's goroutines and returns once the server has
// refused one of its calls: its burst is spent.
func (f *flooder) start(b *testing.B) {
	f.halt.Store(false)
	f.refusedC, f.once = make(chan struct{}), &sync.Once{}
	f.running = true
	for k, c := range f.clients {
		for g := range floodPerConn {
			f.wg.Add(1)
			go f.loop(c, fmt.Sprintf("flood/c%d-g%d.txt", k, g))
		}
	}
	t := time.NewTimer(floodWait)
	defer t.Stop()
	select {
	case <-f.refusedC:
	case <-t.C:
		b.Fatalf("the flooder was not refused within %v: %d calls served", floodWait, f.served.Load())
	}
	// The phase counts from here: its burst spent, the flooder's calls
	// are answered at its rate, the rest refused.
	f.began, f.cpuBegan = time.Now(), cpuTime()
	f.served0, f.refused0 = f.served.Load(), f.refused.Load()
}

// stop stops the flooder's goroutines, each after its current call, and
// returns once they have.
func (f *flooder) stop(b *testing.B) {
	if !f.running {
		return
	}
	f.halt.Store(true)
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	t := time.NewTimer(floodWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		b.Fatalf("the flooder's calls did not end within %v", floodWait)
	}
	f.running = false
	f.flooding += time.Since(f.began)
	f.cpu += cpuTime() - f.cpuBegan
	f.servedIn += f.served.Load() - f.served0
	f.refusedIn += f.refused.Load() - f.refused0
	f.errMu.Lock()
	defer f.errMu.Unlock()
	if f.err != nil {
		b.Fatalf("flooder: %v", f.err)
	}
}

func (f *flooder) loop(c *roomclient.Client, name string) {
	defer f.wg.Done()
	ctx := context.Background()
	for !f.halt.Load() {
		_, err := c.Upload(ctx, name, bytes.NewReader(f.payload), roomstore.OpenOptions{Overwrite: true, Size: smallFileSize})
		if !f.count(err) {
			return
		}
		_, err = c.Download(ctx, name)
		if !f.count(err) {
			return
		}
		_, err = c.Stat(ctx, name)
		if !f.count(err) {
			return
		}
		_, err = c.Exists(ctx, name)
		if !f.count(err) {
			return
		}
	}
}

// count counts a call's outcome and reports whether it was expected.
func (f *flooder) count(err error) bool {
	switch {
	case err == nil, errors.Is(err, fs.ErrNotExist):
		f.served.Add(1)
	case errors.Is(err, roomclient.ErrRateLimited), errors.Is(err, roomstore.ErrTooManyHandles):
		f.refused.Add(1)
		f.once.Do(func() { close(f.refusedC) })
	default:
		f.errMu.Lock()
		if f.err == nil {
			f.err = err
		}
		f.errMu.Unlock()
		return false
	}
	return true
}

// The idle case: participants, the rooms they are spread over, the dials
// under way at once, and the bound of each wait.
const (
	idleParticipants = 10_000
	idleRooms        = 20
	idleDialers      = 32
	idleWait         = 60 * time.Second
)

// BenchmarkBudgetsIdle10k measures the memory of idle participants in
// `roomstore serve`: the command (go build of ../cmd/roomstore) runs as a
// child process with default flags but --store file://TMP/{room},
// --listen 127.0.0.1:0, --metrics 127.0.0.1:0 and --log-format json (to
// read the addresses it logs), the token secret in
// ROOMSTORE_TOKEN_SECRET. This process then opens 10,000 WebSocket
// connections to it (github.com/coder/websocket, speaking the protocol
// frame by frame: no roomclient), spread over 20 rooms of 500, each with
// a token of its own name (roomserver.NewToken, no restriction), so that
// no budget refuses one: 10,000 is the default MaxConnections, 500 under
// MaxParticipants and one under MaxConnectionsPerIdentity. Each waits for
// room_ready and connected, makes one exists call (as roomclient's Dial
// does, which proves the participant joined), then stays idle, a
// goroutine reading it (which answers the server's pings). 32 dials run
// at once.
//
// The child's resident set (VmRSS of /proc/PID/status) is read before the
// first connection (after one scrape of the metrics endpoint) and once
// every participant has joined; so are, from the endpoint, the Go heap in
// use (go_memstats_heap_inuse_bytes), the goroutine stacks
// (go_memstats_stack_inuse_bytes) and the goroutines (go_goroutines). No
// GC is forced (the command offers no way to): the heap after includes
// whatever garbage the 10,000 handshakes left that no GC has collected
// yet. The endpoint's roomstore_server_connections must show every
// connection, and roomstore_server_refused_total none refused.
// RSS-B/participant, heap-B/participant, stack-B/participant and
// goroutines/participant are the growths over the participants; the case
// uses fewer participants (a multiple of 20) when this process's
// RLIMIT_NOFILE cannot hold 10,000 sockets and 256 more, and reports
// how many.
func BenchmarkBudgetsIdle10k(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc/PID/status")
	}
	n := idleParticipants
	var lim syscall.Rlimit
	check(b, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	if fit := int(lim.Cur) - 256; fit < n {
		n = fit / idleRooms * idleRooms
		b.Logf("RLIMIT_NOFILE %d: %d participants", lim.Cur, n)
	}
	bin := buildRoomstore(b)
	var res idleResult
	for b.Loop() {
		res = idleRun(b, bin, n)
	}
	per := func(before, after float64) float64 { return (after - before) / float64(n) }
	b.ReportMetric(float64(n), "participants")
	b.ReportMetric(float64(res.rssBefore)/(1<<20), "RSS-before-MiB")
	b.ReportMetric(float64(res.rssAfter)/(1<<20), "RSS-after-MiB")
	b.ReportMetric(per(float64(res.rssBefore), float64(res.rssAfter)), "RSS-B/participant")
	b.ReportMetric(per(res.before["go_memstats_heap_inuse_bytes"], res.after["go_memstats_heap_inuse_bytes"]), "heap-B/participant")
	b.ReportMetric(per(res.before["go_memstats_stack_inuse_bytes"], res.after["go_memstats_stack_inuse_bytes"]), "stack-B/participant")
	b.ReportMetric(per(res.before["go_goroutines"], res.after["go_goroutines"]), "goroutines/participant")
	b.ReportMetric(res.join.Seconds(), "join-s")
}

// buildRoomstore builds the roomstore command of the main module into a
// temporary folder and returns its path.
func buildRoomstore(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "roomstore")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/roomstore")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/roomstore: %v\n%s", err, out)
	}
	return bin
}

// idleResult is what one idle run measured.
type idleResult struct {
	rssBefore, rssAfter int64
	before, after       map[string]float64 // the metrics endpoint's unlabelled figures
	join                time.Duration
}

// idleRun starts the command, joins n idle participants and measures it.
func idleRun(b *testing.B, bin string, n int) idleResult {
	srv := startServe(b, bin, "file://"+filepath.ToSlash(b.TempDir())+"/{room}")
	defer srv.stop(b)
	var res idleResult
	_, err := srv.scrape() // the endpoint's first scrape sets it up
	check(b, err)
	res.rssBefore = srv.rss(b)
	res.before, err = srv.scrape()
	check(b, err)

	t0 := time.Now()
	conns := make([]*websocket.Conn, n)
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	for range idleDialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				ws, err := joinIdle(srv.addr, fmt.Sprintf("idle-%02d", i%idleRooms), fmt.Sprintf("idle-%05d", i))
				if err != nil {
					errOnce.Do(func() { first = fmt.Errorf("participant %d: %w", i, err) })
					next.Store(int64(n)) // stop the others
					return
				}
				conns[i] = ws
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, ws := range conns {
			if ws != nil {
				_ = ws.CloseNow()
			}
		}
	}()
	check(b, first)
	res.join = time.Since(t0)

	res.rssAfter = srv.rss(b)
	res.after, err = srv.scrape()
	check(b, err)
	if got := res.after["roomstore_server_connections"]; got != float64(n) {
		b.Fatalf("the server counts %v connections, want %d", got, n)
	}
	if r := res.after["roomstore_server_refused_total"]; r != 0 {
		b.Fatalf("the server refused %v requests", r)
	}
	return res
}

// joinIdle connects one participant named name to room, waits for
// room_ready and connected, makes one exists call, and leaves a goroutine
// reading the connection (which answers pings) until it is closed.
func joinIdle(addr, room, name string) (*websocket.Conn, error) {
	token, err := roomserver.NewToken(roomSecret, name, room, 0)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), idleWait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/rooms/"+room, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		return nil, err
	}
	var a wire.Assembler
	read := func() (*wire.Message, error) {
		for {
			_, frame, err := ws.Read(ctx)
			if err != nil {
				return nil, err
			}
			if m, err := a.Add(frame); m != nil || err != nil {
				return m, err
			}
		}
	}
	fail := func(err error) (*websocket.Conn, error) {
		_ = ws.CloseNow()
		return nil, err
	}
	for ready, connected := false, false; !ready || !connected; {
		m, err := read()
		if err != nil {
			return fail(fmt.Errorf("waiting for room_ready and connected: %w", err))
		}
		ready = ready || m.Type == wire.TypeRoomReady
		connected = connected || m.Type == wire.TypeConnected
	}
	call, err := wire.Encode(0, wire.TypeInvokeTool, wire.InvokeTool{Toolkit: "storage", Tool: "exists", Arguments: wire.Content{Type: wire.KindJSON, JSON: json.RawMessage(`{"path":""}`)}}, nil)
	if err != nil {
		return fail(err)
	}
	for _, fr := range [][]byte{call.Header, call.Body} {
		if err := ws.Write(ctx, websocket.MessageBinary, fr); err != nil {
			return fail(err)
		}
	}
	for {
		m, err := read()
		if err != nil {
			return fail(fmt.Errorf("waiting for the exists reply: %w", err))
		}
		if m.Type != wire.TypeResponse || m.ID != 0 {
			continue
		}
		body, _, err := m.Split()
		var c wire.Content
		if err == nil {
			err = json.Unmarshal(body, &c)
		}
		if err == nil && c.Type == wire.KindError {
			err = fmt.Errorf("exists: %d %s", c.Code, c.Text)
		}
		if err != nil {
			return fail(err)
		}
		break
	}
	go func() {
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	return ws, nil
}

// serveProc is a running `roomstore serve` (or another server of the
// suite that logs its addresses as JSON lines on stderr: cmd/plainhttp).
type serveProc struct {
	name     string // the command, for error messages
	cmd      *exec.Cmd
	addr     string // its listener (serve's rooms and files)
	metrics  string // its --metrics listener, if any
	exited   chan struct{}
	log      *logLines
	stopOnce sync.Once
	http     *http.Client
	waitErr  error
}

// startServe runs the command's serve on store (a --store URL template,
// such as file://DIR/{room}), with --listen 127.0.0.1:0, --metrics
// 127.0.0.1:0, --log-format json and the flags given, and returns once
// it listens on both of its addresses.
func startServe(b *testing.B, bin, store string, flags ...string) *serveProc {
	args := append([]string{"serve", "--store", store, "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--log-format", "json"}, flags...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "ROOMSTORE_TOKEN_SECRET="+string(roomSecret))
	return startLogged(b, "roomstore serve", cmd, "listening", "serving metrics")
}

// startLogged starts cmd, whose stderr logs JSON lines, and returns once
// it has logged the addr of a line with each of the messages given: the
// first is its listener (serveProc.addr), the second, if any, its
// metrics endpoint. It is stopped when b ends.
func startLogged(b *testing.B, name string, cmd *exec.Cmd, msgs ...string) *serveProc {
	lines := &logLines{addrs: map[string]chan string{}}
	for _, m := range msgs {
		lines.addrs[m] = make(chan string, 1)
	}
	cmd.Stderr = lines
	check(b, cmd.Start())
	p := &serveProc{name: name, cmd: cmd, exited: make(chan struct{}), log: lines, http: &http.Client{Timeout: idleWait}}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	b.Cleanup(func() { p.stop(b) })
	t := time.NewTimer(idleWait)
	defer t.Stop()
	for i, key := range msgs {
		select {
		case a := <-lines.addrs[key]:
			if i == 0 {
				p.addr = a
			} else {
				p.metrics = a
			}
		case <-p.exited:
			b.Fatalf("%s exited: %v\n%s", name, p.waitErr, lines.tail())
		case <-t.C:
			b.Fatalf("%s did not log %q within %v\n%s", name, key, idleWait, lines.tail())
		}
	}
	return p
}

// stop ends the command with SIGTERM, and SIGKILL if it has not exited
// within idleWait.
func (p *serveProc) stop(b *testing.B) {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(idleWait)
		defer t.Stop()
		select {
		case <-p.exited:
		case <-t.C:
			_ = p.cmd.Process.Kill()
			<-p.exited
			b.Errorf("%s did not exit within %v of SIGTERM\n%s", p.name, idleWait, p.log.tail())
		}
	})
}

// rss returns the command's resident set in bytes.
func (p *serveProc) rss(b *testing.B) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	check(b, err)
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			check(b, err)
			return kb << 10
		}
	}
	b.Fatal("no VmRSS in /proc/PID/status")
	return 0
}

// scrape reads the metrics endpoint: each metric without labels by name,
// and roomstore_server_connections and roomstore_server_refused_total
// summed over their labels.
func (p *serveProc) scrape() (map[string]float64, error) {
	resp, err := p.http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
			if name != "roomstore_server_connections" && name != "roomstore_server_refused_total" {
				continue
			}
		}
		out[name] += v
	}
	return out, sc.Err()
}

// logLines takes the command's JSON log lines: it hands the addr of the
// "listening" and "serving metrics" lines to addrs and keeps the last
// lines for error messages.
type logLines struct {
	mu      sync.Mutex
	partial []byte
	last    []string
	addrs   map[string]chan string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Addr != "" {
			if ch := l.addrs[rec.Msg]; ch != nil {
				select {
				case ch <- rec.Addr:
				default:
				}
			}
		}
		if l.last = append(l.last, line); len(l.last) > 20 {
			l.last = l.last[1:]
		}
	}
}

func (l *logLines) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.last, "\n")
}

// BenchmarkBudgetsEmptyingFolder measures a folder that empties and fills
// again on every write (an inbox, an upload folder) on the store
// roomstore.OpenURL returns for "file://DIR" (fsync on) and
// "file://DIR?fsync=false": BenchmarkSmallFile's cycle (open, write 4
// KiB, close, download, stat, delete) on 1,000 rotating names dir/fNNNN.txt,
// on two engines of the same URL, each on a temporary folder of its own:
// in one, nothing else lies in dir/, so that dir/ empties at every
// delete (emptying); in the other, dir/keep.txt keeps it (kept). Each
// iteration runs one cycle of each on the same name, which goes first
// alternating, after 20 untimed cycles of each. kept-ns/cycle and
// emptying-ns/cycle are the means, emptying/kept their ratio, the -p50-ns
// metrics the medians; ns/op is the two cycles' sum.
func BenchmarkBudgetsEmptyingFolder(b *testing.B) {
	runCases(b, []benchCase{
		{"file-fsync", emptyingCase(true)},
		{"file-nofsync", emptyingCase(false)},
	})
}

func emptyingCase(fsync bool) func(b *testing.B) {
	return func(b *testing.B) {
		ctx := context.Background()
		payload := randomBytes(smallFileSize)
		names := make([]string, smallFileNames)
		for i := range names {
			names[i] = fmt.Sprintf("dir/f%04d.txt", i)
		}
		kept, emptying := fileEngine(b, b.TempDir(), fsync), fileEngine(b, b.TempDir(), fsync)
		_, err := kept.Upload(ctx, "dir/keep.txt", bytes.NewReader(payload), roomstore.OpenOptions{})
		check(b, err)
		engines := [2]*roomstore.Engine{kept, emptying}
		labels := [2]string{"kept", "emptying"}
		for i := range 20 {
			for _, e := range engines {
				smallCycle(b, ctx, e, names[i], payload)
			}
		}
		// Between cycles, kept's dir/ holds keep.txt, and emptying's is
		// empty: no reader sees it.
		if entries, err := kept.List(ctx, "dir"); err != nil || len(entries) != 1 {
			b.Fatalf("kept: dir/ lists %d entries (%v), want keep.txt alone", len(entries), err)
		}
		if entries, err := emptying.List(ctx, ""); err != nil || len(entries) != 0 {
			b.Fatalf("emptying: the root lists %d entries (%v), want none", len(entries), err)
		}
		timeSides(b, labels[:], "cycle", alternate, func(v, i int) {
			smallCycle(b, ctx, engines[v], names[i%len(names)], payload)
		})
	}
}

// deepLevels is how deep BenchmarkBudgetsDeepList's file lies: the
// folders of "d/d/.../d/f", 1,023 bytes, the longest path but one
// (roompath.MaxPathLen is 1,024).
const deepLevels = 511

// BenchmarkBudgetsDeepList measures List("") of a store whose root holds
// one folder, d, with a file 511 levels deep (d/d/.../d/f: 511 folders,
// then the file), against a root whose folder d holds the file itself
// (d/f), on the store roomstore.OpenURL returns for "file://DIR" (fsync
// on), each on a temporary folder of its own, the file uploaded through
// the engine. Both lists return the one entry d, a folder. Each iteration
// lists each root once, which goes first alternating, after one untimed
// list of each; shallow-ns/list and deep-ns/list are the means,
// deep/shallow their ratio, the -p50-ns metrics the medians; ns/op is the
// two lists' sum.
func BenchmarkBudgetsDeepList(b *testing.B) {
	runCases(b, []benchCase{
		{"file", func(b *testing.B) {
			ctx := context.Background()
			engines := [2]*roomstore.Engine{fileEngine(b, b.TempDir(), true), fileEngine(b, b.TempDir(), true)}
			labels := [2]string{"shallow", "deep"}
			for v, p := range []string{"d/f", strings.Repeat("d/", deepLevels) + "f"} {
				_, err := engines[v].Upload(ctx, p, strings.NewReader("sixteen bytes..\n"), roomstore.OpenOptions{})
				check(b, err)
			}
			list := func(v int) {
				entries, err := engines[v].List(ctx, "")
				check(b, err)
				if len(entries) != 1 || entries[0].Path != "d" || !entries[0].IsFolder {
					b.Fatalf("%s root: %+v, want the one folder d", labels[v], entries)
				}
			}
			list(0)
			list(1)
			timeSides(b, labels[:], "list", alternate, func(v, _ int) { list(v) })
		}},
	})
}
