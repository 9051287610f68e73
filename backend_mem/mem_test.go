package backend_mem_test

import (
	"testing"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_mem"
	"github.com/roomstore/roomstore/conformance"
)

func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.Harness{
		New:    func(*testing.T) backend.Backend { return backend_mem.New() },
		Reopen: func(_ *testing.T, b backend.Backend) backend.Backend { return b },
	})
}
