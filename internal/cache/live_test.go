package cache

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// TestLiveReaders: the readers of a Live body get the bytes staged so
// far, wait for the rest, and get the last byte of their range (the whole
// body or a part of it) only after Finish(nil); after Finish(err) they
// fail. The body survives its staging being committed or discarded.
func TestLiveReaders(t *testing.T) {
	s := newTestStore(t, Options{})
	body := bytes.Repeat([]byte("0123456789"), 1000)
	for _, tc := range []struct {
		name string
		fail error
	}{{"verified", nil}, {"refused", errors.New("checksum mismatch")}} {
		t.Run(tc.name, func(t *testing.T) {
			st, live, err := s.StageLive(Entry{Key: "/gems/live.gem", Status: 200, Size: int64(len(body))})
			if err != nil {
				t.Fatal(err)
			}
			e := live.Entry()
			if !e.Streaming() || e.ID != 0 {
				t.Fatalf("live entry: streaming %v, ID %d", e.Streaming(), e.ID)
			}
			whole, _ := s.Open(e, false)
			part, _ := s.Open(e, false)
			part.Limit(0, 100)
			st.Write(body[:100])
			got := make([]byte, 200)
			if n, err := whole.Read(got); n != 100 || err != nil {
				t.Fatalf("whole body, 100 bytes staged: read %d, %v", n, err)
			}
			if n, err := part.Read(got); n != 99 || err != nil {
				t.Fatalf("first 100 bytes, all staged, not finished: read %d, %v; want the last one held back", n, err)
			}
			rest := make(chan error, 2)
			go func() {
				b, err := io.ReadAll(whole)
				if err == nil && !bytes.Equal(b, body[100:]) {
					err = errors.New("wrong bytes")
				}
				rest <- err
			}()
			go func() { _, err := io.ReadAll(part); rest <- err }()
			st.Write(body[100:])
			st.Discard()
			live.Finish(tc.fail)
			for range 2 {
				if err := <-rest; (err == nil) != (tc.fail == nil) || tc.fail != nil && !errors.Is(err, ErrLiveFailed) {
					t.Errorf("rest of the body: %v, want failure %v", err, tc.fail)
				}
			}
		})
	}
}

// TestLiveRelease: once a Live body is released (verified), its readers
// get their last bytes before Finish, a failure to store it told to
// Finish afterwards fails none of them, and AwaitStreamed waits for
// Finish, not Release.
func TestLiveRelease(t *testing.T) {
	s := newTestStore(t, Options{})
	body := bytes.Repeat([]byte("0123456789"), 1000)
	st, live, err := s.StageLive(Entry{Key: "/gems/live.gem", Status: 200, Size: int64(len(body))})
	if err != nil {
		t.Fatal(err)
	}
	e := live.Entry()
	early, _ := s.Open(e, false)
	late, _ := s.Open(e, false)
	st.Write(body)
	awaited := make(chan error, 1)
	go func() { awaited <- e.AwaitStreamed() }()
	live.Release()
	read := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(early)
		read <- b
	}()
	select {
	case b := <-read:
		if !bytes.Equal(b, body) {
			t.Fatalf("released, not finished: read %d bytes; want the whole body", len(b))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("released, not finished: the last byte is still held back")
	}
	select {
	case err := <-awaited:
		t.Fatalf("AwaitStreamed returned %v on Release", err)
	default:
	}
	st.Discard()
	live.Finish(errors.New("commit failed"))
	if err := <-awaited; !errors.Is(err, ErrLiveFailed) {
		t.Errorf("AwaitStreamed = %v, want the store failure", err)
	}
	if b, err := io.ReadAll(late); err != nil || !bytes.Equal(b, body) {
		t.Errorf("released, then not stored: read %d bytes, %v; want the whole verified body", len(b), err)
	}
}
