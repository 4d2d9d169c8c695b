package compactindex

import "testing"

// sumA and sumB are well-formed .gem SHA-256 checksums used by the tests.
const (
	sumA = "55a5beca212d5654afdf90fcecfc5cc77245e0592672f8b62efb8a4471290ae6" // a real checksum from /info/ast
	sumB = "969f8e95b2c123b1d57cdcbd179f01000a62a51e2bfdea3340c516fc4fa7a7fe" // a real platform-gem checksum from /info/concurrent-ruby
)

// sampleInfo is an /info body in format v2 with dependencies, platforms
// and every kind of requirement.
const sampleInfo = "---\n" +
	"1.0.0 |checksum:" + sumA + "\n" +
	"1.13.10 dep:>= 1&< 3,dep2:= 1|checksum:" + sumB + ",ruby:>= 2.3,created_at:2026-05-01T12:00:00Z\n" +
	"1.13.10-x86_64-linux racc:~> 1.4|checksum:" + sumA + ",ruby:< 3.4.dev&>= 3.0,rubygems:>= 3.3.22\n" +
	"2.0.0 |ruby:>= 2.3,checksum:" + sumB + "\n" +
	"3.0.0 |checksum:55A5BECA212D5654AFDF90FCECFC5CC77245E0592672F8B62EFB8A4471290AE6" + "\n" +
	"3.0.1 |checksum:55a5beca212d5654afdf90fcecfc5cc77245e0592672f8b62efb8a4471290ae" + "\n" +
	"3.0.2 checksum:" + sumA + "\n" +
	"3.0.3 |ruby:>= 2.3\n" +
	"4.0.0 |checksum:" + sumA + "\r\n" +
	"5.0.0 |checksum:" + sumB

// TestInfoChecksum covers dependencies, platforms, requirement order and
// invalid checksums.
func TestInfoChecksum(t *testing.T) {
	tests := []struct {
		name    string
		info    string
		version string
		want    string
		wantOK  bool
	}{
		{name: "no deps", info: sampleInfo, version: "1.0.0", want: sumA, wantOK: true},
		{name: "deps and more requirements", info: sampleInfo, version: "1.13.10", want: sumB, wantOK: true},
		{name: "platform", info: sampleInfo, version: "1.13.10-x86_64-linux", want: sumA, wantOK: true},
		{name: "checksum not first", info: sampleInfo, version: "2.0.0", want: sumB, wantOK: true},
		{name: "crlf", info: sampleInfo, version: "4.0.0", want: sumA, wantOK: true},
		{name: "last line without newline", info: sampleInfo, version: "5.0.0", want: sumB, wantOK: true},
		{name: "prefix of a version does not match", info: sampleInfo, version: "1.13", wantOK: false},
		{name: "platform needs exact match", info: sampleInfo, version: "1.13.10-x86_64", wantOK: false},
		{name: "missing version", info: sampleInfo, version: "9.9.9", wantOK: false},
		{name: "upper-case checksum rejected", info: sampleInfo, version: "3.0.0", wantOK: false},
		{name: "short checksum rejected", info: sampleInfo, version: "3.0.1", wantOK: false},
		{name: "no bar", info: sampleInfo, version: "3.0.2", wantOK: false},
		{name: "no checksum requirement", info: sampleInfo, version: "3.0.3", wantOK: false},
		{name: "empty version", info: sampleInfo, version: "", wantOK: false},
		{name: "version with space", info: "1.0 x |checksum:" + sumA + "\n", version: "1.0 x", wantOK: false},
		{name: "header line is not a version", info: sampleInfo, version: "---", wantOK: false},
		{name: "empty body", info: "", version: "1.0.0", wantOK: false},
		{name: "all yanked body", info: "---\n", version: "1.0.0", wantOK: false},
		{name: "first line wins", info: "1.0 |checksum:" + sumA + "\n1.0 |checksum:" + sumB + "\n", version: "1.0", want: sumA, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := InfoChecksum([]byte(tt.info), tt.version)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("InfoChecksum(%q) = %q, %v; want %q, %v", tt.version, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
