package backend_mem

import (
	"io"
	"io/fs"
)

// Chunk sizes of a writer's staged bytes: a first Write is kept in a
// chunk of exactly its size (a small file is one allocation, no slack);
// later chunks double from minChunk up to maxChunk, so a large file wastes
// less than one maxChunk and is never copied to grow.
const (
	minChunk = 4 << 10
	maxChunk = 1 << 20
)

// chunks are staged or committed bytes, in order.
type chunks struct {
	list [][]byte
	size int64
}

// write copies p into the last chunk's spare capacity and new chunks.
func (c *chunks) write(p []byte) {
	for len(p) > 0 {
		last := len(c.list) - 1
		if last < 0 || len(c.list[last]) == cap(c.list[last]) {
			size := min(max(c.size, minChunk), maxChunk)
			if last < 0 {
				size = int64(min(len(p), maxChunk)) // the first, exactly
			}
			c.list = append(c.list, make([]byte, 0, size))
			last++
		}
		chunk := c.list[last]
		n := min(len(p), cap(chunk)-len(chunk))
		c.list[last] = append(chunk, p[:n]...)
		c.size += int64(n)
		p = p[n:]
	}
}

// onto returns the chunks of o followed by c's: an append's new version.
// o's chunks are shared, not copied; c's bytes fill the spare capacity of
// o's last chunk and then chunks that grow as write's do, so that many
// small appends make few chunks, while c's large chunks are handed over
// as they are. Writing past o's last chunk's length is safe: every version
// reads its chunks only up to its own lengths, and only the newest version
// of a path is ever appended to. The caller holds the store's lock.
func (c *chunks) onto(o *object) chunks {
	out := chunks{list: make([][]byte, len(o.chunks), len(o.chunks)+len(c.list)+1), size: o.size}
	copy(out.list, o.chunks)
	for _, ch := range c.list {
		if len(ch) >= maxChunk/2 {
			out.list = append(out.list, ch)
			out.size += int64(len(ch))
			continue
		}
		out.write(ch)
	}
	return out
}

// chunkReader streams bytes [off, end) of a committed version's chunks,
// which never change, so it needs no lock. It is for one goroutine at a
// time, like the Reader it serves.
type chunkReader struct {
	chunks [][]byte
	i      int   // the chunk being read
	at     int   // the offset in it
	left   int64 // bytes still to read
	closed bool
}

func newChunkReader(list [][]byte, off, end int64) *chunkReader {
	r := &chunkReader{chunks: list, left: end - off}
	for r.i < len(list) && off >= int64(len(list[r.i])) {
		off -= int64(len(list[r.i]))
		r.i++
	}
	r.at = int(off)
	return r
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, fs.ErrClosed
	}
	n := 0
	for n < len(p) && r.left > 0 {
		chunk := r.chunks[r.i][r.at:]
		k := copy(p[n:], chunk[:min(int64(len(chunk)), r.left)])
		n += k
		r.advance(k)
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// WriteTo writes the rest without an intermediate buffer.
func (r *chunkReader) WriteTo(w io.Writer) (int64, error) {
	if r.closed {
		return 0, fs.ErrClosed
	}
	var total int64
	for r.left > 0 {
		chunk := r.chunks[r.i][r.at:]
		chunk = chunk[:min(int64(len(chunk)), r.left)]
		k, err := w.Write(chunk)
		total += int64(k)
		r.advance(k)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// advance moves past k bytes read.
func (r *chunkReader) advance(k int) {
	r.left -= int64(k)
	if r.at += k; r.at == len(r.chunks[r.i]) {
		r.i, r.at = r.i+1, 0
	}
}

// Close ends the read; later reads fail with fs.ErrClosed.
func (r *chunkReader) Close() error {
	r.closed = true
	return nil
}
