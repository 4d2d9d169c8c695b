package cache

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gemproxy/gemproxy/internal/blobstore/blobtest"
)

// TestCommitIfAbsent: a commit with IfAbsent stores an entry for a key
// that has none, or only a negative one; over an entry with a body it is
// ErrExists and changes nothing.
func TestCommitIfAbsent(t *testing.T) {
	s := newTestStore(t, Options{})
	first := putKey(t, s, "/gems/a-1.gem", []byte("first"), CommitOptions{IfAbsent: true})
	chunks := totalChunks(t, s)
	_, err := s.Commit(stage(t, s, []byte("second")), testEntry("/gems/a-1.gem", s.now()), CommitOptions{IfAbsent: true})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("Commit IfAbsent over an entry = %v, want ErrExists", err)
	}
	if s.Peek("/gems/a-1.gem") != first || totalChunks(t, s) != chunks {
		t.Fatal("a refused IfAbsent commit changed the store")
	}
	if got := readBodyOf(t, s, first, false); string(got) != "first" {
		t.Fatalf("body = %q, want the first one", got)
	}

	missing := testEntry("/gems/b-1.gem", s.now())
	missing.Status = 404
	put(t, s, missing, []byte("not found"), CommitOptions{})
	e := putKey(t, s, "/gems/b-1.gem", []byte("found"), CommitOptions{IfAbsent: true})
	if cur := s.Peek("/gems/b-1.gem"); cur != e || cur.Status != 200 {
		t.Fatal("IfAbsent did not replace a negative entry")
	}
}

// TestCommitIfMatch: a commit with IfMatch replaces the entry it names; it
// is ErrConflict, changing nothing, when that entry was replaced, appended
// to, or deleted, or never existed.
func TestCommitIfMatch(t *testing.T) {
	s := newTestStore(t, Options{})
	v1 := putKey(t, s, "/p", []byte("gen 1"), CommitOptions{Appendable: true})
	v2 := putKey(t, s, "/p", []byte("gen 2"), CommitOptions{IfMatch: v1, Appendable: true})
	if s.Peek("/p") != v2 || v2.ID == v1.ID {
		t.Fatal("IfMatch with the current entry did not replace it")
	}
	appended, err := s.Append(v2, []byte(" and more"), keepMeta(v2))
	if err != nil {
		t.Fatal(err)
	}
	for name, stale := range map[string]*Entry{"replaced": v1, "appended to": v2} {
		chunks := totalChunks(t, s)
		_, err := s.Commit(stage(t, s, []byte("gen 3")), testEntry("/p", s.now()), CommitOptions{IfMatch: stale})
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("Commit IfMatch of an entry since %s = %v, want ErrConflict", name, err)
		}
		if s.Peek("/p") != appended || totalChunks(t, s) != chunks {
			t.Fatalf("a refused IfMatch commit (%s) changed the store", name)
		}
	}
	if err := s.Delete("/p"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(stage(t, s, []byte("gen 3")), testEntry("/p", s.now()), CommitOptions{IfMatch: appended}); !errors.Is(err, ErrConflict) {
		t.Fatalf("Commit IfMatch of a deleted entry = %v, want ErrConflict", err)
	}
	if s.Peek("/p") != nil {
		t.Fatal("a refused IfMatch commit stored an entry")
	}
}

// TestCommitIfAbsentRace: racers commit different bodies IfAbsent on one
// key at once, small bodies and bodies large enough to be written ahead in
// batches: exactly one wins, the others get ErrExists, the key holds the
// winner's body, and the losers leave no chunk nor staging file behind
// (checkStore, at the end of the test, finds no orphan chunk either).
func TestCommitIfAbsentRace(t *testing.T) {
	for name, tc := range map[string]struct{ racers, size int }{
		"small": {16, 3*ChunkSize + 5},
		"large": {4, commitBatch + ChunkSize + 5},
	} {
		t.Run(name, func(t *testing.T) {
			s := newTestStore(t, Options{MemoryBodyLimit: -1})
			bodies := make([][]byte, tc.racers)
			for i := range bodies {
				bodies[i] = testBody(tc.size+i, uint64(i))
			}
			errs := raceCommits(t, s, "/gems/race-1.gem", bodies, func(int) CommitOptions { return CommitOptions{IfAbsent: true} })
			winner := blobtest.OnlyWinner(t, errs, ErrExists)
			if winner < 0 {
				t.Fatalf("no commit won: %v", errs)
			}
			e := s.Peek("/gems/race-1.gem")
			if got := readBodyOf(t, s, e, false); !bytes.Equal(got, bodies[winner]) {
				t.Fatal("the key does not hold the winner's body")
			}
			if n, want := totalChunks(t, s), wantChunks(len(bodies[winner])); n != want {
				t.Fatalf("%d chunks stored, want the winner's %d", n, want)
			}
			if files := tmpFiles(t, s); len(files) != 0 {
				t.Fatalf("staging files left: %v", files)
			}
		})
	}
}

// TestCommitIfMatchRace: racers commit IfMatch naming the same entry at
// once: exactly one wins, the others get ErrConflict.
func TestCommitIfMatchRace(t *testing.T) {
	s := newTestStore(t, Options{})
	old := putKey(t, s, "/versions-pointer", []byte("gen 0"), CommitOptions{})
	bodies := make([][]byte, 16)
	for i := range bodies {
		bodies[i] = testBody(100+i, uint64(i))
	}
	errs := raceCommits(t, s, old.Key, bodies, func(int) CommitOptions { return CommitOptions{IfMatch: old} })
	winner := blobtest.OnlyWinner(t, errs, ErrConflict)
	if winner < 0 {
		t.Fatalf("no commit won: %v", errs)
	}
	if got := readBodyOf(t, s, s.Peek(old.Key), false); !bytes.Equal(got, bodies[winner]) {
		t.Fatal("the key does not hold the winner's body")
	}
}

// raceCommits stages bodies, then commits them all at once to key, body i
// with opts(i), and returns the commits' errors by index.
func raceCommits(t *testing.T, s *Store, key string, bodies [][]byte, opts func(i int) CommitOptions) []error {
	stagings := make([]*Staging, len(bodies))
	for i, b := range bodies {
		stagings[i] = s.Stage()
		if _, err := stagings[i].Write(b); err != nil {
			t.Fatal(err)
		}
	}
	return blobtest.Race(len(bodies), func(i int) error {
		_, err := s.Commit(stagings[i], testEntry(key, s.now()), opts(i))
		return err
	})
}
