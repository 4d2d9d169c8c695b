package compactindex

import "bytes"

// MaxNameLen is the longest gem name ValidName accepts, in bytes. It bounds
// cache keys and label-free log fields; rubygems.org itself has no gem
// name anywhere near this long.
const MaxNameLen = 255

// ValidName reports whether name is an acceptable gem name: 1 to
// MaxNameLen bytes from [A-Za-z0-9._-] (rubygems.org lib/patterns.rb), and
// not "." or "..", which would be path traversal once the name is part of a
// path such as /info/NAME. A leading dot is allowed because real gems have
// one (for example ".omghi" in the guides' /versions sample).
func ValidName(name string) bool {
	return validName(name)
}

// validName is ValidName for both string and []byte, so that the /versions
// parser can validate names in place without converting them.
func validName[T string | []byte](name T) bool {
	n := len(name)
	if n == 0 || n > MaxNameLen {
		return false
	}
	if name[0] == '.' && (n == 1 || (n == 2 && name[1] == '.')) {
		return false
	}
	for i := 0; i < n; i++ {
		if !isNameByte(name[i]) {
			return false
		}
	}
	return true
}

// isNameByte reports whether c may appear in a gem name.
func isNameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '.', c == '_', c == '-':
		return true
	}
	return false
}

// isLowerHex reports whether s is non-empty and made only of the characters
// [0-9a-f], the spelling upstream uses for MD5 and SHA-256 hex digests.
func isLowerHex[T string | []byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// nextLine splits data at its first '\n'. line excludes the newline and one
// '\r' before it (upstream never sends CRLF, but a hand-edited fixture
// might); rest starts after the newline. The last line need not end in a
// newline, in which case rest is empty.
func nextLine(data []byte) (line, rest []byte) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		line, rest = data[:i], data[i+1:]
	} else {
		line = data
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}
