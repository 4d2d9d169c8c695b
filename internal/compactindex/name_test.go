package compactindex

import (
	"strings"
	"testing"
)

// TestValidName covers the character set, length and traversal names.
func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "simple", in: "rack", want: true},
		{name: "all classes", in: "Foo_bar-Baz.9", want: true},
		{name: "leading dot", in: ".omghi", want: true},
		{name: "dots inside", in: "a..b", want: true},
		{name: "three dots", in: "...", want: true},
		{name: "single char", in: "a", want: true},
		{name: "max length", in: strings.Repeat("a", MaxNameLen), want: true},
		{name: "too long", in: strings.Repeat("a", MaxNameLen+1), want: false},
		{name: "empty", in: "", want: false},
		{name: "dot", in: ".", want: false},
		{name: "dot dot", in: "..", want: false},
		{name: "slash", in: "a/b", want: false},
		{name: "traversal", in: "../etc", want: false},
		{name: "space", in: "a b", want: false},
		{name: "plus", in: "a+b", want: false},
		{name: "percent", in: "a%2f", want: false},
		{name: "non-ascii", in: "gém", want: false},
		{name: "nul", in: "a\x00", want: false},
		{name: "newline", in: "a\n", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidName(tt.in); got != tt.want {
				t.Errorf("ValidName(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
