package main

import "testing"

func TestDefaultMemoryLimit(t *testing.T) {
	c := Defaults()
	c.MemoryCache = 100 * MiB
	noEnv := func(string) (string, bool) { return "", false }
	if limit, ok := defaultMemoryLimit(c, noEnv); !ok || limit != int64(164*MiB) {
		t.Fatalf("defaultMemoryLimit = %d, %v; want memory_cache + 64 MiB", limit, ok)
	}
	withEnv := func(k string) (string, bool) { return "300MiB", k == "GOMEMLIMIT" }
	if limit, ok := defaultMemoryLimit(c, withEnv); ok {
		t.Fatalf("defaultMemoryLimit with GOMEMLIMIT set = %d, true; want it left to the runtime", limit)
	}
}
