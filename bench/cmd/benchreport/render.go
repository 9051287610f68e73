package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/roomstore/roomstore"
)

// report builds the markdown document.
type report struct {
	strings.Builder
	m      machine
	r      *results
	missed []string
}

func (w *report) line(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }

// row writes one table row.
func (w *report) row(cells ...string) { w.line("| %s |", strings.Join(cells, " | ")) }

// header writes a table header.
func (w *report) header(cells ...string) {
	w.row(cells...)
	sep := make([]string, len(cells))
	for i := range sep {
		sep[i] = "---"
	}
	w.row(sep...)
}

// status records a target's outcome and returns its cell.
func (w *report) status(ok, known bool, what string) string {
	switch {
	case !known && w.m.only != "":
		return "not run (-only)"
	case !known:
		w.missed = append(w.missed, what+" (no figure)")
		return "no figure"
	case ok:
		return "met"
	}
	w.missed = append(w.missed, what)
	return "**missed**"
}

// fig returns the median of a figure, formatted, or "—".
func (w *report) fig(name, unit string, format func(float64) string) string {
	v, ok := w.r.median(name, unit)
	if !ok {
		return "—"
	}
	return format(v)
}

const (
	small  = "BenchmarkSmallFile/"
	upmv   = "BenchmarkUploadMove/"
	large  = "BenchmarkLarge64MiB/"
	memory = "BenchmarkMemory1GiB/"
	memMem = "BenchmarkMemoryMem64MiB/"
	evs    = "BenchmarkEvents/"
	list   = "BenchmarkList100k/"
	apnd   = "BenchmarkAppend4KiB/"
	room   = "BenchmarkRoomServer64MiB/"
	fanout = "BenchmarkRoomFanout100"
	instr  = "BenchmarkInstrumentation/"
	gcycle = "BenchmarkRoomGrantCycle/"
	glist  = "BenchmarkRoomGrantList10k/"
	bflood = "BenchmarkBudgetsFlood/"
	bidle  = "BenchmarkBudgetsIdle10k"
	bempty = "BenchmarkBudgetsEmptyingFolder/"
	bdeep  = "BenchmarkBudgetsDeepList/"
	defl   = "BenchmarkRoomServerDeflate/"
	outsd  = "BenchmarkOutside/"
	hist   = "BenchmarkHistory/"
	tusUp  = "BenchmarkTus64MiB/"
	rvh    = "BenchmarkRoomVsHTTP/"
	nsop   = "ns/op"
)

func render(m machine, r *results) string {
	w := &report{r: r, m: m}
	w.line("# roomstore benchmarks")
	w.line("")
	w.line("Written by `make bench`; do not edit by hand. Every figure below comes from one run of that command, and both sides of every ratio from the same process, a few seconds apart.")
	w.line("")
	w.line("- Machine: %s, %d cores (GOMAXPROCS %d), %s, %s, Linux %s; 1-minute load average %s", m.cpu, m.cores, m.gomaxprocs, m.memory, m.goos, m.kernel, m.load)
	w.line("- Go: %s", m.goVersion)
	if m.command != "" {
		w.line("- Command: `%s`, which installs the test servers (`make tools`) and runs `cd bench && %s`; that runs:", m.command, m.self)
	} else {
		w.line("- Command: `cd bench && %s`, which runs:", m.self)
	}
	for _, inv := range m.invocations {
		w.line("  - `%s`", inv)
	}
	w.line("- Run: %s, %v in all; ratio cases over %d round(s) (roomstore first on odd rounds, baselines first on even ones), memory, append and version-history overwrite cases once.", m.when.Format("2006-01-02 15:04 UTC"), m.elapsed.Round(time.Second), m.rounds)
	w.line("- A figure is the median over the rounds. A ratio is the median of the per-round ratios: roomstore over the baseline, so below 1 is better for times and above 1 for rates; \"x faster\" is the baseline's time over roomstore's.")
	w.line("")

	w.smallFiles()
	w.largeFiles()
	w.memory()
	w.events()
	w.list()
	w.append()
	w.roomServer()
	w.roomFanout()
	w.natsEvents()
	w.syscalls(m.syscalls)
	w.instrumentation()
	w.againstBaseline()
	w.accessGrants()
	w.budgets()
	w.deflate()
	w.outside()
	w.history()
	w.tus()
	w.roomVsHTTP()
	w.summary()
	w.all()
	return w.String()
}

// timeRow compares two time figures: ratio rs/base against limit (0: no
// target). extra cells, if any, end the row.
func (w *report) timeRow(what, rsLabel, rs, baseLabel, base string, limit float64, fmtTime func(float64) string, extra ...string) {
	ratio, ok := w.r.ratio(rs, base, nsop)
	target, st := "—", ""
	if limit > 0 {
		target = fmt.Sprintf("≤ %.2fx", limit)
		st = w.status(ok && ratio <= limit, ok, fmt.Sprintf("%s: %s vs %s %.2fx (target ≤ %.2fx)", what, rsLabel, baseLabel, ratio, limit))
	}
	w.row(append([]string{rsLabel, baseLabel, w.fig(rs, nsop, fmtTime), w.fig(base, nsop, fmtTime), fmtRatio(ratio, ok), target, st}, extra...)...)
}

// fasterRow compares two times as "x faster" (base/rs) against a minimum
// (0: no target). extra cells, if any, end the row.
func (w *report) fasterRow(what, rsLabel, rs, baseLabel, base string, least float64, fmtTime func(float64) string, extra ...string) {
	ratio, ok := w.r.ratio(base, rs, nsop)
	cell := "—"
	if ok {
		cell = fmt.Sprintf("%.2fx faster", ratio)
	}
	target, st := "—", ""
	if least > 0 {
		target = fmt.Sprintf("≥ %.0fx faster", least)
		st = w.status(ok && ratio >= least, ok, fmt.Sprintf("%s: %s vs %s %.2fx faster (target ≥ %.0fx)", what, rsLabel, baseLabel, ratio, least))
	}
	w.row(append([]string{rsLabel, baseLabel, w.fig(rs, nsop, fmtTime), w.fig(base, nsop, fmtTime), cell, target, st}, extra...)...)
}

// split returns the write and read halves of a large-file case.
func (w *report) split(name string) string {
	ms := func(v float64) string { return fmtDur(v * 1e6) }
	return w.fig(name, "write-ms", ms) + " / " + w.fig(name, "read-ms", ms)
}

func (w *report) smallFiles() {
	w.line("## 1. Small-file cycle")
	w.line("")
	w.line("One cycle: open, write 4 KiB, close, download, stat, delete, on 1,000 rotating names; mean time per cycle. Each row is one sub-benchmark that runs a roomstore cycle and a baseline cycle alternately (which goes first alternates too), so that the shared disk's slow spells hit both alike. The raw os baseline does the same work the way an atomic writer must (temporary file, write, rename, read, stat, remove), with fsync of the file and its folder when fsync is on. gocloud.dev fileblob never fsyncs, so it is compared with fsync off. Every roomstore store is the one `roomstore.OpenURL` returns for the URL shown, with default options (on Linux, `file://` resolves paths with openat2 beneath the folder's descriptor); the last rows are for reference: the portable disk path, `backend_disk.NewAfero(afero.NewBasePathFs(afero.NewOsFs(), DIR))`, and the two other ways a small file changes, Upload (then Delete) and Move, against the raw calls that do the same. The temporary folders are on %s.", w.m.tmpFS)
	w.line("")
	w.header("roomstore", "baseline", "roomstore", "baseline", "ratio", "target", "", "ratio by round")
	for _, c := range []struct {
		rsLabel, baseLabel, name string
		limit                    float64 // roomstore/baseline at most
		least                    float64 // baseline/roomstore at least
	}{
		{"`file://DIR?fsync=false`", "raw os, no fsync", small + "file-nofsync-vs-os-nofsync", 1.3, 0},
		{"`file://DIR` (fsync on)", "raw os, fsync", small + "file-fsync-vs-os-fsync", 1.3, 0},
		{"`file://DIR?fsync=false`", "gocloud.dev fileblob", small + "file-nofsync-vs-fileblob", 0, 2},
		{"`mem://`", "gocloud.dev memblob", small + "mem-vs-memblob", 0, 2.5},
		{"BasePathFs over OsFs, fsync off", "raw os, no fsync", small + "basepath-nofsync-vs-os-nofsync", 0, 0},
		{"Upload 4 KiB + Delete, `file://DIR?fsync=false`", "raw os: temporary, write, rename, remove", upmv + "upload-file-nofsync-vs-os-nofsync", 0, 0},
		{"Move, `file://DIR?fsync=false`", "os.Rename", upmv + "move-file-vs-os-rename", 0, 0},
	} {
		n := c.name
		rsFig := w.fig(n, "roomstore-ns/cycle", fmtDur)
		baseFig := w.fig(n, "baseline-ns/cycle", fmtDur)
		what := fmt.Sprintf("small-file: %s vs %s", c.rsLabel, c.baseLabel)
		switch {
		case c.least == 0:
			ratio, ok := w.r.ratioWithin(n, "roomstore-ns/cycle", "baseline-ns/cycle")
			target, st := "—", ""
			if c.limit > 0 {
				target = fmt.Sprintf("≤ %.2fx", c.limit)
				st = w.status(ok && ratio <= c.limit, ok, fmt.Sprintf("%s %.2fx (target ≤ %.2fx)", what, ratio, c.limit))
			}
			w.row(c.rsLabel, c.baseLabel, rsFig, baseFig, fmtRatio(ratio, ok), target, st,
				fmtRounds(w.r.roundRatios(n, "roomstore-ns/cycle", n, "baseline-ns/cycle")))
		default:
			ratio, ok := w.r.ratioWithin(n, "baseline-ns/cycle", "roomstore-ns/cycle")
			st := w.status(ok && ratio >= c.least, ok, fmt.Sprintf("%s %.2fx faster (target ≥ %gx)", what, ratio, c.least))
			cell := "—"
			if ok {
				cell = fmt.Sprintf("%.2fx faster", ratio)
			}
			w.row(c.rsLabel, c.baseLabel, rsFig, baseFig, cell, fmt.Sprintf("≥ %gx faster", c.least), st,
				fmtRounds(w.r.roundRatios(n, "baseline-ns/cycle", n, "roomstore-ns/cycle"))+" faster")
		}
	}
	w.line("")
	fb := w.r.roundRatios(small+"file-nofsync-vs-fileblob", "baseline-ns/cycle", small+"file-nofsync-vs-os-nofsync", "baseline-ns/cycle")
	if len(fb) > 0 {
		w.line("For scale, gocloud.dev fileblob's cycle (which creates two files, the file and its attributes) took %s the raw os cycle's time, round by round (each baseline of its own row, in the same round).", fmtRounds(fb))
	}
	w.line("")
}

