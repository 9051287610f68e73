package events_nats

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/roomstore/roomstore/events"
)

var _ events.Coordinator = (*Transport)(nil)

// namePattern is what a lease's or a state's name may be (see
// events.Coordinator).
var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// leaseRaces bounds how often Lease reads the lease again after another
// origin changed it between Lease's read and its write: each time, some
// origin's write went through, so the lease has a holder.
const leaseRaces = 3

// lease is the value of a lease's key: its holder and until when, by the
// holder's clock.
type lease struct {
	Origin  string    `json:"origin"`
	Expires time.Time `json:"expires"`
}

// LeaseBucket returns the name of the JetStream key-value bucket that
// holds the leases of every store (see Lease): PREFIX_LEASES, PREFIX as in
// Stream. Its keys are HASH.NAME, HASH as in Subject.
func (t *Transport) LeaseBucket() string { return t.bucket("LEASES") }

// StateStream returns the name of the JetStream stream that holds the
// states of every store (see SaveState): PREFIX_STATES, PREFIX as in
// Stream, on the subjects PREFIX.states.>.
func (t *Transport) StateStream() string { return t.bucket("STATES") }

func (t *Transport) bucket(kind string) string {
	return strings.ToUpper(strings.ReplaceAll(t.cfg.prefix, ".", "_")) + "_" + kind
}

// key names the lease or state name of store in its bucket, without the
// store's id (see Subject).
func key(store, name string) string { return storeHash(store)[:32] + "." + name }

// Lease implements events.Coordinator with a key of LeaseBucket per lease,
// which holds its holder and its expiry (by the holder's clock, compared
// with this host's; the bucket keeps keys for ever, so an expired lease is
// one whose expiry has passed, not a missing key). Every write is a
// compare-and-swap on the key's revision: Create when the key is absent
// (or deleted by Release), Update of the revision read when the lease is
// expired or origin's. Of two origins that write one revision, the server
// takes one write and refuses the other, which reads the lease again. The
// bucket is created, with file storage and WithReplicas servers, by the
// first call that finds none.
func (t *Transport) Lease(ctx context.Context, store, name, origin string, ttl time.Duration) (bool, error) {
	if err := t.checkCoordination(store, name); err != nil {
		return false, err
	}
	if origin == "" || ttl <= 0 {
		return false, fmt.Errorf("events_nats: lease %s needs an origin and a positive ttl: %w", name, fs.ErrInvalid)
	}
	kv, err := t.leases(ctx)
	if err != nil {
		return false, fmt.Errorf("events_nats: lease %s: %w", name, err)
	}
	k := key(store, name)
	for range leaseRaces {
		now := time.Now()
		value, err := json.Marshal(lease{Origin: origin, Expires: now.Add(ttl)})
		if err != nil {
			return false, fmt.Errorf("events_nats: lease %s: %w", name, err)
		}
		entry, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			_, err = kv.Create(ctx, k, value)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // another origin was first: read its lease
			}
			if err != nil {
				return false, t.coordinationFailed("lease", name, err)
			}
			return true, nil
		}
		if err != nil {
			return false, t.coordinationFailed("lease", name, err)
		}
		var held lease
		if json.Unmarshal(entry.Value(), &held) == nil && held.Origin != origin && now.Before(held.Expires) {
			return false, nil
		}
		// Expired, origin's own, or unreadable (then nobody holds it).
		_, err = kv.Update(ctx, k, value, entry.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return false, t.coordinationFailed("lease", name, err)
		}
		return true, nil
	}
	return false, nil
}

// Release implements events.Coordinator: it deletes the lease's key if
// origin holds the lease, on the condition that the key has not changed
// since it was read.
func (t *Transport) Release(ctx context.Context, store, name, origin string) error {
	if err := t.checkCoordination(store, name); err != nil {
		return err
	}
	if origin == "" {
		return fmt.Errorf("events_nats: release %s needs an origin: %w", name, fs.ErrInvalid)
	}
	kv, err := t.leases(ctx)
	if err != nil {
		return fmt.Errorf("events_nats: release %s: %w", name, err)
	}
	k := key(store, name)
	entry, err := kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return t.coordinationFailed("release", name, err)
	}
	var held lease
	if json.Unmarshal(entry.Value(), &held) != nil || held.Origin != origin {
		return nil
	}
	err = kv.Delete(ctx, k, jetstream.LastRevision(entry.Revision()))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) { // else: taken over meanwhile
		return t.coordinationFailed("release", name, err)
	}
	return nil
}

