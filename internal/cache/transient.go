package cache

import (
	"os"
	"runtime"
)

// spillFile is the staging file holding the body of a transient entry.
type spillFile struct {
	f *os.File
	// live, for the body of a Live entry, says how much of f may be read.
	live *Live
}

// Transient returns e with the staged body attached, without storing it:
// an answer served to the clients of one fill and then forgotten. A body
// still in memory becomes e.Body; a spilled one stays in its staging file
// and is read through Open, never loaded into memory, and the file is
// closed and removed once e, its copies and every Reader of it are
// unreachable. e.ID is 0 and e has no gzip form. The staging is consumed.
func (s *Store) Transient(st *Staging, e Entry) *Entry {
	e.ID, e.GzipID, e.GzipSize, e.HashState, e.Gzip = 0, 0, 0, nil, nil
	e.Size = st.size
	e.MD5, e.SHA256 = st.MD5(), st.SHA256()
	e.Body, e.spill = nil, nil
	if st.file == nil {
		e.Body = st.mem.Bytes()
		return &e
	}
	e.spill = &spillFile{f: st.file}
	runtime.AddCleanup(e.spill, removeSpill, st.file)
	st.file = nil // the entry owns it now
	st.Discard()
	return &e
}

// removeSpill closes and removes the staging file of a transient entry
// nothing refers to any more.
func removeSpill(f *os.File) {
	_ = f.Close()
	_ = os.Remove(f.Name())
}
