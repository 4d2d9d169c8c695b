package cache

import (
	"unsafe"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// A read that faults on bbolt's file mapping maps the whole folio of the
// page cache holding the page touched (a large folio: up to a PMD, 2 MiB
// with 4 KiB pages, aligned in the file) and the cached pages of a
// fault-around window around it (fault_around_bytes: 64 KiB by default,
// aligned in memory): what releasePages gives back.
const (
	folioMax    = 2 << 20
	faultAround = 64 << 10
)

// releasePages tells the kernel that the pages of bbolt's read-only file
// mapping under v, a chunk value of a large body just looked up in tx, are
// not needed any more: the lookup touched its first page, which mapped that
// page's folio, most of the chunk. Everything that may have mapped goes
// (see folioMax), clipped to the used part of the mapping; a page another
// reader needs is mapped again by its own fault. The pages stay in the
// page cache.
func releasePages(tx *bolt.Tx, v []byte) {
	lo := tx.DB().Info().Data
	hi := lo + uintptr(tx.Size())
	base := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
	last := base + uintptr(len(v))
	start := max(lo, min(lo+(base-lo)&^(folioMax-1), base&^(faultAround-1)))
	end := min(hi, max(lo+(last-lo+folioMax-1)&^(folioMax-1), (last+faultAround-1)&^(faultAround-1)))
	if end <= start {
		return
	}
	first := unsafe.Add(unsafe.Pointer(unsafe.SliceData(v)), int(start)-int(base))
	_ = unix.Madvise(unsafe.Slice((*byte)(first), end-start), unix.MADV_DONTNEED)
}
