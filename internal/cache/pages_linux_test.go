package cache

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
)

// mappedRSS returns the resident bytes of the process's mappings of the
// file at path (the "Rss" lines of /proc/self/smaps).
func mappedRSS(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer f.Close()
	var total int64
	inFile := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			inFile = len(fields) >= 6 && fields[5] == path
		case inFile && len(fields) == 3 && fields[0] == "Rss:":
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			total += kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

// TestStreamingReleasesMappedPages: streaming a large body, copied
// (WriteTo) or written to a socket from the mapping (SendTo), leaves none
// of its pages resident in the mapping of the cache file.
func TestStreamingReleasesMappedPages(t *testing.T) {
	s := newTestStore(t, Options{})
	body := testBody(releaseBodyMin+3*ChunkSize+12345, 9)
	e := putKey(t, s, "/gems/large.gem", body, CommitOptions{})
	streams := map[string]func(r *Reader) (int64, error){
		"WriteTo": func(r *Reader) (int64, error) { return r.WriteTo(io.Discard) },
		"SendTo": func(r *Reader) (int64, error) {
			n, _, err := sendReceive(t, r)
			return n, err
		},
	}
	for name, stream := range streams {
		before := mappedRSS(t, s.db.Path())
		r, err := s.Open(e, false)
		if err != nil {
			t.Fatal(err)
		}
		n, err := stream(r)
		r.Close()
		if err != nil || n != int64(len(body)) {
			t.Fatalf("%s = %d, %v", name, n, err)
		}
		// Every page of the body was read through the mapping; none may
		// stay resident in it, or a few streams of a large gem keep the
		// whole gem in the process's RSS. bbolt's own pages (meta,
		// branches) may be mapped in passing.
		if grown := mappedRSS(t, s.db.Path()) - before; grown > 128<<10 {
			t.Errorf("%s: the mapping of the cache file grew by %d bytes while streaming a %d-byte body", name, grown, len(body))
		}
	}
}
