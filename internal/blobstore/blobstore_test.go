package blobstore

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckKey: the keys the proxy uses pass; paths that could escape a
// prefix, or that S3 and file systems read differently, do not.
func TestCheckKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"gems/nokogiri-1.16.0-x86_64-linux.gem", true},
		{"quick/Marshal.4.8/rails-7.1.0.gemspec.rz", true},
		{"versions/gen-00000042~a+b_c", true},
		{strings.Repeat("a", 512), true},
		{strings.Repeat("a", 513), false},
		{"", false},
		{"/gems/a.gem", false},
		{"gems/a.gem/", false},
		{"gems//a.gem", false},
		{"gems/./a.gem", false},
		{"gems/../a.gem", false},
		{"gems/a b.gem", false},
		{"gems/a%2e.gem", false},
		{"gems/é.gem", false},
		{"gems\\a.gem", false},
	}
	for _, tc := range tests {
		err := CheckKey(tc.key)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidKey)) {
			t.Errorf("CheckKey(%.40q) = %v; want ok=%v", tc.key, err, tc.ok)
		}
	}
}
