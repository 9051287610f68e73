package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
)

// stressWorkers and stressOps bound the model-based stress case: workers
// spread over two engines, each running stressOps random operations.
const (
	stressWorkers = 6
	stressOps     = 100
)

// model is what the committed operations imply about the store.
type model struct {
	mu         sync.Mutex
	records    map[string][]string           // append file -> records whose Close succeeded
	aborted    map[string][]string           // append file -> records that must not appear
	versions   map[string][]committedVersion // overwrite file -> committed versions
	exclusive  map[string][]string           // exclusive file -> winners
	updated    [2]int                        // successful Closes per engine
	deleted    [2]int                        // files removed per engine
	operations int
}

type committedVersion struct {
	content    string
	start, end time.Time // of the Close call
}

var stressCases = []tcase{
	{"a random mix of operations from two engines matches the model", func(t *testing.T, h Harness) {
		e1 := fresh(t, h)
		e2 := newEnv(t, h.Reopen(t, e1.b))
		m := &model{records: map[string][]string{}, aborted: map[string][]string{}, versions: map[string][]committedVersion{}, exclusive: map[string][]string{}}
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		var wg sync.WaitGroup
		for w := range stressWorkers {
			wg.Go(func() { stressWorker(t, []*env{e1, e2}, w, rand.New(rand.NewPCG(seed, uint64(w))), m) })
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		checkModel(t, e1, e2, m)
	}},
}

func stressWorker(t *testing.T, envs []*env, w int, r *rand.Rand, m *model) {
	own := map[string]bool{} // this worker's scratch files, which only it touches
	for i := range stressOps {
		ei := r.IntN(2)
		e := envs[ei]
		tag := fmt.Sprintf("w%d-op%d", w, i)
		m.mu.Lock()
		m.operations++
		m.mu.Unlock()
		switch op := r.IntN(10); op {
		case 0, 1: // append a record, or abort one
			p := fmt.Sprintf("log/%c", 'a'+r.IntN(2))
			rec := "<" + tag + ">"
			hd, err := e.Open(e.ctx, p, roomstore.OpenOptions{})
			if err != nil {
				t.Errorf("%s: Open %s: %v", tag, p, err)
				return
			}
			if err := e.Write(e.ctx, hd, []byte(rec)); err != nil {
				t.Errorf("%s: Write: %v", tag, err)
				return
			}
			m.mu.Lock()
			if op == 1 {
				m.aborted[p] = append(m.aborted[p], rec)
				m.mu.Unlock()
				if err := e.Abort(e.ctx, hd); err != nil {
					t.Errorf("%s: Abort: %v", tag, err)
				}
				continue
			}
			m.mu.Unlock()
			if err := e.Close(e.ctx, hd); err != nil {
				t.Errorf("%s: append Close: %v", tag, err)
				return
			}
			m.mu.Lock()
			m.records[p] = append(m.records[p], rec)
			m.updated[ei]++
			m.mu.Unlock()
		case 2, 3: // overwrite with a version of its own
			p := fmt.Sprintf("ow/%d", r.IntN(2))
			content := strings.Repeat(tag+";", 1+r.IntN(50))
			hd, err := e.Open(e.ctx, p, overwrite)
			if err != nil {
				t.Errorf("%s: Open %s: %v", tag, p, err)
				return
			}
			if err := e.Write(e.ctx, hd, []byte(content)); err != nil {
				t.Errorf("%s: Write: %v", tag, err)
				return
			}
			start := time.Now()
			if err := e.Close(e.ctx, hd); err != nil {
				t.Errorf("%s: overwrite Close: %v", tag, err)
				return
			}
			m.mu.Lock()
			m.versions[p] = append(m.versions[p], committedVersion{content, start, time.Now()})
			m.updated[ei]++
			m.mu.Unlock()
		case 4: // try to create an exclusive file
			p := fmt.Sprintf("ex/%d", r.IntN(3))
			err := e.write(e.ctx, p, []byte(tag), roomstore.OpenOptions{Exclusive: true})
			switch {
			case err == nil:
				m.mu.Lock()
				m.exclusive[p] = append(m.exclusive[p], tag)
				m.updated[ei]++
				m.mu.Unlock()
			case !errors.Is(err, fs.ErrExist):
				t.Errorf("%s: exclusive %s: %v", tag, p, err)
				return
			}
		case 5, 6: // a scratch file of this worker's own
			p := fmt.Sprintf("scratch/w%d/%d", w, r.IntN(4))
			if err := e.write(e.ctx, p, []byte(tag), overwrite); err != nil {
				t.Errorf("%s: scratch write: %v", tag, err)
				return
			}
			own[p] = true
			m.mu.Lock()
			m.updated[ei]++
			m.mu.Unlock()
		case 7: // delete a scratch file, present or not
			p := fmt.Sprintf("scratch/w%d/%d", w, r.IntN(4))
			err := e.Delete(e.ctx, p)
			switch {
			case own[p] && err == nil:
				delete(own, p)
				m.mu.Lock()
				m.deleted[ei]++
				m.mu.Unlock()
			case !own[p] && errors.Is(err, fs.ErrNotExist):
			default:
				t.Errorf("%s: Delete %s (present %v): %v", tag, p, own[p], err)
				return
			}
		case 8: // remove the whole scratch folder
			if err := e.RemoveAll(e.ctx, fmt.Sprintf("scratch/w%d", w)); err != nil {
				t.Errorf("%s: RemoveAll: %v", tag, err)
				return
			}
			m.mu.Lock()
			m.deleted[ei] += len(own)
			m.mu.Unlock()
			clear(own)
		case 9: // read: lists work and logs hold whole records
			if _, err := e.List(e.ctx, ""); err != nil {
				t.Errorf("%s: List: %v", tag, err)
				return
			}
			p := fmt.Sprintf("log/%c", 'a'+r.IntN(2))
			f, err := e.Download(e.ctx, p)
			if err == nil && !wholeRecords(f.Data) {
				t.Errorf("%s: %s holds a torn record: %q", tag, p, f.Data)
				return
			} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: Download: %v", tag, err)
				return
			}
		}
	}
	// The final state of this worker's scratch folder is exactly own.
	e := envs[0]
	var want []string
	for p := range own {
		want = append(want, p[strings.LastIndexByte(p, '/')+1:])
	}
	slices.Sort(want)
	got, err := e.List(e.ctx, fmt.Sprintf("scratch/w%d", w))
	if len(want) == 0 {
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("worker %d: scratch folder lists %v, %v; want it gone", w, got, err)
		}
		return
	}
	var names []string
	for _, x := range got {
		names = append(names, x.Name)
	}
	if err != nil || !slices.Equal(names, want) {
		t.Errorf("worker %d: scratch folder lists %v, %v; want %v", w, names, err, want)
	}
}

