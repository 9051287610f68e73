package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/fsnotify/fsnotify"
	"github.com/nats-io/nats.go"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_s3"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/events_nats"
	"github.com/roomstore/roomstore/internal/testserver"
	"github.com/roomstore/roomstore/roompath"
)

// outsideContent is what every outside write of the delay cases puts in a
// new file: 64 bytes.
var outsideContent = bytes.Repeat([]byte("outside\n"), 8)

const (
	// outsidePace is the pause between one write's last event and the
	// next write, so that every write finds the feeds idle.
	outsidePace = 2 * time.Millisecond
	// outsideWarm is how many writes each delay case makes, untimed,
	// before the measured ones, or fewer where they take over a second
	// (a Settle of 200 ms).
	outsideWarm = 20
	// outsideWait bounds the wait for one write's events.
	outsideWait = 10 * time.Second
	// scanFiles is the size of the stores of the 10,000-file scan cases.
	scanFiles = 10_000
	// scanPutWorkers is how many PutObject calls make the S3 scan store at
	// once.
	scanPutWorkers = 32
	// scanWait bounds one scan, a listing, or the making of a store.
	scanWait = 5 * time.Minute
	// outsideSubject is the NATS subject of the gateway's notifications.
	outsideSubject = "bench.s3.events"
)

// BenchmarkOutside measures how an engine with roomstore.WithWatch learns
// of the changes that others make to its store, and what its reconciling
// scan costs. Each delay case times, for every write by another program,
// the time from the write returning to an engine subscriber's handler
// getting its event (EventFileUpdated without a participant, with the
// written size), and, for the same writes, to a bare watcher of the same
// feed hearing of it (the baseline; 0 if it heard it before the write
// returned); each write waits for both (and an untimed pause,
// outsidePace) before the next, after outsideWarm untimed ones:
//
//   - file-settle-1ms, file-settle-default: os.WriteFile of a new 64-byte
//     file into the folder of roomstore.OpenURL("file://DIR") with
//     WithWatch(Watch{Settle: time.Millisecond}), and with WithWatch(Watch{})
//     (DefaultSettle); the engine hears inotify through the store's own
//     feed. Baseline: a bare fsnotify watcher of the folder, its Write
//     event of the file (the one that tells the bytes are there), which
//     inotify reports while os.WriteFile runs.
//   - s3-settle-1ms, s3-settle-default: PutObject of a new 64-byte object
//     with a raw aws-sdk-go-v2 client to a versitygw that publishes its
//     notifications to a nats-server (two child processes); the engine is
//     roomstore.OpenURL("s3://BUCKET?...") with WithWatch(Watch{Feeds:
//     [events_nats.NewS3Feed], NoNative: true, Scan: -1}) and Settle 1 ms
//     or the default. Baseline: a raw NATS subscriber of the notification
//     subject, the message that names the object (the gateway notifies
//     once it has answered).
//
// The reports are roomstore-p50-µs, -p99-µs and -max-µs, and the same for
// the baseline.
//
// The scan cases time Engine.Scan (WithWatch(Watch{Scan: -1, NoNative:
// true}), so that nothing but the measured scans looks at the store) over
// a store of unchanged files, against the raw listing of the same files,
// alternately (which goes first alternating), after one untimed call of
// each: on disk filepath.WalkDir of the store's folder with Info for
// each entry (an lstat, as the engine's listing makes), on S3
// ListObjectsV2 pages of 1,000 keys (the backend's page size) of the
// store's prefix, no delimiter. Each side reports its mean time, CPU time
// (getrusage, the whole process: nothing else runs), allocations and
// bytes allocated per scan (runtime.MemStats). The 10,000-file cases then
// change one file each iteration from outside (untimed) and time the
// Engine.Scan that finds it and publishes its event (changed-ns/scan);
// the run fails unless each such scan made one event.
//
//   - scan-file-10k: a file:// store whose folder "room" holds 10,000
//     16-byte files, made in a temporary folder.
//   - scan-file-100k: the same with BenchmarkList100k's 100,000 files,
//     which ROOMSTORE_BENCH_DATA keeps between runs (no changes: they are
//     shared).
//   - scan-s3-10k: an S3 store (prefix "scan" of a bucket of a versitygw
//     of its own) of 10,000 16-byte objects, put by 32 raw PutObject calls
//     at a time once per process.
func BenchmarkOutside(b *testing.B) {
	s3scan := &scanS3Store{parent: b}
	runCases(b, []benchCase{
		{"file-settle-1ms", func(b *testing.B) { outsideFile(b, time.Millisecond) }},
		{"file-settle-default", func(b *testing.B) { outsideFile(b, 0) }},
		{"s3-settle-1ms", func(b *testing.B) { outsideS3(b, time.Millisecond) }},
		{"s3-settle-default", func(b *testing.B) { outsideS3(b, 0) }},
		{"scan-file-10k", func(b *testing.B) {
			dir := b.TempDir()
			makeFiles(b, filepath.Join(dir, "room"), scanFiles, listContent)
			scanFile(b, dir, scanFiles, true)
		}},
		{"scan-file-100k", func(b *testing.B) { scanFile(b, listData(b, listContent), listFiles, false) }},
		{"scan-s3-10k", func(b *testing.B) { scanS3(b, s3scan) }},
	})
}

