package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// served is a `gemproxy serve` process that a test started.
type served struct {
	t *testing.T
	// url is its base URL, args the command line it was started with (the
	// listen address included), env its environment.
	url  string
	args []string
	env  []string
	// logPath is the file its output goes to.
	logPath string
	cmd     *exec.Cmd
	// exited receives Wait's result once.
	exited chan error
}

// startServe runs the gemproxy binary as `serve` with args, on a free
// loopback port, with env on top of PATH (no other GEMPROXY_* or AWS_*
// setting leaks in), until the end of the test, and waits until it answers
// /readyz. Its log is shown when the test fails.
func startServe(t *testing.T, bin string, env []string, args ...string) *served {
	t.Helper()
	addr := testupstream.FreeAddr(t)
	s := &served{t: t, url: "http://" + addr, env: env,
		args:    append([]string{bin, "serve", "--listen", addr}, args...),
		logPath: filepath.Join(t.TempDir(), "gemproxy.log")}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// start starts the process with its command line and waits until it is
// ready, for at most 30 seconds.
func (s *served) start() {
	s.t.Helper()
	logs, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logs.Close()
	s.cmd = exec.Command(s.args[0], s.args[1:]...)
	s.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, s.env...)
	s.cmd.Stdout, s.cmd.Stderr = logs, logs
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan error, 1)
	go func() { s.exited <- s.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for !s.ready() {
		select {
		case err := <-s.exited:
			s.exited <- err
			s.t.Fatalf("gemproxy serve exited: %v\n%s", err, s.log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("gemproxy serve not ready after 30s:\n%s", s.log())
		}
	}
}

// ready is whether the process answers /readyz with 200.
func (s *served) ready() bool {
	resp, err := http.Get(s.url + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// log returns what the process has written so far.
func (s *served) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// kill ends the process with SIGKILL, as the kernel's OOM killer or a
// node failure would, and waits for it.
func (s *served) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatal(err)
	}
	err := <-s.exited
	s.exited <- err
}

// restart stops the process (as stop does) and starts it again with the
// same command line: its address, data directory and log.
func (s *served) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

// stop interrupts the process unless it has exited, waits for it, and
// shows its log if the test failed.
func (s *served) stop() {
	select {
	case err := <-s.exited:
		s.exited <- err
	default:
		_ = s.cmd.Process.Signal(os.Interrupt)
		err := <-s.exited
		s.exited <- err
	}
	if s.t.Failed() {
		s.t.Logf("%s:\n%s", strings.Join(s.args, " "), s.log())
	}
}
