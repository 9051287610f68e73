package wire_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"go.uber.org/goleak"

	"github.com/roomstore/roomstore/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// roundTrip reads m's frames back through ReadFrame, as a socket reader
// does, in reads of at most 1,000 bytes.
func roundTrip(t *testing.T, a *wire.Assembler, m wire.Encoded) *wire.Message {
	t.Helper()
	got, err := a.ReadFrame(iotest.HalfReader(bytes.NewReader(m.Header)))
	if got != nil || err != nil {
		t.Fatalf("header frame: %v, %v", got, err)
	}
	got, err = a.ReadFrame(iotest.HalfReader(bytes.NewReader(m.Body)))
	if err != nil || got == nil {
		t.Fatalf("data frame: %v, %v", got, err)
	}
	return got
}

// Messages of every size survive Encode, EncodeFill and ReadFrame whole,
// including the large ones ReadFrame hands over in its own buffer; after
// Release the buffer serves the next message.
func TestEncodeReadFrame(t *testing.T) {
	var a wire.Assembler
	for i, n := range []int{0, 1, 1000, 16<<10 - 30, 16 << 10, 1 << 20, 2<<20 + 5} {
		payload := bytes.Repeat([]byte{byte(i + 1)}, n)
		v := map[string]int{"n": n}
		var m wire.Encoded
		var err error
		if i%2 == 0 {
			m, err = wire.Encode(uint64(i), "t.x", v, payload)
		} else {
			m, err = wire.EncodeFill(uint64(i), "t.x", v, n+10, func(b []byte) (int, error) {
				return copy(b, payload), io.EOF
			})
			if err != io.EOF {
				t.Fatalf("EncodeFill: %v, want fill's error", err)
			}
		}
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		m.SetID(uint64(100 + i))
		got := roundTrip(t, &a, m)
		m.Release()
		body, p, err := got.Split()
		var back map[string]int
		if err != nil || json.Unmarshal(body, &back) != nil || back["n"] != n {
			t.Fatalf("%d bytes: JSON %s, %v", n, body, err)
		}
		if got.ID != uint64(100+i) || got.Type != "t.x" || !bytes.Equal(p, payload) {
			t.Fatalf("%d bytes: message %d %q with %d payload bytes", n, got.ID, got.Type, len(p))
		}
		got.Release()
		got.Release() // a second Release does nothing
	}
}

// Frames that break the framing are refused with ErrMalformed, a message
// over Max with ErrTooLarge, and a reader's failure is returned as is.
func TestReadFrameRefuses(t *testing.T) {
	m, err := wire.Encode(1, "t.x", "v", make([]byte, 100))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		max    int
		frames [][]byte
		want   error
	}{
		{"short frame", 0, [][]byte{{1, 2, 3}}, wire.ErrMalformed},
		{"data before header", 0, [][]byte{m.Body}, wire.ErrMalformed},
		{"two headers", 0, [][]byte{m.Header, m.Header}, wire.ErrMalformed},
		{"empty type", 0, [][]byte{m.Header[:16]}, wire.ErrMalformed},
		{"too large", 50, [][]byte{m.Header, m.Body}, wire.ErrTooLarge},
	}
	for _, c := range cases {
		a := wire.Assembler{Max: c.max}
		var err error
		for _, f := range c.frames {
			if _, err = a.ReadFrame(bytes.NewReader(f)); err != nil {
				break
			}
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	var a wire.Assembler
	boom := errors.New("boom")
	if _, err := a.ReadFrame(iotest.ErrReader(boom)); err != boom {
		t.Errorf("a failing reader: %v", err)
	}
}
