package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sendPair returns the two ends of a loopback TCP connection: the raw
// socket of the sending end, and the receiving end.
func sendPair(t *testing.T) (syscall.RawConn, net.Conn) {
	t.Helper()
	send, recv := tcpPair(t)
	rc, err := send.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc, recv
}

// tcpPair returns the sending and the receiving end of a loopback TCP
// connection.
func tcpPair(t *testing.T) (*net.TCPConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	recv, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	send, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = send.Close(); _ = recv.Close() })
	return send.(*net.TCPConn), recv
}

// sendReceive sends r's range with SendTo on a fresh connection and
// returns what SendTo reported and the bytes received, read concurrently
// (the socket fills up and SendTo waits for room).
func sendReceive(t *testing.T, r *Reader) (n int64, got []byte, err error) {
	t.Helper()
	send, recv := tcpPair(t)
	return sendReceiveOn(t, r.SendTo, send, recv)
}

// sendReceiveOn is sendReceive on the connection of send and recv, with
// sendTo (r.SendTo, or a variant of it) sending the range.
func sendReceiveOn(t *testing.T, sendTo func(syscall.RawConn) (int64, error), send *net.TCPConn, recv net.Conn) (n int64, got []byte, err error) {
	t.Helper()
	rc, err := send.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	received := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(recv)
		received <- b
	}()
	n, err = sendTo(rc)
	_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_WR) })
	return n, <-received, err
}

// TestSendToStagedBody: SendTo sends exactly the bytes of a transient
// entry's spilled body (a staging file), whole or a range across chunk
// boundaries, whatever the socket takes at once.
func TestSendToStagedBody(t *testing.T) {
	s := newTestStore(t, Options{})
	body := testBody(stagingMemoryLimit+3*ChunkSize+123, 3)
	st := s.Stage()
	st.Write(body)
	e := s.Transient(st, Entry{Key: "/gems/sent.gem", Status: 200})
	for _, rng := range [][2]int64{{0, int64(len(body))}, {ChunkSize - 10, 2*ChunkSize + 10}, {5, 6}} {
		r, err := s.Open(e, false)
		if err != nil {
			t.Fatal(err)
		}
		r.Limit(rng[0], rng[1])
		n, got, err := sendReceive(t, r)
		r.Close()
		if want := body[rng[0]:rng[1]]; err != nil || n != int64(len(want)) || !bytes.Equal(got, want) {
			t.Errorf("bytes %d-%d: SendTo = %d, %v; received %d bytes, equal %v",
				rng[0], rng[1], n, err, len(got), bytes.Equal(got, want))
		}
	}
}

// TestSendToStoredBody: SendTo writes exactly the bytes of a body in the
// cache file, whole or a range across chunk boundaries, through a socket
// that takes a few KiB at a time.
func TestSendToStoredBody(t *testing.T) {
	s := newTestStore(t, Options{})
	body := testBody(3*ChunkSize+123, 3)
	e := putKey(t, s, "/gems/stored.gem", body, CommitOptions{})
	for _, rng := range [][2]int64{{0, int64(len(body))}, {ChunkSize - 10, 2*ChunkSize + 10}, {5, 6}} {
		r, err := s.Open(e, false)
		if err != nil {
			t.Fatal(err)
		}
		r.Limit(rng[0], rng[1])
		send, recv := stalledPair(t)
		n, got, err := sendReceiveOn(t, r.SendTo, send, recv)
		r.Close()
		if want := body[rng[0]:rng[1]]; err != nil || n != int64(len(want)) || !bytes.Equal(got, want) {
			t.Errorf("bytes %d-%d: SendTo = %d, %v; received %d bytes, equal %v",
				rng[0], rng[1], n, err, len(got), bytes.Equal(got, want))
		}
	}
}

// TestSendToStoredBodyWaitsOutsideTransactions: while the client takes
// no bytes, SendTo of a stored body waits with no read transaction open
// (bbolt's remapping of a growing file waits for every reader), so
// commits that grow the file go on; the body, deleted and its pages
// reused meanwhile, still arrives whole once the client reads. A write
// deadline ends the wait.
func TestSendToStoredBodyWaitsOutsideTransactions(t *testing.T) {
	s := newTestStore(t, Options{})
	body := testBody(3*ChunkSize+123, 4)
	e := putKey(t, s, "/gems/stalled.gem", body, CommitOptions{})
	r, err := s.Open(e, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, recv, sent, mostOpenTx := sendStalled(t, r)
	// Recorded before sendStalled returned; checked now as well as at the
	// end, as a transaction held while waiting would block the commits
	// below until the client reads.
	if open := mostOpenTx.Load(); open != 0 {
		t.Fatalf("%d read transactions open while SendTo waits for room in the socket", open)
	}
	if err := s.Delete(e.Key); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		putKey(t, s, fmt.Sprintf("/gems/filler%d.gem", i), testBody(len(body)+i*ChunkSize, uint64(10+i)), CommitOptions{})
	}
	if got, err := io.ReadAll(recv); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("received %d bytes (%v), equal %v", len(got), err, bytes.Equal(got, body))
	}
	if err := <-sent; err != nil {
		t.Fatalf("SendTo: %v", err)
	}
	if open := mostOpenTx.Load(); open != 0 {
		t.Fatalf("%d read transactions open while SendTo waited for room in the socket", open)
	}

	r2, err := s.Open(putKey(t, s, "/gems/stalled.gem", body, CommitOptions{}), false)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	send, _ := stalledPair(t)
	if err := send.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	rc, err := send.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.SendTo(rc); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("SendTo to a client that reads nothing, past the write deadline: %v", err)
	}
}

