package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// The room-versus-HTTP case: the clients of its concurrent sub-benchmarks,
// the cycles each runs per phase, the untimed cycles before the timed
// ones, the cycles of its allocation phases, and the bound of any one
// loop of cycles (and of every wait within it).
const (
	rvhClients     = 16
	rvhPhaseCycles = 25
	// rvhNames is the names each client rotates over. Each is cycled
	// once, untimed, before the timed cycles, so that the store holds
	// what a store in use holds: a delete keeps the version it removes
	// (the history, on by default), and a path's first kept version
	// makes its folder of versions, once.
	rvhNames       = 100
	rvhAllocCycles = 200
	rvhWait        = 10 * time.Minute
)

// rvhRoom is the room every participant of the case joins.
const rvhRoom = "bench"

// rvhLabels name the three sides in metrics: roomstore serve over the
// room protocol, cmd/plainhttp, versitygw.
var rvhLabels = [3]string{"room", "plain", "s3"}

// rvhManyLabels name the sides of the 16-client case: rvhLabels' (each
// roomstore client in a room of its own), and roomstore with the 16
// clients in one room.
var rvhManyLabels = [4]string{"room", "plain", "s3", "room-shared"}

// rvhOps name the four operations of a cycle in metrics.
var rvhOps = [4]string{"upload", "download", "stat", "delete"}

// BenchmarkRoomVsHTTP measures small operations over the room protocol
// against a plain HTTP file server and an S3 gateway, every server a
// separate process on 127.0.0.1, the clients in this process. The cycle,
// the same on every side: upload 4 KiB (overwriting), download it to the
// end (its length checked), stat it (its size checked), delete it, on
// 100 rotating names per client (each cycled once, untimed, before the
// timed cycles) in a folder of the client's own (cNN/), which also holds
// a file kept from before the first cycle, so that the folder never
// empties. The sides:
//
//   - room: `roomstore serve` (go build of ../cmd/roomstore) with
//     --store file://DIR/{room} (fsync on) or file://DIR/{room}?fsync=false,
//     default options but --call-rate -1 (the default 500 calls a second
//     per identity would refuse a client calling back to back) and
//     --metrics 127.0.0.1:0 (to count its allocations); the clients are
//     roomclients with default options, one connection each, each with
//     a token of its own name (roomserver.NewToken, no restriction), in
//     a room of its own (16 clients: also, as a fourth side, room-shared,
//     16 more in one room, where every participant gets the events of
//     every change);
//   - plain: cmd/plainhttp on a folder of the same disk, with -fsync
//     true or false (a temporary file written, fsynced and renamed into
//     place, then its folder fsynced: what roomstore's file:// store
//     does), PUT, GET, HEAD and DELETE of /f/NAME; each client its own
//     net/http client and transport, keeping its connection alive;
//   - s3: versitygw (posix backend, which never fsyncs: one gateway for
//     both fsync modes), PutObject, GetObject read to the end,
//     HeadObject, DeleteObject through aws-sdk-go-v2, each client its own
//     s3.Client and transport.
//
// Each fsync mode gets one serve and one plainhttp process, started the
// first time a sub-benchmark needs them. fsync-on/1-client and
// fsync-off/1-client run, each iteration, one cycle of each side, in an
// order that rotates from one iteration to the next (reversed with
// ROOMSTORE_BENCH_REVERSE=1), after the untimed cycle of each name:
// LABEL-us/cycle is a side's mean time per cycle, LABEL-OP-us that of
// each operation (room and plain). Then, untimed, each side runs 200
// cycles alone: LABEL-client-allocs/cycle are this process's allocations
// over them (runtime.MemStats.Mallocs), LABEL-server-allocs/cycle the
// server's (go_memstats_mallocs_total of serve's metrics endpoint,
// plainhttp's /_mallocs; not versitygw's), less those of one request to
// that endpoint, measured back to back before. fsync-on/16-clients and
// fsync-off/16-clients run, each iteration, one phase of each side in
// rotating order, after the untimed cycle of each name: 16 clients, one
// goroutine each, run 25 cycles each; LABEL-cycles/s is the side's
// cycles over its phases' time.
func BenchmarkRoomVsHTTP(b *testing.B) {
	env := &rvhEnv{
		parent:   b,
		roomBin:  buildRoomstore(b),
		plainBin: buildPlainHTTP(b),
		s3:       &s3Server{parent: b},
	}
	runCases(b, []benchCase{
		{"fsync-on/1-client", env.oneClient(true)},
		{"fsync-off/1-client", env.oneClient(false)},
		{"fsync-on/16-clients", env.manyClients(true)},
		{"fsync-off/16-clients", env.manyClients(false)},
	})
}

