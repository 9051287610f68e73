package events

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultHistory is how many of its latest events a Bus keeps for
// SubscribeAfter and EventsAfter when no Option sets it.
const DefaultHistory = 4096

// maxPositionLen bounds a position's length, so that one taken from the
// network is never a large string; a bus's own are about 37 bytes.
const maxPositionLen = 96

// history is the ring of a bus's latest published events, for
// SubscribeAfter and EventsAfter. It holds only what was published: it
// grows on demand, doubling from minQueue, up to its bound, and then
// replaces its oldest event with each new one. Its events keep their
// Seq but not their Position, which replay makes again from the Seq, so
// that the ring does not keep each Position's string alive. All of it is
// guarded by Bus.pubMu.
type history struct {
	max  int // the bound; 0 keeps nothing
	buf  []kept
	head int // index of the oldest event
	n    int // events held

	// gapped is set once Gap was called; gapAt is the Seq of the last
	// event published before the latest Gap. A position at or before it
	// cannot be resumed: the events lost there were never in the ring.
	gapped bool
	gapAt  uint64
}

// kept is one published event and the topic it was published on.
type kept struct {
	topic string
	e     Event // its Position is "": see history
}

// add keeps e, published on topic, evicting the oldest event when the
// ring is at its bound.
func (h *history) add(topic string, e Event) {
	if h.max == 0 {
		return
	}
	e.Position = ""
	if h.n == len(h.buf) && h.n < h.max {
		buf := make([]kept, min(max(2*len(h.buf), minQueue), h.max))
		k := copy(buf, h.buf[h.head:])
		copy(buf[k:], h.buf[:h.head])
		h.buf, h.head = buf, 0
	}
	if h.n < len(h.buf) {
		i := h.head + h.n
		if i >= len(h.buf) {
			i -= len(h.buf)
		}
		h.buf[i] = kept{topic, e}
		h.n++
		return
	}
	h.buf[h.head] = kept{topic, e} // full: the oldest goes
	if h.head++; h.head == len(h.buf) {
		h.head = 0
	}
}

// at returns the i-th oldest event held.
func (h *history) at(i int) *kept {
	i += h.head
	if i >= len(h.buf) {
		i -= len(h.buf)
	}
	return &h.buf[i]
}

// newEpoch draws the random id that a bus's positions carry.
func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// position is the bus's position of its seq-th event ("EPOCH.SEQ").
func (b *Bus) position(seq uint64) string {
	return b.epoch + "." + strconv.FormatUint(seq, 10)
}

// mark is a parsed position.
type mark struct {
	epoch string
	seq   uint64
}

// parsePosition parses a position: an epoch of 1 to 64 letters, digits,
// '-' or '_', a '.', and a decimal Seq. "" yields ok false and no error.
func parsePosition(p string) (m mark, ok bool, err error) {
	if p == "" {
		return mark{}, false, nil
	}
	bad := func() (mark, bool, error) {
		shown := p
		if len(shown) > 40 {
			shown = shown[:40] + "..."
		}
		return mark{}, false, fmt.Errorf("events: malformed position %q: %w", shown, fs.ErrInvalid)
	}
	i := strings.LastIndexByte(p, '.')
	if len(p) > maxPositionLen || i < 1 || i > 64 {
		return bad()
	}
	for _, r := range p[:i] {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_') {
			return bad()
		}
	}
	seq, perr := strconv.ParseUint(p[i+1:], 10, 64)
	if perr != nil {
		return bad()
	}
	return mark{epoch: p[:i], seq: seq}, true, nil
}

// CheckPosition returns nil if position has the form of a position, or
// is "", and otherwise an error wrapping fs.ErrInvalid, the error that
// SubscribeAfter and EventsAfter return for it. It says nothing of
// whether a bus issued it: a server checks a position it was sent before
// it has a bus at hand.
func CheckPosition(position string) error {
	_, _, err := parsePosition(position)
	return err
}

// Position returns the position of the last event the bus published, or
// where its stream starts (a Seq of 0) if it published none: a
// SubscribeAfter with it delivers every event published from then on.
func (b *Bus) Position() string {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	return b.position(b.seq)
}

