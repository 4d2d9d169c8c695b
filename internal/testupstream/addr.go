package testupstream

import (
	"net"
	"testing"
)

// FreeAddr returns a TCP address on 127.0.0.1 that was free a moment ago:
// for a server a test starts, or, left unused, a port where nothing
// listens (a refused connection).
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}
