package cache

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"syscall"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// SendFiles reports whether Reader.SendTo is implemented here: on Linux,
// with sendfile(2) and write(2).
const SendFiles = true

// SendTo sends the rest of a body held in a file (not InMemory) on the
// stream socket c, without copying it through a buffer of gemproxy's.
//
// A staged body (Staged) goes with sendfile(2), from the page cache to
// the socket. The reader of a Live body waits for its next bytes and never
// gets the last one before the fill ends, as with Read.
//
// A body in the cache file is written with write(2) straight from bbolt's
// mapping of the file (writeStored), never with sendfile: a zero-copy send
// leaves the socket referring to the file's page-cache pages until the
// peer has read them, and bbolt rewrites pages of its file in place once
// they are free (a commit that touches the leaf of a chunk moves the chunk
// and frees its pages; a deleted body frees them), so bytes already sent
// could change before they reach the client. write(2) copies the bytes
// into the socket's buffer before it returns. A staging file is only ever
// appended to, then unlinked: never truncated, rewritten or reused.
func (r *Reader) SendTo(c syscall.RawConn) (int64, error) {
	return r.sendTo(c, runtime.Gosched)
}

// sendTurn is how many bytes SendTo sends before it lets the other
// goroutines run (yield): at most this much goes to one client while others
// wait, as nginx's sendfile_max_chunk. Without it a send to a client that
// reads as fast as it gets runs until its socket is full, which on
// loopback may be never, so hundreds of concurrent downloads of one body
// finished far apart (the bench's 500 cold clients: the slowest 1.07-1.30x
// the median, 1.01-1.04x with turns), and the fill that stages the body
// waited its turn behind them. bench/README.md has the sizes tried.
const sendTurn = 512 << 10

// sendTo is SendTo, calling yield each time another sendTurn bytes went
// out.
func (r *Reader) sendTo(c syscall.RawConn, yield func()) (int64, error) {
	if r.InMemory() {
		return 0, fmt.Errorf("cache: body %d is held in memory, not sent from a file", r.id)
	}
	start := r.off
	ck := cork{c: c}
	ck.set(true)
	defer ck.set(false)
	for r.off < r.end {
		sent := r.off - start
		if sent > 0 && sent%sendTurn == 0 {
			yield()
		}
		stop := min(r.end, start+(sent/sendTurn+1)*sendTurn)
		var err error
		if r.Staged() {
			err = r.sendStaged(c, &ck, stop)
		} else {
			err = r.writeStored(c, stop)
		}
		if err != nil {
			return r.off - start, err
		}
	}
	return r.off - start, nil
}

// writeStored writes the rest of the chunk at r.off (up to stop) from the
// cache file to the socket c. Each attempt runs in a read
// transaction of its own, held only for non-blocking writes: while the
// socket is full no transaction is open (a slow client never holds up
// bbolt's remapping of a growing file), and the chunk is looked up again
// once there is room, wherever a commit moved it meanwhile. The body
// itself stays while the Reader is open (see Open).
func (r *Reader) writeStored(c syscall.RawConn, stop int64) error {
	return sendOn(c, func(out int) error {
		return r.s.db.View(func(tx *bolt.Tx) error { return r.writeChunk(tx, out, stop) })
	})
}

// writeChunk writes, in tx, the rest of the chunk at r.off (up to stop) to
// the socket out from bbolt's mapping of the file. The
// mapped pages of a large body are released after it, as copyChunk's
// pread leaves them unmapped. It returns unix.EAGAIN when the socket is
// full.
func (r *Reader) writeChunk(tx *bolt.Tx, out int, stop int64) error {
	index, within := r.chunkPos()
	v, err := r.chunk(tx, index, within)
	if err != nil {
		return err
	}
	chunkStart := r.off - within
	v = v[:min(int64(len(v)), stop-chunkStart)]
	err = writeSpan(out, v, chunkStart, &r.off)
	if r.size >= releaseBodyMin {
		releasePages(tx, v)
	}
	return err
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

// sendStaged sends from the staging file what may be read of the body up
// to stop. Before it waits for the next bytes of a Live body it lifts
// ck, so that what was sent reaches the client meanwhile.
func (r *Reader) sendStaged(c syscall.RawConn, ck *cork, stop int64) error {
	n := r.end - r.off
	if r.spill.live != nil {
		var err error
		n, err = r.spill.live.readable(r.off, r.end, func() { ck.set(false) })
		if err != nil {
			return err
		}
		ck.set(true)
	}
	stop = min(stop, r.off+n)
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
// unix.EAGAIN (outside send, so outside any transaction send opens), as
// long as c's write deadline allows.
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

// cork sets and lifts TCP_CORK on a socket while a body is sent: while it
// is set, the kernel sends full segments only. Sent in many system calls
// (one sendfile(2) moves 64 KiB at most through its pipe; one write(2) a
// chunk), a body would otherwise leave a small segment behind each of
// them, TCP_NODELAY being on, which doubles the segments the client's
// kernel handles. Lifting it sends what is left at once. Errors are
// ignored: the body goes out either way.
type cork struct {
	c syscall.RawConn
	// on is whether TCP_CORK is set.
	on bool
}

// set sets TCP_CORK (on) or lifts it, unless it is so already.
func (ck *cork) set(on bool) {
	if ck.on == on {
		return
	}
	ck.on = on
	v := 0
	if on {
		v = 1
	}
	_ = ck.c.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, v) })
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
