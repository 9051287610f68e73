package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// grantEntries is the length of the restricted participants' storage
// grants.
const grantEntries = 20

// grantCycleFolder holds the files of BenchmarkRoomGrantCycle; the last
// entry of the restricted participant's grant is the only one that
// matches them.
const grantCycleFolder = "team/shared/"

// cycleGrant is the storage grant of BenchmarkRoomGrantCycle's restricted
// participant: 19 prefixes of other folders (every other one read-only),
// none of which matches a path in grantCycleFolder, then grantCycleFolder
// with write access. Every check of a path there, read or write, walks
// the whole list, and the last entry decides.
func cycleGrant() roomserver.StorageGrant {
	paths := make([]roomserver.StoragePathGrant, 0, grantEntries)
	for i := range grantEntries - 1 {
		paths = append(paths, roomserver.StoragePathGrant{Path: fmt.Sprintf("team/project-%02d/", i), ReadOnly: i%2 == 0})
	}
	paths = append(paths, roomserver.StoragePathGrant{Path: grantCycleFolder})
	return roomserver.StorageGrant{Paths: paths}
}

// unlimitedCalls lifts the server's call rate (CallRate -1): a
// participant calling back to back exceeds the default 500 calls a
// second of its identity, which would refuse its calls with 429.
func unlimitedCalls(o *roomserver.Options) { o.CallRate = -1 }

// BenchmarkRoomGrantCycle measures what a participant's storage grant
// costs the small-file cycle through the room server: Upload 4 KiB
// (roomclient.Upload, overwrite), Download, Stat, Delete, on 1,000
// rotating names in team/shared/, by two roomclient participants (default
// options) of one room of a loopback room server (HS256 tokens, default
// options but an unlimited call rate: unlimitedCalls), whose room resolves to one engine (roomstore.OpenURL, default
// options) on a file:// temp folder (fsync on) and on mem://. One
// participant's token has the 20-entry grant of cycleGrant, whose last
// entry alone matches, so that every check walks the whole list; the
// other's has no restriction (NewToken's default: every path). Each
// iteration runs one cycle of each on the same name, which goes first
// alternating, after 20 untimed cycles of each; both get the events of
// both (the server checks the grant for each event it sends the
// restricted one). full-ns/cycle and grants-ns/cycle are the means,
// grants/full their ratio, the -p50-ns metrics the medians; ns/op is the
// two cycles' sum.
func BenchmarkRoomGrantCycle(b *testing.B) {
	runCases(b, []benchCase{
		{"file", grantCycleCase(func(b *testing.B) string { return fileURL(b.TempDir(), true) })},
		{"mem", grantCycleCase(func(*testing.B) string { return "mem://" })},
	})
}

func grantCycleCase(url func(b *testing.B) string) func(b *testing.B) {
	return func(b *testing.B) {
		ctx := context.Background()
		payload := randomBytes(smallFileSize)
		names := smallNamesIn(grantCycleFolder)
		e := openURLEngine(b, url(b))
		env := newRoomEnv(b, map[string]*roomstore.Engine{"bench": e}, unlimitedCalls)
		labels := [2]string{"full", "grants"}
		clients := [2]*roomclient.Client{
			env.dial(b, "bench", "full"),
			env.dial(b, "bench", "granted", roomserver.WithStorage(cycleGrant())),
		}
		checkCycleGrant(b, ctx, clients[1], payload)
		for i := range 20 {
			for _, c := range clients {
				clientCycle(b, ctx, c, names[i], payload)
			}
		}
		timeSides(b, labels[:], "cycle", alternate, func(v, i int) {
			clientCycle(b, ctx, clients[v], names[i%len(names)], payload)
		})
	}
}

// checkCycleGrant makes sure, untimed, that the restricted participant's
// grant is in force: a write outside every entry and one in a read-only
// entry's folder are refused.
func checkCycleGrant(b *testing.B, ctx context.Context, c *roomclient.Client, payload []byte) {
	for _, p := range []string{"outside.txt", "team/project-00/doc.txt"} {
		_, err := c.Upload(ctx, p, bytes.NewReader(payload), roomstore.OpenOptions{Overwrite: true, Size: smallFileSize})
		if !errors.Is(err, fs.ErrPermission) {
			b.Fatalf("the restricted participant's upload to %s: %v, want fs.ErrPermission", p, err)
		}
	}
}