// heard records when a watcher first heard of each name.
type heard struct {
	mu     sync.Mutex
	at     map[string]time.Time
	notify chan struct{} // 1-buffered: something arrived
}

func newHeard() *heard {
	return &heard{at: map[string]time.Time{}, notify: make(chan struct{}, 1)}
}

func (a *heard) add(name string, at time.Time) {
	a.mu.Lock()
	if _, ok := a.at[name]; !ok {
		a.at[name] = at
	}
	a.mu.Unlock()
	select {
	case a.notify <- struct{}{}:
	default:
	}
}

func (a *heard) get(name string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.at[name]
	return at, ok
}

// awaitBoth waits until both rs and base have heard of name, and returns
// when each did; false if deadline came first.
func awaitBoth(name string, deadline time.Time, rs, base *heard) (trs, tbase time.Time, ok bool) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		r, rok := rs.get(name)
		s, sok := base.get(name)
		if rok && sok {
			return r, s, true
		}
		select {
		case <-rs.notify:
		case <-base.notify:
		case <-timer.C:
			return r, s, false
		}
	}
}

// outsideDelays makes the writes of a delay case with write, each of a
// new name, and reports the delays from each write's return to rs and to
// base hearing of it. Until one write reaches both, the untimed writes go
// on, a second apart (a feed may still be subscribing); then come
// outsideWarm untimed ones (or those a second holds), then the measured
// ones.
func outsideDelays(b *testing.B, write func(name string), rs, base *heard) {
	deadline := time.Now().Add(time.Minute)
	for k := 0; ; k++ {
		name := fmt.Sprintf("warm-first-%03d.txt", k)
		write(name)
		if _, _, ok := awaitBoth(name, earliest(time.Now().Add(time.Second), deadline), rs, base); ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no outside write reached both the engine and the baseline within a minute")
		}
	}
	measure := func(name string) (drs, dbase time.Duration) {
		write(name)
		ret := time.Now()
		trs, tbase, ok := awaitBoth(name, ret.Add(outsideWait), rs, base)
		if !ok {
			b.Fatalf("%s: no event within %v (engine %v, baseline %v)", name, outsideWait, !trs.IsZero(), !tbase.IsZero())
		}
		// inotify reports a write while it runs: the bare watcher often
		// hears it before os.WriteFile has returned, which counts as 0.
		return max(trs.Sub(ret), 0), max(tbase.Sub(ret), 0)
	}
	for k, start := 0, time.Now(); k < outsideWarm && time.Since(start) < time.Second; k++ {
		time.Sleep(outsidePace)
		measure(fmt.Sprintf("warm-%03d.txt", k))
	}
	var drs, dbase []time.Duration
	i := 0
	for b.Loop() {
		time.Sleep(outsidePace)
		r, s := measure(fmt.Sprintf("w-%06d.txt", i))
		drs, dbase = append(drs, r), append(dbase, s)
		i++
	}
	reportPercentiles(b, "roomstore", drs)
	reportPercentiles(b, "baseline", dbase)
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// subscribeOutside records, in into, when the engine's subscriber got the
// event of an outside write of outsideContent.
func subscribeOutside(b *testing.B, e *roomstore.Engine, into *heard) {
	sub := e.Subscribe(func(ev events.Event) {
		now := time.Now()
		if ev.ParticipantID == "" && ev.Size == int64(len(outsideContent)) {
			into.add(ev.Path, now)
		}
	}, roomstore.EventFileUpdated)
	b.Cleanup(sub.Unsubscribe)
}

