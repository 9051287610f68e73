package roomstore

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"time"

	"github.com/roomstore/roomstore/events"
)

// The lease and the state by which the engines of a store share the scan
// (see WithWatch), with a transport that is an events.Coordinator.
const (
	scanLease  = "scan"
	knownState = "known"
)

// coordTimeout bounds each call to take or give up the lease or load the
// state, so that a coordinator out of reach delays the scan or Shutdown
// that little. saveTimeout bounds a save, which waits for the transport to
// publish the engine's events first and may carry megabytes.
const (
	coordTimeout = 5 * time.Second
	saveTimeout  = 30 * time.Second
)

// WatchStats are the counters of WithWatch (Stats.Watch), all zero
// without it.
type WatchStats struct {
	// Scans counts the scans of the whole store that ran: the first, the
	// periodic ones, those that a feed asked for after losing track or
	// that a failure asked for, and Engine.Scan's.
	Scans uint64
	// Left counts the periodic scans that the engine left to another
	// engine of the store, which held the scan lease (see WithWatch).
	Left uint64
	// Outside counts the events of outside changes that the engine
	// published.
	Outside uint64
	// Lost counts the times a feed lost track of changes (each costs a
	// scan).
	Lost uint64
	// Saved counts the times the engine saved what it knows of the store
	// for the engines that start after it.
	Saved uint64
	// Holder reports whether the engine holds the scan lease, as of its
	// last attempt to take or renew it.
	Holder bool
	// Restored reports whether the engine started from what the engines
	// before it knew (its first scan reported what changed since), rather
	// than from a first scan that only learned.
	Restored bool
}

func (w *watcher) stats() WatchStats {
	return WatchStats{
		Scans: w.scans.Load(), Left: w.left.Load(), Outside: w.outside.Load(), Lost: w.lost.Load(),
		Saved: w.saved.Load(), Holder: w.holder.Load(), Restored: w.restored.Load(),
	}
}

// restore starts known from the state that the engines of the store
// saved, and ends the baseline, if there is such a state; else it leaves
// the first scan to learn the store. A path changed meanwhile (touched)
// keeps what its event said.
func (w *watcher) restore(ctx context.Context) bool {
	if w.coord == nil {
		return false
	}
	lctx, cancel := context.WithTimeout(ctx, coordTimeout)
	data, err := w.coord.LoadState(lctx, w.e.storeID, knownState)
	cancel()
	if err == nil {
		var state map[string]string
		if state, err = decodeKnown(data); err == nil {
			w.mu.Lock()
			for p, tag := range state {
				_, touched := w.touched[p]
				if _, had := w.known[p]; !had && !touched {
					w.known[p] = tag
					w.inherited[p] = struct{}{}
				}
			}
			w.baseline = false
			clear(w.touched)
			w.mu.Unlock()
			w.restored.Store(true)
			return true
		}
	}
	if !errors.Is(err, fs.ErrNotExist) && ctx.Err() == nil {
		w.e.cfg.logger.Warn("roomstore: what the store's engines knew could not be loaded; the first scan only learns the store", "err", err)
	}
	return false
}

// lease takes or renews the scan lease for twice the scan interval, and
// reports whether the engine holds it.
func (w *watcher) lease(ctx context.Context) (bool, error) {
	if w.coord == nil {
		return false, nil
	}
	lctx, cancel := context.WithTimeout(ctx, coordTimeout)
	held, err := w.coord.Lease(lctx, w.e.storeID, scanLease, w.e.id, 2*w.cfg.Scan)
	cancel()
	w.holder.Store(held && err == nil)
	log := w.e.cfg.logger
	switch {
	case err != nil && ctx.Err() == nil && !w.leaseFailing:
		w.leaseFailing = true
		log.Warn("roomstore: the scan lease is out of reach; this engine scans at every interval until it is back", "err", err)
	case err == nil && w.leaseFailing:
		w.leaseFailing = false
		log.Info("roomstore: the scan lease is within reach again", "holder", held)
	}
	return held && err == nil, err
}

// periodic reports whether the periodic scan of this interval runs here:
// always without a coordinator; with one, when this engine holds the
// scan lease, or cannot tell (another engine's events that this one
// tells again are refused there, so a second scanner costs work, never a
// duplicate).
func (w *watcher) periodic(ctx context.Context) bool {
	if w.coord == nil {
		return true
	}
	held, err := w.lease(ctx)
	if err == nil && !held {
		w.left.Add(1)
	}
	return held || err != nil
}

// save saves known for the engines that start after this one, in the
// background, unless a save runs already or known is not yet whole.
func (w *watcher) save(ctx context.Context) {
	if w.coord == nil || !w.whole.Load() || !w.saving.CompareAndSwap(false, true) {
		return
	}
	w.mu.Lock()
	if w.unpublished > 0 { // the next scan saves
		w.mu.Unlock()
		w.saving.Store(false)
		return
	}
	known := maps.Clone(w.known)
	w.mu.Unlock()
	w.wg.Go(func() {
		defer w.saving.Store(false)
		w.store(ctx, known)
	})
}

