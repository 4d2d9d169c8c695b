package main

import "strings"

// sysmonAwakeSetting is the GODEBUG setting serve runs with. The Go
// runtime's monitor thread (sysmon) parks whenever every processor is idle,
// and the next system call of any goroutine wakes it and sets it polling
// every 20 µs again. A mirror under a steady, moderate load goes idle
// between most requests, so each request paid for that wakeup and the
// polling after it: about 30% of gemproxy's CPU at a quarter of nginx's
// saturated rate (bench/README.md). A schedtrace period keeps sysmon from
// parking; it then polls at its slowest, every 10 ms, also when the server
// is idle. The period is the largest the runtime takes, about 24.8 days:
// the runtime prints one "SCHED" line on stderr whenever a period has
// passed since the host booted, so on a host up for longer than that one
// line at start and one every 24.8 days. A fatal error's output also
// starts with the scheduler's state.
const sysmonAwakeSetting = "schedtrace=2147483647"

// godebugKeepingSysmonAwake returns the GODEBUG value serve should run
// with, given the current one, and whether it differs. An operator's own
// schedtrace setting wins: GODEBUG=schedtrace=0 turns this off.
func godebugKeepingSysmonAwake(godebug string) (value string, changed bool) {
	for _, field := range strings.Split(godebug, ",") {
		if key, _, _ := strings.Cut(field, "="); strings.TrimSpace(key) == "schedtrace" {
			return godebug, false
		}
	}
	if godebug == "" {
		return sysmonAwakeSetting, true
	}
	return godebug + "," + sysmonAwakeSetting, true
}