// clientCycle is one small-file cycle of c on name through the room
// server: upload payload (overwrite), download, stat, delete.
func clientCycle(b *testing.B, ctx context.Context, c *roomclient.Client, name string, payload []byte) {
	_, err := c.Upload(ctx, name, bytes.NewReader(payload), roomstore.OpenOptions{Overwrite: true, Size: smallFileSize})
	check(b, err)
	f, err := c.Download(ctx, name)
	check(b, err)
	check(b, sameSize(len(f.Data)))
	_, err = c.Stat(ctx, name)
	check(b, err)
	check(b, c.Delete(ctx, name))
}

// pairOrders are the two orders of two sides.
var pairOrders = [2][2]int{{0, 1}, {1, 0}}

// alternate puts each of two sides first every other iteration.
func alternate(i int) []int { return pairOrders[i%2][:] }

// timeSides times, each iteration i, one step of each side v in the order
// order(i) gives, and reports the sides as reportGrantSides does.
func timeSides(b *testing.B, labels []string, unit string, order func(i int) []int, step func(v, i int)) {
	total := make([]time.Duration, len(labels))
	times := make([][]time.Duration, len(labels))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		for _, v := range order(i) {
			t0 := time.Now()
			step(v, i)
			d := time.Since(t0)
			total[v] += d
			times[v] = append(times[v], d)
		}
		i++
	}
	reportGrantSides(b, labels, total, times, i, unit)
}

// reportGrantSides reports each side's mean (LABEL-ns/UNIT) and median
// (LABEL-p50-ns) time and, for every side after the first, its mean over
// the first's (LABEL/FIRST).
func reportGrantSides(b *testing.B, labels []string, total []time.Duration, times [][]time.Duration, n int, unit string) {
	mean := make([]float64, len(labels))
	for v, l := range labels {
		mean[v] = float64(total[v].Nanoseconds()) / float64(n)
		b.ReportMetric(mean[v], l+"-ns/"+unit)
		b.ReportMetric(float64(medianDuration(times[v]).Nanoseconds()), l+"-p50-ns")
	}
	for v := 1; v < len(labels); v++ {
		b.ReportMetric(mean[v]/mean[0], labels[v]+"/"+labels[0])
	}
}

// grantListFiles is how many files BenchmarkRoomGrantList10k's folder
// holds, and grantListFolder that folder.
const (
	grantListFiles  = 10_000
	grantListFolder = "big"
)

// grantListName is the name of file i of the listed folder.
func grantListName(i int) string { return fmt.Sprintf("f-%05d.txt", i) }

// listGrant is a 20-entry storage grant for the listed folder, all its
// entries within it: 20-len(match) prefixes that no file there has
// (big/f-100, big/f-101, ...), then the prefixes of match, with write
// access. Each entry of the folder is checked against the list in turn,
// up to the first entry that matches it, or through all 20.
func listGrant(match ...string) roomserver.StorageGrant {
	paths := make([]roomserver.StoragePathGrant, 0, grantEntries)
	for i := range grantEntries - len(match) {
		paths = append(paths, roomserver.StoragePathGrant{Path: fmt.Sprintf("%s/f-1%02d", grantListFolder, i)})
	}
	for _, m := range match {
		paths = append(paths, roomserver.StoragePathGrant{Path: grantListFolder + "/" + m})
	}
	return roomserver.StorageGrant{Paths: paths}
}

// halfMatches are the prefixes of the half grant's matching entries:
// f-00, f-02, f-04, f-06 and f-08, 1,000 files each.
var halfMatches = []string{"f-00", "f-02", "f-04", "f-06", "f-08"}