// missed is what a subscriber that saw the events up to m missed, of
// topics (sorted; nil for every topic): the history's events after m,
// oldest first, their Position made again; or, when the history cannot
// tell (m is another bus's, or one this bus never issued, or older than
// the oldest event it holds, or before a Gap), ok false and how many
// events were published after m, where that is known (for a
// subscription of every topic, to a position of this bus after every
// Gap), else 0. b.pubMu is held.
func (b *Bus) missed(m mark, topics []string) (evs []Event, ok bool, dropped uint64) {
	h := &b.hist
	switch {
	case m.epoch != b.epoch || m.seq > b.seq:
		return nil, false, 0
	case h.gapped && m.seq <= h.gapAt:
		return nil, false, 0
	case b.seq-m.seq > uint64(h.n):
		if topics == nil {
			dropped = b.seq - m.seq
		}
		return nil, false, dropped
	}
	from := h.n - int(b.seq-m.seq)
	for i := from; i < h.n; i++ {
		k := h.at(i)
		if topics != nil {
			if _, found := slices.BinarySearch(topics, k.topic); !found {
				continue
			}
		}
		e := k.e
		e.Position = b.position(e.Seq)
		evs = append(evs, e)
	}
	return evs, true, 0
}

// lostEvent is the event that starts a stream which could not be
// replayed: of type TypeOverflow, at is now, live events follow the
// bus's current position. b.pubMu is held.
func (b *Bus) lostEvent(dropped uint64) Event {
	return Event{Type: TypeOverflow, Dropped: dropped, Time: time.Now(), Position: b.position(b.seq)}
}

// EventsAfter returns the events published after position that
// SubscribeAfter would replay, of the given topics (every topic when
// none is given), oldest first: the history's events after it (none when
// position is the bus's latest). When the history cannot tell what came
// after position (it is another bus's, older than the oldest event the
// history holds, from before a Gap, or one this bus never issued), it
// returns one event of type TypeOverflow instead, whose Position is the
// bus's latest position and whose Dropped counts the events published
// after position when that is known (with no topics given, for a
// position of this bus), else 0. "" returns nothing. A malformed position
// is an error wrapping fs.ErrInvalid. After Close it still answers from
// the history.
func (b *Bus) EventsAfter(position string, topics ...string) ([]Event, error) {
	m, ok, err := parsePosition(position)
	if err != nil || !ok {
		return nil, err
	}
	topics = normalTopics(topics)
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	evs, ok, dropped := b.missed(m, topics)
	if !ok {
		return []Event{b.lostEvent(dropped)}, nil
	}
	return evs, nil
}

// SubscribeAfter is Subscribe for a subscriber that saw the events up to
// position (an Event.Position, or Bus.Position) and wants those it
// missed: at once, atomically with respect to Publish (no event missed,
// none twice), it queues the history's events of topics published after
// position, then delivers the live ones as Subscribe does. When the
// history cannot tell what came after position (see EventsAfter), the
// stream starts instead with exactly one event of type TypeOverflow,
// whose Position is where the live events start and whose Dropped counts
// the events known missing (0 when unknown), and then goes live: the
// subscriber should re-read what it mirrors. The replay counts against
// the subscriber's queue bound like any events: if it is longer than the
// queue, the rest is dropped and marked by an overflow event as usual
// (see Delivery in the package documentation). "" is Subscribe. A
// malformed position is an error wrapping fs.ErrInvalid, and subscribes
// nothing. After Close it returns a subscription that receives nothing.
func (b *Bus) SubscribeAfter(position string, handler func(Event), topics ...string) (*Subscription, error) {
	m, ok, err := parsePosition(position)
	if err != nil {
		return nil, err
	}
	if !ok {
		return b.subscribe(handler, 0, topics, nil), nil
	}
	return b.subscribe(handler, 0, topics, &m), nil
}

// replay queues for s, subscribing after m, what it missed (see
// SubscribeAfter). b.pubMu and b.mu are held.
func (b *Bus) replay(s *Subscription, m mark) {
	evs, ok, dropped := b.missed(m, s.topics)
	if !ok {
		lost := b.lostEvent(dropped)
		s.queue.gap(lost.Dropped, lost.Time, lost.Position)
		return
	}
	for i := range evs {
		s.enqueue(evs[i])
	}
}