// sendLive starts SendTo of a new Live body of size bytes at key on a
// fresh connection, and returns the body's staging and Live, the raw
// socket of the sending end, the receiving end, and where SendTo's error
// arrives.
func sendLive(t *testing.T, s *Store, key string, size int) (*Staging, *Live, syscall.RawConn, net.Conn, <-chan error) {
	t.Helper()
	st, live, err := s.StageLive(Entry{Key: key, Status: 200, Size: int64(size)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Discard)
	r, err := s.Open(live.Entry(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	rc, recv := sendPair(t)
	sent := make(chan error, 1)
	go func() { _, err := r.SendTo(rc); sent <- err }()
	return st, live, rc, recv, sent
}

// finishLive stages rest, the last bytes of the Live body that sendLive
// started to send, ends its fill, and checks that the client receives
// them and that SendTo ends without an error.
func finishLive(t *testing.T, st *Staging, live *Live, rest []byte, recv net.Conn, sent <-chan error) {
	t.Helper()
	st.Write(rest)
	live.Finish(nil)
	if _, err := io.ReadFull(recv, make([]byte, len(rest))); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

// sendStalled starts SendTo of r to a client that reads nothing yet
// (stalledPair) and returns once SendTo waits for room in the socket: the
// sending socket, the client's end, where SendTo's error arrives (the
// sending end is shut down for writing once SendTo returns), and the most
// read transactions of r's store seen open as one of SendTo's waits began.
func sendStalled(t *testing.T, r *Reader) (syscall.RawConn, net.Conn, <-chan error, *atomic.Int64) {
	t.Helper()
	send, recv := stalledPair(t)
	rc, err := send.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{}, 1)
	sent := make(chan error, 1)
	mostOpenTx := new(atomic.Int64)
	openTx := func() int64 { return int64(r.s.db.Stats().OpenTxN) }
	go func() {
		_, err := r.SendTo(waitSignal{RawConn: rc, waiting: waiting, openTx: openTx, mostOpenTx: mostOpenTx})
		_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_WR) })
		sent <- err
	}()
	select {
	case <-waiting:
	case err := <-sent:
		t.Fatalf("SendTo returned (%v) without waiting for room in the socket", err)
	}
	return rc, recv, sent, mostOpenTx
}

// stalledPair is tcpPair with small buffers on both ends (tens of KiB):
// a body of a chunk or more fills them while the receiver reads nothing.
func stalledPair(t *testing.T) (*net.TCPConn, net.Conn) {
	t.Helper()
	send, recv := tcpPair(t)
	if err := errors.Join(send.SetWriteBuffer(32<<10), recv.(*net.TCPConn).SetReadBuffer(32<<10)); err != nil {
		t.Fatal(err)
	}
	return send, recv
}

// waitSignal is a socket that signals on waiting each time a Write
// callback asks to wait for room, and keeps in mostOpenTx the highest
// openTx seen as such a wait begins.
type waitSignal struct {
	syscall.RawConn
	waiting    chan struct{}
	openTx     func() int64
	mostOpenTx *atomic.Int64
}

// Write calls the RawConn's Write, recording and signalling each wait.
func (w waitSignal) Write(f func(fd uintptr) bool) error {
	return w.RawConn.Write(func(fd uintptr) bool {
		done := f(fd)
		if !done {
			if n := w.openTx(); n > w.mostOpenTx.Load() {
				w.mostOpenTx.Store(n)
			}
			select {
			case w.waiting <- struct{}{}:
			default:
			}
		}
		return done
	})
}

