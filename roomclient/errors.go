package roomclient

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/roomstore/roomstore"
)

// Errors of the client besides the io/fs and roomstore sentinels.
var (
	// ErrForbidden reports a room server that refused the connection with
	// HTTP 403: a bad, expired or missing token, or a token for another
	// room. It is never retried.
	ErrForbidden = errors.New("forbidden by the room server (HTTP 403)")
	// ErrDisconnected reports a call made while the client has no
	// connection, or one in flight when the connection dropped. With
	// Options.Reconnect the client may be connected again later; the call
	// was not retried (a call in flight may or may not have taken effect).
	ErrDisconnected = errors.New("disconnected")
	// ErrProtocol reports a server message that breaks the protocol (an
	// unexpected chunk, more bytes than announced): the call fails and,
	// where the framing itself broke, the connection is dropped.
	ErrProtocol = errors.New("protocol error")
	// ErrRateLimited reports a call the server refused because the
	// participant's identity started more calls than its rate allows
	// (roomserver.Options.CallRate): nothing was done; retry later.
	ErrRateLimited = errors.New(rateLimited)
	// ErrBusy reports a call the server refused because a budget of the
	// whole server is spent (roomserver.Options.MaxOpenStreams): nothing
	// was done; retry later.
	ErrBusy = errors.New(serverBusy)
)

// serverBusy is in the text of the server's refusals for a budget of its
// own.
const serverBusy = "server busy"

// rateLimited begins the text of the server's refusal of a call over the
// identity's rate.
const rateLimited = "rate limited"

// Error is an error reply of the room server: an HTTP-like Code and the
// server's Text. Calls return it inside an *fs.PathError, so errors.As
// reaches it, and errors.Is matches it with the sentinel the engine would
// have returned for the same refusal:
//
//	400 fs.ErrInvalid
//	403 fs.ErrPermission
//	404 fs.ErrNotExist
//	409 roomstore.ErrIsFolder, roomstore.ErrNotFolder or roomstore.ErrConflict
//	    when the text ends with theirs, otherwise fs.ErrExist when it
//	    speaks of existing, otherwise roomstore.ErrConflict
//	412 roomstore.ErrPrecondition (the file is not the version an
//	    IfMatch or IfNoneMatch requires)
//	429 ErrRateLimited when the text says so (the identity's call rate
//	    is spent), otherwise roomstore.ErrTooManyHandles (a budget of
//	    handles, streams or connections)
//	501 errors.ErrUnsupported
//	413 roomstore.ErrTooManyEntries (a folder too big to list)
//	507 roomstore.ErrQuotaExceeded
//	503 roomstore.ErrStoreUnavailable when the text says so, ErrBusy
//	    when it says "server busy", otherwise fs.ErrClosed (the server or
//	    the room is shutting down)
//
// A 500 matches no sentinel. A 403 that refuses a right the participant's
// policy does not grant ("no write access", "no read access to a/b")
// wraps the *roomstore.AccessError an Engine would have returned, so that
// errors.As finds it.
type Error struct {
	Code int    // HTTP-like status code of the reply
	Text string // the server's text, verbatim

	reason string                 // Text without the server's "op path: " prefix
	access *roomstore.AccessError // the refusal of a right, if that is what it is
}

// newError builds the Error for a reply about path p.
func newError(code int, text, p string) *Error {
	e := &Error{Code: code, Text: text, reason: text}
	// The server writes "<op> <path>: <reason>" (the root as "/"); the
	// PathError around this Error names op and path again, so keep only
	// the reason.
	if p == "" {
		p = "/"
	}
	if i := strings.Index(text, " "+p+": "); i > 0 && !strings.Contains(text[:i], " ") {
		e.reason = text[i+len(p)+3:]
	}
	if e.reason == "" {
		e.reason = fmt.Sprintf("room server error %d", code)
	}
	if code == 403 {
		e.access = accessError(e.reason)
	}
	return e
}

// accessError reads a refused right from a reason: "no read access" or
// "no write access", and " to PATH" when it names another path.
func accessError(reason string) *roomstore.AccessError {
	rest, ok := strings.CutPrefix(reason, "no ")
	if !ok {
		return nil
	}
	for _, r := range []roomstore.Right{roomstore.Read, roomstore.Write} {
		tail, ok := strings.CutPrefix(rest, r.String()+" access")
		if !ok {
			continue
		}
		if tail == "" {
			return &roomstore.AccessError{Right: r}
		}
		if p, ok := strings.CutPrefix(tail, " to "); ok && p != "" {
			return &roomstore.AccessError{Right: r, Path: p}
		}
	}
	return nil
}

// Unwrap returns the *roomstore.AccessError of a refused right, or nil.
func (e *Error) Unwrap() error {
	if e.access == nil {
		return nil
	}
	return e.access
}

// Error returns the server's reason.
func (e *Error) Error() string {
	if e.reason == "" {
		return e.Text
	}
	return e.reason
}

// Is reports whether target is the sentinel e stands for (see Error).
func (e *Error) Is(target error) bool {
	s := e.sentinel()
	return s != nil && s == target
}

func (e *Error) sentinel() error {
	switch e.Code {
	case 400:
		return fs.ErrInvalid
	case 403:
		return fs.ErrPermission
	case 404:
		return fs.ErrNotExist
	case 409:
		for _, s := range []error{roomstore.ErrIsFolder, roomstore.ErrNotFolder, roomstore.ErrConflict, fs.ErrExist} {
			if strings.HasSuffix(e.Text, s.Error()) {
				return s
			}
		}
		if strings.Contains(e.Text, "exist") {
			return fs.ErrExist
		}
		return roomstore.ErrConflict
	case 429:
		if strings.HasPrefix(e.reason, rateLimited) {
			return ErrRateLimited
		}
		return roomstore.ErrTooManyHandles
	case 412:
		return roomstore.ErrPrecondition
	case 501:
		return errors.ErrUnsupported
	case 413:
		return roomstore.ErrTooManyEntries
	case 507:
		return roomstore.ErrQuotaExceeded
	case 503:
		switch {
		case strings.Contains(e.Text, roomstore.ErrStoreUnavailable.Error()):
			return roomstore.ErrStoreUnavailable
		case strings.Contains(e.reason, serverBusy):
			return ErrBusy
		}
		return fs.ErrClosed
	}
	return nil
}

// pathError wraps err with the caller's operation and path.
func pathError(op, p string, err error) error {
	return &fs.PathError{Op: op, Path: p, Err: err}
}

// protocolError is an ErrProtocol with a reason.
func protocolError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// classError is an error of the client's own with a message of its own
// that matches a sentinel under errors.Is.
type classError struct {
	msg string
	is  error
}

func (e *classError) Error() string        { return e.msg }
func (e *classError) Is(target error) bool { return target == e.is }

// errClientClosed fails the calls after Close, and those Close cut short.
var errClientClosed error = &classError{"client closed", fs.ErrClosed}
