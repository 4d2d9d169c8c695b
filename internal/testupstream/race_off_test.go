//go:build !race

package testupstream

// raceEnabled reports whether the race detector is on (timing limits relax).
const raceEnabled = false