func (w *report) largeFiles() {
	w.line("## 2. Large file: 64 MiB")
	w.line("")
	w.line("64 MiB written in 1 MiB Writes and committed, then read back through OpenReader (the baselines: their own reader) with a 1 MiB buffer; time per write+read (%s timed iterations per round after an untimed one that creates the file and warms connections and caches), and its two halves. S3 runs on one versitygw and GCS on one fake-gcs-server, both on loopback, shared by roomstore and the raw SDK client, which writes in the backend's part size (5 MiB multipart parts; a 16 MiB storage.Writer chunk).", strings.TrimSuffix(fixedIterations, "x"))
	w.line("")
	w.header("roomstore", "baseline", "roomstore", "baseline", "ratio", "target", "", "write / read, roomstore", "write / read, baseline")
	for _, c := range []struct {
		rsLabel, rs, baseLabel, base string
		limit                        float64
		faster                       bool
	}{
		{"`file://DIR` (fsync on)", "roomstore-afero-fsync", "raw os, fsync", "os-fsync", 1.25, false},
		{"`file://DIR?fsync=false`", "roomstore-afero-nofsync", "raw os, no fsync", "os-nofsync", 1.25, false},
		{"`file://DIR?fsync=false`", "roomstore-afero-nofsync", "gocloud.dev fileblob", "fileblob", 0, true},
		{"S3 (versitygw)", "roomstore-s3", "aws-sdk-go-v2: multipart upload, GetObject", "s3-sdk", 1.15, false},
		{"GCS (fake-gcs-server)", "roomstore-gcs", "storage client: Writer, NewReader", "gcs-sdk", 1.15, false},
	} {
		rs, base := large+c.rs, large+c.base
		if c.faster {
			w.fasterRow("64 MiB", c.rsLabel, rs, c.baseLabel, base, 0, fmtDur, w.split(rs), w.split(base))
			continue
		}
		w.timeRow("64 MiB", c.rsLabel, rs, c.baseLabel, base, c.limit, fmtDur, w.split(rs), w.split(base))
	}
	w.line("")
}

func (w *report) memory() {
	w.line("## 3. Memory: 1 GiB through a handle and back")
	w.line("")
	w.line("1 GiB in 1 MiB Writes through one handle, committed, read back through OpenReader with a 1 MiB buffer; each case alone in a fresh child process (`cmd/rssprobe`). Peak RSS is the child's VmHWM; peak heap is the largest `/memory/classes/heap/objects:bytes` sampled every millisecond; RSS before is the child's resident set before the work (runtime, binary, clients). The raw rows are reference points, not targets.")
	w.line("")
	w.header("store", "peak RSS", "RSS before", "peak heap", "write 1 GiB", "read 1 GiB", "target", "")
	mib := func(v float64) string { return fmt.Sprintf("%.1f MiB", v) }
	sec := func(v float64) string { return fmt.Sprintf("%.2f s", v) }
	for _, c := range []struct {
		label, name string
		target      bool
	}{
		{"roomstore, `file://DIR` (fsync on)", "roomstore-file", true},
		{"raw os (fsync, rename)", "os", false},
		{"roomstore, S3 (versitygw)", "roomstore-s3", true},
		{"raw aws-sdk-go-v2 (5 MiB parts, GetObject)", "s3-sdk", false},
	} {
		n := memory + c.name
		target, st := "—", ""
		if c.target {
			v, ok := w.r.median(n, "peak-RSS-MiB")
			target = "peak RSS ≤ 64 MiB"
			st = w.status(ok && v <= 64, ok, fmt.Sprintf("1 GiB %s: peak RSS %.1f MiB (target ≤ 64 MiB)", c.label, v))
		}
		w.row(c.label, w.fig(n, "peak-RSS-MiB", mib), w.fig(n, "base-RSS-MiB", mib), w.fig(n, "peak-heap-MiB", mib),
			w.fig(n, "write-s", sec), w.fig(n, "read-s", sec), target, st)
	}
	w.line("")
	w.line("The in-memory backend, which other projects use as their storage fake: 64 MiB through a handle of `roomstore.OpenURL(\"mem://\")` in 1 MiB Writes, committed, read back once the same way, alone in a fresh child. It keeps a file once, in the chunks its writer staged (a commit hands them over; a read streams from them), so the peak heap is the file and the write buffer.")
	w.line("")
	w.header("store", "size", "peak heap", "peak heap / size", "peak RSS", "target", "")
	mn := memMem + "roomstore-mem"
	v, ok := w.r.median(mn, "heap-per-size")
	w.row("roomstore, `mem://`", "64 MiB", w.fig(mn, "peak-heap-MiB", mib), w.fig(mn, "heap-per-size", func(v float64) string { return fmt.Sprintf("%.2fx", v) }),
		w.fig(mn, "peak-RSS-MiB", mib), "≤ 1.30x", w.status(ok && v <= 1.3, ok, fmt.Sprintf("64 MiB `mem://`: peak heap %.2fx the size (target ≤ 1.3x)", v)))
	w.line("")
}

func (w *report) events() {
	w.line("## 4. Events")
	w.line("")
	w.line("Throughput: one goroutine commits as fast as it can (Open, Write 64 bytes, Close on backend_mem) while one subscriber counts file.updated; events/s is events handled per second from the first Close to the last handler call. The bus-alone row publishes straight into `events.Bus` (what Close adds to a commit); when its subscriber falls behind, its bounded queue drops events, which are not counted as delivered. The baseline is EventBus's raw Publish to one synchronous handler. Latency: commits paced at 10,000 per second; the time from Close (or Publish) returning to the handler starting (0 when it started first). EventBus runs synchronous handlers inside Publish, so its latency baseline is SubscribeAsync (a goroutine per event).")
	w.line("")
	w.header("measure", "roomstore", "baseline", "roomstore", "baseline", "ratio", "target", "")
	rate := func(v float64) string { return fmtCount(v) + "/s" }
	us := func(v float64) string { return fmtDur(v * 1e3) }
	ratio := func(a, b, unit string) string {
		x, ok := w.r.ratio(a, b, unit)
		return fmtRatio(x, ok)
	}
	v, ok := w.r.median(evs+"roomstore-close-to-handler", "events/s")
	w.row("events/s, Close → one handler", "Close on backend_mem", "EventBus raw Publish, sync handler",
		w.fig(evs+"roomstore-close-to-handler", "events/s", rate), w.fig(evs+"eventbus-publish", "events/s", rate),
		ratio(evs+"roomstore-close-to-handler", evs+"eventbus-publish", "events/s"), "≥ 1,000,000/s",
		w.status(ok && v >= 1e6, ok, fmt.Sprintf("events: Close → handler %s/s (target ≥ 1,000,000/s)", fmtCount(v))))
	dropped := w.fig(evs+"roomstore-bus-publish", "dropped", fmtCount)
	w.row("events/s, bus alone", fmt.Sprintf("events.Bus Publish (%s dropped)", dropped), "EventBus raw Publish, sync handler",
		w.fig(evs+"roomstore-bus-publish", "events/s", rate), w.fig(evs+"eventbus-publish", "events/s", rate),
		ratio(evs+"roomstore-bus-publish", evs+"eventbus-publish", "events/s"), "—", "")
	w.row("p50 latency at 10k/s", "Close → handler", "EventBus async Publish → handler",
		w.fig(evs+"roomstore-close-latency-10k", "p50-µs", us), w.fig(evs+"eventbus-async-latency-10k", "p50-µs", us),
		ratio(evs+"roomstore-close-latency-10k", evs+"eventbus-async-latency-10k", "p50-µs"), "—", "")
	p99, ok := w.r.median(evs+"roomstore-close-latency-10k", "p99-µs")
	w.row("p99 latency at 10k/s", "Close → handler", "EventBus async Publish → handler",
		w.fig(evs+"roomstore-close-latency-10k", "p99-µs", us), w.fig(evs+"eventbus-async-latency-10k", "p99-µs", us),
		ratio(evs+"roomstore-close-latency-10k", evs+"eventbus-async-latency-10k", "p99-µs"), "≤ 1 ms",
		w.status(ok && p99 <= 1000, ok, fmt.Sprintf("events: p99 Close → handler %s at 10k/s (target ≤ 1 ms)", us(p99))))
	w.row("p99 latency at 10k/s, bus alone", "events.Bus Publish → handler", "EventBus async Publish → handler",
		w.fig(evs+"roomstore-bus-latency-10k", "p99-µs", us), w.fig(evs+"eventbus-async-latency-10k", "p99-µs", us),
		ratio(evs+"roomstore-bus-latency-10k", evs+"eventbus-async-latency-10k", "p99-µs"), "—", "")
	w.row("max latency at 10k/s", "Close → handler", "EventBus async Publish → handler",
		w.fig(evs+"roomstore-close-latency-10k", "max-µs", us), w.fig(evs+"eventbus-async-latency-10k", "max-µs", us), "", "—", "")
	w.line("")
}

