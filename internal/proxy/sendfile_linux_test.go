package proxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// TestSentGemsSurviveCacheRewrites: the bytes of stored gems that
// clients have not read yet, queued in their connections after gemproxy
// sent them, stay those of the gems while the cache goes on: other gems
// committed (bbolt rewrites a leaf that holds a chunk to new pages and
// frees the old ones), the sent gems deleted, their pages reused. A
// zero-copy send (sendfile from the cache file) fails this: queued data
// references the file's page-cache pages, which bbolt rewrites in place,
// and a client gets a gem of the right length with other bytes.
func TestSentGemsSurviveCacheRewrites(t *testing.T) {
	const gems, size = 6, cache.ChunkSize + cache.ChunkSize/4
	up, ts := testupstream.Start(t, testupstream.Options{})
	bodies := make([][]byte, gems)
	for i := range bodies {
		bodies[i] = make([]byte, size)
		rand.Read(bodies[i])
		up.Publish(testupstream.GemSpec{Name: fmt.Sprintf("churn%d", i), Version: "1.0.0"}, bodies[i])
	}
	tp := newTestProxy(t, ts.URL)
	addr := tp.listen(t)
	clients := make([]*queuedClient, gems)
	for i := range clients {
		path := fmt.Sprintf("/gems/churn%d-1.0.0.gem", i)
		if body, err := getOverTCP(addr, path); err != nil || !bytes.Equal(body, bodies[i]) {
			t.Fatalf("fill of %s: %v, equal %v", path, err, bytes.Equal(body, bodies[i]))
		}
		clients[i] = dialQueued(t, addr, path, size)
	}
	for _, c := range clients {
		c.awaitQueued(t)
		// Its body is freed as soon as its reader closed: all was sent.
		if err := tp.store.Delete(c.path); err != nil {
			t.Fatal(err)
		}
	}
	// Commit gems of the same size until they reuse the freed pages, or
	// a queued body already changed.
	for round := 0; round < 30 && queuedBodiesAre(t, clients, bodies); round++ {
		for i := range gems {
			commitGem(t, tp.store, fmt.Sprintf("/gems/filler%d-%d.gem", round, i), size)
		}
	}
	for i, c := range clients {
		if got := c.readBody(t); !bytes.Equal(got, bodies[i]) {
			t.Errorf("%s, read once the cache changed: %d bytes (want %d), not the gem's", c.path, len(got), len(bodies[i]))
		}
	}
}

// getOverTCP fetches path from addr on a connection of its own and
// returns the body of the answer.
func getOverTCP(addr, path string) ([]byte, error) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// queuedClient is a client that sent a GET and reads none of the answer
// until told: the answer stays queued in its connection meanwhile.
type queuedClient struct {
	path string
	// size is the length of the answer's body.
	size int
	conn *net.TCPConn
	raw  syscall.RawConn
}

// dialQueued connects to addr with a receive buffer large enough to
// queue the whole answer to a GET of path (a body of size bytes) and
// sends that GET.
func dialQueued(t *testing.T, addr, path string, size int) *queuedClient {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4*size)
		})
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &queuedClient{path: path, size: size, conn: conn.(*net.TCPConn)}
	if c.raw, err = c.conn.SyscallConn(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: gemproxy.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

// peek returns the bytes of the answer queued in c's connection so far,
// without taking them.
func (c *queuedClient) peek(t *testing.T) []byte {
	t.Helper()
	buf := make([]byte, 4*c.size)
	n := 0
	err := c.raw.Read(func(fd uintptr) bool {
		var err error
		n, _, err = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if errors.Is(err, syscall.EAGAIN) {
			n = 0
		} else if err != nil {
			t.Fatalf("peek at %s: %v", c.path, err)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// queuedBody returns the body of the answer queued in c's connection,
// nil until all of it is queued.
func (c *queuedClient) queuedBody(t *testing.T) []byte {
	t.Helper()
	b := c.peek(t)
	_, body, found := bytes.Cut(b, []byte("\r\n\r\n"))
	if !found || len(body) < c.size {
		return nil
	}
	return body
}

// awaitQueued waits until the whole answer is queued in c's connection:
// the proxy sent all of it.
func (c *queuedClient) awaitQueued(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); c.queuedBody(t) == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the answer was not all queued within 10s: %d bytes", c.path, len(c.peek(t)))
		}
	}
}

// queuedBodiesAre reports whether the body queued for every client is
// still the one of bodies at its index.
func queuedBodiesAre(t *testing.T, clients []*queuedClient, bodies [][]byte) bool {
	t.Helper()
	for i, c := range clients {
		if !bytes.Equal(c.queuedBody(t), bodies[i]) {
			return false
		}
	}
	return true
}

// readBody reads the queued answer as a client does and returns its body.
func (c *queuedClient) readBody(t *testing.T) []byte {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(c.conn), nil)
	if err != nil {
		t.Fatalf("%s: %v", c.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("%s: %d, X-Cache %q, %v", c.path, resp.StatusCode, resp.Header.Get("X-Cache"), err)
	}
	return body
}

// commitGem stores size random bytes as a gem under key, straight into s.
func commitGem(t *testing.T, s *cache.Store, key string, size int) {
	t.Helper()
	body := make([]byte, size)
	rand.Read(body)
	st := s.Stage()
	if _, err := st.Write(body); err != nil {
		t.Fatal(err)
	}
	e := cache.Entry{Key: key, Class: string(ClassGem), Status: http.StatusOK, StoredAt: time.Now(), Immutable: true}
	if _, err := s.Commit(st, e, cache.CommitOptions{}); err != nil {
		t.Fatal(err)
	}
}