// buildPlainHTTP builds cmd/plainhttp into a temporary folder and returns
// its path.
func buildPlainHTTP(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "plainhttp")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/plainhttp").CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/plainhttp: %v\n%s", err, out)
	}
	return bin
}

// rvhEnv holds the servers of one run of BenchmarkRoomVsHTTP: per fsync
// mode (index 1 on, 0 off) a serve and a plainhttp process, and one
// versitygw, each started the first time a sub-benchmark asks for it.
type rvhEnv struct {
	parent            *testing.B
	roomBin, plainBin string
	s3                *s3Server
	once              [2]sync.Once
	room, plain       [2]*serveProc
}

// servers returns the serve and plainhttp processes of an fsync mode.
func (env *rvhEnv) servers(fsync bool) (room, plain *serveProc) {
	m := 0
	if fsync {
		m = 1
	}
	env.once[m].Do(func() {
		b := env.parent
		store := "file://" + filepath.ToSlash(b.TempDir()) + "/{room}"
		if !fsync {
			store += "?fsync=false"
		}
		env.room[m] = startServe(b, env.roomBin, store, "--call-rate", "-1")
		cmd := exec.Command(env.plainBin, "-listen", "127.0.0.1:0", "-dir", b.TempDir(), "-fsync="+strconv.FormatBool(fsync))
		env.plain[m] = startLogged(b, "plainhttp", cmd, "listening")
	})
	if env.room[m] == nil || env.plain[m] == nil {
		env.parent.Fatal("the servers did not start")
	}
	return env.room[m], env.plain[m]
}

// clients connects client k of each side, in the order of rvhLabels,
// closed when b ends, and writes each one's kept file.
func (env *rvhEnv) clients(b *testing.B, ctx context.Context, fsync bool, k int, roomName string, payload []byte) [3]fileClient {
	_, plain := env.servers(fsync)
	gw, bucket := env.s3.get()
	dir := fmt.Sprintf("c%02d/", k)
	rc := env.roomClient(b, ctx, fsync, k, roomName)

	pt := http.DefaultTransport.(*http.Transport).Clone()
	b.Cleanup(pt.CloseIdleConnections)
	st := http.DefaultTransport.(*http.Transport).Clone()
	b.Cleanup(st.CloseIdleConnections)
	sc := s3.New(gw.Client().Options(), func(o *s3.Options) { o.HTTPClient = &http.Client{Transport: st} })

	cs := [3]fileClient{
		&roomFiles{c: rc, dir: dir},
		&plainFiles{c: &http.Client{Transport: pt}, base: "http://" + plain.addr + "/f/" + dir},
		&s3Files{c: sc, bucket: bucket, dir: dir},
	}
	for v, c := range cs {
		if err := c.upload(ctx, "keep.txt", payload); err != nil {
			b.Fatalf("%s: the kept file: %v", rvhLabels[v], err)
		}
	}
	return cs
}

// roomClient connects client k (identity cNN) to room roomName of the
// serve process of an fsync mode; it is closed when b ends.
func (env *rvhEnv) roomClient(b *testing.B, ctx context.Context, fsync bool, k int, roomName string) *roomclient.Client {
	room, _ := env.servers(fsync)
	token, err := roomserver.NewToken(roomSecret, fmt.Sprintf("c%02d", k), roomName, 0)
	check(b, err)
	rc, err := roomclient.Dial(ctx, "ws://"+room.addr+"/rooms/"+roomName, roomclient.Options{Token: token, Logger: quietLog})
	check(b, err)
	b.Cleanup(func() { _ = rc.Close() })
	return rc
}

