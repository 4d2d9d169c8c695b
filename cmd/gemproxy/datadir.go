package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// ensureDataDir creates dir if missing and checks that a file can be
// created in it.
func ensureDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("data_dir %s: cannot create: %w", dir, pathCause(err))
	}
	f, err := os.CreateTemp(dir, ".gemproxy-write-test-*")
	if err != nil {
		return fmt.Errorf("data_dir %s: not writable: %w", dir, pathCause(err))
	}
	name := f.Name()
	_ = f.Close()
	_ = os.Remove(name)
	return nil
}

// pathCause strips the operation and path from a *fs.PathError, whose
// message would repeat the path already named.
func pathCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
