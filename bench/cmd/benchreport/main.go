// Command benchreport runs roomstore's benchmark suite and writes the report
// that docs/performance.md quotes (BENCHMARKS.md). `make bench` runs it from
// the bench folder:
//
//	go run ./cmd/benchreport -rounds 5 -out ../BENCHMARKS.md
//
// It compiles the suite's test binary once (go test -c), runs the ratio
// cases (small files, events, list, 64 MiB, the room server's 64 MiB,
// fan-out and access grants, instrumentation, budgets, compression,
// outside changes, the version history's cycle, small operations over
// the room protocol against plain HTTP) for -rounds rounds,
// reversing the order of roomstore and its baselines on every other
// round, runs the memory, append and version history's overwrite cases
// once, and prints and writes, for every comparison, roomstore's figure,
// each baseline's, their ratio and the target. A figure is the median
// over the rounds; a ratio is the median of the ratios taken within each
// round, so that both sides of a ratio always come from the same process
// a few seconds apart. Every benchmark line is also echoed as it arrives,
// in the usual `go test -bench` format.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

func main() {
	var (
		rounds    = flag.Int("rounds", 5, "rounds of the ratio cases")
		out       = flag.String("out", "../BENCHMARKS.md", "where to write the report")
		benchtime = flag.String("benchtime", "1s", "-test.benchtime of the ratio cases")
		dir       = flag.String("dir", ".", "the bench module's folder")
		command   = flag.String("command", "", "the command that ran this program, to cite in the report (make sets \"make bench\")")
		baseline  = flag.String("baseline", "", "a git revision of the engine before a change, whose small-file cycle each round also runs, interleaved with this one's (section 12)")
		cloneDir  = flag.String("clone-dir", "", "a folder on a file system that clones (XFS, btrfs), for the append case's clone rows")
		only      = flag.String("only", "", "run only the plans whose benchmark pattern contains this text (such as Tus64MiB, section 18), without the system-call counts and -baseline, into -out; the other sections show no figures, and their targets are not counted as missed")
	)
	flag.Parse()
	if *rounds < 1 {
		log.Fatal("benchreport: -rounds must be at least 1")
	}
	log.SetFlags(0)
	log.SetPrefix("benchreport: ")
	if *only != "" {
		*baseline = ""
	}
	if err := run(*dir, *out, *benchtime, *rounds, *command, *cloneDir, *baseline, *only); err != nil {
		log.Fatal(err)
	}
}

// fixedIterations is the -test.benchtime of the list and 64 MiB cases
// (the room server's included).
const fixedIterations = "4x"

// fanoutIterations is the -test.benchtime of the fan-out case: the writes
// whose latency its percentiles come from.
const fanoutIterations = "300x"

// grantListIterations is the -test.benchtime of the access grants' list
// case: iterations of its three lists, a multiple of their six orders.
const grantListIterations = "18x"

// floodIterations is the -test.benchtime of the budgets' flood case: the
// measured participant's cycles, half alone and half flooded, in phases
// of 50 (bench.floodBlock).
const floodIterations = "1000x"

// natsLatencyIterations and natsThroughputIterations are the
// -test.benchtime of the cross-process event cases: 5 s of commits at
// 1,000 per second, and 300,000 commits as fast as they go.
const (
	natsLatencyIterations    = "5000x"
	natsThroughputIterations = "300000x"
)

// The -test.benchtime of the outside-change cases: the measured writes of
// the delay cases with a Settle of 1 ms, those with the default Settle
// (each takes that long), the iterations of the scan case of 10,000 files
// on disk, and those of the longer scans (100,000 files on disk, 10,000
// on S3).
const (
	outsideIterations        = "200x"
	outsideDefaultIterations = "30x"
	scan10kIterations        = "20x"
	scanIterations           = "5x"
)

// The -test.benchtime of the room-versus-HTTP cases (section 19): the
// 1-client case's iterations, one cycle of each of its three sides each,
// and the 16-client case's, one phase of 16 clients × 25 cycles of each
// side each.
const (
	rvhOneIterations  = "200x"
	rvhManyIterations = "3x"
)

// historyOverwrites is the -test.benchtime of the version history's
// overwrite case: the overwrites of its 1 MiB file on each side, after
// which it measures the disk each side takes.
const historyOverwrites = "1000x"

// plan is one invocation pattern of the test binary.
type plan struct {
	regex     string
	benchtime string
}

func (p plan) args() []string {
	return []string{"-test.run", "^$", "-test.bench", p.regex, "-test.benchmem", "-test.benchtime", p.benchtime, "-test.timeout", "60m"}
}

