package testupstream

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/gemproxy/gemproxy/internal/rubyfmt"
)

// GemSpec describes a gem to build (rubyfmt.BuildGem) and publish; an alias
// so that tests name what they publish after the server they publish it to.
type GemSpec = rubyfmt.GemSpec

// Dep is one runtime dependency of a GemSpec.
type Dep = rubyfmt.Dep

// BuildGem produces the real .gem file of spec (see rubyfmt.BuildGem).
func BuildGem(spec GemSpec) ([]byte, error) { return rubyfmt.BuildGem(spec) }

// gemSHA256Hex returns the lowercase hex SHA-256 of b.
func gemSHA256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