func (w *report) list() {
	w.line("## 5. List of a folder with 100,000 files")
	w.line("")
	w.line("List of one folder of 100,000 16-byte files; the baseline is the raw listing of the same folder on disk: os.ReadDir and Info for every entry. Each row is one sub-benchmark that lists with roomstore and with the raw calls alternately (%s times each per round, after one untimed call of each); mean time per listing. Peak heap is the heap's growth during one extra, untimed call of each, sampled every 100 µs.", strings.TrimSuffix(fixedIterations, "x"))
	w.line("")
	w.header("roomstore", "baseline", "roomstore", "baseline", "ratio", "target", "", "peak heap roomstore", "peak heap baseline")
	mib := func(v float64) string { return fmt.Sprintf("%.1f MiB", v) }
	for _, c := range []struct{ label, name string }{{"`file://DIR?fsync=false`", "afero-vs-readdir"}, {"`mem://`", "mem-vs-readdir"}} {
		n := list + c.name
		ratio, ok := w.r.ratioWithin(n, "roomstore-ns/list", "baseline-ns/list")
		st := w.status(ok && ratio <= 1.2, ok, fmt.Sprintf("List 100k: %s vs os.ReadDir+Info %.2fx (target ≤ 1.2x)", c.label, ratio))
		w.row(c.label, "os.ReadDir + Info", w.fig(n, "roomstore-ns/list", fmtDur), w.fig(n, "baseline-ns/list", fmtDur), fmtRatio(ratio, ok), "≤ 1.20x", st,
			w.fig(n, "roomstore-peak-heap-MiB", mib), w.fig(n, "baseline-peak-heap-MiB", mib))
	}
	w.line("")
}

func (w *report) append() {
	w.line("## 6. Append growth: one 4 KiB append")
	w.line("")
	w.line("Open (append), Write 4 KiB, Close on a file of the given size (it grows by 4 KiB per iteration; 5 iterations), on `roomstore.OpenURL(\"file://DIR\")` (fsync on). A commit makes a new file of the old content and the new bytes and renames it over the old one: where the file system clones (FICLONE: XFS, btrfs), the old content is shared, not copied, and the append costs what it adds; elsewhere the old content is copied in the kernel (copy_file_range), O(size). Bytes sent: growth of `wchar` in /proc/self/io, the bytes the process handed to write(2) and copy_file_range(2) (a clone hands none). This run's temporary folders are on %s%s. `mem://` shares the old version's chunks and adds the new ones. S3 has no append: the backend copies the object server-side and adds a part; bytes sent and received are those of the client's TCP connections (headers included), counted by a wrapper around its HTTP transport. The raw O_APPEND write (and fsync) is for scale only: it is not atomic, a reader can see half of it.", w.m.tmpFS, w.cloneNote())
	w.line("")
	cols := []string{"file", "`file://` (fsync on)", "bytes sent", "ratio to raw"}
	if w.m.cloneFS != "" {
		cols = append(cols, "`file://` on "+w.m.cloneFS+" (clones)", "bytes sent")
	}
	cols = append(cols, "raw O_APPEND + fsync", "`mem://`", "S3 (versitygw)", "bytes sent", "bytes received", "requests")
	w.header(cols...)
	for _, size := range []string{"1MiB", "64MiB", "512MiB"} {
		a, o, s, mm, c := apnd+"roomstore-file/"+size, apnd+"os-append/"+size, apnd+"roomstore-s3/"+size, apnd+"roomstore-mem/"+size, apnd+"roomstore-file-clone/"+size
		ratio, ok := w.r.ratio(a, o, nsop)
		row := []string{strings.Replace(size, "MiB", " MiB", 1), w.fig(a, nsop, fmtDur), w.fig(a, "sent-B/op", fmtBytes), fmtRatio(ratio, ok)}
		if w.m.cloneFS != "" {
			row = append(row, w.fig(c, nsop, fmtDur), w.fig(c, "sent-B/op", fmtBytes))
		}
		row = append(row, w.fig(o, nsop, fmtDur), w.fig(mm, nsop, fmtDur),
			w.fig(s, nsop, fmtDur), w.fig(s, "sent-B/op", fmtBytes), w.fig(s, "recv-B/op", fmtBytes),
			w.fig(s, "requests/op", func(v float64) string { return fmt.Sprintf("%.0f", v) }))
		w.row(row...)
	}
	w.line("")
}

// cloneNote says whether the temporary folders' file system cloned in
// this run, from the bytes the 512 MiB append sent, and where the clone
// rows ran.
func (w *report) cloneNote() string {
	note := ""
	if sent, ok := w.r.median(apnd+"roomstore-file/512MiB", "sent-B/op"); ok {
		if sent < 1<<20 {
			note = ", which clones: the appends sent only their own bytes"
		} else {
			note = ", which does not clone: every append copied the whole file"
		}
	}
	if w.m.cloneFS != "" {
		note += fmt.Sprintf("; the clone rows ran in `make bench BENCH_CLONE_DIR=…`'s folder, on %s", w.m.cloneFS)
	}
	return note
}

func (w *report) roomServer() {
	w.line("## 7. Room server: 64 MiB up and down")
	w.line("")
	w.line("A 64 MiB file uploaded and read back to the end with a 1 MiB buffer, through the room server: roomclient (one participant, default options, so chunks of 4 MiB less 64 KiB each way under the protocol's pull flow control) over a loopback WebSocket to roomserver (default options) in the same process; the baseline is the same engine called directly (Engine.Upload from a reader, Engine.OpenReader). The engine is what users get from `roomstore.OpenURL` with default options, on a `file://` temp folder (fsync on) and on `mem://`, and the server's room resolves to that very engine. Each row is one sub-benchmark that runs a direct cycle and a server cycle alternately (%s times each per round, which goes first alternating, after one untimed cycle of each); mean time per 64 MiB and the throughput it makes. The ratio is the server's throughput over the direct engine's, above 1 better; the target applies to `file://`, the configuration users run; `mem://` shows what the protocol path costs when the store costs nothing. For scale, each iteration also sends the 64 MiB once over a bare loopback TCP connection (1 MiB Writes, read with a 1 MiB buffer): what any protocol over a socket pays at least, one way.", strings.TrimSuffix(fixedIterations, "x"))
	w.line("")
	w.header("measure", "roomstore", "baseline", "roomstore", "baseline", "ratio", "target", "", "bare loopback TCP, one way")
	rate := func(ms float64) string {
		return fmtDur(ms*1e6) + fmt.Sprintf(" (%.0f MB/s)", float64(1<<26)/1e6/(ms/1e3))
	}
	for _, c := range []struct {
		label, name string
		target      bool
	}{
		{"`file://`, fsync on", "file", true},
		{"`mem://`", "mem", false},
	} {
		n := room + c.name
		for _, half := range []struct{ what, rs, base, unit string }{
			{"write", "roomclient Upload → roomserver", "Engine.Upload", "write-ms"},
			{"read", "roomserver → roomclient OpenReader", "Engine.OpenReader", "read-ms"},
		} {
			// Throughput ratio: the direct time over the server's.
			ratio, ok := w.r.ratioWithin(n, "direct-"+half.unit, "server-"+half.unit)
			target, st := "—", ""
			if c.target {
				target = "≥ 0.70x"
				st = w.status(ok && ratio >= 0.7, ok, fmt.Sprintf("room server 64 MiB %s, %s: %.2fx the direct engine's throughput (target ≥ 0.70x)", half.what, c.label, ratio))
			}
			w.row(half.what+" 64 MiB, "+c.label, half.rs, half.base,
				w.fig(n, "server-"+half.unit, rate), w.fig(n, "direct-"+half.unit, rate), fmtRatio(ratio, ok), target, st,
				w.fig(n, "tcp-ms", rate))
		}
	}
	w.line("")
	// What a socket allows: the bare TCP transfer against the direct
	// read, and the server's read against the bare TCP transfer.
	n := room + "file"
	tcpVsRead, ok1 := w.r.ratioWithin(n, "direct-read-ms", "tcp-ms")
	serverVsTCP, ok2 := w.r.ratioWithin(n, "tcp-ms", "server-read-ms")
	if ok1 && ok2 {
		w.line("On `file://`, a direct read is a copy out of the page cache. The bare loopback TCP transfer alone reaches %.2fx the direct read's throughput, so no protocol over a socket can meet the read target on this machine; the server's read reaches %.2fx the bare TCP transfer's throughput.", tcpVsRead, serverVsTCP)
		w.line("")
	}
}

func (w *report) roomFanout() {
	w.line("## 8. Room server: event fan-out to 100 participants")
	w.line("")
	w.line("100 roomclient participants (default options, one WebSocket each) in one room of a loopback room server, each subscribed to file.updated. Each write is an Engine.Upload of a 64-byte file on the room's engine (`mem://` from `roomstore.OpenURL`); the latency runs from Upload (its Close) returning to the handler of the last of the 100 participants running, through the engine's event bus, the server's fan-out, 100 WebSocket writes, the clients' reads and their own buses. Writes are closed loop, the next once all 100 have the last; %s writes per round after 10 untimed ones. Baselines, timed in the same iterations: the same write to a second room of the same server with a single participant (which room goes first alternates), and, for the first of the 100 participants, the engine's own Subscribe handler for the same write. A percentile is each round's over its writes, then the median over the rounds; the ratio is roomstore over the baseline, below 1 better.", strings.TrimSuffix(fanoutIterations, "x"))
	w.line("")
	w.header("measure", "roomstore", "baseline", "roomstore", "baseline", "ratio", "target", "")
	us := func(v float64) string { return fmtDur(v * 1e3) }
	row := func(what, rsLabel, baseLabel, rs, base, target string, limit float64) {
		ratio, ok := w.r.ratioWithin(fanout, rs, base)
		st := ""
		if limit > 0 {
			v, vok := w.r.median(fanout, rs)
			st = w.status(vok && v <= limit, vok, fmt.Sprintf("fan-out: %s %s (target %s)", what, us(v), target))
		}
		w.row(what, rsLabel, baseLabel, w.fig(fanout, rs, us), w.fig(fanout, base, us), fmtRatio(ratio, ok), target, st)
	}
	last, solo := "Close → last of 100 participants", "Close → the one participant of a second room"
	row("p50 latency", last, solo, "last-p50-µs", "solo-p50-µs", "—", 0)
	row("p99 latency", last, solo, "last-p99-µs", "solo-p99-µs", "≤ 10 ms", 10_000)
	row("max latency", last, solo, "last-max-µs", "solo-max-µs", "—", 0)
	first, engine := "Close → first of 100 participants", "Close → the engine's own Subscribe handler"
	row("p50 latency", first, engine, "first-p50-µs", "engine-p50-µs", "—", 0)
	row("p99 latency", first, engine, "first-p99-µs", "engine-p99-µs", "—", 0)
	w.line("")
}

