package rubyfmt

import (
	"bytes"
	"testing"
)

// TestGoSpecsIndexBytes pins the Go Marshal encoder to Ruby's exact bytes.
func TestGoSpecsIndexBytes(t *testing.T) {
	// Marshal.dump([["a", Gem::Version.new("1.0"), "ruby"], ["a", <same version>, <same platform>]])
	// with minimize_specs sharing, byte for byte what Ruby 3.1 produces.
	got := marshalTuples([]SpecTuple{{"a", "1.0", "ruby"}, {"a", "1.0", "ruby"}})
	want := []byte("\x04\b[\a[\bI\"\x06a\x06:\x06ETU:\x11Gem::Version[\x06I\"\b1.0\x06;\x00TI\"\truby\x06;\x00T[\b@\a@\b@\v")
	if !bytes.Equal(got, want) {
		t.Errorf("marshal = %q\nwant      %q", got, want)
	}
}
