package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// pidFileName is the file in the data directory naming the gemproxy that
// serves it, for the error of whoever finds the directory locked.
const pidFileName = "gemproxy.pid"

// writePIDFile records this process's ID in dir and returns the function
// removing the file again, to be called while this process still holds the
// cache's lock: afterwards the file may be the next server's.
func writePIDFile(dir string) (remove func(), err error) {
	path := filepath.Join(dir, pidFileName)
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return func() {}, err
	}
	return sync.OnceFunc(func() { _ = os.Remove(path) }), nil
}

// lockHolder is " (pid N)" when dir's PID file names a running process,
// else "" (no file, or one left by a server that crashed).
func lockHolder(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, pidFileName))
	if err != nil {
		return ""
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || !processRunning(pid) {
		return ""
	}
	return fmt.Sprintf(" (pid %d)", pid)
}

// processRunning reports whether a process with ID pid exists: signal 0
// reaches it, or is refused for lack of permission.
func processRunning(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}
