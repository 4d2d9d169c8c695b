package compactindex

import (
	"strings"
	"testing"
)

// TestInfoDependencies lists the dependency names of sampleInfo and of
// malformed lines.
func TestInfoDependencies(t *testing.T) {
	tests := []struct {
		name, info, want string
	}{
		{"sample", sampleInfo, "dep dep2 racc"},
		{"repeated names kept", "1.0 a:>= 0,b:>= 0|checksum:" + sumA + "\n2.0 a:~> 1|\n", "a b a"},
		{"no bar", "1.0 a:>= 0\n", ""},
		{"crlf", "1.0 a:>= 0|x\r\n", "a"},
		{"no space", "1.0|a:>= 0\n", ""},
		{"header only", "---\n", ""},
		{"invalid names skipped", "1.0 ../x:>= 0,:>= 0,ok:>= 0,no colon|\n", "ok"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		if got := depNames([]byte(tt.info)); got != tt.want {
			t.Errorf("%s: InfoDependencies = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// depNames joins the names InfoDependencies reports with spaces.
func depNames(info []byte) string {
	var names []string
	InfoDependencies(info, func(name []byte) { names = append(names, string(name)) })
	return strings.Join(names, " ")
}

// refDepNames is a straightforward reference of InfoDependencies.
func refDepNames(info string) string {
	var names []string
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSuffix(line, "\r")
		i := strings.IndexByte(line, ' ')
		if i < 0 {
			continue
		}
		deps := line[i+1:]
		j := strings.IndexByte(deps, '|')
		if j < 0 {
			continue
		}
		deps = deps[:j]
		if deps == "" {
			continue
		}
		for _, dep := range strings.Split(deps, ",") {
			if j := strings.IndexByte(dep, ':'); j >= 0 && ValidName(dep[:j]) {
				names = append(names, dep[:j])
			}
		}
	}
	return strings.Join(names, " ")
}

// FuzzInfoDependencies checks InfoDependencies against refDepNames.
func FuzzInfoDependencies(f *testing.F) {
	f.Add(sampleInfo)
	f.Add("1.0 a:>= 0,b:~> 1&< 2|checksum:x\n")
	f.Fuzz(func(t *testing.T, info string) {
		if got, want := depNames([]byte(info)), refDepNames(info); got != want {
			t.Errorf("InfoDependencies(%q) = %q, reference %q", info, got, want)
		}
	})
}
