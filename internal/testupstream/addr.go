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
	return FreeAddrs(t, 1)[0]
}

// FreeAddrs returns n distinct TCP addresses on 127.0.0.1 that were free
// a moment ago. They are held all at once while they are picked: ports
// picked one after the other can repeat, and two server blocks of one
// nginx on the same port do not fail, the second one is silently never
// reached.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs
}
