package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/rubyfmt"
	"github.com/gemproxy/gemproxy/internal/testupstream"
	"github.com/gemproxy/gemproxy/internal/testweed"
)

// The keys of the fleet's /versions in the shared store (docs/fleet.md).
const (
	// pointerKey is the pointer to the current generation.
	pointerKey = "versions/current"
	// generationPrefix prefixes the write-once generation objects.
	generationPrefix = "versions/gen/"
)

// versionsKillConfig keeps /versions fresh for ten minutes, so that a
// replica that answers a client ahead of it with a newer file can only
// have caught up for that client, not refreshed because its copy expired.
const versionsKillConfig = "[server]\nshutdown_grace = \"0s\"\n[class.versions]\nttl = \"10m\"\n"

// fleetPointer is the content of the pointer, as docs/fleet.md states it.
type fleetPointer struct {
	// Generation counts the bodies published; Key is the generation
	// object's key, Size and SHA256 (hex) what its body must be,
	// CreatedAt the created_at stamp of its first line, and Replaced the
	// key of the generation it replaced.
	Generation int64  `json:"generation"`
	Key        string `json:"key"`
	Size       int64  `json:"size"`
	SHA256     string `json:"sha256"`
	CreatedAt  string `json:"created_at,omitempty"`
	Replaced   string `json:"replaced,omitempty"`
}

// TestFleetReplicaKilledDuringVersionsPublication is the other half of
// issue 13's test 4: a replica killed with SIGKILL while it publishes a
// new /versions to the fleet, at each step of the publication. The
// pointer stays whole, the old one or the new one; no generation object
// is partial; the killed replica's data directory verifies clean; the
// other replica and the restarted one serve /versions consistent with the
// pointer, and a client ahead of both still gets a 206.
func TestFleetReplicaKilledDuringVersionsPublication(t *testing.T) {
	rubyfmt.RequireTools(t, "go")
	bin := buildGemproxy(t)
	t.Parallel() // its waits overlap the other tests'
	cases := []struct {
		name string
		// trap traps the victim's write to the store; newPointer is
		// whether the pointer must then name the victim's generation.
		trap       func(t *testing.T, endpoint, putPrefix string) *uploadTrap
		newPointer bool
	}{
		{"pointer cut halfway", func(t *testing.T, endpoint, put string) *uploadTrap {
			return startUploadTrap(t, endpoint, put+pointerKey, pointerBodyHalf)
		}, false},
		{"pointer written, answer held", func(t *testing.T, endpoint, put string) *uploadTrap {
			return startAnswerTrap(t, endpoint, put+pointerKey)
		}, true},
		{"generation cut halfway", func(t *testing.T, endpoint, put string) *uploadTrap {
			return startUploadTrap(t, endpoint, put+generationPrefix, generationBodyHalf)
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			replicaKilledDuringVersionsPublication(t, bin, c.trap, c.newPointer)
		})
	}
}

// pointerBodyHalf and generationBodyHalf are about half of the pointer's
// body (some 150 bytes of JSON) and of the fixture's /versions (some 500
// bytes): the body bytes a trap lets through before it cuts the write.
const (
	pointerBodyHalf    = 64
	generationBodyHalf = 200
)

