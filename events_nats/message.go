package events_nats

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/roompath"
)

// messageVersion is the format of the messages below; a message of
// another version is malformed to this one.
const messageVersion = 1

// message is what one NATS message carries: one event, or under load
// several consecutive events of one engine, in the order it published them.
type message struct {
	V      int         `json:"v"`
	Store  string      `json:"store"`  // storeHash of the store
	Origin string      `json:"origin"` // the publishing engine
	Events []wireEvent `json:"events"`
}

// wireEvent is one events.Event in a message. Seq numbers the origin's
// events from 1 in publish order, so that receivers drop repeats and see
// where events were given up on.
type wireEvent struct {
	Seq           uint64    `json:"seq"`
	ID            string    `json:"id"`
	Type          string    `json:"type"`
	Path          string    `json:"path"`
	SourcePath    string    `json:"src,omitempty"`
	ParticipantID string    `json:"pid,omitempty"`
	Size          int64     `json:"size,omitempty"`
	ETag          string    `json:"etag,omitempty"`
	Time          time.Time `json:"time"`
}

// errMalformed marks a message this package cannot deliver.
var errMalformed = errors.New("malformed event message")

// storeHash names a store on the wire without revealing its id (which may
// be a host path): hex SHA-256 of the id.
func storeHash(store string) string {
	h := sha256.Sum256([]byte(store))
	return hex.EncodeToString(h[:])
}

// decode parses and checks a message: every event of a known type, with a
// clean path (and source path for a move), seqs ascending.
func decode(data []byte) (message, error) {
	var m message
	if err := json.Unmarshal(data, &m); err != nil {
		return message{}, fmt.Errorf("%w: %w", errMalformed, err)
	}
	if m.V != messageVersion {
		return message{}, fmt.Errorf("%w: version %d, want %d", errMalformed, m.V, messageVersion)
	}
	if m.Store == "" || m.Origin == "" || len(m.Events) == 0 {
		return message{}, fmt.Errorf("%w: no store, origin or events", errMalformed)
	}
	var last uint64
	for i, e := range m.Events {
		if e.Seq <= last || e.ID == "" {
			return message{}, fmt.Errorf("%w: event %d has seq %d after %d, or no id", errMalformed, i, e.Seq, last)
		}
		last = e.Seq
		if err := checkEvent(e); err != nil {
			return message{}, fmt.Errorf("%w: event %d: %w", errMalformed, i, err)
		}
	}
	return m, nil
}

// checkEvent holds a remote event to what a local engine could publish.
func checkEvent(e wireEvent) error {
	switch e.Type {
	case "file.updated", "file.deleted":
		if e.SourcePath != "" {
			return fmt.Errorf("a %s event with a source path", e.Type)
		}
	case "file.moved":
		if err := checkPath(e.SourcePath); err != nil {
			return fmt.Errorf("source: %w", err)
		}
	default:
		return fmt.Errorf("unknown type %q", e.Type)
	}
	if e.Size < 0 {
		return fmt.Errorf("negative size %d", e.Size)
	}
	return checkPath(e.Path)
}

func checkPath(p string) error {
	clean, err := roompath.Clean(p, roompath.TargetFile)
	if err != nil {
		return err
	}
	if clean != p {
		return fmt.Errorf("path %q is not a clean file path", p)
	}
	return nil
}

func toWire(seq uint64, e events.Event) wireEvent {
	return wireEvent{Seq: seq, ID: e.ID, Type: e.Type, Path: e.Path, SourcePath: e.SourcePath,
		ParticipantID: e.ParticipantID, Size: e.Size, ETag: e.ETag, Time: e.Time}
}

func (w wireEvent) event(origin string) events.Event {
	return events.Event{Type: w.Type, Path: w.Path, SourcePath: w.SourcePath, ParticipantID: w.ParticipantID,
		Size: w.Size, ETag: w.ETag, Time: w.Time, ID: w.ID, Origin: origin}
}
