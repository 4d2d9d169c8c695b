package testupstream

import (
	"bytes"
	"compress/zlib"

	"github.com/gemproxy/gemproxy/internal/rubyfmt"
)

// MarshalFunc produces the Ruby-Marshal-based legacy index files. The server
// calls it in two situations, never both in one call:
//
//   - once per Publish batch (Publish, PublishAll, PublishCorpus, a push),
//     with in.Gems set, to get each new gem's quick gemspec
//     (quick/Marshal.4.8/FULL.gemspec.rz);
//   - lazily, on the first request for a specs file after the index changed,
//     with in.Index set, to get specs.4.8.gz, latest_specs.4.8.gz and
//     prerelease_specs.4.8.gz.
//
// It is called without any server lock held, possibly concurrently with
// itself. A nil Options.Marshal means the built-in default: real specs files
// encoded in Go (rubyfmt.GoSpecsIndex) and placeholder quick gemspecs
// (PlaceholderQuickSpec), generated on request. rubyfmt.RubyMarshal is the
// MarshalFunc that makes real quick gemspecs.
type MarshalFunc func(in rubyfmt.MarshalInput) (rubyfmt.MarshalOutput, error)

// PlaceholderMarker starts every placeholder quick gemspec body (after zlib
// inflation), so tests can recognise it.
const PlaceholderMarker = "TESTUPSTREAM-PLACEHOLDER quick gemspec (not Ruby Marshal; use RubyMarshal): "

// PlaceholderQuickSpec returns the deterministic placeholder served as
// quick/Marshal.4.8/FULL.gemspec.rz when no MarshalFunc is configured: a valid
// zlib stream whose content is PlaceholderMarker + fullName + "\n". Ruby's
// Marshal.load rejects it, so `gem install` needs rubyfmt.RubyMarshal.
func PlaceholderQuickSpec(fullName string) []byte {
	var buf bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&buf, zlib.BestSpeed)
	_, _ = zw.Write([]byte(PlaceholderMarker + fullName + "\n"))
	_ = zw.Close()
	return buf.Bytes()
}
