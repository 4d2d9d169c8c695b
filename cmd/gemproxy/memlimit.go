package main

// workingMemory is the memory gemproxy needs besides its memory cache: a
// 32 KiB buffer and a connection per download, cache fills, the rebuilt
// gzip form of an appended /versions.
const workingMemory = 64 * MiB

// defaultMemoryLimit returns the soft memory limit gemproxy gives the Go
// runtime (debug.SetMemoryLimit) when GOMEMLIMIT is not set: memory_cache
// plus workingMemory. Without one the heap may grow to twice what is live
// before a collection, so a burst of downloads on top of a full memory
// cache doubles the process's memory and keeps it. ok is false when
// GOMEMLIMIT is set: the runtime has applied it already.
func defaultMemoryLimit(c Config, lookupEnv func(string) (string, bool)) (limit int64, ok bool) {
	if _, set := lookupEnv("GOMEMLIMIT"); set {
		return 0, false
	}
	return int64(c.MemoryCache + workingMemory), true
}
