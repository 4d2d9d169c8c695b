package compactindex

import "strings"

// ETagMatches reports whether an If-None-Match header value matches the
// representation whose ETag is the quoted md5hex, using the lenient rules
// Bundler needs (docs/protocol.md §5.1, §5.4):
//
//   - the value is a comma-separated list; whitespace around members is
//     ignored;
//   - "*" matches any representation;
//   - a "W/" prefix is stripped (weak comparison, as RFC 9110 prescribes
//     for If-None-Match);
//   - members may be quoted ("\"abc\"") or bare (abc): Bundler 2.5.0 to
//     2.5.4 sent its stored ETag unquoted;
//   - hex is compared case-insensitively, since md5hex is a hex digest.
//
// Quoted members are scanned as RFC 9110 entity-tags, so a comma inside
// quotes does not split a member. An empty md5hex matches only "*".
// ETagMatches never panics and does not allocate.
func ETagMatches(ifNoneMatch, md5hex string) bool {
	s := ifNoneMatch
	for {
		// Skip separators and whitespace before the next member.
		for s != "" && (s[0] == ',' || s[0] == ' ' || s[0] == '\t') {
			s = s[1:]
		}
		if s == "" {
			return false
		}
		weak := strings.HasPrefix(s, "W/")
		if weak {
			s = s[2:]
		}
		var tag string
		if s != "" && s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return false // unterminated quote: nothing after it can be a member
			}
			tag, s = s[1:1+end], s[2+end:]
			// Ignore anything between the closing quote and the next comma.
			if i := strings.IndexByte(s, ','); i >= 0 {
				s = s[i:]
			} else {
				s = ""
			}
		} else {
			if i := strings.IndexByte(s, ','); i >= 0 {
				tag, s = s[:i], s[i:]
			} else {
				tag, s = s, ""
			}
			tag = trimOWS(tag)
			if tag == "*" && !weak {
				return true
			}
		}
		if md5hex != "" && strings.EqualFold(tag, md5hex) {
			return true
		}
	}
}
