// Package testweed runs the SeaweedFS S3 server that the shared-store
// integration tests use on loopback: one server per test binary, started
// on first use, with one bucket in which every test gets a prefix of its
// own. SeaweedFS is built by build-weed.sh (next to this file; `make weed`
// runs it) and cached between runs. A test binary that uses it stops it in
// TestMain:
//
//	func TestMain(m *testing.M) { testweed.Main(m) }
//
// When the binary cannot be built or started, the tests that ask for the
// server skip with the reason, or fail when the CI variable is set.
package testweed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The credentials SeaweedFS is started with (it takes its admin identity
// from the environment), the region clients sign for, and the one bucket
// the tests share.
const (
	AccessKey = "admin"
	SecretKey = "adminsecret"
	Region    = "us-east-1"
	Bucket    = "gemproxy-test"
)

// Server is the running SeaweedFS of this test binary.
type Server struct {
	// Endpoint is its S3 URL, http://127.0.0.1:PORT.
	Endpoint string
	// cmd is its process, dir its temporary directory.
	cmd *exec.Cmd
	dir string
}

// shared is the server of this test binary, started on first use.
var shared struct {
	// once starts it; srv is the server, err why it could not be started.
	once sync.Once
	srv  *Server
	err  error
	// prefixes numbers the prefixes handed to tests.
	prefixes atomic.Int64
}

// Start returns the test binary's server, starting it on first use (and
// building SeaweedFS first when no cached binary is found). Without one,
// tb skips with the reason, or fails when CI is set.
func Start(tb testing.TB) *Server {
	tb.Helper()
	shared.once.Do(func() { shared.err = start() })
	if shared.err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("SeaweedFS: %v", shared.err)
		}
		tb.Skipf("no SeaweedFS to test against: %v", shared.err)
	}
	return shared.srv
}

// Prefix returns a key prefix in Bucket that no other test of this binary
// has been given.
func (s *Server) Prefix() string {
	return fmt.Sprintf("t%d", shared.prefixes.Add(1))
}

// Env is the AWS environment of a process (a gemproxy replica) that
// reaches the server with the standard credential chain.
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey, "AWS_REGION=" + Region}
}

// Credentials are the credentials of Env for an in-process client.
func Credentials() credentials.StaticCredentialsProvider {
	return credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, "")
}

// Pause stops the server with SIGSTOP (it keeps its connections and
// answers nothing) and returns the function that resumes it with SIGCONT,
// which also runs at the end of the test.
func (s *Server) Pause(tb testing.TB) (resume func()) {
	tb.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		tb.Fatal(err)
	}
	resumed := false
	resume = func() {
		if !resumed {
			resumed = true
			_ = s.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	tb.Cleanup(resume)
	return resume
}

// Main runs the tests of m, stops the server if they started it, and
// exits with their code: a TestMain for the packages that use Start.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops the server, if it was started, by its PID (killing it when it
// has not exited within 10 seconds) and removes its directory.
func Stop() {
	s := shared.srv
	if s == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	_ = os.RemoveAll(s.dir)
}

// start builds (or finds in its cache) SeaweedFS, starts it on free
// loopback ports with a temporary data directory as shared.srv, and
// creates Bucket.
func start() error {
	bin, err := binary()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "gemproxy-weed-")
	if err != nil {
		return err
	}
	ports, err := freePorts(10)
	if err != nil {
		return err
	}
	s := &Server{Endpoint: "http://127.0.0.1:" + strconv.Itoa(ports[0]), dir: dir}
	s.cmd = exec.Command(bin, args(dir, ports)...)
	s.cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+AccessKey,
		"AWS_SECRET_ACCESS_KEY="+SecretKey, "GOMEMLIMIT=512MiB")
	log, err := os.Create(filepath.Join(dir, "weed.out"))
	if err != nil {
		return err
	}
	defer log.Close()
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	// From here on Stop cleans up, whatever happens next.
	shared.srv = s
	if err := s.createBucket(); err != nil {
		out, _ := os.ReadFile(log.Name())
		return fmt.Errorf("SeaweedFS did not come up: %w\n%s", err, tail(out, 2000))
	}
	return nil
}

// args is the command line of SeaweedFS: every port chosen (S3 first),
// telemetry and the extra front ends off, bound to loopback only.
func args(dir string, ports []int) []string {
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	data := filepath.Join(dir, "data")
	logs := filepath.Join(dir, "logs")
	for _, d := range []string{data, logs} {
		_ = os.MkdirAll(d, 0o755)
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

// binary runs build-weed.sh, which prints the cached binary's path at
// once, or builds it first (minutes, on a cold cache).
func binary() (string, error) {
	script, err := buildScript()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", script, err, tail(stderr.Bytes(), 2000))
	}
	return strings.TrimSpace(string(out)), nil
}

// buildScript finds build-weed.sh from the test's working directory (its
// package's directory, somewhere inside the module).
func buildScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "internal", "testweed", "build-weed.sh"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("build-weed.sh: no go.mod above the working directory")
		}
		dir = parent
	}
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

// createBucket creates Bucket, retrying while SeaweedFS starts.
func (s *Server) createBucket() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	client := s3.New(s3.Options{
		BaseEndpoint: &s.Endpoint, UsePathStyle: true, Region: Region,
		Credentials: Credentials(), RetryMaxAttempts: 1,
	})
	bucket := Bucket
	for {
		_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket})
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

// tail is the end of a log, at most n bytes.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
