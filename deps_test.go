package roomstore_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestImportsNoStore checks that the engine, the protocol client and the
// event transport build without any store but the in-memory one: a program
// that links them compiles neither the disk store (afero, the openat2
// path) nor the S3 or GCS SDKs unless it imports their packages.
func TestImportsNoStore(t *testing.T) {
	for _, pkg := range []string{
		"github.com/roomstore/roomstore",
		"github.com/roomstore/roomstore/roomclient",
		"github.com/roomstore/roomstore/events_nats",
	} {
		t.Run(pkg, func(t *testing.T) { importsNoStore(t, pkg) })
	}
}

func importsNoStore(t *testing.T, pkg string) {
	forbidden := []string{
		"github.com/spf13/afero",
		"github.com/aws/",
		"cloud.google.com/",
		"github.com/roomstore/roomstore/backend_disk",
		"github.com/roomstore/roomstore/backend_s3",
		"github.com/roomstore/roomstore/backend_gcs",
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "list", "-deps", pkg).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 || deps[len(deps)-1] != pkg {
		t.Fatalf("go list -deps %s listed %d packages, not ending with the package itself", pkg, len(deps))
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}
