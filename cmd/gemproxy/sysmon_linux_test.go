package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestServeReexecutesWithSysmonAwake checks that a server runs, in the
// same process, with the GODEBUG that keeps sysmon from parking added to
// the one it was given, and that GODEBUG=schedtrace=0 turns it off.
func TestServeReexecutesWithSysmonAwake(t *testing.T) {
	for _, tc := range []struct{ given, want string }{
		{"", sysmonAwakeSetting},
		{"madvdontneed=1", "madvdontneed=1," + sysmonAwakeSetting},
		{"schedtrace=0", "schedtrace=0"},
	} {
		// Set even when empty, so that a GODEBUG of the test's own is not
		// inherited.
		s := startServer(t, []string{"GODEBUG=" + tc.given, "GEMPROXY_OFFLINE=true"}, "--data-dir", t.TempDir())
		environ, err := os.ReadFile("/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, kv := range strings.Split(string(environ), "\x00") {
			if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
				got = append(got, v)
			}
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("GODEBUG %q given: the server runs with GODEBUG %q; want just %q", tc.given, got, tc.want)
		}
	}
}
