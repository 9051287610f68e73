package roomstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/roompath"
)

// Right is what a Policy grants on a path.
type Right uint8

const (
	// Read lets a participant learn of a path and read it: Exists, Stat,
	// List, Walk, FS, Download, OpenReader, ServeFile and DownloadURL.
	Read Right = 1 + iota
	// Write lets a participant change a path: Open (and Close), Upload,
	// Delete, RemoveAll (every file it removes) and Move (every file at
	// its source and at its destination).
	Write
)

// String returns "read" or "write".
func (r Right) String() string {
	switch r {
	case Read:
		return "read"
	case Write:
		return "write"
	}
	return fmt.Sprintf("Right(%d)", uint8(r))
}

// Policy decides what one participant may do with a store's files. A
// context that carries one (WithPolicy) restricts every Engine call made
// with it; a context without one restricts nothing. The paths a Policy
// is asked about are clean (see roompath.Clean): no leading or trailing
// slash, "" for the root. Its methods are called with the context of the
// call they decide, may be called concurrently, and should be quick: List
// and Walk ask about every entry they return, and a room server asks
// Allow about every event before it tells a participant. An error
// (a database that is down) fails the call with that error and never
// counts as a grant.
type Policy interface {
	// Allow reports whether the participant has right r on the file at
	// path (or, for a missing path, on the file it would be).
	Allow(ctx context.Context, r Right, path string) (bool, error)
	// Beneath describes right r on the paths beneath the folder at
	// folder ("" for the whole store): see Scope.
	Beneath(ctx context.Context, r Right, folder string) (Scope, error)
}

// Scope is what a Policy grants beneath a folder.
type Scope struct {
	// All says that every path beneath the folder is granted.
	All bool
	// Within, when All is false, holds path prefixes outside which
	// nothing beneath the folder is granted (nil: nothing is). It may
	// say more than is granted: Allow decides each path within. The
	// engine ignores a prefix that does not lie beneath the folder
	// (begin with the folder's path and a slash, or for the root with
	// anything).
	Within []string
}

// Empty reports whether the Scope grants nothing.
func (s Scope) Empty() bool { return !s.All && len(s.Within) == 0 }

type policyKey struct{ p Policy }

// WithPolicy returns a context whose Engine calls p restricts. Policies
// nest: a context that already carries one grants only what both grant,
// so code handed a restricted context cannot widen it. A nil p restricts
// nothing more.
func WithPolicy(ctx context.Context, p Policy) context.Context {
	if p == nil {
		return ctx
	}
	if outer := PolicyFrom(ctx); outer != nil {
		p = both{outer, p}
	}
	return context.WithValue(ctx, policyKey{}, policyKey{p})
}

// both grants what a and b both grant.
type both struct{ a, b Policy }

func (p both) Allow(ctx context.Context, r Right, path string) (bool, error) {
	ok, err := p.a.Allow(ctx, r, path)
	if err != nil || !ok {
		return false, err
	}
	return p.b.Allow(ctx, r, path)
}

func (p both) Beneath(ctx context.Context, r Right, folder string) (Scope, error) {
	sa, err := p.a.Beneath(ctx, r, folder)
	if err != nil || sa.Empty() {
		return Scope{}, err
	}
	sb, err := p.b.Beneath(ctx, r, folder)
	switch {
	case err != nil || sb.Empty():
		return Scope{}, err
	case sa.All:
		return sb, nil
	case sb.All:
		return sa, nil
	}
	// Both narrow it: what either leaves out is out, and within the rest
	// Allow decides.
	return Scope{Within: slices.Concat(sa.Within, sb.Within)}, nil
}

// PolicyFrom returns the Policy in ctx, or nil.
func PolicyFrom(ctx context.Context) Policy {
	k, _ := ctx.Value(policyKey{}).(policyKey)
	return k.p
}

// FullAccess is the Policy that grants everything; a nil Policy does the
// same.
var FullAccess Policy = fullAccess{}

// NoAccess is the Policy that grants nothing: every call fails with an
// *AccessError.
var NoAccess Policy = noAccess{}

type fullAccess struct{}

func (fullAccess) Allow(context.Context, Right, string) (bool, error) { return true, nil }
func (fullAccess) Beneath(context.Context, Right, string) (Scope, error) {
	return Scope{All: true}, nil
}

type noAccess struct{}

func (noAccess) Allow(context.Context, Right, string) (bool, error)    { return false, nil }
func (noAccess) Beneath(context.Context, Right, string) (Scope, error) { return Scope{}, nil }

