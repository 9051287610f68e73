// Package rawos is the raw os baseline of roomstore's benchmarks: the
// calls an atomic writer makes without roomstore, shared by the benchmarks
// and cmd/syscallprobe so that both measure the same work.
package rawos

import (
	"os"
	"path/filepath"
)

// WriteFile writes data to name the way an atomic writer must: a
// temporary file in tmp (on the same file system), renamed into place,
// with the file and its folder fsynced when fsync is set. The temporary
// is removed on failure.
func WriteFile(tmp, name string, data []byte, fsync bool) error {
	f, err := os.CreateTemp(tmp, "w-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	if fsync {
		return SyncDir(filepath.Dir(name))
	}
	return nil
}

// SyncDir makes a rename in dir durable, as roomstore's disk backend does
// with fsync on.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