// waitWatching waits for e's first view of its store.
func waitWatching(b *testing.B, e *roomstore.Engine) {
	ctx, cancel := context.WithTimeout(context.Background(), scanWait)
	defer cancel()
	check(b, e.WaitWatching(ctx))
}

// outsideFile is the delay case on a file:// store with the given Settle
// (0: the default).
func outsideFile(b *testing.B, settle time.Duration) {
	dir := b.TempDir()
	e := openURLEngine(b, fileURL(dir, true), roomstore.WithWatch(roomstore.Watch{Settle: settle}))
	waitWatching(b, e)
	rs, base := newHeard(), newHeard()
	subscribeOutside(b, e, rs)

	w, err := fsnotify.NewWatcher()
	check(b, err)
	done := make(chan struct{})
	b.Cleanup(func() {
		_ = w.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			select {
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				now := time.Now()
				if ev.Has(fsnotify.Write) {
					base.add(filepath.Base(ev.Name), now)
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
			}
		}
	}()
	check(b, w.Add(dir))

	outsideDelays(b, func(name string) {
		check(b, os.WriteFile(filepath.Join(dir, name), outsideContent, 0o644))
	}, rs, base)
}

// s3URL returns the s3:// URL of the store at prefix of bucket on gw.
func s3URL(gw *testserver.VersityGW, bucket, prefix string) string {
	return fmt.Sprintf("s3://%s/%s?region=%s&endpoint=%s&path_style=true",
		bucket, prefix, testserver.VersityGWRegion, url.QueryEscape(gw.Endpoint))
}

// outsideS3 is the delay case on an S3 store whose server publishes its
// notifications to NATS, with the given Settle (0: the default).
func outsideS3(b *testing.B, settle time.Duration) {
	srv := testserver.StartNATS(b)
	gw := testserver.StartVersityGWWithEvents(b, srv.URL, outsideSubject)
	bucket := gw.NewBucket(b)
	gw.SetCredentialEnv(b)

	nc, err := nats.Connect(srv.URL, events_nats.ConnOptions()...)
	check(b, err)
	b.Cleanup(nc.Close) // after the engine's Shutdown
	feed, err := events_nats.NewS3Feed(nc, outsideSubject, bucket, "", events_nats.WithS3FeedLogger(quietLog))
	check(b, err)
	e := openURLEngine(b, s3URL(gw, bucket, ""), roomstore.WithWatch(roomstore.Watch{
		Feeds: []backend.Watcher{feed}, NoNative: true, Scan: -1, Settle: settle,
	}))
	waitWatching(b, e)
	rs, base := newHeard(), newHeard()
	subscribeOutside(b, e, rs)

	raw, err := nats.Connect(srv.URL)
	check(b, err)
	b.Cleanup(raw.Close)
	_, err = raw.Subscribe(outsideSubject, func(m *nats.Msg) {
		now := time.Now()
		var n struct {
			Records []struct {
				S3 struct {
					Bucket struct {
						Name string `json:"name"`
					} `json:"bucket"`
					Object struct {
						Key string `json:"key"`
					} `json:"object"`
				} `json:"s3"`
			} `json:"Records"`
		}
		if json.Unmarshal(m.Data, &n) != nil {
			return
		}
		for _, r := range n.Records {
			if r.S3.Bucket.Name == bucket {
				base.add(r.S3.Object.Key, now)
			}
		}
	})
	check(b, err)
	check(b, raw.Flush())

	client := gw.Client()
	outsideDelays(b, func(name string) {
		ctx, cancel := context.WithTimeout(context.Background(), outsideWait)
		defer cancel()
		_, err := client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(name), Body: bytes.NewReader(outsideContent),
		})
		check(b, err)
	}, rs, base)
}

