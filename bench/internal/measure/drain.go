package measure

import (
	"errors"
	"io"
)

// Drain reads r to its end through buf, the way a caller streaming a file
// with a buffer of that size would, and returns the byte count. (io.Copy
// to io.Discard would read in 8 KiB pieces whatever the source.)
func Drain(r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
