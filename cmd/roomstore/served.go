package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/roomstore/roomstore/backend_disk"
	"github.com/roomstore/roomstore/roompath"
	"github.com/roomstore/roomstore/roomserver"
)

// A file:// store opened directly and the rooms of a running serve can
// overlap: the file commands' store can hold the rooms' directory (the
// part of serve's --store before {room}), be it, or lie inside it. Then
// what a file command changes changes rooms without going through the
// server (rm -r / removes them all), so both sides say so.
//
// serve marks the rooms' directory with the lock file servedLock, in the
// directory's reserved folder, which it holds locked for as long as it
// runs; the file commands look for a live one at their store's directory,
// at each of its ancestors and at each of its direct subfolders. The lock,
// not the file, says that a server runs: the kernel drops it when the
// process ends, however it ends, so a killed server leaves no false
// warning. It is a POSIX record lock, taken shared, so that the replicas
// of serve on one directory hold it together; unlike a flock it can be
// tested without being taken (two commands testing at once never take
// each other for a server), and the test names a holder's pid.
const servedLock = roompath.ReservedPrefix + "/serve.lock"

// markServed marks base, the directory of a file:// template's rooms, as
// served by this process until the returned function is called or the
// process ends. A directory that cannot be marked is logged and served
// anyway: the mark only lets the file commands warn. The process opens
// the file this once, as closing any descriptor of it would drop the
// process's lock.
func markServed(base string, log *slog.Logger) (release func()) {
	if !servedLocks {
		return func() {}
	}
	f, err := openServedLock(base)
	if err == nil {
		err = lockServed(f)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		log.Warn("cannot mark the rooms' directory as served; the file commands will not warn of this server", "dir", base, "err", reason(err))
		return func() {}
	}
	return func() { f.Close() } // closing it drops the lock
}

// openServedLock opens base's lock file, creating it and the reserved
// folder that holds it if need be.
func openServedLock(base string) (*os.File, error) {
	if err := os.Mkdir(filepath.Join(base, roompath.ReservedPrefix), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return openLockFile(base, os.O_CREATE)
}

// openLockFile opens the lock file in dir for reading, with flag added,
// never waiting (as a FIFO in its place would have an open wait for a
// writer) and failing on anything but a regular file.
func openLockFile(dir string, flag int) (*os.File, error) {
	p := filepath.Join(dir, filepath.FromSlash(servedLock))
	f, err := os.OpenFile(p, os.O_RDONLY|openNonBlock|flag, 0o644)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: p, Err: errors.New("not a regular file")}
	}
	return f, nil
}

// servedAt reports whether a running serve holds the lock file in dir,
// and its pid (0 where it cannot be told).
func servedAt(dir string) (pid int, ok bool) {
	f, err := openLockFile(dir, 0)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	return servedBy(f)
}

// warnServed writes one line to w when raw, a file command's store, is a
// file:// directory that overlaps the rooms of a running serve on this
// host (see servedLock). It never fails: what it cannot tell, it does not
// warn of.
func warnServed(w io.Writer, raw string) {
	dir := absStoreDir(raw)
	if dir == "" {
		return
	}
	base, pid, ok := findServed(dir)
	if !ok {
		return
	}
	server := "a running roomstore serve"
	if pid > 0 {
		server += fmt.Sprintf(" (pid %d)", pid)
	}
	var where string
	switch {
	case base == dir:
		where = "is the rooms' directory of " + server
	case within(base, dir):
		where = "lies inside " + base + ", the rooms' directory of " + server
	default:
		where = "holds " + base + ", the rooms' directory of " + server
	}
	fmt.Fprintf(w, "roomstore: warning: --store %s %s: what this command changes there changes those rooms\n", redactedURL(raw), where)
}

// findServed returns the directory of a running serve's rooms that is
// dir, one of its ancestors or one of its direct subfolders, with the
// server's pid.
func findServed(dir string) (base string, pid int, ok bool) {
	for a := dir; ; a = filepath.Dir(a) {
		if pid, ok := servedAt(a); ok {
			return a, pid, true
		}
		if filepath.Dir(a) == a {
			break
		}
	}
	d, err := os.Open(dir)
	if err != nil {
		return "", 0, false
	}
	defer d.Close()
	for {
		ents, err := d.ReadDir(256) // in batches: a store's root can be large
		for _, e := range ents {
			// A symbolic link is nothing to a disk store: never listed,
			// never removed through.
			if !e.IsDir() || roompath.IsReserved(e.Name()) {
				continue
			}
			sub := filepath.Join(dir, e.Name())
			if pid, ok := servedAt(sub); ok {
				return sub, pid, true
			}
		}
		if err != nil {
			return "", 0, false
		}
	}
}

// absStoreDir returns the absolute directory of a file:// store URL,
// through any symbolic links, or "" for any other URL.
func absStoreDir(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || !strings.EqualFold(u.Scheme, "file") {
		return ""
	}
	dir, err := backend_disk.FileDir(u)
	if err != nil {
		return ""
	}
	return absDir(dir)
}

// absDir returns dir absolute, through any symbolic links where it
// exists.
func absDir(dir string) string {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		return real
	}
	return dir
}

// within reports whether dir lies strictly inside parent; both are clean
// absolute paths.
func within(parent, dir string) bool {
	rel, err := filepath.Rel(parent, dir)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// overlap reports whether one of the clean absolute paths a and b is the
// other or lies inside it.
func overlap(a, b string) bool { return a == b || within(a, b) || within(b, a) }

// warnDefaultOverlap logs when base, the directory of the rooms of a
// file:// template, overlaps the store the file commands work on by
// default in this environment ($ROOMSTORE_STORE, else defaultStore): a
// file command run here without --store would work on the rooms.
func warnDefaultOverlap(base string, log *slog.Logger) {
	raw := (&storeFlags{}).target()
	store := absStoreDir(raw)
	if b := absDir(base); store != "" && b != "" && overlap(b, store) {
		log.Warn("the rooms' directory overlaps the file commands' default store: a file command run here without --store works on the rooms (rm -r / removes them)", "dir", base, "store", raw)
	}
}

// formerRoomsStore is serve's default --store until the file commands'
// default store, file://./roomstore-data, was found to hold it.
const formerRoomsStore = "file://./roomstore-data/{room}"

// checkFormerRooms refuses to serve the default store when the rooms are
// still where the former default kept them: the directory of its rooms
// holds a room's store (a folder with a room's name and a disk store's
// reserved folder in it) and the new one does not exist. Serving an empty
// directory instead would show every participant an empty room, and
// split each room in two as they wrote.
func checkFormerRooms() error {
	former, _, _ := storeTemplate{raw: formerRoomsStore}.diskFolders()
	now, _, _ := storeTemplate{raw: defaultRoomsStore}.diskFolders()
	if _, err := os.Lstat(now); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	d, err := os.Open(former)
	if err != nil {
		return nil
	}
	defer d.Close()
	for {
		ents, err := d.ReadDir(256)
		for _, e := range ents {
			if !e.IsDir() || !roomserver.ValidRoom(e.Name()) {
				continue
			}
			if fi, err := os.Stat(filepath.Join(former, e.Name(), roompath.ReservedPrefix)); err == nil && fi.IsDir() {
				return fmt.Errorf("%s holds the rooms of serve's former default store, %s, which lies inside the file commands' default store; serve's default is now %s: move them (mv %s %s) or pass --store '%s'",
					former, formerRoomsStore, defaultRoomsStore, former, now, formerRoomsStore)
			}
		}
		if err != nil {
			return nil
		}
	}
}
