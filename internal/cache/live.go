package cache

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
)

// Live is a body that clients stream while a fill stages it: the entry it
// serves (Entry) reads the staging file as it grows, from a file handle
// of its own, and holds back the last byte of every read range until the
// fill releases it (Release, once the body is verified) or ends it with
// Finish. A fill that fails before Release makes every reader fail, so a
// client never gets a complete answer with bytes the fill refused.
type Live struct {
	// entry is the transient entry whose Reader streams the body.
	entry *Entry

	mu sync.Mutex
	// changed is broadcast whenever staged, done or err changes.
	changed *sync.Cond
	// staged is the number of bytes written to the staging file so far.
	staged int64
	// released is set by Release.
	released bool
	// done is set by Finish.
	done bool
	// err is why the fill failed, set by Finish; readers return it.
	err error
}

// ErrLiveFailed is wrapped by the errors readers of a Live body get once
// its fill failed.
var ErrLiveFailed = errors.New("cache: the fill of this body failed")

// StageLive starts staging a body of e.Size announced bytes straight into
// a file and returns the staging with its Live view, whose Entry (a
// transient copy of e: ID 0, never stored) serves the body while it
// grows. The caller writes the body to the staging, commits or discards
// it, and then calls Finish.
func (s *Store) StageLive(e Entry) (*Staging, *Live, error) {
	w, err := os.CreateTemp(s.tmpDir, "fill-*")
	if err != nil {
		return nil, nil, fmt.Errorf("cache: staging file: %w", err)
	}
	r, err := os.Open(w.Name())
	if err != nil {
		_ = w.Close()
		_ = os.Remove(w.Name())
		return nil, nil, fmt.Errorf("cache: staging file: %w", err)
	}
	l := &Live{}
	l.changed = sync.NewCond(&l.mu)
	e.ID, e.GzipID, e.GzipSize, e.HashState, e.Body, e.Gzip = 0, 0, 0, nil, nil, nil
	e.spill = &spillFile{f: r, live: l}
	// The staging file's name goes with the staging; this handle stays
	// open for the readers until none is left.
	runtime.AddCleanup(e.spill, closeFile, r)
	l.entry = &e
	st := s.Stage()
	st.file, st.live = w, l
	return st, l, nil
}

// Entry is the transient entry that streams the body.
func (l *Live) Entry() *Entry { return l.entry }

// Release lets readers take the last bytes of the body, complete and
// verified, while the fill goes on storing it: a failure to store it,
// told to Finish afterwards, fails no reader.
func (l *Live) Release() {
	l.mu.Lock()
	l.released = true
	l.mu.Unlock()
	l.changed.Broadcast()
}

// Finish ends the body: readers get their last bytes when err is nil or
// the body was released, and an error wrapping ErrLiveFailed and err
// otherwise; AwaitStreamed returns.
func (l *Live) Finish(err error) {
	l.mu.Lock()
	l.done = true
	if err != nil {
		l.err = fmt.Errorf("%w: %w", ErrLiveFailed, err)
	}
	l.mu.Unlock()
	l.changed.Broadcast()
}

// grew records that the staging file now holds size bytes.
func (l *Live) grew(size int64) {
	l.mu.Lock()
	l.staged = size
	l.mu.Unlock()
	l.changed.Broadcast()
}

// readable waits until some of the bytes [off, end) of the body may be
// read and returns how many: those staged, but never the range's last
// byte before Release or Finish(nil). idle, when not nil, is called once
// before the first wait, without the lock held, and the bytes are looked
// at again after it.
func (l *Live) readable(off, end int64, idle func()) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if l.err != nil && !l.released {
			return 0, l.err
		}
		avail := min(l.staged, end)
		if !l.done && !l.released && avail == end {
			avail--
		}
		switch {
		case avail > off:
			return avail - off, nil
		case l.done || l.released:
			return 0, fmt.Errorf("%w: %w", ErrLiveFailed, io.ErrUnexpectedEOF)
		case idle != nil:
			l.mu.Unlock()
			idle()
			idle = nil
			l.mu.Lock()
			continue
		}
		l.changed.Wait()
	}
}

// AwaitStreamed blocks, for the entry of a Live body, until its fill
// ended (Finish, after the body was stored or refused; not Release), and
// returns why the fill failed (nil once it was finished without error);
// for any other entry it returns nil at once.
func (e *Entry) AwaitStreamed() error {
	if !e.Streaming() {
		return nil
	}
	l := e.spill.live
	l.mu.Lock()
	defer l.mu.Unlock()
	for !l.done {
		l.changed.Wait()
	}
	return l.err
}

// Streaming reports whether e is the entry of a Live body (see
// Store.StageLive), still growing or not.
func (e *Entry) Streaming() bool { return e.spill != nil && e.spill.live != nil }

// closeFile closes the read handle of a Live body nothing refers to any
// more.
func closeFile(f *os.File) { _ = f.Close() }