// rvhOrder returns the order of n sides in iteration i: a rotation,
// reversed with ROOMSTORE_BENCH_REVERSE=1.
func rvhOrder(i, n int) []int {
	o := make([]int, n)
	for j := range o {
		o[j] = (i + j) % n
	}
	if os.Getenv("ROOMSTORE_BENCH_REVERSE") == "1" {
		slices.Reverse(o)
	}
	return o
}

// oneClient is the 1-client case of an fsync mode.
func (env *rvhEnv) oneClient(fsync bool) func(b *testing.B) {
	return func(b *testing.B) {
		ctx, cancel := context.WithTimeout(context.Background(), rvhWait)
		defer cancel()
		payload := randomBytes(smallFileSize)
		names := smallNames()[:rvhNames]
		cs := env.clients(b, ctx, fsync, 0, rvhRoom, payload)
		for _, name := range names {
			for v, c := range cs {
				checkSide(b, v, rvhCycle(ctx, c, name, payload, nil))
			}
		}

		var (
			total [3]time.Duration
			ops   [3][4]time.Duration
		)
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			for _, v := range rvhOrder(n, len(cs)) {
				t0 := time.Now()
				checkSide(b, v, rvhCycle(ctx, cs[v], names[n%len(names)], payload, &ops[v]))
				total[v] += time.Since(t0)
			}
			n++
		}
		us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(n) }
		for v, l := range rvhLabels {
			b.ReportMetric(us(total[v]), l+"-us/cycle")
			if l == "s3" {
				continue
			}
			for o, op := range rvhOps {
				b.ReportMetric(us(ops[v][o]), l+"-"+op+"-us")
			}
		}

		// Allocations, untimed: each side alone.
		room, plain := env.servers(fsync)
		served := [3]func() (float64, error){
			func() (float64, error) {
				m, err := room.scrape()
				if err == nil && m["go_memstats_mallocs_total"] == 0 {
					err = errors.New("no go_memstats_mallocs_total on the metrics endpoint")
				}
				return m["go_memstats_mallocs_total"], err
			},
			func() (float64, error) { return plainMallocs(ctx, plain) },
			nil,
		}
		for _, v := range rvhOrder(0, len(cs)) {
			client, server := rvhAllocs(b, ctx, cs[v], served[v], names, payload, v)
			b.ReportMetric(client, rvhLabels[v]+"-client-allocs/cycle")
			if served[v] != nil {
				b.ReportMetric(server, rvhLabels[v]+"-server-allocs/cycle")
			}
		}
	}
}

// rvhAllocs runs rvhAllocCycles cycles of c and returns this process's
// allocations per cycle and, when served is set, the server's, less
// those of one call of served.
func rvhAllocs(b *testing.B, ctx context.Context, c fileClient, served func() (float64, error), names []string, payload []byte, v int) (client, server float64) {
	var idle, s0, s1 float64
	if served != nil {
		a, err := served()
		check(b, err)
		s0, err = served()
		check(b, err)
		idle = s0 - a
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for i := range rvhAllocCycles {
		checkSide(b, v, rvhCycle(ctx, c, names[i%len(names)], payload, nil))
	}
	runtime.ReadMemStats(&m1)
	if served != nil {
		var err error
		s1, err = served()
		check(b, err)
		server = (s1 - s0 - idle) / rvhAllocCycles
	}
	return float64(m1.Mallocs-m0.Mallocs) / rvhAllocCycles, server
}

// plainMallocs reads plainhttp's /_mallocs.
func plainMallocs(ctx context.Context, p *serveProc) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/_mallocs", nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("/_mallocs: %s", resp.Status)
	}
	return strconv.ParseFloat(strings.TrimSpace(string(body)), 64)
}

