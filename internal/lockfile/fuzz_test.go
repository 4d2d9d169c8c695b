package lockfile

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzParse checks Parse never panics, fails only with *Error, and returns
// gems whose file names are single safe path segments that reparse to the
// same gem.
func FuzzParse(f *testing.F) {
	f.Add([]byte(bundler25))
	f.Add([]byte("GEM\n  remote: https://rubygems.org/\n  specs:\n    a (1.0-x86_64-linux)\n      b (>= 1)\n"))
	f.Add([]byte("CHECKSUMS\n  a (1.0) sha256=" + sumA + ",sha512=00\n"))
	f.Add([]byte("GEM\r\n  specs:\r\n    a (1.0)!\r\n"))
	f.Add([]byte("GEM\n  specs:\n    a ((1.0))\n    b (1.0-)\n    c ( 1.0)\n"))
	f.Add([]byte("DEPENDENCIES\n  a (~> 1.0)!\n  b!\n  (\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lf, err := Parse(bytes.NewReader(data))
		if err != nil {
			var le *Error
			if !errors.As(err, &le) || le.Line < 1 {
				t.Fatalf("error %v is not an *Error with a line", err)
			}
			return
		}
		for _, g := range lf.Gems {
			file := g.FileName()
			if strings.ContainsAny(file, "/\\?#% \t\r\n") || !strings.HasSuffix(file, ".gem") {
				t.Fatalf("unsafe file name %q", file)
			}
			if g.SHA256 != "" && (len(g.SHA256) != 64 || strings.ToLower(g.SHA256) != g.SHA256) {
				t.Fatalf("SHA256 %q is not lowercase hex", g.SHA256)
			}
			spec := "GEM\n  specs:\n    " + g.Name + " (" + g.Version
			if g.Platform != RubyPlatform {
				spec += "-" + g.Platform
			}
			again, err := Parse(strings.NewReader(spec + ")\n"))
			if err != nil || len(again.Gems) != 1 || again.Gems[0].FullName() != g.FullName() {
				t.Fatalf("%s does not reparse: %v %+v", g.FullName(), err, again)
			}
		}
	})
}
