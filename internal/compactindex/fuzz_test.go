package compactindex

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
	"unsafe"
)

// refVersions is a deliberately simple reference for VersionsChecksums,
// built on strings.Split, that the fuzz test compares against.
func refVersions(data string) []pair {
	lines := strings.Split(data, "\n")
	for i, l := range lines {
		if strings.TrimSuffix(l, "\r") == "---" {
			lines = lines[i+1:]
			break
		}
	}
	var out []pair
	for _, l := range lines {
		f := strings.Split(strings.TrimSuffix(l, "\r"), " ")
		if len(f) == 3 && ValidName(f[0]) && f[1] != "" && len(f[2]) == 32 && isLowerHex(f[2]) {
			out = append(out, pair{f[0], f[2]})
		}
	}
	return out
}

// refInfoChecksum is a deliberately simple reference for InfoChecksum.
func refInfoChecksum(info, version string) (string, bool) {
	if version == "" || strings.Contains(version, " ") {
		return "", false
	}
	for _, l := range strings.Split(info, "\n") {
		first, rest, found := strings.Cut(strings.TrimSuffix(l, "\r"), " ")
		if !found || first != version {
			continue
		}
		_, reqs, found := strings.Cut(rest, "|")
		if !found {
			return "", false
		}
		for _, r := range strings.Split(reqs, ",") {
			if v, ok := strings.CutPrefix(r, "checksum:"); ok {
				if len(v) == 64 && isLowerHex(v) {
					return v, true
				}
				return "", false
			}
		}
		return "", false
	}
	return "", false
}

// refParseDigest is a deliberately simple reference for ParseDigest.
func refParseDigest(header string) ([32]byte, bool) {
	for _, m := range strings.Split(header, ",") {
		algo, v, found := strings.Cut(m, "=")
		if !found || strings.ToLower(strings.Trim(algo, " \t")) != "sha-256" {
			continue
		}
		v = strings.Trim(v, " \t")
		if len(v) >= 2 && ((v[0] == ':' && v[len(v)-1] == ':') || (v[0] == '"' && v[len(v)-1] == '"')) {
			v = v[1 : len(v)-1]
		}
		if strings.ContainsAny(v, "\r\n") {
			continue
		}
		var b []byte
		var err error
		switch len(v) {
		case 44:
			b, err = base64.StdEncoding.DecodeString(v)
		case 43:
			b, err = base64.RawStdEncoding.DecodeString(v)
		default:
			continue
		}
		if err == nil && len(b) == 32 {
			return [32]byte(b), true
		}
	}
	return [32]byte{}, false
}

// within reports whether sub is a sub-slice of data's memory.
func within(sub, data []byte) bool {
	if len(sub) == 0 {
		return true
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(sub)))
	return p >= lo && p+uintptr(len(sub)) <= lo+uintptr(len(data))
}

// FuzzVersionsChecksums compares VersionsChecksums with refVersions and
// checks that callback slices alias the input and are well-formed.
func FuzzVersionsChecksums(f *testing.F) {
	f.Add([]byte("created_at: 2024-04-01T00:00:05Z\n---\n.omghi 1,2 7a67c0434100c2ab635b9f4865ee86bd\n"))
	f.Add([]byte("active_model_serializers -0.9.10 7ad37af4c3b1ca2ff1a09a6a1f2d3b4c\n"))
	f.Add([]byte("created_at: 2017-03-27T04:38:13+00:00\n---\ndummy-pkg-a 1.0.0 bf914ad70e2044413345b8efd4911d69\ndummy-pkg-a 2.1.0.rc1 3c5834b0450820da13956ca11e668e7a\ndummy-pkg-b 1.0.0,1.1.0-java 8285ab1075a8ad736c6c5f6640e2a7b4"))
	f.Add([]byte("a -1.0.0 6105347ebb9825ac754615ca55ff3b0c\r\n---\r\nb 1 6105347ebb9825ac754615ca55ff3b0c"))
	f.Add([]byte("---"))
	f.Add([]byte("\n\n---\n---\n \n"))
	f.Add(generateVersions(50))
	f.Fuzz(func(t *testing.T, data []byte) {
		var got []pair
		VersionsChecksums(data, func(name, sum []byte) {
			if !within(name, data) || !within(sum, data) {
				t.Fatalf("callback slices do not alias the input")
			}
			if !ValidName(string(name)) || len(sum) != 32 || !isLowerHex(sum) {
				t.Fatalf("malformed callback (%q, %q)", name, sum)
			}
			got = append(got, pair{string(name), string(sum)})
		})
		want := refVersions(string(data))
		if len(got) != len(want) {
			t.Fatalf("got %d lines %v, reference %d lines %v", len(got), got, len(want), want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("line %d: got %v, reference %v", i, got[i], want[i])
			}
		}
	})
}

