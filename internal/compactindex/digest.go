package compactindex

import (
	"encoding/base64"
	"strings"
)

// digestAlgorithm is the only Repr-Digest / Digest algorithm gemproxy
// verifies, compared case-insensitively as Bundler does.
const digestAlgorithm = "sha-256"

// ParseDigest extracts the SHA-256 from a Repr-Digest (RFC 9530) or Digest
// (RFC 3230) header value. The value is a comma-separated list of
// "algorithm=value" members; the algorithm is matched case-insensitively
// and only sha-256 is used. The value may be an RFC 9530 byte sequence
// (":b64:"), a quoted string as Fastly sends it ("\"b64\""), or bare base64,
// with or without '=' padding; it must decode to exactly 32 bytes.
// Whitespace around members, names and values is ignored.
//
// The first sha-256 member that decodes is returned; ok is false when there
// is none. Members with parameters (";k=v") are not understood and are
// skipped. ParseDigest never panics and does not allocate.
func ParseDigest(header string) (sum [32]byte, ok bool) {
	for header != "" {
		var member string
		member, header, _ = strings.Cut(header, ",")
		algo, value, found := strings.Cut(member, "=")
		if !found || !strings.EqualFold(trimOWS(algo), digestAlgorithm) {
			continue
		}
		value = trimOWS(value)
		if n := len(value); n >= 2 && (value[0] == ':' && value[n-1] == ':' || value[0] == '"' && value[n-1] == '"') {
			value = value[1 : n-1]
		}
		if sum, ok = decodeSHA256(value); ok {
			return sum, true
		}
	}
	return sum, false
}

// decodeSHA256 decodes standard base64, padded (44 characters) or not (43),
// into a 32-byte digest.
func decodeSHA256(s string) (sum [32]byte, ok bool) {
	var src [44]byte
	var dst [33]byte
	enc := base64.StdEncoding
	switch len(s) {
	case 44:
	case 43:
		enc = base64.RawStdEncoding
	default:
		return sum, false
	}
	n := copy(src[:], s)
	// base64 skips '\r' and '\n' in its input; reject them so that the
	// length check above means what it says.
	if strings.ContainsAny(s, "\r\n") {
		return sum, false
	}
	m, err := enc.Decode(dst[:], src[:n])
	if err != nil || m != len(sum) {
		return sum, false
	}
	copy(sum[:], dst[:m])
	return sum, true
}

// trimOWS removes the optional whitespace (spaces and horizontal tabs) that
// HTTP allows around list members and parameters.
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
