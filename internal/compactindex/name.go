package compactindex

import (
	"bytes"
	"iter"
	"strings"
)

// MaxNameLen is the longest gem name, version or platform ValidName,
// ValidVersion and ValidPlatform accept, in bytes. It bounds cache keys and
// label-free log fields; rubygems.org itself has no gem name anywhere near
// this long.
const MaxNameLen = 255

// The rules below are gemproxy's one definition of what a gem name,
// version, platform and full name (NAME-VERSION[-PLATFORM], a .gem file
// name) may be: the route table, the /versions parser, the invalidation
// after writes and the lockfile reader all use them. They are the
// rubygems.org rules (lib/patterns.rb, Gem::Version) restricted to what can
// safely be part of a path: ASCII letters, digits, ".", "_" and "-".

// ValidName reports whether name is an acceptable gem name: 1 to
// MaxNameLen bytes from [A-Za-z0-9._-] with at least one letter or digit,
// so that ".", ".." and "..." (path traversal once the name is part of a
// path such as /info/NAME) and "-" or "___" (which no registry accepts) are
// refused. A leading dot is allowed because real gems have one (for example
// ".omghi" in the guides' /versions sample).
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
	alnum := false
	for i := 0; i < n; i++ {
		c := name[i]
		if !isNameByte(c) {
			return false
		}
		alnum = alnum || isAlnum(c)
	}
	return alnum
}

// ValidVersion reports whether version is a gem version as RubyGems writes
// it: at most MaxNameLen bytes, a digit first, then dot-separated runs of
// letters and digits ("1.0.0.pre.2"; not "1..0" nor "1.0."). Gem::Version
// turns "-" into ".pre.", so no version holds one.
func ValidVersion(version string) bool {
	if version == "" || len(version) > MaxNameLen || !isDigit(version[0]) {
		return false
	}
	for part := range strings.SplitSeq(version, ".") {
		if !allAlnum(part) {
			return false
		}
	}
	return true
}

// allAlnum reports whether s is non-empty and made of ASCII letters and
// digits only.
func allAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return s != ""
}

// ValidPlatform reports whether platform is a gem platform: at most
// MaxNameLen bytes, dash-separated parts of [A-Za-z0-9._] each with a letter
// or digit ("java", "x86_64-linux-gnu", "universal-darwin-9.0").
func ValidPlatform(platform string) bool {
	if platform == "" || len(platform) > MaxNameLen {
		return false
	}
	for part := range strings.SplitSeq(platform, "-") {
		if !validName(part) {
			return false
		}
	}
	return true
}

// SplitFullName yields each way full, a gem's file name without ".gem",
// splits as NAME-VERSION[-PLATFORM] with a valid name, version and platform,
// shortest name first. It yields the name and what follows it,
// "VERSION[-PLATFORM]", which is how /info lines spell a version. Names
// may hold dashes and digits, so more than one split can be valid: for
// "a-1-2.0" both a (1-2.0, platform "2.0") and a-1 (2.0).
func SplitFullName(full string) iter.Seq2[string, string] {
	return func(yield func(name, versionPlatform string) bool) {
		if len(full) > MaxNameLen {
			return
		}
		for i := 1; i < len(full)-1; i++ {
			if full[i] != '-' || !isDigit(full[i+1]) || !ValidName(full[:i]) {
				continue
			}
			version, platform, hasPlatform := strings.Cut(full[i+1:], "-")
			if !ValidVersion(version) || hasPlatform && !ValidPlatform(platform) {
				continue
			}
			if !yield(full[:i], full[i+1:]) {
				return
			}
		}
	}
}

// ValidFullName reports whether full, a gem's file name without ".gem",
// splits at least one way as NAME-VERSION[-PLATFORM] (see SplitFullName).
func ValidFullName(full string) bool {
	for range SplitFullName(full) {
		return true
	}
	return false
}

// isNameByte reports whether c may appear in a gem name.
func isNameByte(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '-'
}

// isAlnum reports whether c is an ASCII letter or digit.
func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c)
}

// isDigit reports whether c is an ASCII digit.
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

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
