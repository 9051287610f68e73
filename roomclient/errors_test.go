package roomclient_test

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomclient"
)

// TestErrorsMatchTheEngineSentinels: each error reply of the server
// matches the sentinel the engine returned for it (roomserver sends
// "<op> <path>: <sentinel text>" with an HTTP-like code).
func TestErrorsMatchTheEngineSentinels(t *testing.T) {
	for _, tc := range []struct {
		code int
		text string
		want error
	}{
		{400, "upload a//b: invalid path: path has an empty, '.' or '..' element", fs.ErrInvalid},
		{403, "write h: permission denied", fs.ErrPermission},
		{404, "stat x: file does not exist", fs.ErrNotExist},
		{404, "no open stream with that tool_call_id", fs.ErrNotExist},
		{409, "open f: file already exists", fs.ErrExist},
		{409, "move a: file already exists", fs.ErrExist},
		{409, "delete d: is a folder", roomstore.ErrIsFolder},
		{409, "upload f/x: not a folder", roomstore.ErrNotFolder},
		{409, "open f: conflicting concurrent write", roomstore.ErrConflict},
		{409, "tool_call_id already in use", roomstore.ErrConflict},
		{412, "upload f: precondition failed: the file is not the version required", roomstore.ErrPrecondition},
		{429, "open f: too many open handles", roomstore.ErrTooManyHandles},
		{429, "too many streams (at most 16 per connection)", roomstore.ErrTooManyHandles},
		{501, "download_url f: unsupported operation", errors.ErrUnsupported},
		{503, "list : store unavailable", roomstore.ErrStoreUnavailable},
		{503, "server shutting down", fs.ErrClosed},
	} {
		e := &roomclient.Error{Code: tc.code, Text: tc.text}
		if !errors.Is(e, tc.want) {
			t.Errorf("%d %q does not match %v", tc.code, tc.text, tc.want)
		}
		for _, other := range []error{fs.ErrInvalid, fs.ErrNotExist, fs.ErrExist, fs.ErrPermission, fs.ErrClosed,
			roomstore.ErrIsFolder, roomstore.ErrNotFolder, roomstore.ErrConflict, roomstore.ErrTooManyHandles,
			roomstore.ErrStoreUnavailable, errors.ErrUnsupported, roomstore.ErrPrecondition} {
			if other != tc.want && errors.Is(e, other) {
				t.Errorf("%d %q also matches %v", tc.code, tc.text, other)
			}
		}
	}
	if e := (&roomclient.Error{Code: 500, Text: "internal error"}); errors.Is(e, fs.ErrInvalid) || e.Error() != "internal error" {
		t.Errorf("a 500 is %q and matches a sentinel", e.Error())
	}
}