// replicaKilledDuringVersionsPublication runs one case: another replica
// publishes generation 1, a release upstream, the victim (whose store
// traffic goes through the trap) fetches the longer /versions and
// publishes it as generation 2 until trap springs, and is killed.
func replicaKilledDuringVersionsPublication(t *testing.T, bin string,
	trap func(t *testing.T, endpoint, putPrefix string) *uploadTrap, newPointer bool) {
	weed := testweed.Start(t)
	up, ts := testupstream.Start(t, testupstream.Options{Marshal: noRuby})
	publishFixture(t, up)
	prefix := weed.Prefix()
	trapped := trap(t, weed.Endpoint, "PUT /"+testweed.Bucket+"/"+prefix+"/")
	victim, other, victimDir := startVictimAndOther(t, bin, weed, prefix, versionsKillConfig, ts.URL, trapped.url)
	shared := openShared(t, weed, prefix)

	getVersions(t, other.url)
	old := waitPointer(t, shared)
	up.Publish(testupstream.GemSpec{Name: "late-a", Version: "1.0.0"}, nil)
	v2 := upstreamVersions(t, up)
	if got := getVersions(t, victim.url); !bytes.Equal(got, v2) {
		t.Fatalf("the victim served a /versions of %d bytes, want the upstream's %d", len(got), len(v2))
	}
	select {
	case <-trapped.sprung:
	case <-time.After(time.Minute):
		t.Fatalf("the victim never published its /versions:\n%s", victim.log())
	}
	victim.kill()
	<-trapped.cut

	want := old
	if newPointer {
		want = fleetPointer{Generation: old.Generation + 1, Size: int64(len(v2)), SHA256: sha256Hex(v2),
			CreatedAt: createdAt(v2), Replaced: old.Key}
		want.Key = fmt.Sprintf("%s%d-%s", generationPrefix, want.Generation, want.SHA256)
	}
	ptr := checkPointer(t, shared)
	if ptr != want {
		t.Errorf("after the kill the pointer is %+v, want %+v", ptr, want)
	}
	t.Logf("after the kill the pointer names generation %d (%d before the victim's publication)", ptr.Generation, old.Generation)
	checkGenerations(t, weed, prefix, shared)
	t.Logf("gemproxy cache verify on the killed replica's data directory: %s",
		runGemproxy(t, bin, "cache", "verify", "--data-dir", victimDir))

	victim.start()
	current := readGeneration(t, shared, ptr)
	for _, r := range []*served{other, victim} {
		waitConsistent(t, r.url, current)
	}
	clientAheadGets206(t, up, other, victim)
}

// getVersions fetches /versions from base in full and returns its body.
func getVersions(t *testing.T, base string) []byte {
	t.Helper()
	resp, body := getWith(t, base+"/versions", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/versions: %d", base, resp.StatusCode)
	}
	return body
}

// getWith sends GET url with header and returns the response (its body
// closed) and the body.
func getWith(t *testing.T, url string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// upstreamVersions is the upstream's /versions now.
func upstreamVersions(t *testing.T, up *testupstream.Server) []byte {
	t.Helper()
	b, ok := up.Body("/versions")
	if !ok {
		t.Fatal("the upstream has no /versions")
	}
	return b
}

// waitPointer waits, for at most a minute, until the fleet has a pointer,
// and returns it, checked.
func waitPointer(t *testing.T, s blobstore.Store) fleetPointer {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if _, err := s.Stat(context.Background(), pointerKey); err == nil {
			return checkPointer(t, s)
		}
		if time.Now().After(deadline) {
			t.Fatal("no replica published /versions to the fleet within a minute")
		}
	}
}

// createdAt is the created_at stamp of a /versions body's first line.
func createdAt(versions []byte) string {
	line, _, _ := bytes.Cut(versions, []byte("\n"))
	return strings.TrimSpace(strings.TrimPrefix(string(line), "created_at:"))
}

