package rubyfmt

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// MarshalInput asks for Marshal-based legacy index files: the quick
// gemspecs of Gems, the three specs files of Index, or both.
type MarshalInput struct {
	// Gems lists the gems whose quick gemspec is wanted.
	Gems []MarshalGem
	// Index, when non-nil, asks for the three specs files.
	Index *SpecsIndex
}

// MarshalGem is one gem whose quick gemspec is wanted.
type MarshalGem struct {
	// FullName is NAME-VERSION[-PLATFORM], the key of MarshalOutput.QuickSpecs.
	FullName string
	// Gem holds the .gem bytes (must not be modified).
	Gem []byte
}

// SpecTuple is one [name, Gem::Version, platform] entry of a specs file.
type SpecTuple struct {
	// Name is the gem name.
	Name string
	// Version is the version number (Gem::Version string).
	Version string
	// Platform is the original platform string, "ruby" for pure ruby gems.
	Platform string
}

// SpecsIndex holds the tuples of the three specs files, already filtered and
// ordered as Gem::Indexer would write them.
type SpecsIndex struct {
	// Specs lists all indexed release versions (specs.4.8.gz).
	Specs []SpecTuple
	// Latest lists the newest release version per name and platform
	// (latest_specs.4.8.gz).
	Latest []SpecTuple
	// Prerelease lists all indexed prerelease versions
	// (prerelease_specs.4.8.gz).
	Prerelease []SpecTuple
}

// MarshalOutput holds the Marshal-based files a MarshalInput asked for.
type MarshalOutput struct {
	// QuickSpecs maps a full name to its .gemspec.rz body:
	// zlib-deflate(Marshal.dump(spec)).
	QuickSpecs map[string][]byte
	// Specs, LatestSpecs and PrereleaseSpecs are the gzip(Marshal.dump(tuples))
	// bodies of the three specs files (set when Index was requested).
	Specs, LatestSpecs, PrereleaseSpecs []byte
}

// GoSpecsIndex encodes the three specs files in Go: gzip of the Ruby Marshal
// 4.8 dump of [[name, Gem::Version, platform], ...] with the string and
// Gem::Version sharing of RGO's Indexer#minimize_specs. Ruby loads these
// byte streams exactly like the ones rubygems.org serves.
func GoSpecsIndex(idx SpecsIndex) (specs, latest, prerelease []byte) {
	mtime := DefaultGemDate
	return Gzip(marshalTuples(idx.Specs), mtime, gzip.DefaultCompression),
		Gzip(marshalTuples(idx.Latest), mtime, gzip.DefaultCompression),
		Gzip(marshalTuples(idx.Prerelease), mtime, gzip.DefaultCompression)
}

// rmarshal is a tiny Ruby Marshal 4.8 writer for arrays of UTF-8 strings and
// Gem::Version objects.
type rmarshal struct {
	buf     bytes.Buffer   // output
	symbols map[string]int // symbol -> symlink index
	objects int            // objects registered so far (object link indexes)
}

// long writes a Marshal "long" (w_long in marshal.c).
func (m *rmarshal) long(x int) {
	switch {
	case x == 0:
		m.buf.WriteByte(0)
	case x > 0 && x < 123:
		m.buf.WriteByte(byte(x + 5))
	case x < 0 && x > -124:
		m.buf.WriteByte(byte((x - 5) & 0xff))
	default:
		var tmp [8]byte
		n := 0
		for i := 0; i < 4; i++ {
			tmp[i] = byte(x & 0xff)
			x >>= 8
			n = i + 1
			if x == 0 || x == -1 {
				break
			}
		}
		if x < 0 {
			m.buf.WriteByte(byte(-n))
		} else {
			m.buf.WriteByte(byte(n))
		}
		m.buf.Write(tmp[:n])
	}
}

// symbol writes a symbol or a symlink to an earlier one.
func (m *rmarshal) symbol(s string) {
	if i, ok := m.symbols[s]; ok {
		m.buf.WriteByte(';')
		m.long(i)
		return
	}
	m.symbols[s] = len(m.symbols)
	m.buf.WriteByte(':')
	m.long(len(s))
	m.buf.WriteString(s)
}

// str writes a UTF-8 String (with its :E => true encoding ivar) and returns
// its object index.
func (m *rmarshal) str(s string) int {
	idx := m.objects
	m.objects++
	m.buf.WriteString("I\"")
	m.long(len(s))
	m.buf.WriteString(s)
	m.long(1)
	m.symbol("E")
	m.buf.WriteByte('T')
	return idx
}

// link writes an object link.
func (m *rmarshal) link(idx int) {
	m.buf.WriteByte('@')
	m.long(idx)
}

// marshalTuples dumps tuples as Marshal.dump(minimize_specs(rows)) does.
func marshalTuples(tuples []SpecTuple) []byte {
	m := &rmarshal{symbols: map[string]int{}}
	m.buf.Write([]byte{4, 8})
	names, versions, platforms := map[string]int{}, map[string]int{}, map[string]int{}
	m.objects++ // the outer array
	m.buf.WriteByte('[')
	m.long(len(tuples))
	for _, t := range tuples {
		m.objects++ // the tuple array
		m.buf.WriteByte('[')
		m.long(3)
		if i, ok := names[t.Name]; ok {
			m.link(i)
		} else {
			names[t.Name] = m.str(t.Name)
		}
		if i, ok := versions[t.Version]; ok {
			m.link(i)
		} else {
			versions[t.Version] = m.objects
			m.objects++ // the Gem::Version object
			m.buf.WriteByte('U')
			m.symbol("Gem::Version")
			m.objects++ // the marshal_dump array
			m.buf.WriteByte('[')
			m.long(1)
			m.str(t.Version)
		}
		if i, ok := platforms[t.Platform]; ok {
			m.link(i)
		} else {
			platforms[t.Platform] = m.str(t.Platform)
		}
	}
	return m.buf.Bytes()
}

