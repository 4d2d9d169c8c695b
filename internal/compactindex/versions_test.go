package compactindex

import (
	"fmt"
	"strings"
	"testing"
)

// pair is one VersionsChecksums callback, copied out of the parsed buffer.
type pair struct {
	// name and md5 are the callback arguments.
	name, md5 string
}

// collectVersions runs VersionsChecksums over data and returns the calls it
// made, in order.
func collectVersions(data []byte) []pair {
	var got []pair
	VersionsChecksums(data, func(name, sum []byte) {
		got = append(got, pair{string(name), string(sum)})
	})
	return got
}

// md5a, md5b and md5c are well-formed info MD5s used by the tests.
const (
	md5a = "7a67c0434100c2ab635b9f4865ee86bd" // from the guides' /versions sample
	md5b = "6105347ebb9825ac754615ca55ff3b0c" // from the conformance suite's yank line
	md5c = "3c5834b0450820da13956ca11e668e7a" // MD5 of the recorded /info/dummy-pkg-a
)

// TestVersionsChecksums covers headers, tails, yanks, line endings and
// every kind of malformed line.
func TestVersionsChecksums(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []pair
	}{
		{name: "empty", data: "", want: nil},
		{name: "header only", data: "created_at: 2024-04-01T00:00:05Z\n---\n", want: nil},
		{
			name: "full body with header",
			data: "created_at: 2024-04-01T00:00:05Z\n---\n.omghi 1,2 " + md5a + "\nrack 1.0.0,2.0.0-java " + md5b + "\n",
			want: []pair{{".omghi", md5a}, {"rack", md5b}},
		},
		{
			name: "tail without header",
			data: "rails 7.1.0 " + md5a + "\nrails -7.0.0 " + md5b + "\n",
			want: []pair{{"rails", md5a}, {"rails", md5b}},
		},
		{
			name: "header lines that look like entries are skipped",
			data: "fake 1.0 " + md5a + "\n---\nreal 1.0 " + md5b + "\n",
			want: []pair{{"real", md5b}},
		},
		{
			name: "only the first separator is the header",
			data: "---\na 1 " + md5a + "\n---\nb 1 " + md5b + "\n",
			want: []pair{{"a", md5a}, {"b", md5b}},
		},
		{
			name: "separator must be the whole line",
			data: "---x\na 1 " + md5a + "\n",
			want: []pair{{"a", md5a}},
		},
		{
			name: "separator at end of data",
			data: "created_at: x\n---",
			want: nil,
		},
		{
			name: "yank line is reported",
			data: "---\na -1.0.0 " + md5b + "\n",
			want: []pair{{"a", md5b}},
		},
		{
			name: "last line without newline",
			data: "a 1 " + md5a + "\nb 1 " + md5b,
			want: []pair{{"a", md5a}, {"b", md5b}},
		},
		{
			name: "truncated last line is skipped",
			data: "a 1 " + md5a + "\nb 1 " + md5b[:31],
			want: []pair{{"a", md5a}},
		},
		{
			name: "crlf line endings",
			data: "---\r\na 1 " + md5a + "\r\nb 1 " + md5b + "\r\n",
			want: []pair{{"a", md5a}, {"b", md5b}},
		},
		{
			name: "malformed lines skipped",
			data: strings.Join([]string{
				"",                                      // blank
				"a " + md5a,                             // two fields
				"a 1 2 " + md5a,                         // four fields
				"a  1 " + md5a,                          // double space
				" a 1 " + md5a,                          // empty name
				"a  " + md5a,                            // empty versions
				"a 1 " + strings.ToUpper(md5a),          // upper-case hex
				"a 1 " + md5a + "0",                     // 33 hex
				"a 1 " + md5a[:31],                      // 31 hex
				"a 1 " + md5a[:31] + "g",                // not hex
				"a/b 1 " + md5a,                         // invalid name
				".. 1 " + md5a,                          // traversal name
				"a 1 " + md5a + " ",                     // trailing space
				"a\t1 " + md5a,                          // tab separator
				strings.Repeat("x", 256) + " 1 " + md5a, // name too long
				"ok 1 " + md5c,
			}, "\n"),
			want: []pair{{"ok", md5c}},
		},
		{
			name: "same name many times keeps order",
			data: "a 1 " + md5a + "\nb 1 " + md5b + "\na 1,2 " + md5c + "\n",
			want: []pair{{"a", md5a}, {"b", md5b}, {"a", md5c}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := collectVersions([]byte(tt.data))
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("VersionsChecksums(%q)\n got %v\nwant %v", tt.data, got, tt.want)
			}
		})
	}
}

// TestVersionsChecksumsAllocs checks that parsing allocates nothing.
func TestVersionsChecksumsAllocs(t *testing.T) {
	data := generateVersions(1000)
	var n int
	allocs := testing.AllocsPerRun(10, func() {
		VersionsChecksums(data, func(name, sum []byte) { n++ })
	})
	if allocs != 0 {
		t.Errorf("VersionsChecksums allocated %v times per run, want 0", allocs)
	}
	if n == 0 {
		t.Fatal("no lines parsed")
	}
}

// generateVersions builds a /versions body with a header and lines
// entries that resemble rubygems.org's: a base part of one line per gem
// followed by appended push and yank lines.
func generateVersions(lines int) []byte {
	var b strings.Builder
	b.WriteString("created_at: 2024-04-01T00:00:05Z\n---\n")
	for i := 0; i < lines; i++ {
		switch {
		case i%10 == 9:
			fmt.Fprintf(&b, "gem-%d -1.%d.0 %032x\n", i/7, i%5, i*7919)
		case i%3 == 0:
			fmt.Fprintf(&b, "gem-%d 0.1.0,0.2.0,1.0.0,1.0.1-java,1.1.0,2.0.0.rc1,2.0.0-x86_64-linux %032x\n", i, i*7919)
		default:
			fmt.Fprintf(&b, "gem_%d 1.%d.0 %032x\n", i, i%13, i*104729)
		}
	}
	return []byte(b.String())
}

// BenchmarkVersionsChecksums parses a generated /versions body of 200k lines,
// the size of the real ~20 MB file, reporting throughput and allocations.
func BenchmarkVersionsChecksums(b *testing.B) {
	data := generateVersions(200_000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var n int
	for b.Loop() {
		VersionsChecksums(data, func(name, sum []byte) { n++ })
	}
	if n == 0 {
		b.Fatal("no lines parsed")
	}
}