// checkPointer reads the pointer and fails unless it is whole: JSON of
// exactly the pointer's fields, naming the generation object of its own
// generation and SHA-256, which exists with the size and SHA-256 it
// names.
func checkPointer(t *testing.T, s blobstore.Store) fleetPointer {
	t.Helper()
	raw, err := readObject(s, pointerKey)
	if err != nil {
		t.Fatalf("reading the pointer: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var ptr fleetPointer
	if err := dec.Decode(&ptr); err != nil || dec.More() {
		t.Fatalf("the pointer is not whole JSON (%v): %q", err, raw)
	}
	if ptr.Generation < 1 || ptr.Key != fmt.Sprintf("%s%d-%s", generationPrefix, ptr.Generation, ptr.SHA256) {
		t.Fatalf("the pointer does not name the object of its generation and SHA-256: %q", raw)
	}
	readGeneration(t, s, ptr)
	return ptr
}

// readGeneration reads the generation object ptr names and fails unless
// it has the size and SHA-256 ptr names.
func readGeneration(t *testing.T, s blobstore.Store, ptr fleetPointer) []byte {
	t.Helper()
	body, err := readObject(s, ptr.Key)
	if err != nil {
		t.Fatalf("the pointer names %s: %v", ptr.Key, err)
	}
	if int64(len(body)) != ptr.Size || sha256Hex(body) != ptr.SHA256 {
		t.Fatalf("%s holds %d bytes of SHA-256 %s; the pointer says %d bytes of %s",
			ptr.Key, len(body), sha256Hex(body), ptr.Size, ptr.SHA256)
	}
	return body
}

// checkGenerations fails if an object under the generation prefix of the
// fleet's prefix in s is not whole: its SHA-256 must be the one its key
// ends with.
func checkGenerations(t *testing.T, weed *testweed.Server, prefix string, s blobstore.Store) {
	t.Helper()
	keys := listKeys(t, weed, prefix, generationPrefix)
	for _, key := range keys {
		body, err := readObject(s, key)
		if err != nil {
			t.Fatalf("reading %s: %v", key, err)
		}
		if !strings.HasSuffix(key, "-"+sha256Hex(body)) {
			t.Errorf("%s is partial or wrong: %d bytes of SHA-256 %s", key, len(body), sha256Hex(body))
		}
	}
	t.Logf("generation objects after the kill: %q", keys)
}

// listKeys lists the keys under the fleet's prefix in the test bucket
// that start with under, without the fleet's prefix.
func listKeys(t *testing.T, weed *testweed.Server, prefix, under string) []string {
	t.Helper()
	client := s3.New(s3.Options{BaseEndpoint: &weed.Endpoint, UsePathStyle: true, Region: testweed.Region,
		Credentials: testweed.Credentials()})
	bucket, from := testweed.Bucket, prefix+"/"+under
	var keys []string
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &from})
	for pages.HasMorePages() {
		page, err := pages.NextPage(t.Context())
		if err != nil {
			t.Fatalf("listing %s: %v", from, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, strings.TrimPrefix(*o.Key, prefix+"/"))
		}
	}
	return keys
}

// waitConsistent waits, for at most 30 s (the replicas read the pointer
// every 5 s), until the replica at base serves a /versions that extends
// the pointer's generation body (never behind it, never another file).
func waitConsistent(t *testing.T, base string, current []byte) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		got := getVersions(t, base)
		if bytes.HasPrefix(got, current) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s serves a /versions of %d bytes that does not extend the pointer's %d", base, len(got), len(current))
		}
	}
}

// clientAheadGets206 publishes a release, takes the upstream's /versions
// as a client whose last run went straight to rubygems.org (Bundler's
// cache is shared with the mirror's), publishes another, and asks each
// replica as Bundler would, from the client's last byte with its ETag:
// each must answer a 206 whose tail makes the client's file the upstream's.
func clientAheadGets206(t *testing.T, up *testupstream.Server, replicas ...*served) {
	t.Helper()
	up.Publish(testupstream.GemSpec{Name: "late-b", Version: "1.0.0"}, nil)
	local := upstreamVersions(t, up)
	up.Publish(testupstream.GemSpec{Name: "late-c", Version: "1.0.0"}, nil)
	want := upstreamVersions(t, up)
	for _, r := range replicas {
		resp, tail := getWith(t, r.url+"/versions", http.Header{
			"Range":         {fmt.Sprintf("bytes=%d-", len(local)-1)},
			"If-None-Match": {fmt.Sprintf("%q", md5Hex(local))},
		})
		if resp.StatusCode != http.StatusPartialContent || len(tail) == 0 || tail[0] != local[len(local)-1] {
			t.Fatalf("a client ahead of %s got %d with %d bytes, want a 206 from its last byte", r.url, resp.StatusCode, len(tail))
		}
		got := append(bytes.Clone(local), tail[1:]...)
		if !bytes.Equal(got, want) || resp.Header.Get("ETag") != fmt.Sprintf("%q", md5Hex(got)) {
			t.Fatalf("the client's /versions after the 206 of %s is not the upstream's: %d bytes (want %d), ETag %s",
				r.url, len(got), len(want), resp.Header.Get("ETag"))
		}
	}
}

// sha256Hex is the SHA-256 of b in hex.
func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// md5Hex is the MD5 of b in hex, as an ETag of the compact index carries it.
func md5Hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}
