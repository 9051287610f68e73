package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"testing"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/telemetry"
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
