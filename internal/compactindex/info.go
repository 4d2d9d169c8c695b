package compactindex

import (
	"bytes"
	"strings"
)

// sha256HexLen is the length of a hex SHA-256 digest, the value of the
// checksum: requirement in an /info line.
const sha256HexLen = 64

// checksumKey prefixes the .gem SHA-256 among the requirements of an /info
// line.
const checksumKey = "checksum:"

// InfoChecksum finds, in an /info/NAME body, the line whose first field is
// exactly version and returns the value of its "checksum:" requirement: the
// lower-case hex SHA-256 of the .gem file. version is "VER" or
// "VER-PLATFORM" as it appears in the .gem file name (for example
// "1.13.10-x86_64-linux"); "1.13.10" does not match a platform line.
//
// Lines look like "1.0.0 dep:>= 1&< 3,dep2:= 1|checksum:HEX,ruby:>= 2.3" or
// "1.0.0 |checksum:HEX". The first line for version decides: ok is false
// when no line has that version, or when its line has no '|', no
// checksum: requirement, or a value that is not 64 lower-case hex
// characters. A trailing '\r' on a line is ignored. InfoChecksum never
// panics and allocates only the returned string.
func InfoChecksum(info []byte, version string) (sha256hex string, ok bool) {
	if version == "" || strings.IndexByte(version, ' ') >= 0 {
		return "", false
	}
	for len(info) > 0 {
		var line []byte
		line, info = nextLine(info)
		if len(line) > len(version) && line[len(version)] == ' ' && string(line[:len(version)]) == version {
			sum, ok := lineChecksum(line[len(version)+1:])
			if !ok {
				return "", false
			}
			return string(sum), true
		}
	}
	return "", false
}

// lineChecksum returns the checksum: value from the "DEPS|REQS" part of an
// /info line, validated as a lower-case hex SHA-256.
func lineChecksum(rest []byte) ([]byte, bool) {
	bar := bytes.IndexByte(rest, '|')
	if bar < 0 {
		return nil, false
	}
	reqs := rest[bar+1:]
	for len(reqs) > 0 {
		var req []byte
		if i := bytes.IndexByte(reqs, ','); i >= 0 {
			req, reqs = reqs[:i], reqs[i+1:]
		} else {
			req, reqs = reqs, nil
		}
		if v, found := bytes.CutPrefix(req, []byte(checksumKey)); found {
			if len(v) != sha256HexLen || !isLowerHex(v) {
				return nil, false
			}
			return v, true
		}
	}
	return nil, false
}
