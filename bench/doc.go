// Package bench is roomstore's benchmark suite: every case runs roomstore
// and its baselines in one process, on the same data, so that their ratio
// means something. It lives in its own module so that benchmark-only
// dependencies (gocloud.dev) stay out of the library's go.mod.
//
// `make bench` (at the repository root) runs cmd/benchreport, which
// compiles this package's test binary once, runs the ratio cases for a few
// rounds (alternating the order of roomstore and its baselines between
// rounds), runs the memory and append cases once, and writes the medians
// and ratios to BENCHMARKS.md. The cases:
//
//   - BenchmarkSmallFile: open, write 4 KiB, close, download, stat, delete
//     on 1,000 rotating names; roomstore on afero OsFs (fsync off, on) and
//     on backend_mem, against raw os calls (temp file, rename, read, stat,
//     remove, with and without fsync), gocloud.dev fileblob and memblob.
//     Each pair runs alternately, cycle by cycle, in one sub-benchmark.
//   - BenchmarkLarge64MiB: 64 MiB in 1 MiB Writes, committed, then read
//     back through OpenReader with a 1 MiB buffer; roomstore on afero,
//     S3 (versitygw) and GCS (fake-gcs-server) against raw os, fileblob,
//     the raw aws-sdk-go-v2 client and the raw storage client on the same
//     servers.
//   - BenchmarkMemory1GiB: peak RSS (VmHWM) and peak heap while 1 GiB goes
//     through a handle and back through OpenReader, each case alone in a
//     child process (cmd/rssprobe).
//   - BenchmarkEvents: events per second from Close to one subscriber's
//     handler, the bus alone, EventBus's raw Publish; latency from Close
//     (or Publish) returning to the handler running at 10,000 per second.
//   - BenchmarkList100k: List of a folder of 100,000 files on afero OsFs
//     and backend_mem against os.ReadDir plus Info, time and peak heap.
//   - BenchmarkAppend4KiB: one 4 KiB append to files of 1 MiB, 64 MiB and
//     512 MiB on afero OsFs and S3, with the bytes the client sent: for
//     afero the growth of wchar in /proc/self/io (bytes handed to write(2)
//     and copy_file_range(2)), for S3 the bytes written to the client's
//     TCP connections, counted by the client's HTTP transport.
//   - BenchmarkRoomServer64MiB: 64 MiB uploaded and read back to the end
//     (1 MiB buffer) through the room server, roomclient to roomserver
//     over a loopback WebSocket in this process, against the same engine
//     called directly (Engine.Upload, Engine.OpenReader); the engine is
//     roomstore.OpenURL's with default options, on a file:// temp folder
//     (fsync on) and on mem://. Direct and server cycles alternate in one
//     sub-benchmark; a bare loopback TCP send of the 64 MiB gives scale.
//   - BenchmarkRoomFanout100: the time from an Engine.Upload of a small
//     file returning until the last of 100 roomclient participants of
//     the room has the storage.file.updated event (p50, p99, max), with,
//     timed in the same iterations, the first of them, the engine's own
//     Subscribe handler, and the one participant of a second room.
//   - BenchmarkInstrumentation: the small-file cycle on three engines of
//     one store type (mem://, file://DIR?fsync=false) interleaved in one
//     sub-benchmark: uninstrumented (internal/telemetry.Off set for its
//     cycles), no providers (the default), and OpenTelemetry SDK
//     providers recording every metric and span.
//   - BenchmarkRoomGrantCycle: the small-file cycle through the room
//     server (roomclient Upload 4 KiB, Download, Stat, Delete) by a
//     participant whose token carries a 20-entry storage grant (19
//     prefixes that do not match, then the one that does, with write
//     access) against one without restriction, in one room of one
//     server and engine (file:// fsync on, mem://), cycle by cycle in
//     one sub-benchmark; the server's call rate unlimited, which the
//     back-to-back cycles would otherwise pass.
//   - BenchmarkRoomGrantList10k: roomclient.List of a 10,000-file folder
//     through the room server by a participant without restriction and
//     two whose 20-entry grants make the engine check every entry (all
//     pass; half pass), interleaved in one sub-benchmark, on file://
//     and mem://.
//   - BenchmarkBudgetsFlood: p50 and p99 of one participant's cycles
//     (BenchmarkRoomGrantCycle's, at most one every 5 ms) through a room
//     server with default options, alone, against while another identity
//     of the same room floods the server (8 connections, 32 goroutines
//     uploading and reading back to back, ignoring 429), in alternating
//     phases of 50 cycles; file:// (fsync on) and mem://.
//   - BenchmarkBudgetsIdle10k: `roomstore serve` (go build of
//     ../cmd/roomstore) as a child process holding 10,000 idle WebSocket
//     participants (20 rooms of 500, one identity each, opened frame by
//     frame with github.com/coder/websocket): its RSS, Go heap, stacks
//     and goroutines before and after, per participant.
//   - BenchmarkBudgetsEmptyingFolder: the small-file cycle on
//     dir/fNNNN.txt where dir/ empties at every delete, against a dir/
//     that another file keeps, on file:// with fsync on and off, cycle
//     by cycle in one sub-benchmark.
//   - BenchmarkBudgetsDeepList: List("") of a root holding a folder with
//     a file 511 levels deep, against one whose folder holds the file
//     itself, on file://.
//   - BenchmarkOutside: how soon an engine with roomstore.WithWatch
//     reports a change another program made: the time from its write
//     returning (os.WriteFile of a new file into a file:// store, heard
//     through inotify; a raw PutObject to a versitygw publishing bucket
//     notifications to NATS, heard through an events_nats.S3Feed) to the
//     engine subscriber's handler, with a Settle of 1 ms and the default,
//     p50 and p99, against a bare fsnotify watcher and a raw NATS
//     subscriber hearing the same writes;
//     and Engine.Scan of 10,000 unchanged files on file:// and S3 and of
//     100,000 on file:// (time, CPU, allocations), against
//     filepath.WalkDir with Info and ListObjectsV2 pages of the same
//     files, with, for 10,000, the scan that finds one file changed.
//   - BenchmarkHistory: what the version history costs. The small-file
//     cycle preceded by a write of the same name (so that its write
//     overwrites a file and its delete removes one: two kept versions a
//     cycle), on 1,000 rotating names, with the default history (every
//     name's 10 versions filled first, untimed) against
//     WithHistory(History{}), cycle by cycle in one sub-benchmark, on
//     file:// (fsync off, on) and mem://; and 1,000 overwrites of a
//     1 MiB file on file:// with WithHistory(History{Versions: 10})
//     against none, timed overwrite by overwrite, then the bytes each
//     folder takes on disk (st_blocks of every regular file, each inode
//     once) and the versions Engine.Versions lists.
//   - BenchmarkTus64MiB: a 64 MiB upload into one file:// engine (fsync
//     on) over tus 1.0 (internal/tusclient to roomserver.Uploads on a
//     loopback HTTP connection), through the room protocol (roomclient
//     to the same server) and to the engine directly, one of each per
//     iteration in rotating order (section 18; target: tus at least
//     0.7x the room protocol's throughput).
//   - BenchmarkRoomVsHTTP: small operations (upload 4 KiB, download,
//     stat, delete on 100 rotating names per client) through
//     `roomstore serve` over the room protocol (roomclient), against
//     cmd/plainhttp, a net/http file server of the same durability
//     (temporary file, fsync, rename, fsync of the folder), and
//     versitygw through aws-sdk-go-v2, every server a separate process,
//     with fsync on and off: 1 client (time per cycle and per operation,
//     the allocations of client and server per cycle) and 16 clients
//     (cycles per second) (section 19; targets: roomstore at most 1.5x
//     plain HTTP's time with 1 client, at least 0.6x its rate with 16).
//
// One section alone, with its rounds and its table, into a report of its
// own (the other sections without figures):
//
//	cd bench
//	go run ./cmd/benchreport -rounds 5 -only Tus64MiB -out /tmp/tus.md
//
// Profiles come from the usual flags, one case at a time, for example:
//
//	cd bench
//	go test -run '^$' -bench 'SmallFile/roomstore-afero-nofsync' -cpuprofile cpu.prof -memprofile mem.prof
//	go tool pprof -top cpu.prof
//
// or, for the room server's path, whose profile also holds the direct
// cycles it alternates with (roomserver, roomclient, internal/wire and
// github.com/coder/websocket are the server's share):
//
//	go test -run '^$' -bench 'RoomServer64MiB/file' -benchtime 8x -cpuprofile cpu.prof
//
// The S3 and GCS cases need the test servers that `make tools` installs
// into .bin/ (`make bench` does it first). Two environment variables tune
// a run: ROOMSTORE_BENCH_REVERSE=1 runs each comparison's sub-benchmarks
// in reverse order, and ROOMSTORE_BENCH_DATA names a folder where
// BenchmarkList100k and BenchmarkOutside keep their 100,000 files between
// runs.
package bench
