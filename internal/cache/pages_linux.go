package cache

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pageSize is the memory page size.
var pageSize = uintptr(os.Getpagesize())

// releasePageMin is the smallest copy worth releasing pages for.
const releasePageMin = 64 << 10

// releasePages tells the kernel that the pages of bbolt's read-only file
// mapping wholly inside b (a large body slice just copied out) are not
// needed any more: streaming a 50 MB gem to many clients then does not keep
// the whole file mapped into gemproxy's resident memory. The pages stay in
// the page cache; a later read maps them again.
func releasePages(b []byte) {
	if len(b) < releasePageMin {
		return
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	start := (addr + pageSize - 1) &^ (pageSize - 1)
	end := (addr + uintptr(len(b))) &^ (pageSize - 1)
	if end <= start {
		return
	}
	_ = unix.Madvise(b[start-addr:end-addr], unix.MADV_DONTNEED)
}
