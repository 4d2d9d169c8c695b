package s3store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/blobstore/blobtest"
)

// The credentials SeaweedFS is started with (it takes its admin identity
// from the environment).
const (
	weedAccessKey = "admin"
	weedSecretKey = "adminsecret"
	weedBucket    = "gemproxy-test"
)

// weed is the SeaweedFS server that the tests of this package share,
// started on first use and stopped by TestMain.
var weed struct {
	// once starts it; endpoint is its S3 URL, cmd its process, dir its
	// temporary directory, err why it could not be started.
	once     sync.Once
	endpoint string
	cmd      *exec.Cmd
	dir      string
	err      error
	// prefixes numbers the prefixes handed to tests.
	prefixes atomic.Int64
}

// TestMain stops the shared SeaweedFS, by PID, after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	stopWeed()
	os.Exit(code)
}

// weedStore returns a store on a prefix of its own in the shared
// SeaweedFS. Without a SeaweedFS binary (it could not be built), the test
// skips, or fails under CI.
func weedStore(t testing.TB) *Store {
	t.Helper()
	// SeaweedFS queues concurrent If-Match writes of one key behind a lock
	// that it polls about once a second: 16 racers take up to 6 s on a
	// loaded machine.
	return weedStoreTimeout(t, 30*time.Second)
}

// weedStoreTimeout is weedStore with the given call timeout.
func weedStoreTimeout(t testing.TB, timeout time.Duration) *Store {
	t.Helper()
	weed.once.Do(startWeed)
	if weed.err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("SeaweedFS: %v", weed.err)
		}
		t.Skipf("no SeaweedFS to test against: %v", weed.err)
	}
	prefix := fmt.Sprintf("t%d", weed.prefixes.Add(1))
	return newTestStore(t, weed.endpoint, weedBucket, func(o *Options) {
		o.Prefix = prefix
		o.Timeout = timeout
	})
}

// startWeed builds (or finds in its cache) SeaweedFS, starts it on free
// loopback ports with a temporary data directory, and creates the bucket.
func startWeed() {
	bin, err := weedBinary()
	if err != nil {
		weed.err = err
		return
	}
	if weed.dir, err = os.MkdirTemp("", "gemproxy-weed-"); err != nil {
		weed.err = err
		return
	}
	ports, err := freePorts(10)
	if err != nil {
		weed.err = err
		return
	}
	weed.endpoint = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	weed.cmd = exec.Command(bin, weedArgs(weed.dir, ports)...)
	weed.cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+weedAccessKey,
		"AWS_SECRET_ACCESS_KEY="+weedSecretKey, "GOMEMLIMIT=512MiB")
	log, err := os.Create(filepath.Join(weed.dir, "weed.out"))
	if err != nil {
		weed.err = err
		return
	}
	weed.cmd.Stdout, weed.cmd.Stderr = log, log
	if err := weed.cmd.Start(); err != nil {
		weed.err = fmt.Errorf("starting %s: %w", bin, err)
		return
	}
	if err := createBucket(weed.endpoint); err != nil {
		out, _ := os.ReadFile(log.Name())
		weed.err = fmt.Errorf("SeaweedFS did not come up: %w\n%s", err, tail(out, 2000))
	}
}

// weedArgs is the command line of SeaweedFS: every port chosen (S3 first),
// telemetry and the extra front ends off, bound to loopback only.
func weedArgs(dir string, ports []int) []string {
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	data := filepath.Join(dir, "data")
	logs := filepath.Join(dir, "logs")
	for _, d := range []string{data, logs} {
		os.MkdirAll(d, 0o755)
	}
	return []string{"-logdir=" + logs, "mini", "-dir=" + data,
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
		"-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
		"-s3.port=" + p(0), "-s3.port.grpc=" + p(1),
		"-master.port=" + p(2), "-master.port.grpc=" + p(3),
		"-volume.port=" + p(4), "-volume.port.grpc=" + p(5),
		"-filer.port=" + p(6), "-filer.port.grpc=" + p(7),
		"-admin.port=" + p(8), "-admin.port.grpc=" + p(9), "-admin.port.legacy=0",
	}
}

// weedBinary runs testdata/build-weed.sh, which prints the cached binary's
// path at once, or builds it first (minutes, on a cold cache).
func weedBinary() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join("testdata", "build-weed.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("testdata/build-weed.sh: %w\n%s", err, tail(stderr.Bytes(), 2000))
	}
	return strings.TrimSpace(string(out)), nil
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// createBucket creates the test bucket, retrying while SeaweedFS starts.
func createBucket(endpoint string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := New(ctx, Options{Bucket: weedBucket, Endpoint: endpoint, Region: "us-east-1",
		Credentials: staticCredentials(), MaxAttempts: 1, Breaker: breakerOff})
	if err != nil {
		return err
	}
	for {
		_, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.opts.Bucket})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stopWeed stops SeaweedFS by its PID, killing it if it has not exited
// within 10 seconds, and removes its directory.
func stopWeed() {
	if weed.cmd != nil && weed.cmd.Process != nil {
		weed.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() {
			weed.cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			weed.cmd.Process.Kill()
			<-done
		}
	}
	if weed.dir != "" {
		os.RemoveAll(weed.dir)
	}
}

// tail is the end of a log, at most n bytes.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// TestSeaweedFSCompliance runs the compliance suite on a real S3 server.
func TestSeaweedFSCompliance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobstore.Store { return weedStore(t) })
}

// TestSeaweedFSPutIfAbsentRounds: rounds of 32 writers racing for one new
// object each, as replicas filling one cold gem would: exactly one winner
// per round.
func TestSeaweedFSPutIfAbsentRounds(t *testing.T) {
	s := weedStore(t)
	const rounds, racers = 5, 32
	start := time.Now()
	for round := range rounds {
		blobtest.RacePutIfAbsent(t, s, fmt.Sprintf("gems/race-%d.gem", round), racers)
	}
	t.Logf("%d rounds of %d racers: exactly 1 winner each, %s per round",
		rounds, racers, time.Since(start)/rounds)
}

// BenchmarkSeaweedFS measures one call's latency on loopback, by size.
func BenchmarkSeaweedFS(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		body := bytes.Repeat([]byte{'g'}, size)
		b.Run(fmt.Sprintf("PutIfAbsent/%dKiB", size>>10), func(b *testing.B) {
			s := weedStore(b)
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				if _, err := s.PutIfAbsent(b.Context(), fmt.Sprintf("gems/b-%d.gem", i), bytes.NewReader(body), int64(size)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("Get/%dKiB", size>>10), func(b *testing.B) {
			s := weedStore(b)
			if _, err := s.PutIfAbsent(b.Context(), "gems/b.gem", bytes.NewReader(body), int64(size)); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			for b.Loop() {
				rc, _, err := s.Get(b.Context(), "gems/b.gem")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
	}
}
