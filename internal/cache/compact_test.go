package cache

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fillStore stores n gems of size bytes and returns their bodies by key.
func fillStore(t *testing.T, s *Store, n, size int) map[string][]byte {
	t.Helper()
	bodies := make(map[string][]byte, n)
	for i := range n {
		key := fmt.Sprintf("/gems/g%d-1.gem", i)
		bodies[key] = testBody(size, uint64(i))
		putKey(t, s, key, bodies[key], CommitOptions{})
	}
	return bodies
}

// TestCloseCompactedShrinksFile purges all but one entry of a filled
// store: the file keeps its size until CloseCompacted, which shrinks it and
// keeps what was left, body and body IDs included.
func TestCloseCompactedShrinksFile(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, Options{MemoryBodyLimit: -1})
	bodies := fillStore(t, s, 20, 300<<10)
	kept := s.Peek("/gems/g0-1.gem")
	for key := range bodies {
		if key != kept.Key {
			if err := s.Delete(key); err != nil {
				t.Fatal(err)
			}
		}
	}
	usage, err := s.FileUsage()
	if err != nil {
		t.Fatal(err)
	}
	if usage.Reusable < 19*300<<10 {
		t.Errorf("FileUsage = %+v; want the 19 removed bodies reusable", usage)
	}
	checkStore(t, s)
	before, after, err := s.CloseCompacted()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cache.db: %d bytes before, %d after", before, after)
	if before != usage.Bytes || after > before/4 {
		t.Errorf("file went from %d to %d bytes (FileUsage said %d); want under a quarter", before, after, usage.Bytes)
	}
	if size, _ := sizeOf(filepath.Join(dir, FileName)); size != after {
		t.Errorf("reported %d bytes after, file has %d", after, size)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName+".compact")); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	s = openTestStore(t, dir, Options{MemoryBodyLimit: -1})
	if e := s.Peek(kept.Key); e == nil || e.ID != kept.ID || !bytes.Equal(readBodyOf(t, s, e, false), bodies[kept.Key]) {
		t.Fatalf("after compaction %s = %+v", kept.Key, e)
	}
	if st := s.Stats(); st.Classes["test"].Entries != 1 {
		t.Errorf("after compaction: %+v, want 1 entry", st)
	}
	if e := putKey(t, s, "/gems/new-1.gem", []byte("new"), CommitOptions{}); e.ID <= kept.ID {
		t.Errorf("new body ID %d reuses an old one (<= %d)", e.ID, kept.ID)
	}
}

// TestCloseCompactedFailureKeepsFile: when the compacted copy cannot be
// written the old file stays as it was, and the store is closed.
func TestCloseCompactedFailureKeepsFile(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, Options{})
	bodies := fillStore(t, s, 3, 1000)
	// A non-empty directory where the copy goes: neither removable nor
	// openable as a file.
	if err := os.MkdirAll(filepath.Join(dir, FileName+".compact", "x"), 0o750); err != nil {
		t.Fatal(err)
	}
	checkStore(t, s)
	before, after, err := s.CloseCompacted()
	if err == nil || before != after || before == 0 {
		t.Fatalf("CloseCompacted = %d, %d, %v; want an error and an unchanged size", before, after, err)
	}
	if !isClosed(s) {
		t.Error("store still open after a failed compaction")
	}
	s = openTestStore(t, dir, Options{})
	for key, body := range bodies {
		if e := s.Peek(key); e == nil || !bytes.Equal(readBodyOf(t, s, e, false), body) {
			t.Errorf("%s lost: %+v", key, e)
		}
	}
}

// TestOpenWaitingDuringCompactionGetsNewFile: an Open that waits for the
// lock while a compaction runs must end up on the compacted file, not on
// the old one the rename unlinked (whose writes would be lost).
func TestOpenWaitingDuringCompactionGetsNewFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	s := openTestStore(t, dir, Options{})
	putKey(t, s, "/info/a", []byte("a"), CommitOptions{})
	if openFDs(t, path) != 1 {
		t.Skip("cannot count open files through /proc/self/fd")
	}
	opened := make(chan *Store, 1)
	go func() {
		w, err := Open(dir, Options{LockTimeout: 10 * time.Second})
		if err != nil {
			t.Error(err)
		}
		opened <- w
	}()
	// The waiting Open has its descriptor on the old file.
	deadline := time.Now().Add(5 * time.Second)
	for openFDs(t, path) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the second Open never opened the file")
		}
		time.Sleep(time.Millisecond)
	}
	if _, _, err := s.CloseCompacted(); err != nil {
		t.Fatal(err)
	}
	w := <-opened
	if w == nil {
		t.FailNow()
	}
	putKey(t, w, "/info/b", []byte("b"), CommitOptions{})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir, Options{})
	if s.Peek("/info/a") == nil || s.Peek("/info/b") == nil {
		t.Fatalf("entries after reopening: a=%v b=%v; want both", s.Peek("/info/a") != nil, s.Peek("/info/b") != nil)
	}
}

// openFDs counts this process's descriptors open on path (0 when
// /proc/self/fd cannot be read).
func openFDs(t *testing.T, path string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && target == path {
			n++
		}
	}
	return n
}