// TestSendToLiveBody: SendTo of a Live body sends the bytes staged so far,
// waits for more, holds the last byte back until Finish(nil), and fails
// after Finish(err) without sending it.
func TestSendToLiveBody(t *testing.T) {
	s := newTestStore(t, Options{})
	body := testBody(3*ChunkSize+77, 5)
	for _, fail := range []error{nil, errors.New("checksum mismatch")} {
		st, live, err := s.StageLive(Entry{Key: "/gems/live.gem", Status: 200, Size: int64(len(body))})
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.Open(live.Entry(), false)
		if err != nil {
			t.Fatal(err)
		}
		rc, recv := sendPair(t)
		type result struct {
			n   int64
			err error
		}
		sent := make(chan result, 1)
		go func() {
			n, err := r.SendTo(rc)
			_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_WR) })
			sent <- result{n, err}
		}()
		st.Write(body[:ChunkSize])
		head := make([]byte, ChunkSize/2)
		if _, err := io.ReadFull(recv, head); err != nil || !bytes.Equal(head, body[:len(head)]) {
			t.Fatalf("bytes staged so far: %v, equal %v", err, bytes.Equal(head, body[:len(head)]))
		}
		st.Write(body[ChunkSize:])
		rest := make([]byte, len(body)-len(head)-1)
		if _, err := io.ReadFull(recv, rest); err != nil || !bytes.Equal(rest, body[len(head):len(body)-1]) {
			t.Fatalf("the rest but the last byte: %v, equal %v", err, bytes.Equal(rest, body[len(head):len(body)-1]))
		}
		select {
		case res := <-sent:
			t.Fatalf("SendTo returned %d, %v before Finish", res.n, res.err)
		default:
		}
		st.Discard()
		live.Finish(fail)
		res := <-sent
		last, _ := io.ReadAll(recv)
		if fail == nil && (res.err != nil || res.n != int64(len(body)) || !bytes.Equal(last, body[len(body)-1:])) {
			t.Errorf("verified: SendTo = %d, %v; last bytes %v", res.n, res.err, last)
		}
		if fail != nil && (!errors.Is(res.err, ErrLiveFailed) || res.n != int64(len(body)-1) || len(last) != 0) {
			t.Errorf("refused: SendTo = %d, %v; last bytes %v; want the last byte withheld and ErrLiveFailed", res.n, res.err, last)
		}
		r.Close()
	}
}

// corked reports whether TCP_CORK is set on the socket of c.
func corked(t *testing.T, c syscall.RawConn) bool {
	t.Helper()
	var v int
	var err error
	if cerr := c.Control(func(fd uintptr) { v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK) }); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	return v != 0
}

// TestSendToCorksWhileSending: SendTo holds TCP_CORK on the socket while
// it sends (full segments only), lifts it while a Live body waits for its
// next bytes, so that those sent reach the client meanwhile, and leaves it
// lifted once the body is sent.
func TestSendToCorksWhileSending(t *testing.T) {
	s := newTestStore(t, Options{})
	body := testBody(3*ChunkSize+123, 6)
	r, err := s.Open(putKey(t, s, "/gems/corked.gem", body, CommitOptions{}), false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rc, recv, sent, _ := sendStalled(t, r)
	if !corked(t, rc) {
		t.Error("TCP_CORK not set while a stored body is sent")
	}
	if _, err := io.ReadFull(recv, make([]byte, len(body))); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if corked(t, rc) {
		t.Error("TCP_CORK still set after the body was sent")
	}

	st, live, lrc, lrecv, liveSent := sendLive(t, s, "/gems/live-corked.gem", len(body))
	staged := 100_003 // not a whole number of loopback segments
	st.Write(body[:staged])
	if _, err := io.ReadFull(lrecv, make([]byte, staged)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); corked(t, lrc); {
		if time.Now().After(deadline) {
			t.Fatal("TCP_CORK still set while the sender waits for the next bytes of a Live body")
		}
		time.Sleep(time.Millisecond)
	}
	finishLive(t, st, live, body[staged:], lrecv, liveSent)
}

// TestSendToYieldsEverySendTurn: SendTo lets other goroutines run each
// time another sendTurn bytes of a range went out, never later, whether
// the body is written from the cache file or sent from a staging file; and
// the turns do not hold back a Live body's bytes while its fill runs.
func TestSendToYieldsEverySendTurn(t *testing.T) {
	s := newTestStore(t, Options{})
	body := testBody(3*sendTurn+ChunkSize/2, 8)
	st := s.Stage()
	st.Write(body)
	bodies := map[string]*Entry{
		"stored": putKey(t, s, "/gems/turns.gem", body, CommitOptions{}),
		"staged": s.Transient(st, Entry{Key: "/gems/turns-staged.gem", Status: 200}),
	}
	for name, e := range bodies {
		const from = 1000 // turns count from the range's start, not the body's
		r, err := s.Open(e, false)
		if err != nil {
			t.Fatal(err)
		}
		r.Limit(from, int64(len(body)))
		var yields []int64
		send, recv := tcpPair(t)
		n, got, err := sendReceiveOn(t, func(rc syscall.RawConn) (int64, error) {
			return r.sendTo(rc, func() { yields = append(yields, r.off) })
		}, send, recv)
		r.Close()
		if err != nil || n != int64(len(body)-from) || !bytes.Equal(got, body[from:]) {
			t.Errorf("%s: sendTo = %d, %v; received %d bytes, equal %v", name, n, err, len(got), bytes.Equal(got, body[from:]))
		}
		want := []int64{from + sendTurn, from + 2*sendTurn, from + 3*sendTurn}
		if fmt.Sprint(yields) != fmt.Sprint(want) {
			t.Errorf("%s: yielded at offsets %v, want %v", name, yields, want)
		}
	}

	lst, live, _, lrecv, sent := sendLive(t, s, "/gems/turns-live.gem", len(body))
	staged := 2*sendTurn + 100 // past two turns' ends, fill still running
	lst.Write(body[:staged])
	_ = lrecv.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(lrecv, make([]byte, staged)); err != nil {
		t.Fatalf("reading the %d bytes of a Live body staged so far: %v", staged, err)
	}
	finishLive(t, lst, live, body[staged:], lrecv, sent)
}