// AccessError is the error of a call that the context's Policy refused;
// errors.Is(err, fs.ErrPermission) holds for it. The *fs.PathError around
// it names the call and its path; Path names the file refused when that
// is another one (a file beneath a folder that RemoveAll or Move would
// change, or Move's destination), or is "" when the refused file is one
// the participant may not know of.
type AccessError struct {
	Right Right
	Path  string
}

// Error says which right is missing, and where when Path is set.
func (e *AccessError) Error() string {
	if e.Path == "" {
		return "no " + e.Right.String() + " access"
	}
	return "no " + e.Right.String() + " access to " + e.Path
}

// Is reports whether target is fs.ErrPermission.
func (e *AccessError) Is(target error) bool { return target == fs.ErrPermission }

// gate is the policy of one call and its context; a gate without a
// policy restricts nothing.
type gate struct {
	ctx  context.Context
	p    Policy
	memo map[string]bool // with memoized: which folders are visible
}

// gateOf returns the gate of a call made with ctx.
func gateOf(ctx context.Context) gate { return gate{ctx: ctx, p: PolicyFrom(ctx)} }

// memoized returns g keeping what it learns of folders for the rest of
// the call (a listing, a walk), which must not outlive the call: a
// later call asks the policy and the store anew.
func (g gate) memoized() gate {
	if g.p != nil && g.memo == nil {
		g.memo = map[string]bool{}
	}
	return g
}

// remember keeps whether the folder clean is visible, if g keeps that.
func (g gate) remember(clean string, visible bool) {
	if g.memo != nil {
		g.memo[clean] = visible
	}
}

// open reports whether the gate restricts nothing.
func (g gate) open() bool { return g.p == nil }

// allow returns nil when r is granted on the file at clean, an
// *AccessError when it is not, or the policy's failure.
func (g gate) allow(r Right, clean string) error {
	ok, err := g.p.Allow(g.ctx, r, clean)
	switch {
	case err != nil:
		return fmt.Errorf("access policy: %w", err)
	case !ok:
		return &AccessError{Right: r}
	}
	return nil
}

// allowed is allow as a boolean, with the policy's failure.
func (g gate) allowed(r Right, clean string) (bool, error) {
	err := g.allow(r, clean)
	var ae *AccessError
	if errors.As(err, &ae) {
		return false, nil
	}
	return err == nil, err
}

// beneath is the policy's Scope of r beneath the folder clean, with the
// prefixes that do not lie beneath it dropped.
func (g gate) beneath(r Right, clean string) (Scope, error) {
	s, err := g.p.Beneath(g.ctx, r, clean)
	if err != nil {
		return Scope{}, fmt.Errorf("access policy: %w", err)
	}
	if s.All || clean == "" {
		return s, nil
	}
	within := s.Within[:0:0]
	for _, p := range s.Within {
		if strings.HasPrefix(p, clean+"/") {
			within = append(within, p)
		}
	}
	s.Within = within
	return s, nil
}

// seen is what a reader may learn of a path.
type seen int

const (
	seenNothing  seen = iota // refuse the call
	seenAll                  // the path, and everything beneath it
	seenFiltered             // a folder, whose entries must be filtered
	seenAbsent               // something it may not see, where it would be told that nothing is
)

// see decides what the gate lets a reader learn of clean, given the
// backend's answer to a Stat of it (info and err; the root always
// exists). A file is seen when Read is allowed on it; a folder when
// everything beneath it is granted, or something it holds is readable.
// What a reader may not see is, for it, either nothing (when it may
// read a file at clean or everything beneath it, as it would be told
// were nothing there) or refused: a reader learns the same of a path it
// cannot see whether or not anything is there. A failure of the store is
// told only to a reader that may read what is there.
func (e *Engine) see(g gate, clean string, info backend.Info, err error) (seen, error) {
	isFolder := clean == "" || err == nil && info.IsFolder
	if err == nil && !isFolder {
		ok, aerr := g.allowed(Read, clean)
		switch {
		case aerr != nil:
			return seenNothing, aerr
		case ok:
			return seenAll, nil
		}
		// Hidden, but where the reader may read everything beneath clean
		// it is told what it would be told were nothing there.
		s, serr := g.beneath(Read, clean)
		switch {
		case serr != nil:
			return seenNothing, serr
		case s.All:
			return seenAbsent, nil
		}
		return seenNothing, nil
	}
	s, serr := g.beneath(Read, clean)
	switch {
	case serr != nil:
		return seenNothing, serr
	case s.All:
		return seenAll, nil
	case !isFolder: // nothing there, or the store failed
		ok, aerr := g.allowed(Read, clean)
		if aerr != nil || !ok {
			return seenNothing, aerr
		}
		return seenAll, nil
	case clean == "":
		if s.Empty() {
			return seenNothing, nil
		}
		return seenFiltered, nil // the root is there whatever it holds
	}
	if !s.Empty() {
		ok, verr := e.holdsReadable(g, s)
		if verr != nil {
			return seenNothing, verr
		}
		if ok {
			return seenFiltered, nil
		}
	}
	return g.hidden(clean)
}

