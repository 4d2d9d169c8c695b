package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/blobstore/s3store"
	"github.com/gemproxy/gemproxy/internal/rubyfmt"
	"github.com/gemproxy/gemproxy/internal/testupstream"
	"github.com/gemproxy/gemproxy/internal/testweed"
)

// bigGem is the large gem whose upload to the shared store is cut by a
// SIGKILL: 32 MiB, as the largest gems on rubygems.org are tens of MiB.
var bigGem = testupstream.GemSpec{Name: "biggem", Version: "1.0.0", Padding: 32 << 20}

// bigGemPath is bigGem's path, and its object key without the fleet's
// prefix.
const bigGemPath = "/gems/biggem-1.0.0.gem"

// killConfig shortens the gem class's first-byte timeout, which bounds a
// claim's lifetime (twice it), so that the replica that finds the killed
// replica's claim waits 10 s for it rather than a minute.
const killConfig = "[server]\nshutdown_grace = \"0s\"\n[class.gem]\nfirst_byte_timeout = \"5s\"\n"

// TestFleetReplicaKilledDuringUpload is half of issue 13's test 4: a
// replica killed with SIGKILL halfway through writing a large gem to the
// shared store leaves no partial object and a clean data directory; once
// restarted, it and another replica serve the gem, and the object ends up
// whole.
func TestFleetReplicaKilledDuringUpload(t *testing.T) {
	rubyfmt.RequireTools(t, "go")
	bin := buildGemproxy(t)
	t.Parallel() // its 20 s overlap the other tests' waits
	weed := testweed.Start(t)
	up, ts := testupstream.Start(t, testupstream.Options{Marshal: noRuby})
	gem, err := testupstream.BuildGem(bigGem)
	if err != nil {
		t.Fatal(err)
	}
	up.Publish(bigGem, gem)

	prefix := weed.Prefix()
	key := bigGemPath[1:]
	trap := startUploadTrap(t, weed.Endpoint, "PUT /"+testweed.Bucket+"/"+prefix+"/"+key, int64(len(gem)/2))
	victim, other, victimDir := startVictimAndOther(t, bin, weed, prefix, killConfig, ts.URL, trap.url)

	// The client gets the gem; the replica commits it locally and then
	// uploads it from its local copy: half the body has reached SeaweedFS
	// when the trap springs, and the rest is held back until the kill.
	getGem(t, victim.url, gem)
	select {
	case <-trap.sprung:
	case <-time.After(time.Minute):
		t.Fatalf("the replica never uploaded half of the gem:\n%s", victim.log())
	}
	victim.kill()
	<-trap.cut // the store now sees the PUT's connection end midway
	shared := openShared(t, weed, prefix)
	checkWholeOrAbsent(t, shared, key, gem)
	t.Logf("killed after %d of %d bytes of the upload had reached the store", len(gem)/2, len(gem))

	out := runGemproxy(t, bin, "cache", "verify", "--data-dir", victimDir)
	t.Logf("gemproxy cache verify on the killed replica's data directory: %s", out)

	victim.start()
	start := time.Now()
	getGem(t, victim.url, gem)
	getGem(t, other.url, gem)
	t.Logf("restarted replica and another one served the gem; the other in %v (it waits out the dead replica's claim)",
		time.Since(start).Round(time.Millisecond))
	waitWhole(t, shared, key, gem)
	t.Logf("upstream fetches of the gem: %d", up.Requests(bigGemPath))
}

// startVictimAndOther starts two replicas of bin on one shared store (the
// prefix of weed), both with the config file text config and upstream: the
// victim reaches the store through trapURL, the other directly. dir is the
// victim's data directory, for `gemproxy cache verify` after a kill.
func startVictimAndOther(t *testing.T, bin string, weed *testweed.Server, prefix, config, upstream, trapURL string) (victim, other *served, dir string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gemproxy.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	store := "s3://" + testweed.Bucket + "/" + prefix
	dir = t.TempDir()
	victim = startServe(t, bin, weed.Env(), "--config", path, "--data-dir", dir, "--upstream", upstream,
		"--shared-store", store, "--s3-endpoint", trapURL)
	other = startServe(t, bin, weed.Env(), "--config", path, "--data-dir", t.TempDir(), "--upstream", upstream,
		"--shared-store", store, "--s3-endpoint", weed.Endpoint)
	return victim, other, dir
}

