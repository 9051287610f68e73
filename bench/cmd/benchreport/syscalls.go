package main

import (
	"bufio"
	"bytes"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// syscallCycles is how many small-file cycles each counted run makes.
const syscallCycles = 2000

// runtimeCalls are the system calls the Go runtime makes on its own
// (scheduling, memory, signals, timers): counted apart, as they follow
// from time and load rather than from the work.
var runtimeCalls = map[string]bool{
	"futex": true, "nanosleep": true, "epoll_pwait": true, "epoll_wait": true, "sched_yield": true,
	"tgkill": true, "getpid": true, "gettid": true, "rt_sigreturn": true, "rt_sigprocmask": true,
	"rt_sigaction": true, "madvise": true, "mmap": true, "munmap": true, "mprotect": true,
	"sigaltstack": true, "clone": true, "clone3": true, "rseq": true, "set_robust_list": true,
	"sched_getaffinity": true, "brk": true,
}

// syscallCase is one configuration whose calls per cycle are counted.
type syscallCase struct {
	label string
	args  []string // of cmd/syscallprobe, before -dir and -n
}

// syscallCases are the configurations counted: roomstore and raw os, with
// fsync off and on.
var syscallCases = []syscallCase{
	{"roomstore, fsync off", []string{"-store", "file"}},
	{"raw os, no fsync", []string{"-store", "os"}},
	{"roomstore, fsync on", []string{"-store", "file", "-fsync"}},
	{"raw os, fsync", []string{"-store", "os", "-fsync"}},
}

// syscallReport holds the calls per cycle of each case, by system call.
type syscallReport struct {
	command string               // how one case was counted
	skipped string               // why nothing was counted, if so
	perCall []map[string]float64 // per case: call -> calls per cycle
}

// countSyscalls runs cmd/syscallprobe under strace -f -c for each case, with
// -n 0 (setup and warm-up) and -n syscallCycles, and keeps the difference
// per cycle.
func countSyscalls(dir, tmp string) syscallReport {
	strace, err := exec.LookPath("strace")
	if err != nil {
		return syscallReport{skipped: "strace is not on PATH (Debian: apt-get install strace)"}
	}
	probe := filepath.Join(tmp, "syscallprobe")
	build := exec.Command("go", "build", "-o", probe, "./cmd/syscallprobe")
	build.Dir = dir
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return syscallReport{skipped: fmt.Sprintf("go build ./cmd/syscallprobe: %v", err)}
	}
	rep := syscallReport{command: fmt.Sprintf("strace -f -c syscallprobe -store file|os [-fsync] -dir DIR -n %d, less the same with -n 0", syscallCycles)}
	for _, c := range syscallCases {
		counts := make([]map[string]float64, 2)
		for i, n := range []int{0, syscallCycles} {
			work, err := os.MkdirTemp(tmp, "syscalls-")
			if err != nil {
				return syscallReport{skipped: err.Error()}
			}
			out := filepath.Join(tmp, "strace.out")
			args := append([]string{"-f", "-c", "-o", out, probe}, c.args...)
			args = append(args, "-dir", work, "-n", strconv.Itoa(n))
			log.Printf("%s %s", strace, strings.Join(args, " "))
			cmd := exec.Command(strace, args...)
			cmd.Stderr = os.Stderr
			if err := cmd.Run(); err != nil {
				return syscallReport{skipped: fmt.Sprintf("strace %s: %v (ptrace may be refused here)", strings.Join(c.args, " "), err)}
			}
			data, err := os.ReadFile(out)
			if err != nil {
				return syscallReport{skipped: err.Error()}
			}
			counts[i] = parseStrace(data)
			os.RemoveAll(work)
		}
		per := map[string]float64{}
		for name, v := range counts[1] {
			if d := (v - counts[0][name]) / syscallCycles; d > 0.005 {
				per[name] = d
			}
		}
		rep.perCall = append(rep.perCall, per)
	}
	return rep
}

// parseStrace reads the table strace -c writes: calls by system call.
func parseStrace(data []byte) map[string]float64 {
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[len(f)-1] == "total" {
			continue
		}
		calls, err := strconv.ParseFloat(f[3], 64)
		if err != nil {
			continue
		}
		m[f[len(f)-1]] = calls
	}
	return m
}

func (w *report) syscalls(s syscallReport) {
	w.line("## 10. System calls per small-file cycle")
	w.line("")
	if s.skipped != "" {
		w.line("Not counted in this run: %s.", s.skipped)
		w.line("")
		return
	}
	w.line("The cycle of section 1 (open, write 4 KiB, close, download, stat, delete) on the store `roomstore.OpenURL(\"file://DIR?fsync=false\")` returns (or `file://DIR`, fsync on), against the raw os calls of section 1's baseline, each in a child process (`cmd/syscallprobe`) under `%s`, divided by %s cycles. Calls the Go runtime makes on its own (scheduler, timers, memory, signals: %s) follow from time and load, not from the work, and are summed on their own row.", s.command, fmtCount(syscallCycles), strings.Join(sortedKeys(runtimeCalls), ", "))
	w.line("")
	head := []string{"system call"}
	for _, c := range syscallCases {
		head = append(head, c.label)
	}
	w.header(head...)
	names := map[string]bool{}
	for _, per := range s.perCall {
		for n := range per {
			if !runtimeCalls[n] {
				names[n] = true
			}
		}
	}
	cell := func(v float64) string {
		if v == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f", v)
	}
	for _, n := range sortedKeys(names) {
		row := []string{"`" + n + "`"}
		for _, per := range s.perCall {
			row = append(row, cell(per[n]))
		}
		w.row(row...)
	}
	total, rt := []string{"**total, the work's**"}, []string{"runtime's own"}
	for _, per := range s.perCall {
		var t, r float64
		for n, v := range per {
			if runtimeCalls[n] {
				r += v
			} else {
				t += v
			}
		}
		total = append(total, fmt.Sprintf("**%.1f**", t))
		rt = append(rt, cell(r))
	}
	w.row(total...)
	w.row(rt...)
	w.line("")
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
