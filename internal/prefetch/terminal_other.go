//go:build !unix

package prefetch

import "os"

// terminalColumns reports whether f is a character device, taken for a
// terminal whose width is unknown.
func terminalColumns(f *os.File) (cols int, isTerminal bool) {
	st, err := f.Stat()
	return 0, err == nil && st.Mode()&os.ModeCharDevice != 0
}