// getGem fetches the gem from base and fails unless it is want.
func getGem(t *testing.T, base string, want []byte) {
	t.Helper()
	resp, err := http.Get(base + bigGemPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
		t.Fatalf("GET %s%s: %d, %d bytes (want %d), %v", base, bigGemPath, resp.StatusCode, len(got), len(want), err)
	}
}

// openShared is a client of the fleet's prefix in the test SeaweedFS.
func openShared(t *testing.T, weed *testweed.Server, prefix string) *s3store.Store {
	t.Helper()
	s, err := s3store.New(t.Context(), s3store.Options{Bucket: testweed.Bucket, Prefix: prefix,
		Endpoint: weed.Endpoint, Credentials: testweed.Credentials(), Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkWholeOrAbsent fails if the object at key exists with other bytes
// than want (compared by SHA-256).
func checkWholeOrAbsent(t *testing.T, s blobstore.Store, key string, want []byte) {
	t.Helper()
	got, err := readObject(s, key)
	switch {
	case errors.Is(err, blobstore.ErrNotFound):
		t.Logf("%s is absent from the store", key)
	case err != nil:
		t.Fatalf("reading %s: %v", key, err)
	case sha256.Sum256(got) != sha256.Sum256(want):
		t.Fatalf("%s is a partial or wrong object: %d bytes, want %d with the gem's SHA-256", key, len(got), len(want))
	default:
		t.Logf("%s is whole", key)
	}
}

// waitWhole waits, for at most a minute, until the object at key holds
// want.
func waitWhole(t *testing.T, s blobstore.Store, key string, want []byte) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got, err := readObject(s, key)
		if err == nil {
			if sha256.Sum256(got) != sha256.Sum256(want) {
				t.Fatalf("%s: %d bytes with another SHA-256 than the gem's", key, len(got))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never written whole: %v", key, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readObject reads the whole object at key.
func readObject(s blobstore.Store, key string) ([]byte, error) {
	rc, _, err := s.Get(context.Background(), key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// uploadTrap relays TCP connections to an S3 server and traps the first
// request whose request line starts with its marker (a PUT of one object).
// By default it springs once limit bytes of that request's body have gone
// through: it stops forwarding the request, so that the object's body
// stays cut midway whatever the client does. With holdAnswer it lets the
// whole request through and springs when the server answers, holding the
// answer back: the write has landed, the writer never learns it. Either
// way it closes the connection to the server once the client's side has
// ended.
type uploadTrap struct {
	// url is the trap's address as an S3 endpoint.
	url string
	// target is the server's host:port, marker what starts the request
	// line, limit the body bytes let through.
	target string
	marker []byte
	limit  int64
	// holdAnswer traps the answer instead of the request's body.
	holdAnswer bool
	// armed is cleared when the trap springs: later uploads go through.
	armed atomic.Bool
	// sprung is closed when the trap springs, cut once the trapped
	// connection to the server is closed.
	sprung, cut chan struct{}
}

// startUploadTrap listens on loopback until the end of the test and
// relays every connection to endpoint (http://host:port), cutting the
// first request that starts with marker after limit bytes of its body.
func startUploadTrap(t *testing.T, endpoint, marker string, limit int64) *uploadTrap {
	t.Helper()
	return startTrap(t, endpoint, &uploadTrap{marker: []byte(marker), limit: limit})
}

// startAnswerTrap is startUploadTrap for a trap that lets the first
// request starting with marker through whole and holds back its answer.
func startAnswerTrap(t *testing.T, endpoint, marker string) *uploadTrap {
	t.Helper()
	return startTrap(t, endpoint, &uploadTrap{marker: []byte(marker), holdAnswer: true})
}

// startTrap arms u and relays every connection to its listener to
// endpoint until the end of the test.
func startTrap(t *testing.T, endpoint string, u *uploadTrap) *uploadTrap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u.url, u.target = "http://"+ln.Addr().String(), endpoint[len("http://"):]
	u.sprung, u.cut = make(chan struct{}), make(chan struct{})
	u.armed.Store(true)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go u.relay(conn)
		}
	}()
	return u
}

// relay forwards one client connection to the server, both ways.
func (u *uploadTrap) relay(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", u.target)
	if err != nil {
		return
	}
	var holding atomic.Bool
	go u.answer(client, server, &holding)
	trapped := u.forward(server, client, &holding)
	server.Close()
	if trapped {
		close(u.cut)
	}
}

// answer copies the server's bytes to the client until either side ends;
// once holding is set (the trapped request went through whole) it drops
// them instead, and springs the trap when the first arrive.
func (u *uploadTrap) answer(client io.WriteCloser, server io.Reader, holding *atomic.Bool) {
	defer client.Close()
	buf := make([]byte, 32<<10)
	held := false
	for {
		n, err := server.Read(buf)
		switch {
		case n == 0:
		case holding.Load():
			if !held {
				held = true
				close(u.sprung)
			}
		default:
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// forward copies the client's bytes to the server until either side ends.
// While the trap is armed it watches for the trapped request: with
// holdAnswer it sets holding before that request reaches the server;
// otherwise, once limit bytes of its body have gone through, it springs,
// reads and drops the client's bytes until the client is gone. It reports
// whether this connection was trapped.
func (u *uploadTrap) forward(server io.Writer, client io.Reader, holding *atomic.Bool) (trapped bool) {
	buf := make([]byte, 32<<10)
	watch := requestWatch{marker: u.marker, body: -1}
	for {
		n, err := client.Read(buf)
		chunk := buf[:n]
		if !trapped && u.armed.Load() {
			found, body := watch.feed(chunk)
			switch {
			case u.holdAnswer && found && u.armed.CompareAndSwap(true, false):
				trapped = true
				holding.Store(true)
			case !u.holdAnswer && body >= u.limit && u.armed.CompareAndSwap(true, false):
				_, _ = server.Write(chunk[:int64(n)-(body-u.limit)])
				close(u.sprung)
				_, _ = io.Copy(io.Discard, client)
				return true
			}
		}
		if _, werr := server.Write(chunk); werr != nil || err != nil {
			return trapped
		}
	}
}

// headersEnd ends the header block of an HTTP/1.1 request.
var headersEnd = []byte("\r\n\r\n")

// requestWatch finds, in what a client sends on one connection, the first
// request whose request line starts with marker, and counts its body.
type requestWatch struct {
	marker []byte
	// window is, before the marker is found, the end of the stream that
	// may start it; after, the stream from the marker until the end of the
	// request's headers.
	window []byte
	found  bool
	// body counts the request's body bytes read, -1 until its headers
	// have ended.
	body int64
}

// feed reads the next chunk of the stream and reports whether the request
// was found, and how many bytes of its body were read (-1 until its
// headers have ended).
func (w *requestWatch) feed(chunk []byte) (found bool, body int64) {
	if w.body >= 0 {
		w.body += int64(len(chunk))
		return true, w.body
	}
	w.window = append(w.window, chunk...)
	if !w.found {
		i := bytes.Index(w.window, w.marker)
		if i < 0 {
			if keep := len(w.marker) - 1; len(w.window) > keep {
				w.window = append(w.window[:0], w.window[len(w.window)-keep:]...)
			}
			return false, -1
		}
		w.found, w.window = true, w.window[i:]
	}
	if j := bytes.Index(w.window, headersEnd); j >= 0 {
		w.body = int64(len(w.window) - j - len(headersEnd))
		w.window = nil
	}
	return true, w.body
}
