// Package testupstream is test-support code that behaves like rubygems.org:
// it serves real .gem files (built by package rubyfmt) together with the
// compact index (/versions, /info/NAME, /names), the legacy full index
// (specs.4.8.gz, quick/Marshal.4.8/*.gemspec.rz), the JSON/YAML API and the
// authenticated write endpoints (push, yank, owners, API keys), with
// deterministic fault injection (status codes, resets, truncated or lying
// bodies, corrupted bytes, stalls) and a request log.
//
// It lives in non-_test files so that tests of other packages and benchmark
// programs can import it. The Ruby formats (gems, gemspec YAML, Marshal)
// are package rubyfmt's; GemSpec, Dep and BuildGem are re-exported here so
// that a test needs one import to build and publish gems.
//
// The protocol facts it reproduces are those of docs/protocol.md §3, §4
// and §6: byte formats of the compact index, the validators
// (ETag = quoted MD5, Digest/Repr-Digest = SHA-256 of the full body),
// If-None-Match answered before Range, 206 tails, 416 for unsatisfiable
// ranges, S3-style 403 XML bodies for missing artifacts, and the exact
// plain-text bodies of the write API.
//
// Typical use in a test:
//
//	up, ts := testupstream.Start(t, testupstream.Options{})
//	gem, _ := testupstream.BuildGem(testupstream.GemSpec{Name: "a", Version: "1.0.0"})
//	up.Publish(testupstream.GemSpec{Name: "a", Version: "1.0.0"}, gem)
//	// point the code under test at ts.URL
package testupstream
