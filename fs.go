package roomstore

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// FS returns a read-only io/fs view of the store, for http.FileServerFS,
// fs.WalkDir, template.ParseFS and testing/fstest: an fs.StatFS,
// fs.ReadDirFS, fs.ReadFileFS and fs.SubFS whose calls all run with ctx.
// Names are those of io/fs ("." for the root, no leading slash); a name
// that io/fs accepts but the store refuses (a reserved prefix, a control
// character) is fs.ErrInvalid. Folders have mode fs.ModeDir|0o555 and files
// 0o444; a FileInfo's Sys returns the Entry. An opened file reads the
// version it was opened at (see OpenReader) and is an io.Seeker; a Read
// past a Seek that finds the file changed (or gone) fails with ErrConflict. ReadDir
// lists names in io/fs order (sorted by name, which differs from List's
// for a folder "a" beside a file "a-b"). Errors are *fs.PathError values on
// the io/fs name with the io/fs sentinels; after Shutdown, fs.ErrClosed.
//
// Its Open, Stat, ReadDir and ReadFile (and the first ReadDir of an opened
// folder) are calls in Stats, metrics and spans (fs_open, fs_stat,
// fs_read_dir, fs_read_file), each a child of the span in ctx, with the
// store path as their path. An opened file's bytes count as read by
// fs_open when it is closed; the Open call itself ends when Open returns.
func (e *Engine) FS(ctx context.Context) fs.FS { return &roomFS{e: e, ctx: ctx} }

// roomFS is the view of the store below dir ("" for the root).
type roomFS struct {
	e   *Engine
	ctx context.Context
	dir string
}

var (
	_ fs.StatFS     = (*roomFS)(nil)
	_ fs.ReadDirFS  = (*roomFS)(nil)
	_ fs.ReadFileFS = (*roomFS)(nil)
	_ fs.SubFS      = (*roomFS)(nil)
)

// start begins the call op on the io/fs name, whose store path it builds
// only for a span.
func (f *roomFS) start(op telemetry.Op, name string) (context.Context, telemetry.Call) {
	p := name
	switch {
	case name == ".":
		p = f.dir
	case f.dir != "" && f.e.tel.Tracing():
		p = roompath.Join(f.dir, name)
	}
	return f.e.tel.Start(f.ctx, op, p)
}

