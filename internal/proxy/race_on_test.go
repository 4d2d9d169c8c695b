//go:build race

package proxy

// raceEnabled reports whether the race detector is on: sync.Pool then
// drops a quarter of what is put back, so heap figures are not the
// product's (make test measures them again without -race).
const raceEnabled = true