// seeing applies see to a call of op on p, whose clean path the backend
// described as info and err: an error for a reader that may see nothing
// of it, or whether, for that reader, nothing is there.
func (e *Engine) seeing(g gate, op, p, clean string, info backend.Info, err error) (absent bool, _ error) {
	switch v, gerr := e.see(g.memoized(), clean, info, err); v {
	case seenNothing:
		return false, denied(op, p, Read, gerr)
	case seenAbsent:
		return true, nil
	}
	return false, nil
}

// hidden is what a reader learns of a folder at clean in which it sees
// nothing, and beneath which not everything is granted: that nothing is
// there when it may read a file at clean (as it would be told were
// nothing there), else nothing at all.
func (g gate) hidden(clean string) (seen, error) {
	ok, err := g.allowed(Read, clean)
	switch {
	case err != nil:
		return seenNothing, err
	case ok:
		return seenAbsent, nil
	}
	return seenNothing, nil
}

// visible reports whether the folder clean, which exists, holds
// something the gate lets read. Each answer is kept for the rest of the
// call, so that a walk asks about each folder once.
func (e *Engine) visible(g gate, clean string) (bool, error) {
	if v, ok := g.memo[clean]; ok {
		return v, nil
	}
	s, err := g.beneath(Read, clean)
	switch {
	case err != nil:
		return false, err
	case s.All:
		g.remember(clean, true)
		return true, nil
	}
	v, err := e.holdsReadable(g, s)
	if err == nil {
		g.remember(clean, v)
	}
	return v, err
}

// holdsReadable reports whether a readable file lies within one of the
// prefixes of s: one listing of each folder the prefixes end in, and a
// look into the folders there that match one.
func (e *Engine) holdsReadable(g gate, s Scope) (bool, error) {
	var dirs []string
	rests := map[string][]string{} // folder -> the ends of the prefixes in it
	for _, prefix := range s.Within {
		dir, rest := "", prefix
		if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
			dir, rest = prefix[:i], prefix[i+1:]
		}
		if _, ok := rests[dir]; !ok {
			dirs = append(dirs, dir)
		}
		rests[dir] = append(rests[dir], rest)
	}
	for _, dir := range dirs {
		entries, err := e.list(g.ctx, dir)
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrNotFolder), errors.Is(err, fs.ErrInvalid):
			continue
		case err != nil:
			return false, err
		}
		for _, en := range entries {
			if !slices.ContainsFunc(rests[dir], func(rest string) bool { return strings.HasPrefix(en.Name, rest) }) {
				continue
			}
			var ok bool
			if en.IsFolder {
				ok, err = e.visible(g, en.Path)
			} else {
				ok, err = g.allowed(Read, en.Path)
			}
			if err != nil || ok {
				return ok, err
			}
		}
	}
	return false, nil
}

// filter keeps the entries the gate lets a reader see, in place.
func (e *Engine) filter(g gate, entries []Entry) ([]Entry, error) {
	out := entries[:0]
	for _, en := range entries {
		var ok bool
		var err error
		if en.IsFolder {
			ok, err = e.visible(g, en.Path)
		} else {
			ok, err = g.allowed(Read, en.Path)
		}
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, en)
		}
	}
	clear(entries[len(out):])
	return out, nil
}

// check returns nil when the gate lets r be done to the file at clean,
// an *AccessError or the policy's failure otherwise.
func (g gate) check(r Right, clean string) error {
	if g.p == nil {
		return nil
	}
	return g.allow(r, clean)
}