func (w *report) natsEvents() {
	const lat, thr = "BenchmarkEventsNATS/latency-1k", "BenchmarkEventsNATS/throughput"
	w.line("## 9. Events across processes (NATS JetStream)")
	w.line("")
	w.line("Two engines on one `mem://` store from `roomstore.OpenURL`, each with its own NATS connection and `events_nats` transport (default options), as two replicas of a server have; nats-server v2.15.2 runs as a separate process with JetStream on disk, so every event of engine A reaches engine B through it. Latency: A commits a 64-byte file (Engine.Upload) at a paced 1,000 per second (%s commits per round after 100 untimed ones); the time from Upload returning on A to B's subscriber's handler running, against, for the same commits, A's own subscriber's handler (the in-process delivery). Throughput: A commits as fast as one goroutine can (Open, Write 64 bytes, Close, as in section 4; %s commits per round); events per second at B's subscriber, from the first commit to the last delivery, against A's own subscriber; a round fails if B lost or A gave up any event. The ratio is remote over local.", strings.TrimSuffix(natsLatencyIterations, "x"), strings.TrimSuffix(natsThroughputIterations, "x"))
	w.line("")
	w.header("measure", "roomstore", "baseline", "roomstore", "baseline", "ratio", "target", "")
	us := func(v float64) string { return fmtDur(v * 1e3) }
	rate := func(v float64) string { return fmtCount(v) + "/s" }
	remote, local := "commit on A → handler on B", "commit on A → A's own handler"
	row := func(what, rs, base, target string, ok func(float64) bool, miss string) {
		ratio, rok := w.r.ratioWithin(lat, rs, base)
		st := ""
		if ok != nil {
			v, vok := w.r.median(lat, rs)
			st = w.status(vok && ok(v), vok, fmt.Sprintf(miss, us(v)))
		}
		w.row(what, remote, local, w.fig(lat, rs, us), w.fig(lat, base, us), fmtRatio(ratio, rok), target, st)
	}
	row("p50 latency at 1,000/s", "remote-p50-µs", "local-p50-µs", "—", nil, "")
	row("p99 latency at 1,000/s", "remote-p99-µs", "local-p99-µs", "≤ 5 ms", func(v float64) bool { return v <= 5000 }, "events across processes: p99 %s at 1,000/s (target ≤ 5 ms)")
	row("max latency at 1,000/s", "remote-max-µs", "local-max-µs", "—", nil, "")
	v, ok := w.r.median(thr, "remote-events/s")
	ratio, rok := w.r.ratioWithin(thr, "remote-events/s", "local-events/s")
	w.row("events/s, one publisher → one remote subscriber", "B's subscriber, nothing lost", "A's own subscriber",
		w.fig(thr, "remote-events/s", rate), w.fig(thr, "local-events/s", rate), fmtRatio(ratio, rok), "≥ 50,000/s",
		w.status(ok && v >= 50_000, ok, fmt.Sprintf("events across processes: %s/s sustained (target ≥ 50,000/s)", fmtCount(v))))
	w.line("")
	loc, lok := w.r.median(thr, "local-events/s")
	bare, bok := w.r.median(evs+"roomstore-close-to-handler", "events/s")
	if lok && bok && bare > 0 {
		w.line("The throughput is bounded by the publishing engine's commits: B keeps up with A (the ratio), and A commits at %.2fx section 4's rate for the same commit without a transport, nats-server and B's receiver sharing the machine's cores with it.", loc/bare)
		w.line("")
	}
}

func (w *report) instrumentation() {
	w.line("## 11. Instrumentation")
	w.line("")
	w.line("What the engine's instrumentation costs section 1's small-file cycle (open, write 4 KiB, close, download, stat, delete, on 1,000 rotating names). Each row is one sub-benchmark that runs three engines of the store `roomstore.OpenURL` returns for the URL shown, each on a store of its own, one cycle each per iteration, in each of their six orders in turn: uninstrumented (the benchmark switch `internal/telemetry.Off` set for its cycles: no counter kept, nothing recorded), off (default options: no providers, only the counters of `Engine.Stats`), and on (an OpenTelemetry SDK MeterProvider with a ManualReader and an SDK TracerProvider recording every span, collected and dropped every 256 cycles, untimed). Mean time per cycle; a ratio is over the uninstrumented engine's, within each round, then the median over the rounds; the p50 ratio is that of the medians of the cycle times.")
	w.line("")
	w.header("store", "uninstrumented", "off (no providers)", "on (SDK providers)", "off / uninstrumented", "target", "", "p50 ratio", "off ratio by round", "on / uninstrumented")
	for _, c := range []struct{ label, name string }{
		{"`mem://`", "mem"},
		{"`file://DIR?fsync=false`", "file-nofsync"},
	} {
		n := instr + c.name
		off, ok := w.r.ratioWithin(n, "off-ns/cycle", "uninstrumented-ns/cycle")
		p50, p50ok := w.r.ratioWithin(n, "off-p50-ns", "uninstrumented-p50-ns")
		on, onok := w.r.ratioWithin(n, "on-ns/cycle", "uninstrumented-ns/cycle")
		st := w.status(ok && off <= 1.03, ok, fmt.Sprintf("instrumentation: %s without providers %.3fx the uninstrumented cycle (target ≤ 1.03x)", c.label, off))
		w.row(c.label, w.fig(n, "uninstrumented-ns/cycle", fmtDur), w.fig(n, "off-ns/cycle", fmtDur), w.fig(n, "on-ns/cycle", fmtDur),
			fmtRatio3(off, ok), "≤ 1.03x", st, fmtRatio3(p50, p50ok),
			fmtRounds(w.r.roundRatios(n, "off-ns/cycle", n, "uninstrumented-ns/cycle")), fmtRatio(on, onok))
	}
	w.line("")
}

func (w *report) againstBaseline() {
	if w.m.baseline == "" {
		return
	}
	w.line("## 12. Against the engine before a change (-baseline %s)", w.m.baseline)
	w.line("")
	w.line("Section 1's small-file cycle run by two builds of the suite: this tree's, and that of revision %s (`git worktree add` of it, `go test -c` in its bench folder), one after the other in every round, which goes first alternating. The two engines run the same benchmark code, each with default options (no providers), on the store `roomstore.OpenURL` returns for the URL shown; the time is the roomstore side's mean per cycle. A ratio is this tree's over the baseline's within each round, then the median over the rounds.", w.m.baseline)
	w.line("")
	w.header("store", "this tree", w.m.baseline, "ratio", "target", "", "ratio by round")
	for _, c := range []struct{ label, name string }{
		{"`mem://`", "mem-vs-memblob"},
		{"`file://DIR?fsync=false`", "file-nofsync-vs-os-nofsync"},
	} {
		now, base := small[:len(small)-1]+nowSuffix+"/"+c.name, small[:len(small)-1]+baseSuffix+"/"+c.name
		rounds := w.r.roundRatios(now, "roomstore-ns/cycle", base, "roomstore-ns/cycle")
		ratio, ok := 0.0, len(rounds) > 0
		if ok {
			ratio = median(rounds)
		}
		st := w.status(ok && ratio <= 1.03, ok, fmt.Sprintf("against %s: %s's small-file cycle %.3fx (target ≤ 1.03x)", w.m.baseline, c.label, ratio))
		w.row(c.label, w.fig(now, "roomstore-ns/cycle", fmtDur), w.fig(base, "roomstore-ns/cycle", fmtDur), fmtRatio3(ratio, ok), "≤ 1.03x", st, fmtRounds(rounds))
	}
	w.line("")
}

// accessGrants is section 13. (Section 12, against -baseline, appears only
// with that flag; docs/operations.md cites both by number.)
func (w *report) accessGrants() {
	w.line("## 13. Room server: access grants")
	w.line("")
	w.line("What a participant's storage grant (MeshAgent's api grant: path prefixes, read-only or not, checked by the engine on every call through `roomstore.WithPolicy`, and by the server for every event it sends) costs through the room server. Participants of one room of a loopback room server (HS256 tokens from `roomserver.NewToken`, default options; roomclient, default options), whose room resolves to one engine from `roomstore.OpenURL` with default options, on a `file://` temp folder (fsync on) and on `mem://`; the baseline is a participant whose token has no restriction (NewToken's default: every path; the engine still asks its grant, which answers at once), on the same server and engine.")
	w.line("")
	w.line("Cycle: Upload 4 KiB (overwrite), Download, Stat, Delete through roomclient, on 1,000 rotating names in `team/shared/`. The restricted participant's grant has 20 entries: 19 prefixes of other folders (`team/project-00/` … `team/project-18/`, every other one read-only), then `team/shared/` with write access, so that every check, read or write, walks the whole list. Each row is one sub-benchmark that runs a cycle of each participant on the same name alternately (which goes first alternating, after 20 untimed cycles of each); both participants get the events of both. For this case the server's call rate is unlimited (`CallRate` -1): back to back, each participant's cycles would pass the default 500 calls a second of its identity and be refused with 429 (section 14 measures that budget). Mean time per cycle; the ratio is the restricted participant's over the unrestricted one's within each round, then the median over the rounds; the p50 ratio is that of the medians of the cycle times.")
	w.line("")
	w.header("store", "no restriction", "20-entry grant", "ratio", "target", "", "p50 ratio", "ratio by round")
	for _, c := range []struct{ label, name string }{
		{"`file://`, fsync on", "file"},
		{"`mem://`", "mem"},
	} {
		w.sidesRow(c.label, gcycle+c.name, "full", "grants", "cycle", 1.05, func(ratio float64) string {
			return fmt.Sprintf("access grants: room server small-file cycle on %s, 20-entry grant %.3fx no restriction (target ≤ 1.05x)", c.label, ratio)
		})
	}
	w.line("")
	w.line("List: roomclient.List of a folder of 10,000 16-byte files (`big/`; on `file://` written there before the engine opens). Three participants list it, one list each per iteration, in each of their six orders in turn (%s iterations per round, after one untimed list each that checks every entry each one sees): one without restriction; one whose 20-entry grant lists 19 prefixes in the folder that no file has (`big/f-100` …), then `big/f-`, so that the engine checks each of the 10,000 entries against all 20 and every one passes; and one whose grant lists 15 such prefixes, then `big/f-00`, `big/f-02`, … `big/f-08`, so that each entry is checked against 16 to 20 of them and half pass (its reply carries 5,000 entries, so its ratio also counts the smaller reply). Mean time per list; a ratio is over the unrestricted participant's within each round, then the median over the rounds; the p50 ratios are those of the medians of the list times. No target.", strings.TrimSuffix(grantListIterations, "x"))
	w.line("")
	w.header("store", "no restriction (10,000 entries)", "grant, all pass (10,000)", "grant, half pass (5,000)", "all pass / no restriction", "half pass / no restriction", "target", "p50 ratios, all / half pass", "all-pass ratio by round")
	for _, c := range []struct{ label, name string }{
		{"`file://`, fsync on", "file"},
		{"`mem://`", "mem"},
	} {
		n := glist + c.name
		all, allok := w.r.ratioWithin(n, "grants-all-ns/list", "full-ns/list")
		half, halfok := w.r.ratioWithin(n, "grants-half-ns/list", "full-ns/list")
		allP50, allP50ok := w.r.ratioWithin(n, "grants-all-p50-ns", "full-p50-ns")
		halfP50, halfP50ok := w.r.ratioWithin(n, "grants-half-p50-ns", "full-p50-ns")
		w.row(c.label, w.fig(n, "full-ns/list", fmtDur), w.fig(n, "grants-all-ns/list", fmtDur), w.fig(n, "grants-half-ns/list", fmtDur),
			fmtRatio3(all, allok), fmtRatio3(half, halfok), "—", fmtRatio3(allP50, allP50ok)+" / "+fmtRatio3(halfP50, halfP50ok),
			fmtRounds(w.r.roundRatios(n, "grants-all-ns/list", n, "full-ns/list")))
	}
	w.line("")
}

