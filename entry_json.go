package roomstore

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"
	"time"
)

// entryJSON is the JSON form of an Entry.
type entryJSON struct {
	Path     string     `json:"path"`
	Name     string     `json:"name"`
	Type     string     `json:"type"` // "file" or "folder"
	Size     int64      `json:"size"`
	Modified *time.Time `json:"modified,omitempty"`
	ETag     string     `json:"etag,omitempty"`
}

// MarshalJSON encodes e as one object, the form the roomstore command's
// ls --json and stat --json print: {"path", "name", "type" ("file" or
// "folder"), "size", "modified" (RFC 3339 in UTC; absent when zero, as
// for a folder), "etag" (absent when empty)}. A folder's path ends in
// "/" (the root's is "/"), as ls shows it.
func (e Entry) MarshalJSON() ([]byte, error) {
	j := entryJSON{Path: e.Path, Name: e.Name, Type: "file", Size: e.Size, ETag: e.ETag}
	if e.IsFolder {
		j.Type = "folder"
		j.Path += "/"
	}
	if !e.ModTime.IsZero() {
		t := e.ModTime.UTC()
		j.Modified = &t
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON encodes. A "type" other than
// "file" or "folder" fails with an error wrapping fs.ErrInvalid.
func (e *Entry) UnmarshalJSON(b []byte) error {
	var j entryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	out := Entry{Name: j.Name, Path: j.Path, Size: j.Size, ETag: j.ETag}
	switch j.Type {
	case "file":
	case "folder":
		out.IsFolder = true
		out.Path = strings.TrimSuffix(j.Path, "/")
	default:
		return fmt.Errorf("roomstore: an entry of type %q: %w (want file or folder)", j.Type, fs.ErrInvalid)
	}
	if j.Modified != nil {
		out.ModTime = *j.Modified
	}
	*e = out
	return nil
}