// SaveState implements events.Coordinator with a JetStream stream,
// StateStream, that holds the states of every store. A state is stored
// as chunks (small enough for the server's payload limit) on a subject of
// its own, then a manifest (the chunks' sequences, the size and SHA-256
// of the whole) on the state's subject, PREFIX.states.HASH.NAME, HASH as
// in Subject: the manifest names the state, and is published only on the
// condition that the subject's last message is still the manifest read
// before, so that of two saves at once the later replaces the earlier
// whole. The chunks and manifests replaced are then purged. The stream is
// created, with file storage and WithReplicas servers, by the first
// SaveState that finds none.
func (t *Transport) SaveState(ctx context.Context, store, name string, data []byte) error {
	if err := t.checkCoordination(store, name); err != nil {
		return err
	}
	st, err := t.states(ctx, true)
	if err != nil {
		return fmt.Errorf("events_nats: save state %s: %w", name, err)
	}
	subject := t.stateSubject(store, name)
	old, last, err := readManifest(ctx, st, subject)
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return t.coordinationFailed("save state", name, err)
	}
	gen := rand.Text()
	sum := sha256.Sum256(data)
	m := manifest{V: manifestVersion, Gen: gen, Size: len(data), SHA256: hex.EncodeToString(sum[:])}
	chunk := t.chunkSize()
	for off := 0; off < len(data); off += chunk {
		ack, err := t.js.Publish(ctx, subject+"."+gen, data[off:min(off+chunk, len(data))])
		if err != nil {
			t.purge(st, subject+"."+gen, 0)
			return t.coordinationFailed("save state", name, err)
		}
		m.Chunks = append(m.Chunks, ack.Sequence)
	}
	value, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("events_nats: save state %s: %w", name, err)
	}
	replaced := []string{}
	if old.Gen != "" {
		replaced = append(replaced, old.Gen)
	}
	for attempt := 0; ; attempt++ {
		_, err = t.js.Publish(ctx, subject, value, jetstream.WithExpectLastSequencePerSubject(last))
		if !isWrongLastSequence(err) || attempt == leaseRaces {
			break
		}
		// Another save got in since: this one replaces it.
		if old, last, err = readManifest(ctx, st, subject); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if old.Gen != "" {
			replaced = append(replaced, old.Gen)
		}
	}
	if err != nil {
		t.purge(st, subject+"."+gen, 0)
		return t.coordinationFailed("save state", name, err)
	}
	for _, g := range replaced {
		t.purge(st, subject+"."+g, 0)
	}
	t.purge(st, subject, 1)
	return nil
}

// LoadState implements events.Coordinator: it reads the state's manifest,
// then its chunks, and checks their size and digest, so that a state
// replaced while it was read fails rather than mixes. It creates nothing
// on the server: without StateStream, no state was saved.
func (t *Transport) LoadState(ctx context.Context, store, name string) ([]byte, error) {
	if err := t.checkCoordination(store, name); err != nil {
		return nil, err
	}
	st, err := t.states(ctx, false)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("events_nats: load state %s: %w (%w)", name, fs.ErrNotExist, err)
	}
	if err != nil {
		return nil, fmt.Errorf("events_nats: load state %s: %w", name, err)
	}
	subject := t.stateSubject(store, name)
	m, _, err := readManifest(ctx, st, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("events_nats: load state %s: %w (%w)", name, fs.ErrNotExist, err)
	}
	if err != nil {
		return nil, t.coordinationFailed("load state", name, err)
	}
	data := make([]byte, 0, m.Size)
	for _, seq := range m.Chunks {
		msg, err := st.GetMsg(ctx, seq)
		if err == nil && msg.Subject != subject+"."+m.Gen {
			err = errors.New("a chunk is another's")
		}
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			err = errors.New("the state was replaced while it was read")
		}
		if err != nil {
			return nil, t.coordinationFailed("load state", name, err)
		}
		data = append(data, msg.Data...)
	}
	if sum := sha256.Sum256(data); len(data) != m.Size || hex.EncodeToString(sum[:]) != m.SHA256 {
		return nil, fmt.Errorf("events_nats: load state %s: its chunks do not add up to it", name)
	}
	return data, nil
}

// manifestVersion is the format of manifest; another is an error.
const manifestVersion = 1

// manifest is the last message on a state's subject: which chunks, in
// order, make the state, and what they must add up to.
type manifest struct {
	V      int      `json:"v"`
	Gen    string   `json:"gen"`    // the chunks' subject is the state's plus "." + Gen
	Chunks []uint64 `json:"chunks"` // their stream sequences
	Size   int      `json:"size"`
	SHA256 string   `json:"sha256"`
}