// scanCost is what one or more scans cost.
type scanCost struct {
	wall, cpu     time.Duration
	allocs, bytes uint64
	scans         int
}

// measure runs scan once and adds what it cost.
func (c *scanCost) measure(scan func()) {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu0, t0 := cpuTime(), time.Now()
	scan()
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	runtime.ReadMemStats(&m1)
	c.wall += wall
	c.cpu += cpu
	c.allocs += m1.Mallocs - m0.Mallocs
	c.bytes += m1.TotalAlloc - m0.TotalAlloc
	c.scans++
}

// report reports the means per scan as SIDE-ns/scan, SIDE-cpu-ns/scan,
// SIDE-allocs/scan and SIDE-B/scan.
func (c *scanCost) report(b *testing.B, side string) {
	n := float64(c.scans)
	b.ReportMetric(float64(c.wall.Nanoseconds())/n, side+"-ns/scan")
	b.ReportMetric(float64(c.cpu.Nanoseconds())/n, side+"-cpu-ns/scan")
	b.ReportMetric(float64(c.allocs)/n, side+"-allocs/scan")
	b.ReportMetric(float64(c.bytes)/n, side+"-B/scan")
}

// scanPaired times rs (Engine.Scan of an unchanged store) and base (the
// raw listing) alternately, after one untimed call of each. With change,
// each iteration then changes one file from outside (change(i), untimed)
// and times rs again, which finds it: changed-ns/scan.
func scanPaired(b *testing.B, rs, base func(), change func(i int)) {
	rs()
	base()
	var crs, cbase, cchanged scanCost
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			crs.measure(rs)
			cbase.measure(base)
		} else {
			cbase.measure(base)
			crs.measure(rs)
		}
		if change != nil {
			change(i)
			cchanged.measure(rs)
		}
		i++
	}
	crs.report(b, "roomstore")
	cbase.report(b, "baseline")
	if change != nil {
		b.ReportMetric(float64(cchanged.wall.Nanoseconds())/float64(cchanged.scans), "changed-ns/scan")
	}
}

// engineScan returns a call of e.Scan, and counts in outside the events
// of outside changes that e's subscriber gets.
func engineScan(b *testing.B, e *roomstore.Engine, outside *atomic.Int64) func() {
	sub := e.Subscribe(func(ev events.Event) {
		if ev.ParticipantID == "" {
			outside.Add(1)
		}
	})
	b.Cleanup(sub.Unsubscribe)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), scanWait)
		defer cancel()
		check(b, e.Scan(ctx))
	}
}

// awaitOutside waits until outside counts want events, and fails b if it
// counts more, or fewer after outsideWait.
func awaitOutside(b *testing.B, outside *atomic.Int64, want int64) {
	deadline := time.Now().Add(outsideWait)
	for outside.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := outside.Load(); n != want {
		b.Fatalf("the scans made %d outside events, want %d (one per changed file)", n, want)
	}
}

