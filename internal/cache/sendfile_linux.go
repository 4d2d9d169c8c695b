package cache

import (
	"errors"
	"fmt"
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// SendFiles reports whether Reader.SendTo is implemented here: on Linux,
// with sendfile(2).
const SendFiles = true

// SendTo sends the rest of a staged body (Staged) on the stream socket c
// with sendfile(2): the bytes go from the page cache to the socket without
// being copied through gemproxy's memory. The reader of a Live body waits
// for its next bytes and never gets the last one before the fill ends, as
// with Read.
//
// A body in the cache file is never sent so: a zero-copy send leaves the
// socket referring to the file's page-cache pages until the peer has read
// them, and bbolt rewrites pages of its file in place once they are free
// (a commit that touches the leaf of a chunk moves the chunk and frees its
// pages; a deleted body frees them), so bytes already sent could change
// before they reach the client. A staging file is only ever appended to,
// then unlinked: never truncated, rewritten or reused.
func (r *Reader) SendTo(c syscall.RawConn) (int64, error) {
	if !r.Staged() {
		return 0, fmt.Errorf("cache: body %d is not in a staging file, not sent with sendfile", r.id)
	}
	start := r.off
	for r.off < r.end {
		if err := r.sendStaged(c); err != nil {
			return r.off - start, err
		}
	}
	return r.off - start, nil
}

// sendStaged sends from the staging file what may be read of the rest
// of the body.
func (r *Reader) sendStaged(c syscall.RawConn) error {
	n := r.end - r.off
	if r.spill.live != nil {
		var err error
		if n, err = r.spill.live.readable(r.off, r.end); err != nil {
			return err
		}
	}
	stop := r.off + n
	return withFD(r.spill.f, func(in int) error {
		return sendOn(c, func(out int) error { return sendSpan(out, in, &r.off, stop) })
	})
}

// sendSpan sends bytes [*pos, stop) of the file in to the socket out,
// advancing *pos past what it sent. It returns unix.EAGAIN when the
// socket is full.
func sendSpan(out, in int, pos *int64, stop int64) error {
	for *pos < stop {
		n, err := unix.Sendfile(out, in, pos, int(stop-*pos))
		switch {
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return err
		case n == 0:
			return fmt.Errorf("cache: sendfile: %w", io.ErrUnexpectedEOF)
		}
	}
	return nil
}

// sendOn calls send with c's descriptor until send has sent all it has
// to or failed, waiting for room in the socket whenever send returns
// unix.EAGAIN (outside send).
func sendOn(c syscall.RawConn, send func(out int) error) error {
	var err error
	if werr := c.Write(func(fd uintptr) bool {
		err = send(int(fd))
		return !errors.Is(err, unix.EAGAIN)
	}); werr != nil {
		return werr
	}
	return err
}

// withFD calls fn with f's descriptor, which stays open meanwhile.
func withFD(f syscall.Conn, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