// BenchmarkRoomGrantList10k measures what a participant's storage grant
// costs roomclient.List of a folder of 10,000 files (16 bytes each)
// through the room server (set up as BenchmarkRoomGrantCycle's), whose
// engine (roomstore.OpenURL, default options) is on a file:// temp folder
// (fsync on; the files written there with os.WriteFile before it opens)
// and on mem:// (the files uploaded first). Three participants of the
// room list the same folder, one list each per iteration, in each of
// their six orders in turn, after one untimed list each that checks what
// each sees:
//
//   - full: no restriction (NewToken's default), all 10,000 entries;
//   - grants-all: 19 prefixes in the folder that no file has, then
//     big/f-, so that the server checks each entry against all 20
//     entries, and every one passes: 10,000 entries;
//   - grants-half: 15 such prefixes, then big/f-00, big/f-02, ...,
//     big/f-08: each entry is checked against 16 to 20 of them, and half
//     pass: 5,000 entries.
//
// LABEL-ns/list are the means, grants-all/full and grants-half/full
// their ratios, the -p50-ns metrics the medians; ns/op is the three
// lists' sum.
func BenchmarkRoomGrantList10k(b *testing.B) {
	content := []byte("sixteen bytes..\n")
	runCases(b, []benchCase{
		{"file", grantListCase(func(b *testing.B) *roomstore.Engine {
			dir := b.TempDir()
			folder := filepath.Join(dir, grantListFolder)
			check(b, os.Mkdir(folder, 0o755))
			for i := range grantListFiles {
				check(b, os.WriteFile(filepath.Join(folder, grantListName(i)), content, 0o644))
			}
			return openURLEngine(b, fileURL(dir, true))
		})},
		{"mem", grantListCase(func(b *testing.B) *roomstore.Engine {
			e := openURLEngine(b, "mem://")
			for i := range grantListFiles {
				_, err := e.Upload(context.Background(), grantListFolder+"/"+grantListName(i), bytes.NewReader(content), roomstore.OpenOptions{})
				check(b, err)
			}
			return e
		})},
	})
}

func grantListCase(open func(b *testing.B) *roomstore.Engine) func(b *testing.B) {
	return func(b *testing.B) {
		ctx := context.Background()
		e := open(b)
		env := newRoomEnv(b, map[string]*roomstore.Engine{"bench": e})
		labels := [3]string{"full", "grants-all", "grants-half"}
		clients := [3]*roomclient.Client{
			env.dial(b, "bench", "full"),
			env.dial(b, "bench", "grants-all", roomserver.WithStorage(listGrant("f-"))),
			env.dial(b, "bench", "grants-half", roomserver.WithStorage(listGrant(halfMatches...))),
		}
		want := [3]int{grantListFiles, grantListFiles, grantListFiles / 2}
		for v, c := range clients {
			checkGrantList(b, ctx, labels[v], c, v == 2)
		}
		list := func(v int) {
			entries, err := clients[v].List(ctx, grantListFolder)
			check(b, err)
			if len(entries) != want[v] {
				b.Fatalf("%s listed %d entries, want %d", labels[v], len(entries), want[v])
			}
		}
		timeSides(b, labels[:], "list", func(i int) []int { return orders[i%len(orders)][:] }, func(v, _ int) { list(v) })
	}
}

// checkGrantList lists the folder once, untimed, and checks that c sees
// exactly what its grant lets it read: every file, or (half) those whose
// name begins with one of halfMatches.
func checkGrantList(b *testing.B, ctx context.Context, label string, c *roomclient.Client, half bool) {
	entries, err := c.List(ctx, grantListFolder)
	check(b, err)
	var want []string
	for i := range grantListFiles {
		name := grantListName(i)
		if !half || hasAnyPrefix(name, halfMatches) {
			want = append(want, name)
		}
	}
	if len(entries) != len(want) {
		b.Fatalf("%s listed %d entries, want %d", label, len(entries), len(want))
	}
	for k, en := range entries {
		if en.Name != want[k] || en.Path != grantListFolder+"/"+want[k] || en.IsFolder || en.Size != 16 {
			b.Fatalf("%s's entry %d: %+v, want the 16-byte file %s/%s", label, k, en, grantListFolder, want[k])
		}
	}
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
