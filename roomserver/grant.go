package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/roomstore/roomstore"
)

// StorageGrant is MeshAgent's storage grant, the "storage" key of the api
// grant in a participant token, as the MeshAgent clients mint it
// (ApiScope({storage: StorageGrant({paths: [StoragePathGrant({path,
// readOnly})]})}) in TypeScript, the same in Python). It is a
// roomstore.Policy, decided exactly as MeshAgent decides it:
//
//   - Read is granted on a path when Paths is nil, or when the Path of
//     some entry is a prefix of it.
//   - Write is granted when Paths is nil; otherwise the first entry whose
//     Path is a prefix of the path decides (granted unless ReadOnly), and
//     a path that no entry matches is refused.
//
// Prefixes are plain string prefixes, no wildcards: "team/" covers the
// folder team and everything in it, "team" also "teammates.txt". A
// leading slash is ignored, as in every roomstore path ("/team/" is
// "team/", "/" or "" is every path). An empty, non-nil Paths grants
// nothing.
type StorageGrant struct {
	// Paths lists the prefixes the grant covers, in order; nil covers
	// every path, for reading and writing.
	Paths []StoragePathGrant `json:"paths,omitzero"`
}

// StoragePathGrant is one entry of a StorageGrant.
type StoragePathGrant struct {
	// Path is the prefix of the paths the entry covers.
	Path string `json:"path"`
	// ReadOnly refuses Write on the paths the entry decides.
	ReadOnly bool `json:"read_only,omitempty"`
}

// UnmarshalJSON reads an entry as the MeshAgent clients write it: path
// required, read_only (or readOnly) optional.
func (p *StoragePathGrant) UnmarshalJSON(b []byte) error {
	var raw struct {
		Path      *string `json:"path"`
		ReadOnly  *bool   `json:"read_only"`
		ReadOnly2 *bool   `json:"readOnly"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("a storage path grant: %w", err)
	}
	if raw.Path == nil {
		return errors.New("a storage path grant without a path")
	}
	*p = StoragePathGrant{Path: *raw.Path}
	switch {
	case raw.ReadOnly != nil:
		p.ReadOnly = *raw.ReadOnly
	case raw.ReadOnly2 != nil:
		p.ReadOnly = *raw.ReadOnly2
	}
	return nil
}

// prefix is the entry's path as roomstore paths are written: without a
// leading slash.
func (p StoragePathGrant) prefix() string { return strings.TrimPrefix(p.Path, "/") }

// CanRead reports whether the grant lets the participant read the file
// at path, a clean path (no leading slash).
func (g StorageGrant) CanRead(path string) bool {
	if g.Paths == nil {
		return true
	}
	for _, p := range g.Paths {
		if strings.HasPrefix(path, p.prefix()) {
			return true
		}
	}
	return false
}

// CanWrite reports whether the grant lets the participant write the file
// at path, a clean path (no leading slash).
func (g StorageGrant) CanWrite(path string) bool {
	if g.Paths == nil {
		return true
	}
	for _, p := range g.Paths {
		if strings.HasPrefix(path, p.prefix()) {
			return !p.ReadOnly
		}
	}
	return false
}

// Allow implements roomstore.Policy with CanRead and CanWrite.
func (g StorageGrant) Allow(_ context.Context, r roomstore.Right, path string) (bool, error) {
	switch r {
	case roomstore.Read:
		return g.CanRead(path), nil
	case roomstore.Write:
		return g.CanWrite(path), nil
	}
	return false, nil
}

// Beneath implements roomstore.Policy: what the grant decides for every
// path beneath folder.
func (g StorageGrant) Beneath(_ context.Context, r roomstore.Right, folder string) (roomstore.Scope, error) {
	switch {
	case r != roomstore.Read && r != roomstore.Write:
		return roomstore.Scope{}, nil
	case g.Paths == nil:
		return roomstore.Scope{All: true}, nil
	}
	dir := "" // every path beneath folder begins with dir
	if folder != "" {
		dir = folder + "/"
	}
	var within []string
	narrowReadOnly := false // an entry before, within the folder, refuses Write
	for _, p := range g.Paths {
		pre := p.prefix()
		switch {
		case strings.HasPrefix(dir, pre):
			// This entry matches every path beneath the folder: no later
			// entry decides anything there.
			switch {
			case r == roomstore.Read:
				return roomstore.Scope{All: true}, nil
			case p.ReadOnly:
				return roomstore.Scope{Within: within}, nil
			case !narrowReadOnly:
				return roomstore.Scope{All: true}, nil
			}
			return roomstore.Scope{Within: []string{dir}}, nil
		case strings.HasPrefix(pre, dir):
			if r == roomstore.Read || !p.ReadOnly {
				within = append(within, pre)
			} else {
				narrowReadOnly = true
			}
		}
	}
	return roomstore.Scope{Within: within}, nil
}

// apiScope is the part of an api grant's scope that roomstore reads.
type apiScope struct {
	Storage *StorageGrant `json:"storage"`
}

// grantsVersion is the last client version whose tokens predate api
// grants: tokens of that version or older may use storage without one.
var grantsVersion = [3]int{0, 3, 5}

// predatesGrants reports whether a token's version claim names a client
// version of 0.3.5 or older. A missing or unreadable version is a current
// one, as the MeshAgent clients read it.
func predatesGrants(v string) bool {
	v = strings.TrimPrefix(v, "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 3 {
		return false
	}
	var n [3]int
	for i, s := range parts {
		// A pre-release or build suffix ("0.3.5-rc1") is cut at the patch.
		if i == 2 {
			if j := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }); j >= 0 {
				s = s[:j]
			}
		}
		x, err := strconv.Atoi(s)
		if err != nil || x < 0 {
			return false
		}
		n[i] = x
	}
	for i := range n {
		if n[i] != grantsVersion[i] {
			return n[i] < grantsVersion[i]
		}
	}
	return true
}

// Storage returns the token's storage grant as MeshAgent reads it: that
// of its api grant, or nil when the token may not touch storage (an api
// grant without a storage key, or no api grant at all in a token whose
// version claim is newer than 0.3.5 or missing). A token without an api
// grant whose version predates api grants gets every path. A malformed
// api grant (a scope that is not an object, a storage key that is not
// one, a path entry without a path) is an error.
func (c *Claims) Storage() (*StorageGrant, error) {
	for _, g := range c.Grants {
		if g.Name != "api" {
			continue
		}
		raw, err := json.Marshal(g.Scope)
		if err != nil {
			return nil, fmt.Errorf("the api grant: %w", err)
		}
		var s apiScope
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("the api grant: %w", err)
		}
		return s.Storage, nil
	}
	if predatesGrants(c.Version) {
		return &StorageGrant{}, nil
	}
	return nil, nil
}

// Policy returns the roomstore.Policy of the token's storage grant
// (see Storage): the grant itself, or roomstore.NoAccess when the token
// may not touch storage.
func (c *Claims) Policy() (roomstore.Policy, error) {
	g, err := c.Storage()
	switch {
	case err != nil:
		return nil, err
	case g == nil:
		return roomstore.NoAccess, nil
	}
	return *g, nil
}