func run(dir, out, benchtime string, rounds int, command, cloneDir, baseline, only string) error {
	start := time.Now()
	tmp, err := os.MkdirTemp("", "roomstore-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "bench.test")
	// Data the cases may keep between rounds (the 100,000-file folder).
	data := filepath.Join(tmp, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		return err
	}
	loadStart := loadAverage()
	build := []string{"go", "test", "-c", "-o", bin, "."}
	log.Printf("%s", strings.Join(build, " "))
	cmd := exec.Command(build[0], build[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build the suite: %w", err)
	}

	// The engine of -baseline: its own suite, from a worktree of that
	// revision, built the same way.
	var baseBin string
	if baseline != "" {
		worktree := filepath.Join(tmp, "baseline")
		for _, c := range [][]string{
			{"git", "worktree", "add", "--detach", worktree, baseline},
			{"go", "test", "-mod=mod", "-c", "-o", filepath.Join(tmp, "baseline.test"), "."}, // its go.sum may predate its go.mod
		} {
			log.Printf("%s", strings.Join(c, " "))
			cmd := exec.Command(c[0], c[1:]...)
			cmd.Dir = dir
			if c[0] == "go" {
				cmd.Dir = filepath.Join(worktree, "bench")
			}
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("build the suite of -baseline %s: %w", baseline, err)
			}
			if c[0] == "git" {
				defer func() {
					rm := exec.Command("git", "worktree", "remove", "--force", worktree)
					rm.Dir = dir
					_ = rm.Run()
				}()
			}
		}
		baseBin = filepath.Join(tmp, "baseline.test")
	}

	// Each round runs every ratio plan; the list and large-file cases take
	// a fixed number of iterations, as one of their iterations can take
	// longer than the time budget and would leave a single sample, and so
	// does the fan-out case, whose percentiles need a known sample count,
	// the access grants' list case, whose three participants take their
	// six orders evenly, the budgets' flood case, whose phases take turns
	// every 50 cycles, its idle case, one server and 10,000 connections
	// per round, and the outside-change cases, whose percentiles need a
	// known count of writes and whose scans of 100,000 files take a
	// second or more each. The version history's overwrite case runs
	// once, as the memory and append cases do: its disk cost is that of
	// a known count of overwrites, the same every round, and its
	// overwrites of the two sides alternate a thousand times within it.
	ratioPlans := []plan{
		{regex: "^(BenchmarkSmallFile|BenchmarkUploadMove|BenchmarkEvents|BenchmarkInstrumentation|BenchmarkRoomGrantCycle)$", benchtime: benchtime},
		{regex: "^(BenchmarkList100k|BenchmarkLarge64MiB|BenchmarkRoomServer64MiB|BenchmarkRoomServerDeflate)$", benchtime: fixedIterations},
		{regex: "^BenchmarkTus64MiB$", benchtime: fixedIterations},
		{regex: "^BenchmarkRoomFanout100$", benchtime: fanoutIterations},
		{regex: "^BenchmarkRoomGrantList10k$", benchtime: grantListIterations},
		{regex: "^BenchmarkEventsNATS$/^latency-1k$", benchtime: natsLatencyIterations},
		{regex: "^BenchmarkEventsNATS$/^throughput$", benchtime: natsThroughputIterations},
		{regex: "^(BenchmarkBudgetsEmptyingFolder|BenchmarkBudgetsDeepList)$", benchtime: benchtime},
		{regex: "^BenchmarkBudgetsFlood$", benchtime: floodIterations},
		{regex: "^BenchmarkBudgetsIdle10k$", benchtime: "1x"},
		{regex: "^BenchmarkOutside$/^(file|s3)-settle-1ms$", benchtime: outsideIterations},
		{regex: "^BenchmarkOutside$/^(file|s3)-settle-default$", benchtime: outsideDefaultIterations},
		{regex: "^BenchmarkOutside$/^scan-file-10k$", benchtime: scan10kIterations},
		{regex: "^BenchmarkOutside$/^scan-(file-100k|s3-10k)$", benchtime: scanIterations},
		{regex: "^BenchmarkHistory$/^cycle-", benchtime: benchtime},
		{regex: "^BenchmarkRoomVsHTTP$/^fsync-(on|off)$/^1-client$", benchtime: rvhOneIterations},
		{regex: "^BenchmarkRoomVsHTTP$/^fsync-(on|off)$/^16-clients$", benchtime: rvhManyIterations},
	}
	oncePlans := []plan{
		{regex: "^(BenchmarkMemory1GiB|BenchmarkMemoryMem64MiB)$", benchtime: "1x"},
		{regex: "^BenchmarkAppend4KiB$", benchtime: "5x"},
		{regex: "^BenchmarkHistory$/^overwrite-", benchtime: historyOverwrites},
	}
	if only != "" {
		ratioPlans = slices.DeleteFunc(ratioPlans, func(p plan) bool { return !strings.Contains(p.regex, only) })
		oncePlans = slices.DeleteFunc(oncePlans, func(p plan) bool { return !strings.Contains(p.regex, only) })
		if len(ratioPlans)+len(oncePlans) == 0 {
			return fmt.Errorf("-only %q matches no plan", only)
		}
	}
	res := newResults()
	var invocations []string
	for _, p := range ratioPlans {
		invocations = append(invocations, "bench.test "+quoteArgs(p.args())+"  # every round; ROOMSTORE_BENCH_REVERSE=1 on rounds 2, 4, ...")
	}
	for _, p := range oncePlans {
		invocations = append(invocations, "bench.test "+quoteArgs(p.args()))
	}
	// runWith runs p with the suite binary bin, renaming its benchmarks
	// from "BenchmarkX/" to "BenchmarkX"+rename+"/" when rename is set.
	runWith := func(bin, rename string, p plan, round, of int) error {
		inv := filepath.Base(bin) + " " + quoteArgs(p.args())
		log.Printf("round %d/%d: %s", round+1, of, inv)
		cmd := exec.Command(bin, p.args()...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(),
			fmt.Sprintf("ROOMSTORE_BENCH_REVERSE=%d", round%2),
			"ROOMSTORE_BENCH_DATA="+data,
			"ROOMSTORE_BENCH_CLONE_DIR="+cloneDir)
		var buf bytes.Buffer
		cmd.Stdout = io.MultiWriter(os.Stdout, &buf)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", inv, err)
		}
		out := buf.String()
		if rename != "" {
			out = regexp.MustCompile(`(?m)^(Benchmark[^/\s]+)/`).ReplaceAllString(out, "${1}"+rename+"/")
		}
		return res.parse(strings.NewReader(out), round)
	}
	runPlan := func(p plan, round, of int) error { return runWith(bin, "", p, round, of) }
	basePlan := plan{regex: "^BenchmarkSmallFile$/^(" + baselineCases + ")$", benchtime: benchtime}
	if baseBin != "" {
		invocations = append(invocations, "bench.test and baseline.test "+quoteArgs(basePlan.args())+"  # every round, alternately, which goes first alternating")
	}
	for r := range rounds {
		for _, p := range ratioPlans {
			if err := runPlan(p, r, rounds); err != nil {
				return err
			}
		}
		if baseBin == "" {
			continue
		}
		pair := [][2]string{{bin, nowSuffix}, {baseBin, baseSuffix}}
		if r%2 == 1 {
			pair[0], pair[1] = pair[1], pair[0]
		}
		for _, b := range pair {
			if err := runWith(b[0], b[1], basePlan, r, rounds); err != nil {
				return err
			}
		}
	}
	for _, p := range oncePlans {
		if err := runPlan(p, 0, 1); err != nil {
			return err
		}
	}

	m, err := readMachine()
	if err != nil {
		return err
	}
	if only == "" {
		m.syscalls = countSyscalls(dir, tmp)
	} else {
		m.syscalls = syscallReport{skipped: "not run (-only)"}
	}
	m.tmpFS = fsName(tmp)
	if cloneDir != "" {
		m.cloneFS = fsName(cloneDir)
	}
	m.command = command
	m.self = selfCommand()
	m.invocations = append([]string{strings.Join(build, " ")}, invocations...)
	m.rounds = rounds
	m.baseline = baseline
	m.only = only
	m.load = loadStart + " at the start, " + loadAverage() + " at the end"
	m.elapsed = time.Since(start)
	report := render(m, res)
	fmt.Println()
	fmt.Print(report)
	if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s in %v", out, m.elapsed.Round(time.Second))
	return nil
}