// store saves known, taken from w.known, once every event the engine
// handed its transport until then is published (or given up on): a
// version that known holds has then been told, so that an engine that
// starts from it never leaves a change untold, even one of an engine
// that died before its transport published it.
func (w *watcher) store(ctx context.Context, known map[string]string) {
	ctx, cancel := context.WithTimeout(ctx, saveTimeout)
	defer cancel()
	var err error
	if f, ok := w.e.link.(events.Flusher); ok {
		err = f.Flush(ctx)
	}
	var data []byte
	if err == nil {
		data, err = encodeKnown(known)
	}
	if err == nil {
		err = w.coord.SaveState(ctx, w.e.storeID, knownState, data)
	}
	if err != nil {
		if context.Cause(ctx) != context.Canceled {
			w.e.cfg.logger.Warn("roomstore: what the engine knows of the store could not be saved; the next scan saves it", "err", err)
		}
		return
	}
	w.saved.Add(1)
}

// leave is the watcher's part of Shutdown, once its loop has stopped and
// the transport's link has published what it could: the engine saves what
// it knows if it holds the scan lease, or can take it (no other engine
// holds it: this is the last), and gives the lease up, so that another
// engine takes it at its next interval rather than after the lease
// expires.
func (w *watcher) leave() {
	if w.coord == nil || !w.whole.Load() {
		return
	}
	ctx := context.Background()
	if held, _ := w.lease(ctx); !held {
		return
	}
	w.mu.Lock()
	known := maps.Clone(w.known)
	w.mu.Unlock()
	w.store(ctx, known)
	rctx, cancel := context.WithTimeout(ctx, coordTimeout)
	defer cancel()
	if err := w.coord.Release(rctx, w.e.storeID, scanLease, w.e.id); err != nil {
		w.e.cfg.logger.Warn("roomstore: the scan lease could not be given up; another engine takes it when it expires", "err", err)
	}
	w.holder.Store(false)
}

// The encoding of a saved known: gzip of knownMagic, the number of
// entries, then each entry in path order as uvarint(bytes shared with the
// previous path), uvarint(len(rest)), rest, uvarint(len(tag)), tag.
const (
	knownMagic  = "roomstore known 1\n"
	maxKnownLen = 1 << 16 // of a path or a tag: more is a damaged state
)

func encodeKnown(known map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	bw := bufio.NewWriterSize(zw, 64<<10)
	_, _ = bw.WriteString(knownMagic)
	var scratch []byte
	scratch = binary.AppendUvarint(scratch[:0], uint64(len(known)))
	_, _ = bw.Write(scratch)
	prev := ""
	for _, p := range slices.Sorted(maps.Keys(known)) {
		shared := 0
		for shared < len(p) && shared < len(prev) && p[shared] == prev[shared] {
			shared++
		}
		tag := known[p]
		scratch = binary.AppendUvarint(scratch[:0], uint64(shared))
		scratch = binary.AppendUvarint(scratch, uint64(len(p)-shared))
		scratch = append(scratch, p[shared:]...)
		scratch = binary.AppendUvarint(scratch, uint64(len(tag)))
		scratch = append(scratch, tag...)
		_, _ = bw.Write(scratch)
		prev = p
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeKnown(data []byte) (map[string]string, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("saved state: %w", err)
	}
	r := bufio.NewReader(zr)
	magic := make([]byte, len(knownMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != knownMagic {
		return nil, errors.New("saved state: not a state of this version")
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, fmt.Errorf("saved state: %w", err)
	}
	known := make(map[string]string, min(n, 1<<20))
	length := func() (int, error) {
		v, err := binary.ReadUvarint(r)
		if err == nil && v > maxKnownLen {
			err = fmt.Errorf("a length of %d", v)
		}
		return int(v), err
	}
	var prev []byte
	entry := func() (path, tag []byte, err error) {
		shared, err := length()
		if err != nil {
			return nil, nil, err
		}
		if shared > len(prev) {
			return nil, nil, fmt.Errorf("%d bytes shared with a path of %d", shared, len(prev))
		}
		rest, err := length()
		if err != nil {
			return nil, nil, err
		}
		path = append(prev[:shared:shared], make([]byte, rest)...)
		if _, err := io.ReadFull(r, path[shared:]); err != nil {
			return nil, nil, err
		}
		if len(path) == 0 || len(path) > maxKnownLen || prev != nil && string(path) <= string(prev) {
			return nil, nil, errors.New("an empty or long path, or paths out of order")
		}
		size, err := length()
		if err != nil {
			return nil, nil, err
		}
		tag = make([]byte, size)
		_, err = io.ReadFull(r, tag)
		return path, tag, err
	}
	for i := range n {
		path, tag, err := entry()
		if err != nil {
			return nil, fmt.Errorf("saved state: entry %d: %w", i, err)
		}
		known[string(path)] = string(tag)
		prev = path
	}
	if _, err := r.ReadByte(); err != io.EOF {
		if err == nil {
			err = errors.New("more than its entries")
		}
		return nil, fmt.Errorf("saved state: %w", err)
	}
	return known, nil
}
