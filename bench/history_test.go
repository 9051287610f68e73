package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/roomstore/roomstore"
)

const (
	// historyFill is how many history cycles per name fill an engine's
	// history before its cycles are timed: each keeps two versions, so
	// that every name holds roomstore.DefaultHistoryVersions of them and
	// every timed change also removes the oldest.
	historyFill = roomstore.DefaultHistoryVersions / 2
	// historyKept is the retention of the overwrite case.
	historyKept = 10
	// overwriteSize is the size of the overwrite case's file.
	overwriteSize = 1 << 20
	// overwriteName is the overwrite case's file.
	overwriteName = "big.bin"
)

// BenchmarkHistory measures what the version history costs.
//
// The cycle cases time the history cycle on two engines of the store
// roomstore.OpenURL returns for the URL shown, each on a store of its
// own: the default history (DefaultHistoryVersions versions, each for
// DefaultHistoryAge: "on") against WithHistory(History{}) ("off"). The
// history cycle writes a name (open, write 4 KiB, close: a new file),
// then runs BenchmarkSmallFile's cycle on it (open, write 4 KiB, close,
// download, stat, delete), whose write overwrites that file and whose
// delete removes it: with the history on, each cycle keeps two versions.
// On 1,000 rotating names, as BenchmarkSmallFile's. Before the timed
// cycles, historyFill untimed cycles of every name fill the history
// (for file://DIR, by an engine of the same folder with fsync off, then
// a sync), so that each timed change also removes the oldest of its
// name's versions, as in a store long in use; then come 20 untimed
// cycles of each engine. Each iteration runs one cycle of each on the
// same name, which goes first alternating. off-ns/cycle and on-ns/cycle
// are the means, on/off their ratio, the -p50-ns metrics the medians;
// ns/op is the two cycles' sum. The run fails unless, at the end, the
// history engine keeps DefaultHistoryVersions versions of a name and the
// other none.
//
//   - cycle-file-nofsync: "file://DIR?fsync=false".
//   - cycle-file-fsync: "file://DIR" (fsync on).
//   - cycle-mem: "mem://".
//
// The overwrite case, overwrite-1MiB-file, overwrites a 1 MiB file of
// random bytes (its first 8 bytes the overwrite's number, so that no two
// versions are alike) with Engine.Upload, once per iteration on each of
// two engines of "file://DIR" (fsync on), each on a folder of its own:
// WithHistory(History{Versions: 10}) ("on") against WithHistory(History{})
// ("off"), which goes first alternating, after the upload that creates
// the file. off-ns/overwrite and on-ns/overwrite are the means, on/off
// their ratio, the -p50-ns metrics the medians. Then it reports the
// bytes each folder holds on disk (off-disk-MiB, on-disk-MiB: st_blocks
// of every regular file beneath it, .roomstore included, each inode
// once), their ratio (disk-on/off), the regular files holding bytes in
// each (off-files, on-files), the versions Engine.Versions lists on the
// history engine (on-versions) and the overwrites made; the run fails
// unless it lists 10 (or the overwrites, when fewer) and the other
// engine none. cmd/benchreport runs it with -benchtime 1000x.
func BenchmarkHistory(b *testing.B) {
	runCases(b, []benchCase{
		{"cycle-file-nofsync", historyCycleCase(fileHistoryStores(false))},
		{"cycle-file-fsync", historyCycleCase(fileHistoryStores(true))},
		{"cycle-mem", historyCycleCase(memHistoryStores)},
		{"overwrite-1MiB-file", overwriteCase},
	})
}

// historyStores opens the two engines of a cycle case, each on a fresh
// store, the history engine's store filled by fill first.
type historyStores func(b *testing.B, fill func(e *roomstore.Engine)) (off, on *roomstore.Engine)

// noHistory turns the history off.
var noHistory = roomstore.WithHistory(roomstore.History{})

// fileHistoryStores opens engines of "file://DIR" (fsync on or off); the
// history engine's folder is filled by an engine of the same folder with
// fsync off, shut down and synced before the measured one opens.
func fileHistoryStores(fsync bool) historyStores {
	return func(b *testing.B, fill func(*roomstore.Engine)) (off, on *roomstore.Engine) {
		dir := b.TempDir()
		filler := openURLEngine(b, fileURL(dir, false))
		fill(filler)
		check(b, filler.Shutdown(context.Background()))
		syscall.Sync()
		return openURLEngine(b, fileURL(b.TempDir(), fsync), noHistory), openURLEngine(b, fileURL(dir, fsync))
	}
}