// rubyMarshalScript is run by RubyMarshal; ARGV[0] is a work directory with
// input.json and gems/*.gem.
const rubyMarshalScript = `
require 'rubygems'
require 'rubygems/package'
require 'json'
require 'zlib'
require 'stringio'
dir = ARGV[0]
req = JSON.parse(File.read(File.join(dir, 'input.json')))
Dir.mkdir(File.join(dir, 'out'))
(req['gems'] || []).each do |full|
  spec = Gem::Package.new(File.join(dir, 'gems', full + '.gem')).spec
  spec.abbreviate
  spec.sanitize
  File.binwrite(File.join(dir, 'out', full + '.gemspec.rz'), Zlib::Deflate.deflate(Marshal.dump(spec)))
end
if (idx = req['index'])
  names = Hash.new { |h, k| h[k] = k }
  versions = Hash.new { |h, k| h[k] = Gem::Version.new(k) }
  platforms = Hash.new { |h, k| h[k] = k }
  %w[specs latest_specs prerelease_specs].each do |kind|
    rows = (idx[kind] || []).map { |n, v, p| [names[n], versions[v], platforms[p]] }
    io = StringIO.new(String.new, 'wb')
    gz = Zlib::GzipWriter.new(io)
    gz.mtime = Time.utc(1980, 1, 2)
    gz.write(Marshal.dump(rows))
    gz.close
    File.binwrite(File.join(dir, 'out', kind + '.4.8.gz'), io.string)
  end
end
`

// RubyMarshal shells out to `ruby` (found in PATH) once per call: quick
// gemspecs are Gem::Indexer's
// Zlib::Deflate.deflate(Marshal.dump(spec.abbreviate.sanitize)) of
// Gem::Package.new(path).spec, and the specs files are gzipped Marshal dumps
// of [name, Gem::Version, platform] rows. Use it as testupstream's
// Options.Marshal in end-to-end tests where real RubyGems clients fetch
// quick gemspecs (`gem install`). Each call costs one ruby start-up
// (~100 ms) plus a few ms per gem.
func RubyMarshal(in MarshalInput) (MarshalOutput, error) {
	ruby, err := exec.LookPath("ruby")
	if err != nil {
		return MarshalOutput{}, fmt.Errorf("rubyfmt: RubyMarshal: %w", err)
	}
	dir, err := os.MkdirTemp("", "rubyfmt-marshal-")
	if err != nil {
		return MarshalOutput{}, err
	}
	defer os.RemoveAll(dir)
	if err := os.Mkdir(filepath.Join(dir, "gems"), 0o755); err != nil {
		return MarshalOutput{}, err
	}
	type input struct {
		Gems  []string              `json:"gems"`
		Index map[string][][]string `json:"index,omitempty"`
	}
	req := input{Gems: []string{}}
	for _, g := range in.Gems {
		if strings.ContainsAny(g.FullName, "/\\") || g.FullName == "" {
			return MarshalOutput{}, fmt.Errorf("rubyfmt: RubyMarshal: bad full name %q", g.FullName)
		}
		if err := os.WriteFile(filepath.Join(dir, "gems", g.FullName+".gem"), g.Gem, 0o644); err != nil {
			return MarshalOutput{}, err
		}
		req.Gems = append(req.Gems, g.FullName)
	}
	if in.Index != nil {
		rows := func(ts []SpecTuple) [][]string {
			out := make([][]string, len(ts))
			for i, t := range ts {
				out[i] = []string{t.Name, t.Version, t.Platform}
			}
			return out
		}
		req.Index = map[string][][]string{
			"specs":            rows(in.Index.Specs),
			"latest_specs":     rows(in.Index.Latest),
			"prerelease_specs": rows(in.Index.Prerelease),
		}
	}
	js, err := json.Marshal(req)
	if err != nil {
		return MarshalOutput{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "input.json"), js, 0o644); err != nil {
		return MarshalOutput{}, err
	}
	script := filepath.Join(dir, "marshal.rb")
	if err := os.WriteFile(script, []byte(rubyMarshalScript), 0o644); err != nil {
		return MarshalOutput{}, err
	}
	cmd := exec.Command(ruby, script, dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+fmt.Sprint(DefaultGemDate.Unix()))
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return MarshalOutput{}, fmt.Errorf("rubyfmt: RubyMarshal: %w", err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(5 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		err = errors.New("timed out")
	}
	if err != nil {
		return MarshalOutput{}, fmt.Errorf("rubyfmt: RubyMarshal: ruby: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	out := MarshalOutput{QuickSpecs: map[string][]byte{}}
	for _, full := range req.Gems {
		b, err := os.ReadFile(filepath.Join(dir, "out", full+".gemspec.rz"))
		if err != nil {
			return MarshalOutput{}, fmt.Errorf("rubyfmt: RubyMarshal: %w", err)
		}
		out.QuickSpecs[full] = b
	}
	if in.Index != nil {
		for _, f := range []struct {
			name string
			dst  *[]byte
		}{{"specs", &out.Specs}, {"latest_specs", &out.LatestSpecs}, {"prerelease_specs", &out.PrereleaseSpecs}} {
			b, err := os.ReadFile(filepath.Join(dir, "out", f.name+".4.8.gz"))
			if err != nil {
				return MarshalOutput{}, fmt.Errorf("rubyfmt: RubyMarshal: %w", err)
			}
			*f.dst = b
		}
	}
	return out, nil
}
