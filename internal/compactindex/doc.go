// Package compactindex parses the rubygems.org compact index: the
// /versions file, /info/NAME files, and the validators (ETag, Repr-Digest,
// Digest) that travel with them.
//
// Everything here is pure: no I/O, no allocation on per-line paths, no
// package state. Parsers never modify or re-serialize the bytes they are
// given (the proxy serves compact-index files byte-identical to upstream),
// skip malformed input instead of failing, and never panic on any input;
// each parser has a fuzz test that checks it against a straightforward
// reference implementation.
//
// The formats are described in docs/protocol.md §4: /versions lines are
// "NAME SP VERSIONS SP INFO_MD5", /info lines are
// "VERSION[-PLATFORM] SP DEPS|REQS" with "checksum:SHA256HEX" among REQS.
package compactindex
