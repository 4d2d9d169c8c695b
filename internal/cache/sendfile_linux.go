package cache

import (
	"errors"
	"fmt"
	"io"
	"syscall"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// SendFiles reports whether Reader.SendTo is implemented here: on Linux,
// with sendfile(2).
const SendFiles = true

// SendTo sends the rest of the body on the stream socket c with
// sendfile(2): the bytes go from the page cache to the socket without
// being copied through gemproxy's memory, and without mapping the pages
// of a stored body. It serves bodies in the cache file (a read
// transaction per chunk, held for non-blocking sends only: while the
// socket is full, SendTo waits outside any transaction) and in a staging
// file (the reader of a Live body waits for its next bytes and never gets
// the last one before the fill ends, as with Read). A body held in memory
// is not sent by it.
func (r *Reader) SendTo(c syscall.RawConn) (int64, error) {
	if r.mem != nil {
		return 0, fmt.Errorf("cache: body %d is held in memory, not sent from a file", r.id)
	}
	start := r.off
	for r.off < r.end {
		var err error
		if r.spill != nil {
			err = r.sendStaged(c)
		} else {
			err = r.sendStored(c)
		}
		if err != nil {
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

// sendStored sends the rest of the chunk at r.off from the cache file.
func (r *Reader) sendStored(c syscall.RawConn) error {
	return withFD(r.s.file, func(in int) error {
		return sendOn(c, func(out int) error {
			return r.s.db.View(func(tx *bolt.Tx) error { return r.sendChunk(tx, in, out) })
		})
	})
}

// sendChunk sends, in tx, the rest of the chunk at r.off (up to the end
// of the range) from the cache file in to the socket out; a chunk bbolt
// does not keep in the file as such (see locate) is written from its
// value.
func (r *Reader) sendChunk(tx *bolt.Tx, in, out int) error {
	index, within := uint32(r.off/ChunkSize), r.off%ChunkSize
	at, inFile, err := r.locate(tx, index, within)
	if err != nil {
		return err
	}
	chunkStart := r.off - within
	if !inFile {
		v, err := r.chunk(tx, index, within)
		if err != nil {
			return err
		}
		return writeSpan(out, v[:min(int64(len(v)), r.end-chunkStart)], chunkStart, &r.off)
	}
	pos := at.offset + within
	err = sendSpan(out, in, &pos, at.offset+min(at.limit, r.end-chunkStart))
	r.off = chunkStart + pos - at.offset
	return err
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

// writeSpan writes v[*off-base:] to the socket out, advancing *off (the
// body offset of v's first byte is base). It returns unix.EAGAIN when the
// socket is full.
func writeSpan(out int, v []byte, base int64, off *int64) error {
	for *off-base < int64(len(v)) {
		n, err := unix.Write(out, v[*off-base:])
		switch {
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return err
		default:
			*off += int64(n)
		}
	}
	return nil
}

// sendOn calls send with c's descriptor until send has sent all it has
// to or failed, waiting for room in the socket whenever send returns
// unix.EAGAIN (outside send, so outside any transaction send opens).
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
