package compactindex

import (
	"slices"
	"strings"
	"testing"
)

// TestNameRules is the one table of what gemproxy accepts as a gem name, a
// version, a platform and a full name (NAME-VERSION[-PLATFORM]): every
// package that checks one of them uses these functions.
func TestNameRules(t *testing.T) {
	long := strings.Repeat("a", MaxNameLen)
	tests := []struct {
		in                                string
		name, version, platform, fullName bool
	}{
		// Names.
		{in: "rack", name: true, platform: true},
		{in: "Foo_bar-Baz.9", name: true, platform: true},
		{in: ".omghi", name: true, platform: true},
		{in: "a..b", name: true, platform: true},
		{in: "a", name: true, platform: true},
		{in: long, name: true, platform: true},
		{in: long + "a"},
		{in: ""},
		{in: "."},
		{in: ".."},
		{in: "..."},
		{in: "-"},
		{in: "___"},
		{in: "a/b"},
		{in: "../etc"},
		{in: "a b"},
		{in: "a+b"},
		{in: "a%2f"},
		{in: "gém"},
		{in: "a\x00"},
		{in: "a\n"},
		// Versions.
		{in: "1.0.0", name: true, version: true, platform: true},
		{in: "1.0.0.pre.2", name: true, version: true, platform: true},
		{in: "10", name: true, version: true, platform: true},
		{in: "1..0", name: true, platform: true},
		{in: "1.0.", name: true, platform: true},
		{in: "v1", name: true, platform: true},
		{in: "1.0-rc1", name: true, platform: true},
		// Platforms.
		{in: "x86_64-linux-gnu", name: true, platform: true},
		{in: "universal-darwin-9.0", name: true, platform: true, fullName: true}, // also gem universal-darwin 9.0
		{in: "x86 linux"},
		{in: "linux-", name: true},
		{in: "-linux", name: true},
		{in: "linux--gnu", name: true},
		// Full names.
		{in: "rack-3.1.8", name: true, platform: true, fullName: true},
		{in: "nokogiri-1.16.0-x86_64-linux", name: true, platform: true, fullName: true},
		{in: "foo-bar-1.0.0", name: true, platform: true, fullName: true},
		{in: "a-1-2.0", name: true, platform: true, fullName: true},
		{in: "rack-", name: true},
		{in: "rack-1..0", name: true, platform: true},
		{in: "rack-1.0--x", name: true},
		{in: "-1.0", name: true},
		{in: "...-1.0", name: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			for _, rule := range []struct {
				what  string
				check func(string) bool
				want  bool
			}{
				{"ValidName", ValidName, tt.name},
				{"ValidVersion", ValidVersion, tt.version},
				{"ValidPlatform", ValidPlatform, tt.platform},
				{"ValidFullName", ValidFullName, tt.fullName},
			} {
				if got := rule.check(tt.in); got != rule.want {
					t.Errorf("%s(%q) = %v, want %v", rule.what, tt.in, got, rule.want)
				}
			}
		})
	}
}

// TestSplitFullName: every valid split, shortest name first, with the
// version spelt as /info lines spell it.
func TestSplitFullName(t *testing.T) {
	tests := []struct {
		in   string
		want [][2]string
	}{
		{in: "rack-3.1.8", want: [][2]string{{"rack", "3.1.8"}}},
		{in: "nokogiri-1.16.0-x86_64-linux", want: [][2]string{{"nokogiri", "1.16.0-x86_64-linux"}}},
		{in: "a-1-2.0", want: [][2]string{{"a", "1-2.0"}, {"a-1", "2.0"}}},
		{in: "rack"},
		{in: "...-1.0"},
	}
	for _, tt := range tests {
		var got [][2]string
		for name, version := range SplitFullName(tt.in) {
			got = append(got, [2]string{name, version})
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("SplitFullName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
