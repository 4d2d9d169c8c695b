package compactindex

import "bytes"

// md5HexLen is the length of a hex MD5 digest, the INFO_MD5 field of a
// /versions line.
const md5HexLen = 32

// headerSep is the line that ends the metadata header of a compact-index
// file ("created_at: ...\n---\n").
const headerSep = "---"

// VersionsChecksums walks a /versions body and calls fn(name, infoMD5) for
// every well-formed line "NAME SP VERSIONS SP MD5HEX", in file order. Later
// calls for the same name override earlier ones: the last line for a gem
// carries its authoritative /info MD5, including yank lines
// ("NAME -VER MD5").
//
// data may be a whole body or any tail of one that starts at a line
// boundary (for example the bytes a Range append added). If a line that is
// exactly "---" is present, everything up to and including the first such
// line is the header and is skipped, as Bundler does; without one, every
// line is a candidate. The last line need not end in a newline: a line is
// only accepted with a complete 32-character digest, so a tail cut short
// inside its final line cannot yield a truncated one.
//
// A line is well-formed when it has exactly three fields separated by
// single spaces, NAME passes ValidName, VERSIONS is non-empty and MD5HEX is
// 32 lower-case hex characters; a trailing '\r' is ignored. Anything else is
// skipped. VersionsChecksums never panics.
//
// name and infoMD5 alias data and are only valid during the call; fn must
// copy them (string(name) does) to keep them. VersionsChecksums allocates
// nothing.
func VersionsChecksums(data []byte, fn func(name, infoMD5 []byte)) {
	data = skipHeader(data)
	for len(data) > 0 {
		var line []byte
		line, data = nextLine(data)
		if name, sum, ok := parseVersionsLine(line); ok {
			fn(name, sum)
		}
	}
}

// skipHeader returns data after its first line that is exactly "---"
// (optionally followed by '\r'), or data unchanged when there is none.
func skipHeader(data []byte) []byte {
	for off := 0; off < len(data); {
		line, rest := nextLine(data[off:])
		if string(line) == headerSep {
			return rest
		}
		i := bytes.Index(data[off:], []byte("\n"+headerSep))
		if i < 0 {
			return data
		}
		off += i + 1
	}
	return data
}

// parseVersionsLine splits one /versions line (without its newline) into
// the gem name and the info MD5, reporting whether the line is well-formed
// as VersionsChecksums defines it.
func parseVersionsLine(line []byte) (name, infoMD5 []byte, ok bool) {
	// Shortest line: "a 1 " + 32 hex.
	n := len(line)
	if n < md5HexLen+4 || line[n-md5HexLen-1] != ' ' {
		return nil, nil, false
	}
	infoMD5 = line[n-md5HexLen:]
	if !isLowerHex(infoMD5) {
		return nil, nil, false
	}
	rest := line[:n-md5HexLen-1]
	sp := bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return nil, nil, false
	}
	name, versions := rest[:sp], rest[sp+1:]
	if len(versions) == 0 || bytes.IndexByte(versions, ' ') >= 0 || !validName(name) {
		return nil, nil, false
	}
	return name, infoMD5, true
}