// manyClients is the 16-client case of an fsync mode.
func (env *rvhEnv) manyClients(fsync bool) func(b *testing.B) {
	return func(b *testing.B) {
		ctx, cancel := context.WithTimeout(context.Background(), rvhWait)
		defer cancel()
		payload := randomBytes(smallFileSize)
		names := smallNames()[:rvhNames]
		// The sides, in the order of rvhManyLabels: the three of the
		// 1-client case, each roomstore client in a room of its own, and
		// roomstore again with the 16 clients in one room, where every
		// participant gets the events of every change.
		var cs [len(rvhManyLabels)][rvhClients]fileClient
		for k := range rvhClients {
			side := env.clients(b, ctx, fsync, k, fmt.Sprintf("%s-%02d", rvhRoom, k), payload)
			for v := range side {
				cs[v][k] = side[v]
			}
			shared := &roomFiles{c: env.roomClient(b, ctx, fsync, k, rvhRoom), dir: fmt.Sprintf("c%02d/", k)}
			if err := shared.upload(ctx, "keep.txt", payload); err != nil {
				b.Fatalf("room, shared: the kept file: %v", err)
			}
			cs[3][k] = shared
		}
		var next [len(rvhManyLabels)][rvhClients]int // each client's next name
		phase := func(v, cycles int) {
			var (
				wg    sync.WaitGroup
				mu    sync.Mutex
				first error
			)
			for k, c := range cs[v] {
				from := next[v][k]
				next[v][k] += cycles
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range cycles {
						if err := rvhCycle(ctx, c, names[(from+j)%len(names)], payload, nil); err != nil {
							mu.Lock()
							first = firstErr(first, fmt.Errorf("client %d: %w", k, err))
							mu.Unlock()
							return
						}
					}
				}()
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			t := time.NewTimer(rvhWait)
			defer t.Stop()
			select {
			case <-done:
			case <-t.C:
				b.Fatalf("%s: a phase of %d clients did not end within %v", rvhManyLabels[v], rvhClients, rvhWait)
			}
			if first != nil {
				b.Fatalf("%s: %v", rvhManyLabels[v], first)
			}
		}
		for v := range cs {
			phase(v, rvhNames) // each name once, untimed
		}

		var elapsed [len(rvhManyLabels)]time.Duration
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			for _, v := range rvhOrder(n, len(cs)) {
				t0 := time.Now()
				phase(v, rvhPhaseCycles)
				elapsed[v] += time.Since(t0)
			}
			n++
		}
		for v, l := range rvhManyLabels {
			b.ReportMetric(float64(n*rvhClients*rvhPhaseCycles)/elapsed[v].Seconds(), l+"-cycles/s")
		}
	}
}

// firstErr returns the first of two errors that is not nil.
func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// checkSide fails b on err, naming side v.
func checkSide(b *testing.B, v int, err error) {
	if err != nil {
		b.Helper()
		b.Fatalf("%s: %v", rvhLabels[v], err)
	}
}

// fileClient is one client of one side: the cycle's four operations on a
// name in the client's folder.
type fileClient interface {
	upload(ctx context.Context, name string, data []byte) error
	// download reads the file to the end and returns its length.
	download(ctx context.Context, name string) (int, error)
	// stat returns the file's size.
	stat(ctx context.Context, name string) (int64, error)
	remove(ctx context.Context, name string) error
}

// rvhCycle runs one cycle of c on name: upload data (overwriting),
// download it and check its length, stat it and check its size, delete
// it. When ops is set, it adds each operation's time to it.
func rvhCycle(ctx context.Context, c fileClient, name string, data []byte, ops *[4]time.Duration) error {
	t0 := time.Now()
	if err := c.upload(ctx, name, data); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	t1 := time.Now()
	n, err := c.download(ctx, name)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if n != len(data) {
		return fmt.Errorf("downloaded %d bytes, uploaded %d", n, len(data))
	}
	t2 := time.Now()
	size, err := c.stat(ctx, name)
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if size != int64(len(data)) {
		return fmt.Errorf("stat: %d bytes, uploaded %d", size, len(data))
	}
	t3 := time.Now()
	if err := c.remove(ctx, name); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if ops != nil {
		t4 := time.Now()
		ops[0] += t1.Sub(t0)
		ops[1] += t2.Sub(t1)
		ops[2] += t3.Sub(t2)
		ops[3] += t4.Sub(t3)
	}
	return nil
}