// FuzzInfoChecksum compares InfoChecksum with refInfoChecksum.
func FuzzInfoChecksum(f *testing.F) {
	f.Add([]byte(sampleInfo), "1.13.10")
	f.Add([]byte(sampleInfo), "1.13.10-x86_64-linux")
	f.Add([]byte(sampleInfo), "3.0.1")
	f.Add([]byte("---\n4.0.5 |checksum:efbc97d1a6d5e8b3eb1c0bbbd0d8e1b5bb35ce9ed6c9eab9fd39ad3d1faa0b7c,ruby:>= 2.3\n"), "4.0.5")
	f.Add([]byte("---\n"), "1.0.0")
	f.Add([]byte("1.0 a|b|checksum:"+sumA), "1.0")
	f.Fuzz(func(t *testing.T, info []byte, version string) {
		got, ok := InfoChecksum(info, version)
		want, wantOK := refInfoChecksum(string(info), version)
		if got != want || ok != wantOK {
			t.Fatalf("InfoChecksum(%q, %q) = %q, %v; reference %q, %v", info, version, got, ok, want, wantOK)
		}
		if ok && (len(got) != 64 || !isLowerHex(got) || !strings.Contains(string(info), got)) {
			t.Fatalf("InfoChecksum returned %q, not a checksum from the input", got)
		}
	})
}

// FuzzParseDigest compares ParseDigest with refParseDigest and checks that
// a valid leading member always wins.
func FuzzParseDigest(f *testing.F) {
	f.Add(`sha-256="0n+AGa2M8nV/VpBt5fLNflPKUf7kHUrr0YeGqsQ19k4="`)
	f.Add(`sha-256=:0n+AGa2M8nV/VpBt5fLNflPKUf7kHUrr0YeGqsQ19k4=:`)
	f.Add(`SHA-256=0n+AGa2M8nV/VpBt5fLNflPKUf7kHUrr0YeGqsQ19k4`)
	f.Add(`md5=1B2M2Y8AsgTpgAmY7PhCfg==, sha-256=:0n+AGa2M8nV/VpBt5fLNflPKUf7kHUrr0YeGqsQ19k4=:;p=1`)
	f.Add(`sha-256=:=:, sha-256="", sha-256`)
	f.Fuzz(func(t *testing.T, header string) {
		got, ok := ParseDigest(header)
		want, wantOK := refParseDigest(header)
		if got != want || ok != wantOK {
			t.Fatalf("ParseDigest(%q) = %x, %v; reference %x, %v", header, got, ok, want, wantOK)
		}
		// Every encoding of a digest must round-trip, wherever it sits in
		// a list that the header cannot break (it has no unbalanced comma
		// inside the member we add).
		sum := sha256.Sum256([]byte(header))
		b64 := base64.StdEncoding.EncodeToString(sum[:])
		for _, member := range []string{"sha-256=:" + b64 + ":", `sha-256="` + b64 + `"`, "Sha-256=" + b64} {
			if got, ok := ParseDigest(member + "," + header); !ok || got != sum {
				t.Fatalf("ParseDigest(%q) = %x, %v; want %x", member+","+header, got, ok, sum)
			}
		}
	})
}

// FuzzETagMatches checks that ETagMatches never panics, never matches a
// header that holds neither the tag nor "*", and always matches a leading
// member in every accepted spelling.
func FuzzETagMatches(f *testing.F) {
	f.Add(`"6a7e9ee1e047d992cddad72b25ae4f73"`, "6a7e9ee1e047d992cddad72b25ae4f73")
	f.Add(`6a7e9ee1e047d992cddad72b25ae4f73`, "6a7e9ee1e047d992cddad72b25ae4f73")
	f.Add(`W/"abc", "def", *`, "6a7e9ee1e047d992cddad72b25ae4f73")
	f.Add(`"x,6a7e9ee1e047d992cddad72b25ae4f73,y"`, "6a7e9ee1e047d992cddad72b25ae4f73")
	f.Add(`"unterminated, 6a7e9ee1e047d992cddad72b25ae4f73`, "")
	f.Fuzz(func(t *testing.T, header, md5hex string) {
		// Whatever the inputs, the call must not panic.
		ETagMatches(header, md5hex)

		// Use a real digest from here on so that the properties hold.
		if len(md5hex) != 32 || !isLowerHex(md5hex) {
			s := md5.Sum([]byte(md5hex))
			md5hex = hex.EncodeToString(s[:])
		}
		got := ETagMatches(header, md5hex)
		if got && !strings.Contains(header, "*") && !strings.Contains(strings.ToLower(header), md5hex) {
			t.Fatalf("ETagMatches(%q, %q) = true, but the header holds neither the tag nor *", header, md5hex)
		}
		for _, member := range []string{`"` + md5hex + `"`, md5hex, `W/"` + md5hex + `"`, " W/" + md5hex + " "} {
			if !ETagMatches(member+","+header, md5hex) {
				t.Fatalf("ETagMatches(%q, %q) = false, want true", member+","+header, md5hex)
			}
		}
	})
}
