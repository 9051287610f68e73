package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows a transfer's bytes, rate and time left on standard error
// when it is a terminal, and nothing otherwise (piped, redirected, in a
// script), so that it never mixes with output a program reads.
type progress struct {
	bar *progressbar.ProgressBar // nil when silent
	w   io.Writer
}

// newProgress returns the progress of a transfer of size bytes (-1 when
// unknown: then bytes and rate only) described by desc.
func newProgress(w io.Writer, size int64, desc string) *progress {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return &progress{}
	}
	bar := progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
	)
	return &progress{bar: bar, w: w}
}

// reader counts what r yields on the bar.
func (p *progress) reader(r io.Reader) io.Reader {
	if p.bar == nil {
		return r
	}
	return &countingReader{r: r, bar: p.bar}
}

// finish completes the bar after a transfer that ended with err, leaving
// the cursor on a line of its own.
func (p *progress) finish(err error) {
	if p.bar == nil {
		return
	}
	if err == nil {
		_ = p.bar.Finish()
	} else {
		_ = p.bar.Exit()
	}
	fmt.Fprintln(p.w)
}

// countingReader adds the bytes read to a bar; it is only an io.Reader,
// so that no WriterTo of r bypasses the count.
type countingReader struct {
	r   io.Reader
	bar *progressbar.ProgressBar
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	_ = c.bar.Add(n)
	return n, err
}

// set shows the transfer at n bytes: where a resumed upload goes on from.
func (p *progress) set(n int64) {
	if p.bar != nil {
		_ = p.bar.Set64(n)
	}
}