// roomFiles is a roomclient participant.
type roomFiles struct {
	c   *roomclient.Client
	dir string
}

func (f *roomFiles) upload(ctx context.Context, name string, data []byte) error {
	_, err := f.c.Upload(ctx, f.dir+name, bytes.NewReader(data), roomstore.OpenOptions{Overwrite: true, Size: int64(len(data))})
	return err
}

func (f *roomFiles) download(ctx context.Context, name string) (int, error) {
	file, err := f.c.Download(ctx, f.dir+name)
	if err != nil {
		return 0, err
	}
	return len(file.Data), nil
}

func (f *roomFiles) stat(ctx context.Context, name string) (int64, error) {
	e, err := f.c.Stat(ctx, f.dir+name)
	return e.Size, err
}

func (f *roomFiles) remove(ctx context.Context, name string) error {
	return f.c.Delete(ctx, f.dir+name)
}

// plainFiles is a net/http client of cmd/plainhttp; buf takes the
// downloads.
type plainFiles struct {
	c    *http.Client
	base string // http://ADDR/f/DIR/
	buf  bytes.Buffer
}

// do makes one request and checks its status; the body, read to the end
// into f.buf, is the caller's until the next call.
func (f *plainFiles) do(ctx context.Context, method, name string, body []byte, want int) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, f.base+name, r)
	if err != nil {
		return nil, err
	}
	resp, err := f.c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	f.buf.Reset()
	if _, err := f.buf.ReadFrom(resp.Body); err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s: %s", method, resp.Status)
	}
	return resp, nil
}

func (f *plainFiles) upload(ctx context.Context, name string, data []byte) error {
	_, err := f.do(ctx, http.MethodPut, name, data, http.StatusNoContent)
	return err
}

func (f *plainFiles) download(ctx context.Context, name string) (int, error) {
	_, err := f.do(ctx, http.MethodGet, name, nil, http.StatusOK)
	return f.buf.Len(), err
}

func (f *plainFiles) stat(ctx context.Context, name string) (int64, error) {
	resp, err := f.do(ctx, http.MethodHead, name, nil, http.StatusOK)
	if err != nil {
		return 0, err
	}
	return resp.ContentLength, nil
}

func (f *plainFiles) remove(ctx context.Context, name string) error {
	_, err := f.do(ctx, http.MethodDelete, name, nil, http.StatusNoContent)
	return err
}

// s3Files is an aws-sdk-go-v2 client of versitygw; buf takes the
// downloads.
type s3Files struct {
	c           *s3.Client
	bucket, dir string
	buf         bytes.Buffer
}

func (f *s3Files) upload(ctx context.Context, name string, data []byte) error {
	_, err := f.c.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: aws.String(f.dir + name), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data)))})
	return err
}

func (f *s3Files) download(ctx context.Context, name string) (int, error) {
	out, err := f.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &f.bucket, Key: aws.String(f.dir + name)})
	if err != nil {
		return 0, err
	}
	defer out.Body.Close()
	f.buf.Reset()
	_, err = f.buf.ReadFrom(out.Body)
	return f.buf.Len(), err
}

func (f *s3Files) stat(ctx context.Context, name string) (int64, error) {
	out, err := f.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &f.bucket, Key: aws.String(f.dir + name)})
	if err != nil {
		return 0, err
	}
	return aws.ToInt64(out.ContentLength), nil
}

func (f *s3Files) remove(ctx context.Context, name string) error {
	_, err := f.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.bucket, Key: aws.String(f.dir + name)})
	return err
}