// readManifest returns the state's manifest and its stream sequence, or
// jetstream.ErrMsgNotFound (and sequence 0) when none was saved.
func readManifest(ctx context.Context, st jetstream.Stream, subject string) (manifest, uint64, error) {
	msg, err := st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return manifest{}, 0, err
	}
	var m manifest
	if err := json.Unmarshal(msg.Data, &m); err != nil || m.V != manifestVersion || !genPattern.MatchString(m.Gen) {
		return manifest{}, msg.Sequence, fmt.Errorf("the manifest at %d is not one of version %d", msg.Sequence, manifestVersion)
	}
	return m, msg.Sequence, nil
}

var genPattern = regexp.MustCompile(`^[A-Z2-7]+$`) // rand.Text's alphabet

// stateSubject is the subject of the manifests of the state name of store.
func (t *Transport) stateSubject(store, name string) string {
	return t.cfg.prefix + ".states." + key(store, name)
}

// chunkSize is how much of a state one message carries: 256 KiB, or less
// when the server's payload limit is lower.
func (t *Transport) chunkSize() int {
	n := 256 << 10
	if max := int(t.nc.MaxPayload()) - 8<<10; max > 0 && max < n {
		n = max
	}
	return n
}

// purge drops the messages of subject but the last keep from the state
// stream, briefly and at best: what it leaves is purged by the next save.
func (t *Transport) purge(st jetstream.Stream, subject string, keep uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), attemptWait)
	defer cancel()
	opts := []jetstream.StreamPurgeOpt{jetstream.WithPurgeSubject(subject)}
	if keep > 0 {
		opts = append(opts, jetstream.WithPurgeKeep(keep))
	}
	_ = st.Purge(ctx, opts...)
}

// isWrongLastSequence reports whether err is the server's refusal of a
// message whose expected last sequence is not the subject's.
func isWrongLastSequence(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) &&
		(api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// checkCoordination checks the arguments every Coordinator method takes,
// and that the transport is open.
func (t *Transport) checkCoordination(store, name string) error {
	if store == "" || !namePattern.MatchString(name) {
		return fmt.Errorf("events_nats: coordination needs a store and a name of [A-Za-z0-9_-], got name %q: %w", name, fs.ErrInvalid)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("events_nats: coordination: %w", fs.ErrClosed)
	}
	return nil
}

// coordinationFailed wraps the error of an operation on a bucket, and
// forgets the buckets, so that the next call looks them up again: one may
// have been deleted.
func (t *Transport) coordinationFailed(op, name string, err error) error {
	t.coordMu.Lock()
	t.leaseKV, t.stateStream = nil, nil
	t.coordMu.Unlock()
	return fmt.Errorf("events_nats: %s %s: %w", op, name, err)
}

// leases returns the lease bucket, creating it if there is none.
func (t *Transport) leases(ctx context.Context) (jetstream.KeyValue, error) {
	t.coordMu.Lock()
	kv := t.leaseKV
	t.coordMu.Unlock()
	if kv != nil {
		return kv, nil
	}
	name := t.LeaseBucket()
	kv, err := t.js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = t.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      name,
			Description: "roomstore: which engine of each store does what (leases)",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    t.cfg.replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // another transport was first
			kv, err = t.js.KeyValue(ctx, name)
		}
	}
	if err != nil {
		return nil, err
	}
	t.coordMu.Lock()
	t.leaseKV = kv
	t.coordMu.Unlock()
	return kv, nil
}

// states returns the state stream, creating it if there is none and
// create is set (else failing with jetstream.ErrStreamNotFound).
func (t *Transport) states(ctx context.Context, create bool) (jetstream.Stream, error) {
	t.coordMu.Lock()
	st := t.stateStream
	t.coordMu.Unlock()
	if st != nil {
		return st, nil
	}
	name, subjects := t.StateStream(), t.cfg.prefix+".states.>"
	st, err := t.js.Stream(ctx, name)
	if create && errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = t.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        name,
			Description: "roomstore: what the engines of each store knew of it (states)",
			Subjects:    []string{subjects},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    t.cfg.replicas,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another transport was first
			st, err = t.js.Stream(ctx, name)
		}
	}
	if err != nil {
		return nil, err
	}
	if got := st.CachedInfo().Config.Subjects; !slices.Equal(got, []string{subjects}) {
		// Another prefix maps to the same stream name (WithPrefix).
		return nil, fmt.Errorf("stream %s exists for subjects %v, not %s: use a prefix of your own", name, got, subjects)
	}
	t.coordMu.Lock()
	t.stateStream = st
	t.coordMu.Unlock()
	return st, nil
}
