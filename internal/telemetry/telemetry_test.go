package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

func TestOutcomeOfMapsEachSentinelWhereverItIsWrapped(t *testing.T) {
	wrap := func(err error) error { return &fs.PathError{Op: "stat", Path: "p", Err: fmt.Errorf("detail: %w", err)} }
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{fs.ErrNotExist, "not_exist"},
		{fs.ErrExist, "exist"},
		{fs.ErrInvalid, "invalid"},
		{backend.ErrIsFolder, "is_folder"},
		{backend.ErrNotFolder, "not_folder"},
		{backend.ErrConflict, "conflict"},
		{fs.ErrPermission, "permission"},
		{fs.ErrClosed, "closed"},
		{backend.ErrTooManyHandles, "too_many_handles"},
		{backend.ErrStoreUnavailable, "unavailable"},
		{context.Canceled, "canceled"},
		{context.DeadlineExceeded, "deadline_exceeded"},
		{errors.ErrUnsupported, "error"},
		{errors.New("anything else"), "error"},
		// A backend error answers for its kind alone.
		{backend.Errorf(backend.ErrStoreUnavailable, fs.ErrNotExist, "bucket gone"), "unavailable"},
		// A context's end comes first, whatever else the error carries.
		{fmt.Errorf("%w: %w", fs.ErrClosed, context.Canceled), "canceled"},
		// A conflict wrapped around a missing file is a conflict.
		{fmt.Errorf("%w: %w", backend.ErrConflict, fs.ErrNotExist), "conflict"},
	} {
		for _, err := range []error{c.err, wrap(c.err)} {
			if c.err == nil && err != nil {
				continue
			}
			if got := telemetry.OutcomeOf(err).String(); got != c.want {
				t.Errorf("OutcomeOf(%v) = %s, want %s", err, got, c.want)
			}
		}
	}
}

func TestEveryOperationAndOutcomeHasASnakeCaseName(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	seen := map[string]bool{}
	for op := range telemetry.NumOps {
		if n := op.String(); !snake.MatchString(n) || seen[n] {
			t.Errorf("operation %d is named %q", op, n)
		}
		seen[op.String()] = true
	}
	for o := range telemetry.NumOutcomes {
		if n := o.String(); !snake.MatchString(n) || seen[n] {
			t.Errorf("outcome %d is named %q", o, n)
		}
		seen[o.String()] = true
	}
}

func TestTextIsValidUTF8OfAtMostMaxPathLenBytes(t *testing.T) {
	const limit = roompath.MaxPathLen
	for _, c := range []struct {
		name, in, want string
	}{
		{"a fit string is kept", "docs/a.txt", "docs/a.txt"},
		{"an invalid byte is replaced", "a\xffb", "a\uFFFDb"},
		{"a long string is cut", strings.Repeat("x", 100<<10), strings.Repeat("x", limit)},
		{"a cut never splits a rune", "x" + strings.Repeat("é", limit), "x" + strings.Repeat("é", (limit-1)/2)},
		{"nor a four-byte one", "x" + strings.Repeat("\U0001D11E", limit), "x" + strings.Repeat("\U0001D11E", (limit-1)/4)},
		{"replacements that lengthen it are cut too", strings.Repeat("a\xff", limit), strings.Repeat("a\uFFFD", limit/4)},
	} {
		got := telemetry.Text(c.in)
		if got != c.want || !utf8.ValidString(got) || len(got) > limit {
			t.Errorf("%s: Text of %d bytes = %.20q... (%d bytes), want %.20q... (%d bytes)", c.name, len(c.in), got, len(got), c.want, len(c.want))
		}
	}
}