// treeWritable checks Write on every file beneath the folder src and, for
// a move, on where it would go beneath dst ("" when nothing moves). It
// returns whether each file must be checked again as it is changed (the
// policy does not grant all of both trees), or an *AccessError naming the
// first refused file if the participant may read it.
func (e *Engine) treeWritable(g gate, src, dst string) (perFile bool, err error) {
	if g.open() {
		return false, nil
	}
	dirs := []string{src}
	if dst != "" {
		dirs = append(dirs, dst)
	}
	all := true
	for _, dir := range dirs {
		s, err := g.beneath(Write, dir)
		switch {
		case err != nil:
			return false, err
		case s.Empty():
			// Nothing beneath may be written: refused with no walk to find
			// the first file (a move's destination is named).
			return false, unnamed(&AccessError{Right: Write, Path: dir}, src)
		}
		all = all && s.All
	}
	if all {
		return false, nil
	}
	for en, err := range e.walkClean(g.ctx, src) {
		if errors.Is(err, fs.ErrNotExist) {
			break // removed meanwhile
		}
		if err != nil {
			return false, err
		}
		if en.IsFolder {
			continue
		}
		for _, q := range []string{en.Path, moved(en.Path, src, dst)} {
			if q == "" {
				continue
			}
			err := g.allow(Write, q)
			var ae *AccessError
			if errors.As(err, &ae) {
				if ok, rerr := g.allowed(Read, q); rerr == nil && ok {
					ae.Path = q
				}
			}
			if err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

// treeFileWritable reports whether the file at p beneath src may be
// changed now, and moved to its place beneath dst ("" when nothing
// moves): the second look of a change that treeWritable says must look
// at each file.
func (g gate) treeFileWritable(p, src, dst string) (bool, error) {
	ok, err := g.allowed(Write, p)
	if err != nil || !ok || dst == "" {
		return ok, err
	}
	return g.allowed(Write, moved(p, src, dst))
}

// moved is where the file at p beneath src goes beneath dst, or "" when
// nothing moves.
func moved(p, src, dst string) string {
	if dst == "" {
		return ""
	}
	return dst + p[len(src):]
}

// denied is the error of a call on p that the gate refused: the
// policy's failure, or an *AccessError for r.
func denied(op, p string, r Right, err error) error {
	return &fs.PathError{Op: op, Path: p, Err: refused(r, err)}
}

// refused is the policy's failure err, or an *AccessError for r.
func refused(r Right, err error) error {
	if err == nil {
		err = &AccessError{Right: r}
	}
	return err
}

// reaches returns nil when the gate grants r on the file at clean or,
// beneath it, on everything (all) or on something (!all); else an
// *AccessError naming clean, which the caller gave. A participant must
// reach a path so to learn that nothing, or something it may not change,
// is there.
func (g gate) reaches(r Right, clean string, all bool) error {
	if g.open() {
		return nil
	}
	if ok, err := g.allowed(r, clean); err != nil || ok {
		return err
	}
	s, err := g.beneath(r, clean)
	switch {
	case err != nil:
		return err
	case all && !s.All, !all && s.Empty():
		return &AccessError{Right: r, Path: clean}
	}
	return nil
}

// unnamed drops clean, the call's own path (which the *fs.PathError
// around err names), from an *AccessError err.
func unnamed(err error, clean string) error {
	var ae *AccessError
	if errors.As(err, &ae) && ae.Path == clean {
		ae.Path = ""
	}
	return err
}

// named gives an *AccessError err the path it refused, which the caller
// gave.
func named(err error, p string) error {
	var ae *AccessError
	if errors.As(err, &ae) && ae.Path == "" {
		ae.Path = p
	}
	return err
}

// masked is err, a conflict at p (something there, a folder there, a file
// above it), unless the participant may not see what stands at p: then
// an *AccessError for Write, which tells no more than that the write was
// refused. Only conflicts are masked, and only for a restricted gate.
func (e *Engine) masked(g gate, p string, err error) error {
	if g.open() || !(errors.Is(err, fs.ErrExist) || errors.Is(err, ErrIsFolder) || errors.Is(err, ErrNotFolder)) {
		return err
	}
	// What stands in the way is p itself or, when nothing is at p, the
	// nearest thing above it.
	for at := p; ; at = roompath.Parent(at) {
		info, serr := e.b.Stat(g.ctx, at)
		if errors.Is(serr, fs.ErrNotExist) && at != "" {
			continue
		}
		if serr != nil {
			return err
		}
		v, verr := e.see(g.memoized(), at, info, nil)
		switch {
		case verr != nil:
			return verr
		case v == seenNothing, v == seenAbsent:
			return &AccessError{Right: Write}
		}
		return err
	}
}