// enter turns an io/fs name into the store's clean path and admits the
// call; the caller must call f.e.inflight.Done when it ends.
func (f *roomFS) enter(op, name string) (string, error) {
	if !fs.ValidPath(name) {
		return "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	p := f.dir
	if name != "." {
		p = roompath.Join(f.dir, name)
	}
	clean, err := roompath.Clean(p, roompath.TargetAny)
	if err != nil {
		return "", &fs.PathError{Op: op, Path: name, Err: err}
	}
	if err := f.e.begin(op, name); err != nil {
		return "", err
	}
	return clean, nil
}

// Open opens the file or folder name.
func (f *roomFS) Open(name string) (_ fs.File, err error) {
	ctx, call := f.start(telemetry.FSOpen, name)
	defer call.End(&err)
	clean, err := f.enter("open", name)
	if err != nil {
		return nil, err
	}
	defer f.e.inflight.Done()
	if err := f.see(ctx, "open", name, clean); err != nil {
		return nil, err
	}
	if clean == "" {
		return &dirFile{fsys: f, name: name, clean: clean, info: fileInfo{name: ".", isDir: true}}, nil
	}
	r, info, err := f.e.b.Read(ctx, clean, 0, -1)
	if errors.Is(err, ErrIsFolder) {
		return &dirFile{fsys: f, name: name, clean: clean, info: fileInfo{name: baseName(name), isDir: true}}, nil
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	// What was looked at before the read may have been replaced since: the
	// file read is the one that must be readable.
	if err := gateOf(ctx).check(Read, clean); err != nil {
		r.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	info.Path = clean
	return &file{
		name: name,
		info: fileInfo{name: baseName(name), entry: entry(info)},
		v:    versionReader{ctx: f.ctx, b: f.e.b, path: clean, info: info, r: r},
		tel:  f.e.tel,
	}, nil
}

// see refuses a call on name unless the Policy of ctx lets the caller
// see clean (see Engine.Stat).
func (f *roomFS) see(ctx context.Context, op, name, clean string) error {
	g := gateOf(ctx)
	if g.open() {
		return nil
	}
	var info backend.Info
	var err error
	if clean != "" {
		info, err = f.e.b.Stat(ctx, clean)
	}
	return f.seeing(g, op, name, clean, info, err)
}

// seeing is Engine.seeing for the io/fs name: nothing there is
// fs.ErrNotExist.
func (f *roomFS) seeing(g gate, op, name, clean string, info backend.Info, err error) error {
	absent, err := f.e.seeing(g, op, name, clean, info, err)
	if absent {
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return err
}

// Stat describes name.
func (f *roomFS) Stat(name string) (_ fs.FileInfo, err error) {
	ctx, call := f.start(telemetry.FSStat, name)
	defer call.End(&err)
	clean, err := f.enter("stat", name)
	if err != nil {
		return nil, err
	}
	defer f.e.inflight.Done()
	if clean == "" {
		if err := f.see(ctx, "stat", name, clean); err != nil {
			return nil, err
		}
		return fileInfo{name: ".", isDir: true}, nil
	}
	info, err := f.e.b.Stat(ctx, clean)
	if g := gateOf(ctx); !g.open() {
		if err := f.seeing(g, "stat", name, clean, info, err); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	info.Path = clean
	return fileInfo{name: baseName(name), isDir: info.IsFolder, entry: entry(info)}, nil
}

// baseName is the last element of an io/fs name, "." for the root.
func baseName(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[i+1:]
	}
	return name
}

// ReadDir lists the folder name, sorted by name.
func (f *roomFS) ReadDir(name string) (_ []fs.DirEntry, err error) {
	ctx, call := f.start(telemetry.FSReadDir, name)
	defer call.End(&err)
	clean, err := f.enter("readdir", name)
	if err != nil {
		return nil, err
	}
	defer f.e.inflight.Done()
	return f.readDir(ctx, name, clean)
}

func (f *roomFS) readDir(ctx context.Context, name, clean string) ([]fs.DirEntry, error) {
	entries, err := f.e.listSeen(gateOf(ctx), clean, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, len(entries))
	for i, en := range entries {
		out[i] = fileInfo{name: en.Name, isDir: en.IsFolder, entry: en}
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// ReadFile returns the whole content of the file name.
func (f *roomFS) ReadFile(name string) (_ []byte, err error) {
	ctx, call := f.start(telemetry.FSReadFile, name)
	defer call.End(&err)
	clean, err := f.enter("readfile", name)
	if err != nil {
		return nil, err
	}
	defer f.e.inflight.Done()
	if clean == "" {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: ErrIsFolder}
	}
	if err := gateOf(ctx).check(Read, clean); err != nil {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: err}
	}
	r, info, err := f.e.b.Read(ctx, clean, 0, -1)
	if err != nil {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: err}
	}
	defer r.Close()
	data, err := readWhole(r, info.Size)
	if err != nil {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: err}
	}
	n := int64(len(data))
	call.SetBytes(n)
	f.e.tel.BytesRead(ctx, telemetry.FSReadFile, n)
	return data, nil
}

// Sub returns the view below the folder dir. It checks only the name:
// like fs.Sub, it does not need dir to exist.
func (f *roomFS) Sub(dir string) (fs.FS, error) {
	clean, err := f.enter("sub", dir)
	if err != nil {
		return nil, err
	}
	f.e.inflight.Done()
	return &roomFS{e: f.e, ctx: f.ctx, dir: clean}, nil
}

// fileInfo is both the fs.FileInfo and the fs.DirEntry of an Entry.
type fileInfo struct {
	name  string
	isDir bool
	entry Entry
}

func (i fileInfo) Name() string { return i.name }
func (i fileInfo) Size() int64  { return i.entry.Size }
func (i fileInfo) Mode() fs.FileMode {
	if i.isDir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
func (i fileInfo) ModTime() time.Time         { return i.entry.ModTime }
func (i fileInfo) IsDir() bool                { return i.isDir }
func (i fileInfo) Sys() any                   { return i.entry }
func (i fileInfo) Type() fs.FileMode          { return i.Mode().Type() }
func (i fileInfo) Info() (fs.FileInfo, error) { return i, nil }
func (i fileInfo) String() string             { return fs.FormatFileInfo(i) }

// file is an opened file of the view: one version, seekable.
type file struct {
	name   string
	info   fileInfo
	v      versionReader
	tel    *telemetry.Recorder // counts the bytes read at Close
	closed bool
}

func (f *file) Stat() (fs.FileInfo, error) {
	if f.closed {
		return nil, &fs.PathError{Op: "stat", Path: f.name, Err: fs.ErrClosed}
	}
	return f.info, nil
}

func (f *file) Read(p []byte) (int, error) {
	if f.closed {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: fs.ErrClosed}
	}
	n, err := f.v.Read(p)
	if err != nil && err != io.EOF {
		err = &fs.PathError{Op: "read", Path: f.name, Err: err}
	}
	return n, err
}

func (f *file) Seek(offset int64, whence int) (int64, error) {
	if f.closed {
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: fs.ErrClosed}
	}
	pos, err := f.v.Seek(offset, whence)
	if err != nil {
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: err}
	}
	return pos, nil
}

