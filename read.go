package roomstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// Entry describes a file or folder.
type Entry struct {
	Name     string    // base name, no trailing slash ("" for the root)
	Path     string    // full clean path ("" for the root)
	IsFolder bool      // an implicit folder
	Size     int64     // 0 for folders
	ModTime  time.Time // time of the last commit; zero for folders
	// ETag identifies the version of the file's content: it changes with
	// every commit, and a move may change it. It is opaque and unquoted;
	// "" for folders, and in the entries of List and Walk on S3, whose
	// listings do not carry it (Stat and OpenReader always set it).
	ETag string
}

// File is a whole downloaded file.
type File struct {
	Name string // base name
	Path string // full clean path
	// MimeType comes from the extension, else from the content
	// (http.DetectContentType).
	MimeType string
	Data     []byte    // the whole content, the caller's to keep
	Size     int64     // len(Data)
	ModTime  time.Time // time of the last commit
}

// Exists reports whether a file or folder is at path. A path through a
// file reports false. A path the Policy of ctx does not let be read
// yields an *AccessError (see Access in the package documentation).
func (e *Engine) Exists(ctx context.Context, p string) (_ bool, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Exists, p)
	defer call.End(&err)
	clean, err := e.enter("exists", p, roompath.TargetAny)
	if err != nil {
		return false, err
	}
	defer e.inflight.Done()
	info, err := e.b.Stat(ctx, clean)
	if g := gateOf(ctx); !g.open() {
		if absent, err := e.seeing(g, "exists", p, clean, info, err); absent || err != nil {
			return false, err
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, pathError("exists", p, err)
	}
	return info.IsFolder || !folderMeant(p, clean), nil
}

// Stat describes the file or folder at path (fs.ErrNotExist when there is
// neither). A path the Policy of ctx does not let be read yields an
// *AccessError.
func (e *Engine) Stat(ctx context.Context, p string) (_ Entry, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Stat, p)
	defer call.End(&err)
	clean, err := e.enter("stat", p, roompath.TargetAny)
	if err != nil {
		return Entry{}, err
	}
	defer e.inflight.Done()
	info, err := e.b.Stat(ctx, clean)
	if g := gateOf(ctx); !g.open() {
		absent, err := e.seeing(g, "stat", p, clean, info, err)
		if absent {
			err = pathError("stat", p, fs.ErrNotExist)
		}
		if err != nil {
			return Entry{}, err
		}
	}
	if err != nil {
		return Entry{}, pathError("stat", p, err)
	}
	if !info.IsFolder && folderMeant(p, clean) {
		return Entry{}, &fs.PathError{Op: "stat", Path: p, Err: ErrNotFolder}
	}
	return entry(info), nil
}

func entry(i backend.Info) Entry {
	return Entry{Name: i.Name(), Path: i.Path, IsFolder: i.IsFolder, Size: i.Size, ModTime: i.ModTime, ETag: i.ETag}
}

// Download returns the whole file at path. Use OpenReader for files too big
// to hold in memory. A file the Policy of ctx does not let be read yields
// an *AccessError.
func (e *Engine) Download(ctx context.Context, p string) (_ *File, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Download, p)
	defer call.End(&err)
	clean, err := e.enter("download", p, roompath.TargetFile)
	if err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	if err := gateOf(ctx).check(Read, clean); err != nil {
		return nil, pathError("download", p, err)
	}
	r, info, err := e.b.Read(ctx, clean, 0, -1)
	if err != nil {
		return nil, pathError("download", p, err)
	}
	defer r.Close()
	data, err := readWhole(r, info.Size)
	if err != nil {
		return nil, pathError("download", p, err)
	}
	n := int64(len(data))
	call.SetBytes(n)
	e.tel.BytesRead(ctx, telemetry.Download, n)
	return &File{
		Name:     info.Name(),
		Path:     clean,
		MimeType: mimeType(clean, data),
		Data:     data,
		Size:     int64(len(data)),
		ModTime:  info.ModTime,
	}, nil
}

// readWhole reads r to its end into one buffer sized for a file of size
// bytes.
func readWhole(r io.Reader, size int64) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

func mimeType(p string, head []byte) string {
	if t := mime.TypeByExtension(path.Ext(p)); t != "" {
		return t
	}
	return http.DetectContentType(head)
}

func mimeTypeByExt(p string) string { return mime.TypeByExtension(path.Ext(p)) }