// sidesRow writes the row of benchmark n that compares two sides,
// base and other, whose figures are SIDE-ns/UNIT (mean) and SIDE-p50-ns
// (median): label, each side's mean, other over base within each round
// against the target limit, the status miss describes given that ratio,
// the p50 ratio and the ratio by round. A limit of 0 is no target: "—",
// and no status cell.
func (w *report) sidesRow(label, n, base, other, unit string, limit float64, miss func(ratio float64) string) {
	baseMean, otherMean := base+"-ns/"+unit, other+"-ns/"+unit
	ratio, ok := w.r.ratioWithin(n, otherMean, baseMean)
	p50, p50ok := w.r.ratioWithin(n, other+"-p50-ns", base+"-p50-ns")
	cells := []string{label, w.fig(n, baseMean, fmtDur), w.fig(n, otherMean, fmtDur), fmtRatio3(ratio, ok)}
	if limit == 0 {
		cells = append(cells, "—")
	} else {
		cells = append(cells, fmt.Sprintf("≤ %.2fx", limit), w.status(ok && ratio <= limit, ok, miss(ratio)))
	}
	w.row(append(cells, fmtRatio3(p50, p50ok), fmtRounds(w.r.roundRatios(n, otherMean, n, baseMean)))...)
}

// budgets is section 14.
func (w *report) budgets() {
	w.line("## 14. Budgets")
	w.line("")
	w.line("What the room server's budgets (the per identity, room and server bounds of `roomserver.Options`: connections, streams, calls, bytes) protect and cost, and what the disk backend's folders cost when they empty and fill again or hold deep subtrees. Each measurement uses the configuration users get: a room server with default options (every budget at its default, among them 500 calls a second per identity with a burst of 1,000; HS256 tokens from `roomserver.NewToken`; roomclient with default options) or the `roomstore serve` command with its default flags, and engines from `roomstore.OpenURL` with default options.")
	w.line("")
	w.line("Flood: one participant's small-file cycles through the room server (section 13's cycle: roomclient Upload 4 KiB with overwrite, Download, Stat, Delete, on 1,000 rotating names in `mine/`), at most one every 10 ms (400 calls a second, within its identity's call rate), each timed from its start to the Delete's return: alone (nobody else calling; the flooder's connections open and idle), against while another identity of the same room floods the server as hard as it can: 8 roomclient connections of its own, 4 goroutines on each looping over Upload 4 KiB (overwrite), Download, Stat and Exists of a file of their own in `flood/`, back to back, ignoring the 429 refusals of its call rate. One room of a loopback room server on one engine, on a `file://` temp folder (fsync on) and on `mem://`; the server, the engine and both identities' clients share this process and the machine's %d cores. %s measured cycles per round, in phases of 50 that alternate, alone and flooded (which comes first alternating between rounds); a flooded phase begins once the flooder has been refused a first time (its burst spent), an alone one once every flooder call has returned. A percentile is each round's over that phase's cycles, then the median over the rounds; a ratio is flooded over alone within each round, then the median over the rounds. The flooder's calls answered and refused per second, and this process's CPU use (getrusage, in cores), are those of the flooded phases (CPU use also of the alone ones).", w.m.cores, fmtCount(iterations(floodIterations)))
	w.line("")
	w.header("store", "alone p50", "flooded p50", "p50 ratio", "alone p99", "flooded p99", "p99 ratio", "target", "", "flooder: answered / refused per s", "CPUs alone / flooded", "p99 ratio by round")
	us := func(v float64) string { return fmtDur(v * 1e3) }
	rate := func(v float64) string { return fmtCount(v) }
	cores := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	for _, c := range []struct{ label, name string }{
		{"`file://`, fsync on", "file"},
		{"`mem://`", "mem"},
	} {
		n := bflood + c.name
		p50, p50ok := w.r.ratioWithin(n, "flooded-p50-µs", "alone-p50-µs")
		p99, p99ok := w.r.ratioWithin(n, "flooded-p99-µs", "alone-p99-µs")
		st := w.status(p99ok && p99 <= 2, p99ok, fmt.Sprintf("budgets: on %s, a participant's p99 cycle while another identity of its room floods the server %.2fx its p99 alone (target ≤ 2x)", c.label, p99))
		w.row(c.label, w.fig(n, "alone-p50-µs", us), w.fig(n, "flooded-p50-µs", us), fmtRatio(p50, p50ok),
			w.fig(n, "alone-p99-µs", us), w.fig(n, "flooded-p99-µs", us), fmtRatio(p99, p99ok), "p99 ≤ 2x", st,
			w.fig(n, "flood-served/s", rate)+" / "+w.fig(n, "flood-refused/s", rate),
			w.fig(n, "alone-CPUs", cores)+" / "+w.fig(n, "flooded-CPUs", cores),
			fmtRounds(w.r.roundRatios(n, "flooded-p99-µs", n, "alone-p99-µs")))
	}
	w.line("")
	w.line("Idle participants: the memory of `roomstore serve` (built with `go build ./cmd/roomstore`, run as a child process with its default flags but `--store file://TMP/{room} --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --log-format json`, the token secret in `ROOMSTORE_TOKEN_SECRET`) holding idle participants: WebSocket connections that this process opens (github.com/coder/websocket, speaking the protocol frame by frame, not roomclient; its own memory is not measured), 32 at a time, spread over 20 rooms of 500, each with a token of its own name, so that no budget refuses one (10,000 is the default MaxConnections); each waits for room_ready and connected, makes one exists call (as roomclient's Dial does, which proves it joined), then stays idle, a goroutine reading it (which answers pings). The child's resident set (VmRSS of /proc/PID/status) is read before the first connection and once every participant has joined, and so are, from its metrics endpoint, the Go heap in use (go_memstats_heap_inuse_bytes), the goroutine stacks (go_memstats_stack_inuse_bytes) and the goroutines; the endpoint must show every connection open and nothing refused. No GC is forced (the command has no way to), so the heap after also holds what garbage of the handshakes no GC has collected yet. A per-participant figure is the growth over the participants (it also carries the 20 rooms' engines); once per round, then the median over the rounds.")
	w.line("")
	w.header("participants", "RSS before", "RSS after", "RSS per participant", "target", "", "Go heap per participant", "stacks per participant", "goroutines per participant", "time to join them all")
	{
		mib := func(v float64) string { return fmt.Sprintf("%.1f MiB", v) }
		v, ok := w.r.median(bidle, "RSS-B/participant")
		st := w.status(ok && v <= 32<<10, ok, fmt.Sprintf("budgets: %s of resident memory per idle participant of `roomstore serve` (target ≤ 32 KiB)", fmtBytes(v)))
		w.row(w.fig(bidle, "participants", fmtCount), w.fig(bidle, "RSS-before-MiB", mib), w.fig(bidle, "RSS-after-MiB", mib),
			w.fig(bidle, "RSS-B/participant", fmtBytes), "≤ 32 KiB", st,
			w.fig(bidle, "heap-B/participant", fmtBytes), w.fig(bidle, "stack-B/participant", fmtBytes),
			w.fig(bidle, "goroutines/participant", func(v float64) string { return fmt.Sprintf("%.2f", v) }),
			w.fig(bidle, "join-s", func(v float64) string { return fmt.Sprintf("%.1f s", v) }))
	}
	w.line("")
	w.line("A folder that empties: section 1's small-file cycle (open, write 4 KiB, close, download, stat, delete) on 1,000 rotating names `dir/fNNNN.txt`, on two engines of the URL shown, each on a temporary folder of its own: in one nothing else lies in `dir/`, which empties at every delete (emptying); in the other `dir/keep.txt` keeps it (kept). Each row is one sub-benchmark that runs a cycle of each on the same name alternately (which goes first alternating, after 20 untimed cycles of each). Mean time per cycle; the ratio is emptying over kept within each round, then the median over the rounds; the p50 ratio is that of the medians of the cycle times.")
	w.line("")
	w.header("store", "kept", "emptying", "ratio", "target", "", "p50 ratio", "ratio by round")
	for _, c := range []struct{ label, name string }{
		{"`file://DIR` (fsync on)", "file-fsync"},
		{"`file://DIR?fsync=false`", "file-nofsync"},
	} {
		w.sidesRow(c.label, bempty+c.name, "kept", "emptying", "cycle", 1.3, func(ratio float64) string {
			return fmt.Sprintf("budgets: small-file cycle in a folder that empties on %s %.2fx one kept (target ≤ 1.3x)", c.label, ratio)
		})
	}
	w.line("")
	w.line("A deep folder: `List(\"\")` of a root that holds one folder `d` with a file 511 levels deep (`d/d/…/d/f`: 511 folders, then the file; 1,023 bytes, within the 1,024-byte path limit), against a root whose folder `d` holds the file itself (`d/f`), each on an engine of its own (`file://DIR`, fsync on; the file uploaded through it). Both lists return the one entry `d`, a folder. Each iteration lists each root once, which goes first alternating, after one untimed list of each. Mean time per list; the ratio is deep over shallow within each round, then the median over the rounds; the p50 ratio is that of the medians of the list times. No target: what a deep subtree costs a listing of its parent.")
	w.line("")
	w.header("store", "shallow (`d/f`)", "deep (511 levels)", "ratio", "target", "p50 ratio", "ratio by round")
	w.sidesRow("`file://DIR` (fsync on)", bdeep+"file", "shallow", "deep", "list", 0, nil)
	w.line("")
}

