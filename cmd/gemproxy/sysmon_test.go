package main

import "testing"

// TestGodebugKeepingSysmonAwake checks the setting is added to whatever
// GODEBUG holds, and that an operator's own schedtrace is left alone.
func TestGodebugKeepingSysmonAwake(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		changed  bool
	}{
		{"", sysmonAwakeSetting, true},
		{"madvdontneed=0", "madvdontneed=0," + sysmonAwakeSetting, true},
		{"schedtrace=0", "schedtrace=0", false},
		{"http2client=0,schedtrace=1000", "http2client=0,schedtrace=1000", false},
		{"schedtracer=1", "schedtracer=1," + sysmonAwakeSetting, true},
	} {
		got, changed := godebugKeepingSysmonAwake(tc.in)
		if got != tc.want || changed != tc.changed {
			t.Errorf("godebugKeepingSysmonAwake(%q) = %q, %v; want %q, %v", tc.in, got, changed, tc.want, tc.changed)
		}
	}
}