// The small-file cases section 12 runs with -baseline too, and the
// suffixes that tell the two engines' figures apart.
const (
	baselineCases = "file-nofsync-vs-os-nofsync|mem-vs-memblob"
	nowSuffix     = "Now"
	baseSuffix    = "Baseline"
)

// selfCommand reconstructs this program's command line, without -command.
func selfCommand() string {
	var args []string
	flag.Visit(func(f *flag.Flag) {
		if f.Name != "command" {
			args = append(args, "-"+f.Name, f.Value.String())
		}
	})
	return strings.TrimSpace("go run ./cmd/benchreport " + quoteArgs(args))
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, "^$|()* ") || a == "" {
			a = "'" + a + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// machine describes where and how the figures were taken.
type machine struct {
	cpu         string
	cores       int
	gomaxprocs  int
	memory      string
	kernel      string
	goVersion   string
	goos        string
	command     string // what ran benchreport ("make bench"), or ""
	self        string // benchreport's own command line
	invocations []string
	rounds      int
	load        string // load averages, as the machine may be shared
	when        time.Time
	elapsed     time.Duration
	syscalls    syscallReport
	tmpFS       string // the file system of the temporary folders
	cloneFS     string // that of -clone-dir, if given
	baseline    string // -baseline, if given
	only        string // -only, if given: the sections of the other plans have no figures
}

func readMachine() (machine, error) {
	m := machine{gomaxprocs: runtime.GOMAXPROCS(0), goos: runtime.GOOS + "/" + runtime.GOARCH, when: time.Now().UTC()}
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return m, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			m.cores++
		case "model name":
			if m.cpu == "" {
				m.cpu = strings.TrimSpace(v)
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				fmt.Sscan(rest, &kb)
				m.memory = fmt.Sprintf("%.0f GiB RAM", float64(kb)/(1<<20))
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return m, fmt.Errorf("go env GOVERSION: %w", err)
	}
	m.goVersion = strings.TrimSpace(string(v))
	return m, nil
}

// loadAverage returns the 1-minute load average from /proc/loadavg.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}