func (w *report) deflate() {
	w.line("## 15. Room server: permessage-deflate")
	w.line("")
	w.line("Whether the room server should accept the permessage-deflate compression the newest MeshAgent clients offer. A 16 MiB file uploaded and read back to the end (1 MiB buffer) through the room server by roomclient offering compression (`roomclient.Options.Compression`, no context takeover), to a server that declines it (roomserver's default) and to one that accepts it (`roomserver.Options.Compression`), each a loopback room server with default options otherwise on a `mem://` room, so that the store costs nothing. Text is log-like records (timestamp, sensor, two numbers, a status) that compress as logs and CSV do; random bytes stand for a file already compressed (images, archives, video). Each iteration runs one cycle against each server (which goes first alternating, after one untimed cycle of each), %s times per round. Wall time and this process's CPU time (getrusage: user and system, client and server together) per cycle, and the bytes that crossed the client's socket both ways; ratios are accepted over declined within each round, then the median over the rounds. No target: the figures decide the default (declined: see `roomserver.Options.Compression`).", strings.TrimSuffix(fixedIterations, "x"))
	w.line("")
	w.header("content", "wall, declined", "wall, accepted", "ratio", "CPU, declined", "CPU, accepted", "ratio", "on the wire, declined", "on the wire, accepted", "ratio")
	ms := func(v float64) string { return fmtDur(v * 1e6) }
	mb := func(v float64) string { return fmt.Sprintf("%.1f MB", v) }
	for _, c := range []struct{ label, name string }{
		{"text (log-like records)", "text"},
		{"random bytes", "random"},
	} {
		n := defl + c.name
		wall, wok := w.r.ratioWithin(n, "on-ms", "off-ms")
		cpu, cok := w.r.ratioWithin(n, "on-cpu-ms", "off-cpu-ms")
		wire, bok := w.r.ratioWithin(n, "on-wire-MB", "off-wire-MB")
		w.row(c.label, w.fig(n, "off-ms", ms), w.fig(n, "on-ms", ms), fmtRatio(wall, wok),
			w.fig(n, "off-cpu-ms", ms), w.fig(n, "on-cpu-ms", ms), fmtRatio(cpu, cok),
			w.fig(n, "off-wire-MB", mb), w.fig(n, "on-wire-MB", mb), fmtRatio(wire, bok))
	}
	w.line("")
}

// outside is section 16.
func (w *report) outside() {
	w.line("## 16. Outside changes")
	w.line("")
	w.line("How soon an engine with `roomstore.WithWatch` tells its subscribers of a change that another program made to its store (an event without a participant), and what its reconciling scan costs.")
	w.line("")
	w.line("Delay: another program writes a new 64-byte file; the time from its write returning to an engine subscriber's handler getting the event, against, for the same writes, a bare watcher of the same feed hearing of it (0 if it heard it before the write returned; the ratio is then \"—\"). Each write waits for both, then 2 ms, before the next (%s measured writes per round with a Settle of 1 ms, %s with the default Settle, %d ms, that `WithWatch(Watch{})` gives; after untimed ones). `file://`: `os.WriteFile` into the folder of `roomstore.OpenURL(\"file://DIR\")`, whose own feed is inotify; the baseline is a bare fsnotify watcher of the folder (the file's Write event, which inotify reports while `os.WriteFile` runs). S3: `PutObject` by a raw aws-sdk-go-v2 client to a versitygw that publishes bucket notifications to a nats-server (child processes, loopback); the engine is `roomstore.OpenURL(\"s3://BUCKET?...\")` with `Watch{Feeds: [events_nats.NewS3Feed], NoNative: true, Scan: -1}`; the baseline is a raw NATS subscriber of the notification subject (the gateway notifies once it has answered). A percentile is each round's, a ratio (roomstore over baseline) each round's, then the median over the rounds. The last column is roomstore's figure less the Settle it waited on purpose. The last two rows time the `Engine.Scan` that finds one file changed from outside among 10,000 and publishes its event (see below): beyond the scan interval, the delay of a change that no feed reported.", fmtCount(iterations(outsideIterations)), fmtCount(iterations(outsideDefaultIterations)), roomstore.DefaultSettle.Milliseconds())
	w.line("")
	w.header("measure", "roomstore", "baseline", "roomstore", "baseline", "ratio", "roomstore less Settle")
	us := func(v float64) string { return fmtDur(v * 1e3) }
	delay := func(what, name, rsLabel, baseLabel string, settle time.Duration) {
		n := outsd + name
		for _, q := range []string{"p50", "p99"} {
			rs, base := "roomstore-"+q+"-µs", "baseline-"+q+"-µs"
			ratio, ok := w.r.ratioWithin(n, rs, base)
			if v, vok := w.r.median(n, base); vok && v == 0 {
				ok = false // heard within the write: no ratio
			}
			beyond := "—"
			if v, ok := w.r.median(n, rs); ok {
				beyond = us(v - float64(settle.Microseconds()))
			}
			w.row(what+", "+q, rsLabel, baseLabel, w.fig(n, rs, us), w.fig(n, base, us), fmtRatio(ratio, ok), beyond)
		}
	}
	dflt := fmt.Sprintf("default Settle (%d ms)", roomstore.DefaultSettle.Milliseconds())
	fileRS, fileBase := "engine's subscriber (inotify)", "bare fsnotify watcher"
	s3RS, s3Base := "engine's subscriber (S3Feed)", "raw NATS subscriber"
	delay("`file://`, Settle 1 ms: write → event", "file-settle-1ms", fileRS, fileBase, time.Millisecond)
	delay("`file://`, "+dflt+": write → event", "file-settle-default", fileRS, fileBase, roomstore.DefaultSettle)
	delay("S3, Settle 1 ms: PutObject → event", "s3-settle-1ms", s3RS, s3Base, time.Millisecond)
	delay("S3, "+dflt+": PutObject → event", "s3-settle-default", s3RS, s3Base, roomstore.DefaultSettle)
	for _, c := range []struct{ what, name, base string }{
		{"`file://`: the scan that finds 1 changed file of 10,000", "scan-file-10k", "WalkDir + Info, 10,000 files"},
		{"S3: the scan that finds 1 changed object of 10,000", "scan-s3-10k", "ListObjectsV2, 10,000 keys"},
	} {
		n := outsd + c.name
		ratio, ok := w.r.ratioWithin(n, "changed-ns/scan", "baseline-ns/scan")
		w.row(c.what, "`Engine.Scan`", c.base, w.fig(n, "changed-ns/scan", fmtDur), w.fig(n, "baseline-ns/scan", fmtDur), fmtRatio(ratio, ok), "—")
	}
	w.line("")
	w.line("Scan cost: `Engine.Scan` (`Watch{Scan: -1, NoNative: true}`: nothing else looks at the store) over a store of unchanged 16-byte files, against the raw listing of the same files, alternately (%s iterations per round on the disk store of 10,000 files, %s on the others, after one untimed call of each): on disk `filepath.WalkDir` with `Info` for each entry; on S3 (a versitygw of its own) ListObjectsV2 of the store's prefix, no delimiter, 1,000 keys a page, by the raw client. Means per scan; CPU is the process's (getrusage; on S3 the gateway's is not in it), allocations those of the process during the call.", strings.TrimSuffix(scan10kIterations, "x"), strings.TrimSuffix(scanIterations, "x"))
	w.line("")
	w.header("scan of unchanged files", "roomstore", "baseline", "roomstore", "baseline", "ratio", "CPU, roomstore / baseline", "allocations, roomstore / baseline", "bytes allocated, roomstore / baseline")
	for _, c := range []struct{ what, name, base string }{
		{"`file://`, 10,000 files", "scan-file-10k", "WalkDir + Info"},
		{"`file://`, 100,000 files", "scan-file-100k", "WalkDir + Info"},
		{"S3, 10,000 objects", "scan-s3-10k", "ListObjectsV2"},
	} {
		n := outsd + c.name
		ratio, ok := w.r.ratioWithin(n, "roomstore-ns/scan", "baseline-ns/scan")
		w.row(c.what, "`Engine.Scan`", c.base, w.fig(n, "roomstore-ns/scan", fmtDur), w.fig(n, "baseline-ns/scan", fmtDur), fmtRatio(ratio, ok),
			w.fig(n, "roomstore-cpu-ns/scan", fmtDur)+" / "+w.fig(n, "baseline-cpu-ns/scan", fmtDur),
			w.fig(n, "roomstore-allocs/scan", fmtCount)+" / "+w.fig(n, "baseline-allocs/scan", fmtCount),
			w.fig(n, "roomstore-B/scan", fmtBytes)+" / "+w.fig(n, "baseline-B/scan", fmtBytes))
	}
	w.line("")
	interval := roomstore.DefaultScanInterval
	cpu, cok := w.r.median(outsd+"scan-file-100k", "roomstore-cpu-ns/scan")
	wall, wok := w.r.median(outsd+"scan-file-100k", "roomstore-ns/scan")
	s3wall, sok := w.r.median(outsd+"scan-s3-10k", "roomstore-ns/scan")
	if cok && wok {
		share := fmt.Sprintf("At the default scan interval (`DefaultScanInterval`, %g minutes), a disk store of 100,000 files costs one scan of %s of CPU (%s of wall time) per interval: %.2f%% of one core.", interval.Minutes(), fmtDur(cpu), fmtDur(wall), 100*cpu/float64(interval))
		if sok {
			share += fmt.Sprintf(" On S3 a scan lists 1,000 keys a request; 10,000 objects took %s of wall time, %.2f%% of the interval.", fmtDur(s3wall), 100*s3wall/float64(interval))
		}
		w.line("%s", share)
		w.line("")
	}
}