func wholeRecords(b []byte) bool {
	for len(b) > 0 {
		if b[0] != '<' {
			return false
		}
		end := bytes.IndexByte(b, '>')
		if end < 0 || bytes.IndexByte(b[1:end], '<') >= 0 {
			return false
		}
		b = b[end+1:]
	}
	return true
}

func checkModel(t *testing.T, e1, e2 *env, m *model) {
	for p, recs := range m.records {
		data := string(e1.get(t, p))
		for _, rec := range recs {
			if n := strings.Count(data, rec); n != 1 {
				t.Errorf("%s holds committed record %s %d times, want once", p, rec, n)
			}
		}
		for _, rec := range m.aborted[p] {
			if strings.Contains(data, rec) {
				t.Errorf("%s holds aborted record %s", p, rec)
			}
		}
		if got := strings.Count(data, "<"); got != len(recs) {
			t.Errorf("%s holds %d records, want the %d committed", p, got, len(recs))
		}
	}
	for p, vs := range m.versions {
		data := string(e1.get(t, p))
		i := slices.IndexFunc(vs, func(v committedVersion) bool { return v.content == data })
		if i < 0 {
			t.Errorf("%s holds %d bytes that no committed overwrite wrote", p, len(data))
			continue
		}
		for _, w := range vs {
			if vs[i].end.Before(w.start) {
				t.Errorf("%s holds a version whose Close ended before another's began: last overwrite lost", p)
			}
		}
	}
	for p, winners := range m.exclusive {
		if len(winners) != 1 {
			t.Errorf("%s had %d exclusive winners %v, want 1", p, len(winners), winners)
			continue
		}
		e1.mustContain(t, p, []byte(winners[0]))
	}
	for i, e := range []*env{e1, e2} {
		e.barrier(t) // every event of the run has arrived
		up, del := 0, 0
		for _, ev := range e.rec.snapshot() {
			switch ev.Type {
			case roomstore.EventFileUpdated:
				up++
			case roomstore.EventFileDeleted:
				del++
			}
		}
		if up != m.updated[i] || del != m.deleted[i] {
			t.Errorf("engine %d published %d updated and %d deleted events, want %d and %d", i+1, up, del, m.updated[i], m.deleted[i])
		}
	}
	t.Logf("%d operations checked against the model, 0 lost", m.operations)
}
