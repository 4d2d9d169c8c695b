//go:build !linux

package cache

import (
	"errors"
	"syscall"
)

// SendFiles reports whether Reader.SendTo is implemented here: not
// without Linux's sendfile(2).
const SendFiles = false

// SendTo is not implemented here (see SendFiles).
func (r *Reader) SendTo(syscall.RawConn) (int64, error) { return 0, errors.ErrUnsupported }
