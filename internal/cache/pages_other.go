//go:build !linux

package cache

// releasePages is a no-op where madvise is not used.
func releasePages([]byte) {}
