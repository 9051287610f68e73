// Package backend_disk is roomstore's local-disk store: a backend.Backend
// over an afero.Fs (Afero, NewAfero), with NewOSRoot for a directory that
// the store keeps confined to it (os.Root, and on Linux openat2 beneath
// the directory's descriptor). Importing the package registers the "file"
// scheme for roomstore.OpenURL, which the roomstore package does itself:
// "file:///abs/dir" or "file://./rel/dir", with "?fsync=false" to turn
// fsync at commit off (see FileDir).
//
// # Errors
//
// Errors follow package backend's contract and name no host path: a
// missing file is fs.ErrNotExist, a path that crosses a symbolic link
// fs.ErrPermission, a store directory that is gone or whose reserved
// folder is broken backend.ErrStoreUnavailable, a process out of file
// descriptors backend.ErrTooManyHandles. The operating system's error
// stays reachable with errors.As (a syscall.Errno).
package backend_disk
