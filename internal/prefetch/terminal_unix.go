//go:build unix

package prefetch

import (
	"os"

	"golang.org/x/sys/unix"
)

// terminalColumns reports whether f is a terminal and, when it says,
// how many columns it has (0 when it does not).
func terminalColumns(f *os.File) (cols int, isTerminal bool) {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0, false
	}
	return int(ws.Col), true
}
