package compactindex

import "bytes"

// InfoDependencies calls fn with the name of each dependency on each line
// of an /info/NAME body, in order and as often as they appear: the names
// whose /info files Bundler fetches next when it resolves NAME, whatever
// the version. In a line "1.0.0 dep:>= 1&< 3,dep2:= 1|checksum:HEX" the
// dependencies are the comma-separated NAME:REQUIREMENT pairs between the
// first space and the '|'. The "---" header, lines without a space or a
// '|', and names that are not ValidName are skipped. name is a view of info, valid
// as long as info is; InfoDependencies never panics and allocates
// nothing.
func InfoDependencies(info []byte, fn func(name []byte)) {
	for len(info) > 0 {
		var line []byte
		line, info = nextLine(info)
		_, rest, hasSpace := bytes.Cut(line, []byte(" "))
		deps, _, hasBar := bytes.Cut(rest, []byte("|"))
		if !hasSpace || !hasBar {
			continue
		}
		for len(deps) > 0 {
			var dep []byte
			dep, deps, _ = bytes.Cut(deps, []byte(","))
			if name, _, found := bytes.Cut(dep, []byte(":")); found && validName(name) {
				fn(name)
			}
		}
	}
}
