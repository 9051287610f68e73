package roomstore_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
)

func TestEntryJSONIsTheCommandsForm(t *testing.T) {
	mod := time.Date(2026, 12, 3, 9, 35, 11, 904438961, time.FixedZone("CET", 3600))
	for _, c := range []struct {
		e    roomstore.Entry
		want string
	}{
		{roomstore.Entry{Name: "report.txt", Path: "docs/report.txt", Size: 11, ModTime: mod, ETag: "b-1"},
			`{"path":"docs/report.txt","name":"report.txt","type":"file","size":11,"modified":"2026-12-03T08:35:11.904438961Z","etag":"b-1"}`},
		{roomstore.Entry{Name: "img", Path: "docs/img", IsFolder: true},
			`{"path":"docs/img/","name":"img","type":"folder","size":0}`},
		{roomstore.Entry{IsFolder: true}, `{"path":"/","name":"","type":"folder","size":0}`},
	} {
		b, err := json.Marshal(c.e)
		if err != nil || string(b) != c.want {
			t.Errorf("Marshal(%+v) = %s, %v; want %s", c.e, b, err, c.want)
			continue
		}
		var back roomstore.Entry
		if err := json.Unmarshal(b, &back); err != nil || back.Path != c.e.Path || back.Name != c.e.Name || back.IsFolder != c.e.IsFolder ||
			back.Size != c.e.Size || !back.ModTime.Equal(c.e.ModTime) || back.ETag != c.e.ETag {
			t.Errorf("Unmarshal(%s) = %+v, %v; want %+v", b, back, err, c.e)
		}
	}
	var e roomstore.Entry
	if err := json.Unmarshal([]byte(`{"path":"x","type":"link"}`), &e); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("Unmarshal of an unknown type: %v, want fs.ErrInvalid", err)
	}
}
