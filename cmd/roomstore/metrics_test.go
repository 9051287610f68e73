package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape returns the samples of a Prometheus exposition, keyed by name
// and labels as they appear ("name{a="1",b="2"}"), the scope labels left
// out.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	c := &http.Client{Timeout: runTimeout}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	scope := regexp.MustCompile(`otel_scope_[a-z_]+="[^"]*",?`)
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		key := strings.Replace(scope.ReplaceAllString(line[:i], ""), ",}", "}", 1)
		out[strings.TrimSuffix(key, "{}")] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestServeMetricsCountsWhatParticipantsDid(t *testing.T) {
	base := t.TempDir()
	srv, addr := startServe(t, testSecret, "--store", "file://"+base+"/{room}", "--metrics", "127.0.0.1:0")
	m := regexp.MustCompile(`msg="serving metrics" addr=(127\.0\.0\.1:\d+) `).FindStringSubmatch(srv.stderr.String())
	if m == nil {
		t.Fatalf("no serving metrics log line:\n%s", srv.stderr.String())
	}
	metrics := "http://" + m[1] + "/metrics"
	o := procOptions{env: map[string]string{storeEnv: "ws://" + addr + "/rooms/r1", tokenEnv: mustToken(t, testSecret, "r1")}}

	in := o
	in.stdin = strings.NewReader("twelve bytes")
	mustRun(t, in, "put", "-", "notes/a.txt")
	if got := mustRun(t, o, "get", "notes/a.txt"); got != "twelve bytes" {
		t.Fatalf("get: %q", got)
	}
	if r := runCmd(t, o, "stat", "notes/x.txt"); r.code != 1 {
		t.Fatalf("stat of a missing file: exit %d", r.code)
	}
	in.stdin = strings.NewReader("more")
	if r := runCmd(t, in, "put", "-", "notes/a.txt"); r.code != 1 {
		t.Fatalf("put over a file: exit %d", r.code)
	}

	// The server ends a call when it sees the command's connection close,
	// which may be just after the command has exited: scrape until the
	// counts are all there, for a while.
	calls := func(op, outcome string) string {
		return `roomstore_calls_total{roomstore_operation="` + op + `",roomstore_outcome="` + outcome + `"}`
	}
	want := map[string]float64{
		calls("open", "ok"):        1,
		calls("open", "exist"):     1,
		calls("write", "ok"):       1,
		calls("close", "ok"):       1,
		calls("open_reader", "ok"): 1,
		calls("stat", "not_exist"): 1,
		`roomstore_call_duration_seconds_count{roomstore_operation="close",roomstore_outcome="ok"}`: 1,
		`roomstore_bytes_written_total{roomstore_operation="close"}`:                                12,
		`roomstore_bytes_read_total{roomstore_operation="open_reader"}`:                             12,
		`roomstore_commit_attempts_total{roomstore_operation="close"}`:                              1,
		`roomstore_events_published_total`:                                                          1,
		`roomstore_handles_open`:                                                                    0,
	}
	var got map[string]float64
	for deadline := time.Now().Add(runTimeout); ; {
		got = scrape(t, metrics)
		var off []string
		for key, w := range want {
			if v, ok := got[key]; !ok || v != w {
				off = append(off, fmt.Sprintf("%s = %v (present %v), want %v", key, v, ok, w))
			}
		}
		if len(off) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v:\n%s", runTimeout, strings.Join(off, "\n"))
		}
		select {
		case <-srv.done:
			t.Fatalf("serve exited: %s", srv.stderr.String())
		case <-time.After(50 * time.Millisecond): // the next scrape
		}
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	if _, ok := got[`target_info{service_name="roomstore"}`]; !ok {
		t.Errorf("no target_info naming the service roomstore: %v", got)
	}
}