// history is section 17.
func (w *report) history() {
	w.line("## 17. Version history")
	w.line("")
	w.line("What the version history (`roomstore.WithHistory`, on by default: `DefaultHistoryVersions`, %d versions of each file, each for `DefaultHistoryAge`, %d days) costs the changes that keep versions, in time and on disk. The temporary folders are on %s.", roomstore.DefaultHistoryVersions, int(roomstore.DefaultHistoryAge.Hours()/24), w.m.tmpFS)
	w.line("")
	w.line("Cycle: open, write 4 KiB, close (a new file), then section 1's cycle on the same name (open, write 4 KiB, close, which overwrites that file; download, stat, delete), on 1,000 rotating names, so that with the history on every cycle keeps two versions, the overwritten one and the deleted one. Two engines of the store `roomstore.OpenURL` returns for the URL shown, each on a store of its own: default options (history on) against the same with `WithHistory(History{})` (off). Before the timed cycles, %d untimed cycles of every name fill the history engine's store (on `file://`, by an engine of the same folder with fsync off, then a sync), so that every name holds its %d versions and every timed change also removes the oldest, as in a store long in use; 20 untimed cycles of each engine follow. Each row is one sub-benchmark that runs a cycle of each engine on the same name alternately (which goes first alternating); it fails unless, at the end, the history engine lists %d versions of a name and the other none. Mean time per cycle; the ratio is on over off within each round, then the median over the rounds; the p50 ratio is that of the medians of the cycle times. The target applies to `file://`, with fsync on and off; `mem://` is for reference.", roomstore.DefaultHistoryVersions/2, roomstore.DefaultHistoryVersions, roomstore.DefaultHistoryVersions)
	w.line("")
	w.header("store", "history off", "history on", "ratio", "target", "", "p50 ratio", "ratio by round")
	for _, c := range []struct {
		label, name string
		limit       float64
	}{
		{"`file://DIR?fsync=false`", "cycle-file-nofsync", 1.15},
		{"`file://DIR` (fsync on)", "cycle-file-fsync", 1.15},
		{"`mem://`", "cycle-mem", 0},
	} {
		n := hist + c.name
		if c.limit > 0 {
			w.sidesRow(c.label, n, "off", "on", "cycle", c.limit, func(ratio float64) string {
				return fmt.Sprintf("history: small-file cycle on %s, history on %.3fx off (target ≤ %.2fx)", c.label, ratio, c.limit)
			})
			continue
		}
		// sidesRow leaves out the status cell of a row without a target,
		// which this table has.
		ratio, ok := w.r.ratioWithin(n, "on-ns/cycle", "off-ns/cycle")
		p50, p50ok := w.r.ratioWithin(n, "on-p50-ns", "off-p50-ns")
		w.row(c.label, w.fig(n, "off-ns/cycle", fmtDur), w.fig(n, "on-ns/cycle", fmtDur), fmtRatio3(ratio, ok), "—", "",
			fmtRatio3(p50, p50ok), fmtRounds(w.r.roundRatios(n, "on-ns/cycle", n, "off-ns/cycle")))
	}
	w.line("")
	w.line("Disk cost: a 1 MiB file of random bytes (its first 8 bytes the overwrite's number, so that no two versions are alike) created, then overwritten %s times by `Engine.Upload`, on two engines of `roomstore.OpenURL(\"file://DIR\")` (fsync on), each on a folder of its own: `WithHistory(History{Versions: 10})` (no age limit) against `WithHistory(History{})`, one overwrite of each per iteration, which goes first alternating. Then the bytes each folder holds on disk: st_blocks × 512 of every regular file beneath it, `.roomstore` included, each inode once (a kept version may be a link of a file); the files counted are those that hold bytes (not the store's empty lock and liveness files). Expected: the file alone with the history off; with it on, the file and its 10 kept versions, 11x, and nothing more (no temporaries left behind). Versions is what `Engine.Versions` lists on the history engine at the end (the run fails unless it lists 10, and none on the other). Time per overwrite: the means, their ratio, and the p50 ratio, that of the medians of the overwrite times. Run once, after the rounds.", fmtCount(iterations(historyOverwrites)))
	w.line("")
	w.header("store", "on disk, history off", "on disk, 10 versions", "ratio", "regular files, off / on", "versions", "overwrite, history off", "overwrite, history on", "ratio", "p50 ratio")
	n := hist + "overwrite-1MiB-file"
	mib := func(v float64) string { return fmt.Sprintf("%.1f MiB", v) }
	disk, dok := w.r.ratioWithin(n, "on-disk-MiB", "off-disk-MiB")
	t, tok := w.r.ratioWithin(n, "on-ns/overwrite", "off-ns/overwrite")
	p50, pok := w.r.ratioWithin(n, "on-p50-ns", "off-p50-ns")
	w.row("`file://DIR` (fsync on)", w.fig(n, "off-disk-MiB", mib), w.fig(n, "on-disk-MiB", mib), fmtRatio(disk, dok),
		w.fig(n, "off-files", fmtCount)+" / "+w.fig(n, "on-files", fmtCount), w.fig(n, "on-versions", fmtCount),
		w.fig(n, "off-ns/overwrite", fmtDur), w.fig(n, "on-ns/overwrite", fmtDur), fmtRatio3(t, tok), fmtRatio3(p50, pok))
	w.line("")
}

// tus is section 18.
func (w *report) tus() {
	w.line("## 18. Resumable uploads (tus): 64 MiB up")
	w.line("")
	w.line("A 64 MiB upload into one engine, the one `roomstore.OpenURL` returns with default options on a `file://` temp folder (fsync on), the disk store users get, three ways: over tus 1.0 with `internal/tusclient`, the client `roomstore put` uses above its `--resumable-threshold` (a POST, then one PATCH of the whole file over a loopback HTTP/1.1 connection to `roomserver.Uploads` in the same process, default options, the last byte committing the file); through the room protocol (roomclient Upload, default options, over a loopback WebSocket to the same server, as in section 7); and `Engine.Upload` called directly. Each iteration runs one upload of each (%s per round, in an order that rotates from one iteration to the next, after one untimed upload of each), each overwriting its own file; mean time per 64 MiB, up to the call that returns once the file is committed, and the throughput it makes. A ratio is a throughput over another's within each round, then the median over the rounds, above 1 better; the target is tus against the room protocol.", strings.TrimSuffix(fixedIterations, "x"))
	w.line("")
	w.header("roomstore", "baseline", "roomstore", "baseline", "ratio", "target", "", "ratio by round")
	rate := func(ms float64) string {
		return fmtDur(ms*1e6) + fmt.Sprintf(" (%.0f MB/s)", float64(1<<26)/1e6/(ms/1e3))
	}
	n := tusUp + "file"
	for _, c := range []struct {
		rs, base, rsUnit, baseUnit string
		limit                      float64
	}{
		{"tus (POST, PATCH)", "room protocol (roomclient Upload)", "tus-write-ms", "room-write-ms", 0.7},
		{"tus (POST, PATCH)", "Engine.Upload", "tus-write-ms", "direct-write-ms", 0},
		{"room protocol (roomclient Upload)", "Engine.Upload", "room-write-ms", "direct-write-ms", 0},
	} {
		// Throughput ratio: the baseline's time over roomstore's.
		ratio, ok := w.r.ratioWithin(n, c.baseUnit, c.rsUnit)
		target, st := "—", ""
		if c.limit > 0 {
			target = fmt.Sprintf("≥ %.2fx", c.limit)
			st = w.status(ok && ratio >= c.limit, ok, fmt.Sprintf("tus 64 MiB upload: %.2fx the room protocol's throughput (target ≥ %.2fx)", ratio, c.limit))
		}
		w.row(c.rs, c.base, w.fig(n, c.rsUnit, rate), w.fig(n, c.baseUnit, rate), fmtRatio(ratio, ok), target, st,
			fmtRounds(w.r.roundRatios(n, c.baseUnit, n, c.rsUnit)))
	}
	w.line("")
}

