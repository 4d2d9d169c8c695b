package compactindex

import (
	"crypto/sha256"
	"encoding/base64"
	"testing"
)

// TestParseDigest covers the RFC 9530, Fastly and bare forms, lists and
// invalid values.
func TestParseDigest(t *testing.T) {
	sum := sha256.Sum256([]byte("---\n1.0.0 |checksum:abc\n"))
	other := sha256.Sum256([]byte("other"))
	b64 := base64.StdEncoding.EncodeToString(sum[:])
	raw := base64.RawStdEncoding.EncodeToString(sum[:])
	otherB64 := base64.StdEncoding.EncodeToString(other[:])
	md5B64 := "1B2M2Y8AsgTpgAmY7PhCfg=="
	tests := []struct {
		name   string
		header string
		want   [32]byte
		wantOK bool
	}{
		{name: "rfc 9530 byte sequence", header: "sha-256=:" + b64 + ":", want: sum, wantOK: true},
		{name: "fastly quoted", header: `sha-256="` + b64 + `"`, want: sum, wantOK: true},
		{name: "bare digest header", header: "sha-256=" + b64, want: sum, wantOK: true},
		{name: "upper-case algorithm", header: "SHA-256=" + b64, want: sum, wantOK: true},
		{name: "unpadded", header: "sha-256=:" + raw + ":", want: sum, wantOK: true},
		{name: "whitespace", header: " \tsha-256 = :" + b64 + ": \t", want: sum, wantOK: true},
		{name: "list with other algorithms", header: "md5=" + md5B64 + ", sha-512=:abc:, sha-256=:" + b64 + ":", want: sum, wantOK: true},
		{name: "first valid sha-256 wins", header: "sha-256=:bad:, sha-256=:" + b64 + ":, sha-256=:" + otherB64 + ":", want: sum, wantOK: true},
		{name: "empty", header: "", wantOK: false},
		{name: "no sha-256", header: "md5=" + md5B64, wantOK: false},
		{name: "sha-512 only", header: "sha-512=:" + b64 + b64 + ":", wantOK: false},
		{name: "wrong length", header: "sha-256=:" + md5B64 + ":", wantOK: false},
		{name: "bad base64", header: "sha-256=:" + b64[:40] + "!!!=:", wantOK: false},
		{name: "mismatched delimiters", header: "sha-256=:" + b64 + `"`, wantOK: false},
		{name: "no value", header: "sha-256", wantOK: false},
		{name: "empty value", header: "sha-256=", wantOK: false},
		{name: "embedded newline", header: "sha-256=" + b64[:20] + "\n" + b64[20:43], wantOK: false},
		{name: "parameters not understood", header: "sha-256=:" + b64 + ":;q=1", wantOK: false},
		{name: "url-safe alphabet rejected", header: "sha-256=" + base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff}), wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseDigest(tt.header)
			if ok != tt.wantOK || (ok && got != tt.want) {
				t.Errorf("ParseDigest(%q) = %x, %v; want %x, %v", tt.header, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestParseDigestAllocs checks that parsing allocates nothing.
func TestParseDigestAllocs(t *testing.T) {
	h := `sha-256="0n+AGa2M8nV/VpBt5fLNflPKUf7kHUrr0YeGqsQ19k4="`
	if allocs := testing.AllocsPerRun(100, func() { ParseDigest(h) }); allocs != 0 {
		t.Errorf("ParseDigest allocated %v times, want 0", allocs)
	}
}
