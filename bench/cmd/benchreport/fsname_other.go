//go:build !linux

package main

// fsName cannot tell the file system here.
func fsName(string) string { return "a file system this platform does not name" }
