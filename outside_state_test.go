package roomstore

import (
	"bytes"
	"compress/gzip"
	"maps"
	"strconv"
	"strings"
	"testing"
)

// TestASavedStateDecodesToWhatWasSaved: every path and tag comes back,
// the tag of a version the engine made without knowing it included, and
// a store of many files with long shared folders costs a few bytes a
// file.
func TestASavedStateDecodesToWhatWasSaved(t *testing.T) {
	known := map[string]string{
		"a.txt":                          `"1"`,
		"a.txt.bak":                      `"2"`,
		"dir/b":                          unknownTag,
		"dir/ü/ñ.txt":                    "",
		"z/" + strings.Repeat("x", 1000): `"3"`,
	}
	for i := range 100_000 {
		known["rooms/r1/uploads/2024/photos/img-"+strconv.Itoa(i)+".jpg"] = `"` + strconv.Itoa(i*7919) + `-` + strconv.Itoa(i) + `"`
	}
	data, err := encodeKnown(known)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeKnown(data)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, known) {
		t.Fatalf("decoded %d entries, saved %d, or some differ", len(got), len(known))
	}
	if perFile := len(data) / len(known); perFile > 16 {
		t.Errorf("%d bytes a file", perFile)
	}
	empty, err := encodeKnown(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeKnown(empty); err != nil || len(got) != 0 {
		t.Errorf("an empty state decodes to %v, %v", got, err)
	}
}

// TestADamagedStateDoesNotDecode: whatever is cut off, added or not a
// state of this version is refused rather than half taken.
func TestADamagedStateDoesNotDecode(t *testing.T) {
	data, err := encodeKnown(map[string]string{"a": "1", "b/c": "2"})
	if err != nil {
		t.Fatal(err)
	}
	raw := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = w.Write([]byte(s))
		_ = w.Close()
		return b.Bytes()
	}
	for name, d := range map[string][]byte{
		"not gzip":        []byte("not a state"),
		"cut off":         data[:len(data)-9],
		"another format":  raw("roomstore known 2\n\x00"),
		"fewer entries":   raw(knownMagic + "\x03\x00\x01a\x01x"),
		"trailing bytes":  raw(knownMagic + "\x01\x00\x01a\x01xjunk"),
		"out of order":    raw(knownMagic + "\x02\x00\x01b\x01x\x00\x01a\x01x"),
		"shares too much": raw(knownMagic + "\x01\x05\x01a\x01x"),
		"a huge length":   raw(knownMagic + "\x01\x00\xff\xff\xff\xff\x0fa"),
	} {
		if got, err := decodeKnown(d); err == nil {
			t.Errorf("%s: decoded %v", name, got)
		}
	}
}