// scanFile is a scan case on the file:// store in dir, whose folder
// "room" holds files files; with change, each iteration also changes one
// of them from outside and times the scan that finds it.
func scanFile(b *testing.B, dir string, files int, change bool) {
	// Files just made would otherwise be written back during the scans.
	syscall.Sync()
	e := openURLEngine(b, fileURL(dir, true), roomstore.WithWatch(roomstore.Watch{Scan: -1, NoNative: true}))
	waitWatching(b, e)
	var outside atomic.Int64
	rs := engineScan(b, e, &outside)
	base := func() {
		n := 0
		check(b, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if roompath.IsReserved(d.Name()) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				return nil
			}
			if _, err := d.Info(); err != nil {
				return err
			}
			n++
			return nil
		}))
		check(b, counted(n, files))
	}
	var changeOne func(i int)
	changed := 0
	if change {
		changeOne = func(i int) {
			name := filepath.Join(dir, "room", fileName(i%files))
			check(b, os.WriteFile(name, fmt.Appendf(nil, "changed %d\n", i), 0o644))
			changed++
		}
	}
	scanPaired(b, rs, base, changeOne)
	awaitOutside(b, &outside, int64(changed))
}

// scanS3Store is the S3 store of the S3 scan case, made once per process
// on a versitygw of its own, the first time a case asks for it.
type scanS3Store struct {
	parent *testing.B
	once   sync.Once
	gw     *testserver.VersityGW
	bucket string
}

// scanPrefix is the key prefix of the S3 scan store.
const scanPrefix = "scan"

func (s *scanS3Store) get() (*testserver.VersityGW, string) {
	s.once.Do(func() {
		s.gw = testserver.StartVersityGW(s.parent)
		s.bucket = s.gw.NewBucket(s.parent)
		client := s.gw.Client()
		ctx, cancel := context.WithTimeout(context.Background(), scanWait)
		defer cancel()
		next := make(chan int)
		errs := make(chan error, scanPutWorkers)
		var wg sync.WaitGroup
		for range scanPutWorkers {
			wg.Go(func() {
				for i := range next {
					_, err := client.PutObject(ctx, &s3.PutObjectInput{
						Bucket: aws.String(s.bucket), Key: aws.String(scanPrefix + "/room/" + fileName(i)),
						Body: bytes.NewReader(listContent),
					})
					if err != nil {
						errs <- err
						cancel()
						return
					}
				}
			})
		}
	feed:
		for i := range scanFiles {
			select {
			case next <- i:
			case <-ctx.Done():
				break feed
			}
		}
		close(next)
		wg.Wait()
		close(errs)
		for err := range errs {
			check(s.parent, err)
		}
		check(s.parent, ctx.Err())
	})
	return s.gw, s.bucket
}

// scanS3 is the scan case on the S3 store s.
func scanS3(b *testing.B, s *scanS3Store) {
	gw, bucket := s.get()
	gw.SetCredentialEnv(b)
	e := openURLEngine(b, s3URL(gw, bucket, scanPrefix), roomstore.WithWatch(roomstore.Watch{Scan: -1}))
	waitWatching(b, e)
	var outside atomic.Int64
	rs := engineScan(b, e, &outside)
	client := gw.Client()
	base := func() {
		ctx, cancel := context.WithTimeout(context.Background(), scanWait)
		defer cancel()
		pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{
			Bucket:  aws.String(bucket),
			Prefix:  aws.String(scanPrefix + "/"),
			MaxKeys: aws.Int32(backend_s3.DefaultListPageSize),
		})
		n := 0
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			check(b, err)
			n += len(page.Contents)
		}
		check(b, counted(n, scanFiles))
	}
	changed := 0
	scanPaired(b, rs, base, func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), outsideWait)
		defer cancel()
		_, err := client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(scanPrefix + "/room/" + fileName(i%scanFiles)),
			Body: bytes.NewReader(fmt.Appendf(nil, "changed %d\n", i)),
		})
		check(b, err)
		changed++
	})
	awaitOutside(b, &outside, int64(changed))
}

func counted(n, want int) error {
	if n != want {
		return fmt.Errorf("listed %d files, want %d", n, want)
	}
	return nil
}
