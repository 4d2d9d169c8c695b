package cache

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
)

// sendPair returns the two ends of a loopback TCP connection: the raw
// socket of the sending end, and the receiving end.
func sendPair(t *testing.T) (syscall.RawConn, net.Conn) {
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
	rc, err := send.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc, recv
}

// sendReceive sends r's range with SendTo on a fresh connection and
// returns what SendTo reported and the bytes received, read concurrently
// (the socket fills up and SendTo waits for room).
func sendReceive(t *testing.T, r *Reader) (n int64, got []byte, err error) {
	t.Helper()
	rc, recv := sendPair(t)
	received := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(recv)
		received <- b
	}()
	n, err = r.SendTo(rc)
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

// TestSendToRefusesStoredBody: a body in the cache file is never sent
// with sendfile (bbolt may rewrite its pages while the socket still
// refers to them): SendTo fails without sending a byte.
func TestSendToRefusesStoredBody(t *testing.T) {
	s := newTestStore(t, Options{})
	e := putKey(t, s, "/gems/stored.gem", testBody(3*ChunkSize+123, 3), CommitOptions{})
	r, err := s.Open(e, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if n, got, err := sendReceive(t, r); err == nil || n != 0 || len(got) != 0 {
		t.Fatalf("SendTo of a stored body = %d, %v; received %d bytes", n, err, len(got))
	}
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
