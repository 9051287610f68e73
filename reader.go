package roomstore

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"sync"

	"github.com/roomstore/roomstore/backend"
)

// Reader streams one version of a file: the one its Entry describes, even
// when commits land while it is read. It is an io.ReadCloser for one
// goroutine at a time; the caller closes it.
type Reader struct {
	rc     io.ReadCloser
	br     *bufio.Reader // set once MimeType peeked at the content
	entry  Entry
	offset int64
	read   bool

	mimeOnce sync.Once
	mime     string
}

// OpenReader streams length bytes of the file from offset (length < 0: to
// the end) in constant memory. The Reader's Entry describes the version it
// reads (Size is the whole file's), so a streamed download can send a
// Content-Length and an ETag that match its bytes. An offset below zero or
// past the end yields fs.ErrInvalid, a missing file fs.ErrNotExist and a
// folder ErrIsFolder; a length past the end is cut at the end.
func (e *Engine) OpenReader(ctx context.Context, p string, offset, length int64) (*Reader, error) {
	clean, err := e.enter("read", p, backend.TargetFile)
	if err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	if offset < 0 {
		return nil, &fs.PathError{Op: "read", Path: p, Err: fmt.Errorf("%w: negative offset %d", fs.ErrInvalid, offset)}
	}
	r, info, err := e.b.Read(ctx, clean, offset, length)
	if err != nil {
		return nil, pathError("read", p, err)
	}
	info.Path = clean
	return &Reader{rc: r, entry: entry(info), offset: offset}, nil
}

// Read reads from the file's version that Entry describes. At the end it
// returns io.EOF; any other error is an *fs.PathError of the operation
// "read" on the file's path (the store or the connection failed, or the
// read's context ended).
func (r *Reader) Read(p []byte) (int, error) {
	r.read = true
	var (
		n   int
		err error
	)
	if r.br != nil {
		n, err = r.br.Read(p)
	} else {
		n, err = r.rc.Read(p)
	}
	if err != nil && err != io.EOF {
		err = pathError("read", r.entry.Path, err)
	}
	return n, err
}

// Close ends the read; its error, if any, is an *fs.PathError.
func (r *Reader) Close() error {
	if err := r.rc.Close(); err != nil {
		return pathError("close", r.entry.Path, err)
	}
	return nil
}

// Entry describes the version being read: its path, whole size, ModTime
// and ETag.
func (r *Reader) Entry() Entry { return r.entry }

// MimeType returns the file's MIME type as Download reports it: from the
// extension, else sniffed (http.DetectContentType) from the first 512
// bytes, which it peeks at without consuming them. Sniffing needs a read
// from the file's start that has not begun: otherwise an extension-less
// file is "application/octet-stream". It may block like Read.
func (r *Reader) MimeType() string {
	r.mimeOnce.Do(func() {
		if t := mimeTypeByExt(r.entry.Path); t != "" {
			r.mime = t
			return
		}
		if r.offset != 0 || r.read {
			r.mime = "application/octet-stream"
			return
		}
		r.br = bufio.NewReaderSize(r.rc, 512)
		head, _ := r.br.Peek(512)
		r.mime = http.DetectContentType(head)
	})
	return r.mime
}
