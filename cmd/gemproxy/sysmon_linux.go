package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// execKeepingSysmonAwake replaces the process with a fresh run of the same
// executable, with the same arguments and environment but GODEBUG carrying
// sysmonAwakeSetting, which the runtime reads only at start. It returns nil
// without doing anything when GODEBUG already sets schedtrace (so the
// fresh run returns at once), and an error when the exec failed; the caller
// then goes on as it is. /proc/self/exe is the running image even when its
// file has since been replaced or removed.
func execKeepingSysmonAwake() error {
	godebug, changed := godebugKeepingSysmonAwake(os.Getenv("GODEBUG"))
	if !changed {
		return nil
	}
	env := []string{"GODEBUG=" + godebug}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	err := syscall.Exec("/proc/self/exe", os.Args, env)
	return fmt.Errorf("re-executing with GODEBUG=%s: %w", godebug, err)
}
