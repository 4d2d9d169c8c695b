package compactindex

import "testing"

// TestETagMatches covers quoted, unquoted, weak, wildcard and list forms.
func TestETagMatches(t *testing.T) {
	const m = "6a7e9ee1e047d992cddad72b25ae4f73"
	tests := []struct {
		name   string
		header string
		md5hex string
		want   bool
	}{
		{name: "quoted", header: `"` + m + `"`, md5hex: m, want: true},
		{name: "unquoted bundler 2.5.0-2.5.4", header: m, md5hex: m, want: true},
		{name: "weak quoted", header: `W/"` + m + `"`, md5hex: m, want: true},
		{name: "weak unquoted", header: `W/` + m, md5hex: m, want: true},
		{name: "star", header: "*", md5hex: m, want: true},
		{name: "star with spaces", header: "  * ", md5hex: m, want: true},
		{name: "star in list", header: `"x", *`, md5hex: m, want: true},
		{name: "quoted star is a tag", header: `"*"`, md5hex: m, want: false},
		{name: "list quoted", header: `"aaa", W/"bbb", "` + m + `"`, md5hex: m, want: true},
		{name: "list unquoted", header: "aaa,bbb," + m, md5hex: m, want: true},
		{name: "list mixed with whitespace", header: " \t\"aaa\" ,\t" + m + " \t", md5hex: m, want: true},
		{name: "upper-case hex", header: `"6A7E9EE1E047D992CDDAD72B25AE4F73"`, md5hex: m, want: true},
		{name: "different", header: `"` + m[:31] + `0"`, md5hex: m, want: false},
		{name: "prefix only", header: `"` + m[:31] + `"`, md5hex: m, want: false},
		{name: "empty header", header: "", md5hex: m, want: false},
		{name: "only commas", header: " , ,", md5hex: m, want: false},
		{name: "comma inside quotes does not split", header: `"x,` + m + `,y"`, md5hex: m, want: false},
		{name: "unterminated quote", header: `"` + m, md5hex: m, want: false},
		{name: "match before unterminated quote", header: m + `, "abc`, md5hex: m, want: true},
		{name: "garbage after closing quote ignored", header: `"` + m + `"xyz`, md5hex: m, want: true},
		{name: "empty md5 never matches a tag", header: `"", ,`, md5hex: "", want: false},
		{name: "empty md5 matches star", header: `*`, md5hex: "", want: true},
		{name: "lower-case w is not weak prefix", header: `w/"` + m + `"`, md5hex: m, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ETagMatches(tt.header, tt.md5hex); got != tt.want {
				t.Errorf("ETagMatches(%q, %q) = %v, want %v", tt.header, tt.md5hex, got, tt.want)
			}
		})
	}
}

// TestETagMatchesAllocs checks that matching allocates nothing.
func TestETagMatchesAllocs(t *testing.T) {
	const m = "6a7e9ee1e047d992cddad72b25ae4f73"
	h := `W/"aaa", "bbb", ` + m
	if allocs := testing.AllocsPerRun(100, func() { ETagMatches(h, m) }); allocs != 0 {
		t.Errorf("ETagMatches allocated %v times, want 0", allocs)
	}
}