// roomVsHTTP is section 19.
func (w *report) roomVsHTTP() {
	w.line("## 19. Small operations: the room protocol against plain HTTP")
	w.line("")
	w.line("What the room protocol costs a small file against the plainest HTTP file server of the same durability, each server a separate process on 127.0.0.1, every client in the benchmark's process. Cycle, the same on every side: upload 4 KiB (overwriting), download it to the end (its length checked), stat it (its size checked), delete it, on 100 rotating names per client in a folder of the client's own that also holds a file written before the first cycle, so that the folder never empties. Before the timed cycles every name is cycled once on every side, untimed, so that the store holds what a store in use holds: each delete keeps the version it removes (the history, on by default), and a path's first kept version makes the path's folder of versions, which later ones find there. The sides:")
	w.line("")
	w.line("- **roomstore**: `roomstore serve` (built from `cmd/roomstore`) with `--store file://DIR/{room}` (fsync on) or `file://DIR/{room}?fsync=false`, default options (so the version history keeps the versions each overwrite and delete replaces, as section 17 measures) but `--call-rate -1` (the default 500 calls a second per identity would refuse a client calling back to back with 429) and `--metrics 127.0.0.1:0` (to count the server's allocations: `go_memstats_mallocs_total`). Clients: roomclient with default options, one WebSocket connection each, each with a token of its own identity, each in a room of its own (the events of its own changes come to it alone, as a user working in a room of their own hears only of their own changes); with 16 clients, also in one room, as a fourth side, where every participant receives the events of every change: 16 times the messages;")
	w.line("- **plain HTTP**: `cmd/plainhttp`, net/http on a folder of the same disk: PUT writes a temporary file beside the target, fsyncs it, renames it into place and fsyncs the folder (`-fsync=false`: neither fsync), GET serves the file with `http.ServeContent`, HEAD answers its size from one stat, DELETE removes it and fsyncs the folder. Clients: net/http, one client and transport each, its connection kept alive;")
	w.line("- **versitygw**: the S3 gateway (posix backend, which never fsyncs: one gateway serves both fsync modes), through aws-sdk-go-v2: PutObject, GetObject read to the end, HeadObject, DeleteObject; one s3.Client and transport per client.")
	w.line("")
	w.line("Each fsync mode has its own serve and plainhttp processes. 1 client: each iteration runs one cycle of each side, in an order that rotates from one iteration to the next (%s per round); mean time per cycle and per operation. 16 clients: each iteration runs, one side after the other in rotating order, a phase per side in which 16 clients, one goroutine each, run 25 cycles each (%s iterations per round); cycles per second of the phases. A ratio is roomstore's over plain HTTP's (or versitygw's) within each round, then the median over the rounds; times below 1 are better, rates above 1.", strings.TrimSuffix(rvhOneIterations, "x"), strings.TrimSuffix(rvhManyIterations, "x"))
	w.line("")
	us := func(v float64) string { return fmtDur(v * 1e3) }
	w.header("1 client, time per cycle", "roomstore", "plain HTTP", "ratio", "target", "", "ratio by round", "versitygw", "roomstore / versitygw")
	for _, m := range []struct{ label, name string }{{"fsync on", "fsync-on"}, {"fsync off", "fsync-off"}} {
		n := rvh + m.name + "/1-client"
		const limit = 1.5
		ratio, ok := w.r.ratioWithin(n, "room-us/cycle", "plain-us/cycle")
		s3r, s3ok := w.r.ratioWithin(n, "room-us/cycle", "s3-us/cycle")
		st := w.status(ok && ratio <= limit, ok, fmt.Sprintf("room protocol, 1 client, %s: %.2fx plain HTTP's time per cycle (target ≤ %.2fx)", m.label, ratio, limit))
		w.row(m.label, w.fig(n, "room-us/cycle", us), w.fig(n, "plain-us/cycle", us), fmtRatio(ratio, ok), fmt.Sprintf("≤ %.2fx", limit), st,
			fmtRounds(w.r.roundRatios(n, "room-us/cycle", n, "plain-us/cycle")), w.fig(n, "s3-us/cycle", us), fmtRatio(s3r, s3ok))
	}
	w.line("")
	rate := func(v float64) string { return fmtCount(v) + "/s" }
	w.header("16 clients, cycles per second", "roomstore, a room each", "plain HTTP", "ratio", "target", "", "ratio by round", "versitygw", "roomstore / versitygw", "roomstore, one room of 16", "one room / plain HTTP")
	for _, m := range []struct{ label, name string }{{"fsync on", "fsync-on"}, {"fsync off", "fsync-off"}} {
		n := rvh + m.name + "/16-clients"
		const least = 0.6
		ratio, ok := w.r.ratioWithin(n, "room-cycles/s", "plain-cycles/s")
		s3r, s3ok := w.r.ratioWithin(n, "room-cycles/s", "s3-cycles/s")
		st := w.status(ok && ratio >= least, ok, fmt.Sprintf("room protocol, 16 clients, %s: %.2fx plain HTTP's cycles per second (target ≥ %.2fx)", m.label, ratio, least))
		shared, sok := w.r.ratioWithin(n, "room-shared-cycles/s", "plain-cycles/s")
		w.row(m.label, w.fig(n, "room-cycles/s", rate), w.fig(n, "plain-cycles/s", rate), fmtRatio(ratio, ok), fmt.Sprintf("≥ %.2fx", least), st,
			fmtRounds(w.r.roundRatios(n, "room-cycles/s", n, "plain-cycles/s")), w.fig(n, "s3-cycles/s", rate), fmtRatio(s3r, s3ok),
			w.fig(n, "room-shared-cycles/s", rate), fmtRatio(shared, sok))
	}
	w.line("")
	w.line("Where the time of a 1-client cycle goes: the mean of each operation, from the call to its return (roomclient Upload, Download, Stat, Delete; the HTTP request with its response read to the end).")
	w.line("")
	w.header("1 client, operation", "roomstore, fsync on", "plain, fsync on", "ratio", "roomstore, fsync off", "plain, fsync off", "ratio")
	for _, op := range []string{"upload", "download", "stat", "delete"} {
		cells := []string{op}
		for _, m := range []string{"fsync-on", "fsync-off"} {
			n := rvh + m + "/1-client"
			ratio, ok := w.r.ratioWithin(n, "room-"+op+"-us", "plain-"+op+"-us")
			cells = append(cells, w.fig(n, "room-"+op+"-us", us), w.fig(n, "plain-"+op+"-us", us), fmtRatio(ratio, ok))
		}
		w.row(cells...)
	}
	w.line("")
	w.line("Allocations per cycle, after the timed cycles of the 1-client case: each side runs %s more cycles alone, untimed. Client: this process's `runtime.MemStats.Mallocs` across them. Server: the server's own count across them, less that of one request to where it is read, measured back to back before: roomstore serve's `go_memstats_mallocs_total` (its `--metrics` endpoint), plainhttp's `runtime.MemStats.Mallocs` (its `GET /_mallocs`); versitygw's is not measured.", fmtCount(rvhAllocCycles))
	w.line("")
	w.header("allocations per cycle", "client, fsync on", "server, fsync on", "client, fsync off", "server, fsync off")
	for _, side := range []struct{ label, unit string }{{"roomstore", "room"}, {"plain HTTP", "plain"}, {"versitygw", "s3"}} {
		cells := []string{side.label}
		for _, m := range []string{"fsync-on", "fsync-off"} {
			n := rvh + m + "/1-client"
			cells = append(cells, w.fig(n, side.unit+"-client-allocs/cycle", fmtCount), w.fig(n, side.unit+"-server-allocs/cycle", fmtCount))
		}
		w.row(cells...)
	}
	w.line("")
}

// rvhAllocCycles is BenchmarkRoomVsHTTP's cycles per side in its
// allocation phases (bench.rvhAllocCycles).
const rvhAllocCycles = 200

// iterations returns the count of a -test.benchtime of the form "Nx".
func iterations(benchtime string) float64 {
	n, _ := strconv.Atoi(strings.TrimSuffix(benchtime, "x"))
	return float64(n)
}

// fmtRatio3 is fmtRatio to three decimals, for ratios near 1.
func fmtRatio3(r float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.3fx", r)
}

func (w *report) summary() {
	w.line("## Targets missed in this run")
	w.line("")
	if len(w.missed) == 0 {
		w.line("None.")
	}
	for _, m := range w.missed {
		w.line("- %s", m)
	}
	w.line("")
}

// all lists every benchmark's figures: medians, and the spread of the
// time over the rounds.
func (w *report) all() {
	w.line("## Every benchmark")
	w.line("")
	w.line("Medians over the rounds; \"spread\" is the lowest and highest time per op of the rounds. A small-file or list op is one roomstore call plus one baseline call, a room-server 64 MiB op one direct cycle plus one server cycle, a fan-out op one write to each of its two rooms, an access-grant cycle op one cycle of each of its two participants an access-grant list op one list by each of its three, an emptying-folder op one cycle on each of its two engines, a deep-list op one list of each of its two roots and an outside-change scan op one scan of each side (and, with 10,000 files, one change and the scan that finds it), so their time, B/op and allocs/op cover every side; an outside-change delay op is one write with its pause and its wait for both events; a flood op is one measured cycle with its pause and its share of the phase switches, an idle op a whole run of the command (start, 10,000 joins, measurements, stop), a history cycle or overwrite op one cycle or overwrite on each of its two engines, and a room-versus-HTTP op one cycle of each of its three sides (1 client) or one phase of 16 × 25 cycles of each (16 clients).")
	w.line("")
	w.header("benchmark", "rounds", "time/op", "spread", "B/op", "allocs/op", "other metrics")
	for _, name := range w.r.order {
		times := w.r.values(name, nsop)
		spread := ""
		if len(times) > 1 {
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, t := range times {
				lo, hi = min(lo, t), max(hi, t)
			}
			spread = fmtDur(lo) + " – " + fmtDur(hi)
		}
		var other []string
		for _, unit := range metricUnits(w.r, name) {
			v, _ := w.r.median(name, unit)
			other = append(other, fmt.Sprintf("%s %s", trimFloat(v), unit))
		}
		w.row("`"+strings.TrimPrefix(name, "Benchmark")+"`", fmt.Sprint(len(times)), w.fig(name, nsop, fmtDur), spread,
			w.fig(name, "B/op", fmtBytes), w.fig(name, "allocs/op", trimFloat), strings.Join(other, ", "))
	}
}

// metricUnits lists name's units other than the standard ones, sorted.
func metricUnits(r *results, name string) []string {
	seen := map[string]bool{nsop: true, "B/op": true, "allocs/op": true}
	var units []string
	for _, m := range r.byName[name] {
		for u := range m {
			if !seen[u] {
				seen[u] = true
				units = append(units, u)
			}
		}
	}
	slices.Sort(units)
	return units
}

func fmtDur(ns float64) string {
	switch {
	case math.IsNaN(ns):
		return "—"
	case ns < 1e3:
		return fmt.Sprintf("%.0f ns", ns)
	case ns < 1e6:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	case ns < 1e9:
		return fmt.Sprintf("%.1f ms", ns/1e6)
	}
	return fmt.Sprintf("%.2f s", ns/1e9)
}

func fmtBytes(b float64) string {
	switch {
	case b < 1<<10:
		return fmt.Sprintf("%.0f B", b)
	case b < 1<<20:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	case b < 1<<30:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", b/(1<<30))
}

// fmtRounds lists per-round ratios, "—" for none.
func fmtRounds(v []float64) string {
	if len(v) == 0 {
		return "—"
	}
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, ", ") + "x"
}

func fmtRatio(r float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.2fx", r)
}

// fmtCount writes a count with thousands separators.
func fmtCount(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func trimFloat(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.4g", v)
}