// memHistoryStores opens engines of "mem://", whose store is each
// engine's own: the history engine fills its own.
func memHistoryStores(b *testing.B, fill func(*roomstore.Engine)) (off, on *roomstore.Engine) {
	on = memEngine(b)
	fill(on)
	return openURLEngine(b, "mem://", noHistory), on
}

// historyCycle is one history cycle of e on name: write created (a new
// file), then smallCycle with payload, which overwrites and deletes it.
func historyCycle(b *testing.B, ctx context.Context, e *roomstore.Engine, name string, created, payload []byte) {
	h, err := e.Open(ctx, name, roomstore.OpenOptions{Overwrite: true})
	check(b, err)
	check(b, e.Write(ctx, h, created))
	check(b, e.Close(ctx, h))
	smallCycle(b, ctx, e, name, payload)
}

func historyCycleCase(stores historyStores) func(b *testing.B) {
	return func(b *testing.B) {
		ctx := context.Background()
		created, payload := randomBytes(smallFileSize), randomBytes(smallFileSize)
		names := smallNames()
		off, on := stores(b, func(e *roomstore.Engine) {
			for range historyFill {
				for _, name := range names {
					historyCycle(b, ctx, e, name, created, payload)
				}
			}
			checkVersions(b, ctx, e, names[0], 2*historyFill)
		})
		engines := [2]*roomstore.Engine{off, on}
		labels := [2]string{"off", "on"}
		for i := range 20 {
			for _, e := range engines {
				historyCycle(b, ctx, e, names[i], created, payload)
			}
		}
		timeSides(b, labels[:], "cycle", alternate, func(v, i int) {
			historyCycle(b, ctx, engines[v], names[i%len(names)], created, payload)
		})
		// The retention held, and the engine without a history kept
		// nothing: the deleted name has no versions.
		checkVersions(b, ctx, on, names[0], roomstore.DefaultHistoryVersions)
		if _, err := off.Versions(ctx, names[0]); !errors.Is(err, fs.ErrNotExist) {
			b.Fatalf("off: Versions(%s): %v, want fs.ErrNotExist", names[0], err)
		}
	}
}

// checkVersions fails b unless e lists want versions of name, and
// returns how many it lists.
func checkVersions(b *testing.B, ctx context.Context, e *roomstore.Engine, name string, want int) int {
	vs, err := e.Versions(ctx, name)
	check(b, err)
	if len(vs) != want {
		b.Fatalf("%s has %d versions, want %d", name, len(vs), want)
	}
	return len(vs)
}

// overwriteCase is BenchmarkHistory's overwrite case.
func overwriteCase(b *testing.B) {
	ctx := context.Background()
	dirs := [2]string{b.TempDir(), b.TempDir()}
	engines := [2]*roomstore.Engine{
		openURLEngine(b, fileURL(dirs[0], true), noHistory),
		openURLEngine(b, fileURL(dirs[1], true), roomstore.WithHistory(roomstore.History{Versions: historyKept})),
	}
	labels := [2]string{"off", "on"}
	payload := randomBytes(overwriteSize)
	upload := func(e *roomstore.Engine, n int) {
		binary.BigEndian.PutUint64(payload, uint64(n))
		_, err := e.Upload(ctx, overwriteName, bytes.NewReader(payload), roomstore.OpenOptions{Overwrite: true, Size: overwriteSize})
		check(b, err)
	}
	for _, e := range engines {
		upload(e, 0)
	}
	n := 0
	timeSides(b, labels[:], "overwrite", alternate, func(v, i int) {
		upload(engines[v], i+1)
		n = i + 1
	})
	checkVersions(b, ctx, engines[0], overwriteName, 0)
	kept := checkVersions(b, ctx, engines[1], overwriteName, min(n, historyKept))
	b.ReportMetric(float64(n), "overwrites")
	b.ReportMetric(float64(kept), "on-versions")
	var used [2]int64
	for v, dir := range dirs {
		size, files := diskUsage(b, dir)
		used[v] = size
		b.ReportMetric(float64(size)/(1<<20), labels[v]+"-disk-MiB")
		b.ReportMetric(float64(files), labels[v]+"-files")
	}
	b.ReportMetric(float64(used[1])/float64(used[0]), "disk-on/off")
}

// diskUsage returns the bytes the regular files beneath dir take on disk
// (st_blocks, each inode once: a kept version may be a hard link of a
// file) and how many of them hold bytes (the store's empty lock and
// liveness files do not).
func diskUsage(b *testing.B, dir string) (size int64, files int) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	check(b, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return errors.New("no stat_t: this measure needs Unix")
		}
		k := inode{uint64(st.Dev), st.Ino}
		if !seen[k] {
			seen[k] = true
			size += st.Blocks * 512
			if fi.Size() > 0 {
				files++
			}
		}
		return nil
	}))
	return size, files
}
