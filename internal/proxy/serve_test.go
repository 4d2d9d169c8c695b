package proxy

import (
	"regexp"
	"strings"
	"testing"
)

// acceptsGzipCases pairs Accept-Encoding values with whether gzip may be sent.
var acceptsGzipCases = []struct {
	ae   string
	want bool
}{
	{"", false},
	{"gzip", false}, // Bundler's explicit retry header: identity
	{"gzip, deflate, br", true},
	{"gzip;q=1.0,deflate;q=0.6,identity;q=0.3", true},
	{"gzip;q=0.5", true},
	{"gzip;q=0.001", true},
	{"GZIP", true},
	{"gzip;q=0", false},
	{"gzip;Q=0", false},
	{"gzip;q=0.0", false},
	{"gzip;q=0.000", false},
	{"gzip;q=0.", false},
	{"gzip ; q = 0", false},
	{"gzip\t;\tq\t=\t0.00", false},
	{"GZIP;q=0", false},
	{"deflate, gzip;q=0", false},
	{"gzip;level=1;q=0", false},
	{"gzip;q=0, *", false}, // the explicit gzip element wins over "*"
	{"*;q=0", false},
	{"*;q=0, deflate", false},
	{"identity, *;q=0", false},
	{"*", true},
	{"deflate, *;q=0.5", true},
	{"*, gzip;q=0", false},
	{"deflate", false},
	{"br;q=1, identity", false},
	{"x-gzip2, gzip2", false},
	{"gzip;q=00", true}, // not a zero q-value as RFC 9110 spells one
	{"gzip;q=", true},
	{",,,", false},
}

func TestAcceptsGzip(t *testing.T) {
	for _, tc := range acceptsGzipCases {
		if got := acceptsGzip([]byte(tc.ae)); got != tc.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tc.ae, got, tc.want)
		}
	}
}

// TestAcceptsGzipAllocatesNothing: acceptsGzip runs on every cache hit.
func TestAcceptsGzipAllocatesNothing(t *testing.T) {
	for _, tc := range acceptsGzipCases {
		ae := []byte(tc.ae)
		if n := testing.AllocsPerRun(100, func() { acceptsGzip(ae) }); n != 0 {
			t.Errorf("acceptsGzip(%q) allocates %v times", tc.ae, n)
		}
	}
}

// zeroQValue matches the q-values acceptsGzip reads as zero.
var zeroQValue = regexp.MustCompile(`^0(\.0*)?$`)

// acceptsGzipReference is a plain, allocating restatement of acceptsGzip's
// rules that FuzzAcceptsGzip compares it with.
func acceptsGzipReference(ae string) bool {
	if ae == "" || ae == "gzip" {
		return false
	}
	var gzip, star *bool
	for _, elem := range strings.Split(ae, ",") {
		parts := strings.Split(elem, ";")
		ok := true
		for _, param := range parts[1:] {
			name, value, _ := strings.Cut(param, "=")
			if strings.EqualFold(strings.TrimSpace(name), "q") {
				ok = !zeroQValue.MatchString(strings.TrimSpace(value))
				break
			}
		}
		switch name := strings.TrimSpace(parts[0]); {
		case strings.EqualFold(name, "gzip") && gzip == nil:
			gzip = &ok
		case name == "*" && star == nil:
			star = &ok
		}
	}
	switch {
	case gzip != nil:
		return *gzip
	case star != nil:
		return *star
	}
	return false
}

// FuzzAcceptsGzip compares acceptsGzip with acceptsGzipReference.
func FuzzAcceptsGzip(f *testing.F) {
	for _, tc := range acceptsGzipCases {
		f.Add(tc.ae)
	}
	f.Fuzz(func(t *testing.T, ae string) {
		if got, want := acceptsGzip([]byte(ae)), acceptsGzipReference(ae); got != want {
			t.Fatalf("acceptsGzip(%q) = %v, reference says %v", ae, got, want)
		}
	})
}