func (f *file) Close() error {
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	f.closed = true
	f.tel.BytesRead(f.v.ctx, telemetry.FSOpen, f.v.n)
	return f.v.Close()
}

// dirFile is an opened folder of the view. It lists the folder at its
// first ReadDir.
type dirFile struct {
	fsys    *roomFS
	name    string
	clean   string
	info    fileInfo
	entries []fs.DirEntry
	listed  bool
	closed  bool
}

func (d *dirFile) Stat() (fs.FileInfo, error) {
	if d.closed {
		return nil, &fs.PathError{Op: "stat", Path: d.name, Err: fs.ErrClosed}
	}
	return d.info, nil
}

func (d *dirFile) Read([]byte) (int, error) {
	if d.closed {
		return 0, &fs.PathError{Op: "read", Path: d.name, Err: fs.ErrClosed}
	}
	return 0, &fs.PathError{Op: "read", Path: d.name, Err: ErrIsFolder}
}

// ReadDir returns the next n entries (all that remain when n <= 0), as
// fs.ReadDirFile says.
func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if d.closed {
		return nil, &fs.PathError{Op: "readdir", Path: d.name, Err: fs.ErrClosed}
	}
	if !d.listed {
		entries, err := d.list()
		if err != nil {
			return nil, err
		}
		d.entries, d.listed = entries, true
	}
	if n <= 0 {
		out := d.entries
		d.entries = nil
		return out, nil
	}
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(d.entries))
	out := d.entries[:n:n]
	d.entries = d.entries[n:]
	return out, nil
}

// list lists the folder, a call of fs_read_dir.
func (d *dirFile) list() (_ []fs.DirEntry, err error) {
	ctx, call := d.fsys.e.tel.Start(d.fsys.ctx, telemetry.FSReadDir, d.clean)
	defer call.End(&err)
	if err := d.fsys.e.begin("readdir", d.name); err != nil {
		return nil, err
	}
	defer d.fsys.e.inflight.Done()
	return d.fsys.readDir(ctx, d.name, d.clean)
}

func (d *dirFile) Close() error {
	if d.closed {
		return &fs.PathError{Op: "close", Path: d.name, Err: fs.ErrClosed}
	}
	d.closed = true
	return nil
}
