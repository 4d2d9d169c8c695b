//go:build !linux

package main

// execKeepingSysmonAwake does nothing outside Linux, where serve runs
// without sysmonAwakeSetting unless GODEBUG carries it.
func execKeepingSysmonAwake() error { return nil }
