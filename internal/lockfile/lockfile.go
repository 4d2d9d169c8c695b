// Package lockfile parses Bundler lockfiles (Gemfile.lock): the gems of the
// GEM sections with the remotes they come from, the CHECKSUMS section that
// Bundler 2.5 and later write, PLATFORMS, DEPENDENCIES, RUBY VERSION and
// BUNDLED WITH. The gems of GIT, PATH and PLUGIN SOURCE sections are skipped:
// they do not come from a gem server. It does no I/O beyond reading the
// io.Reader it is given.
//
// The line grammar follows Bundler's LockfileParser: a section starts with an
// unindented line; in a GEM section, "  remote: URL" lines name the remotes,
// "  specs:" starts the specs, a spec is "    NAME (VERSION[-PLATFORM])"
// (exactly four spaces; the version never contains "-", so the platform is
// everything after the first one) and the six-space lines under it are its
// dependencies. A CHECKSUMS entry is "  NAME (VERSION[-PLATFORM]) ALGO=HEX"
// with comma-separated ALGO=HEX pairs, or without any for a gem whose
// checksum is unknown.
package lockfile

import (
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/gemproxy/gemproxy/internal/compactindex"
)

// RubyPlatform is the platform of a pure-Ruby gem.
const RubyPlatform = "ruby"

// Lockfile is the parsed content of a Gemfile.lock.
type Lockfile struct {
	// Gems lists the specs of the GEM sections in file order, each full
	// name once (the first occurrence is kept).
	Gems []Gem
	// Platforms lists the PLATFORMS section, e.g. "ruby", "x86_64-linux".
	Platforms []string
	// Dependencies lists the DEPENDENCIES section in file order.
	Dependencies []Dependency
	// RubyVersion is the RUBY VERSION line, e.g. "ruby 3.3.0p0"; "" when
	// the section is absent.
	RubyVersion string
	// BundledWith is the Bundler version of BUNDLED WITH, e.g. "2.5.6"; ""
	// when the section is absent.
	BundledWith string
	// HasChecksums reports whether the lockfile has a CHECKSUMS section.
	HasChecksums bool
}

// Gem is one spec of a GEM section: a .gem file served by a gem server.
type Gem struct {
	// Name is the gem name, e.g. "nokogiri".
	Name string
	// Version is the version, e.g. "1.16.0".
	Version string
	// Platform is the platform, e.g. "x86_64-linux"; RubyPlatform for a
	// pure-Ruby gem (never "").
	Platform string
	// Remotes lists the "remote:" URLs of the gem's GEM section in file
	// order, as written (e.g. "https://rubygems.org/"). Bundler writes one;
	// lockfiles of Bundler 1 may merge several sources into one section.
	// Empty when the section has no remote line.
	Remotes []string
	// SHA256 is the lowercase hex SHA-256 of the .gem file from the
	// CHECKSUMS section; "" when there is none for this gem.
	SHA256 string
	// Line is the 1-based line number of the spec, for messages.
	Line int
}

// FullName is NAME-VERSION, or NAME-VERSION-PLATFORM for a platform gem:
// the .gem file name without extension, as rubygems.org names it.
func (g Gem) FullName() string {
	if g.Platform == "" || g.Platform == RubyPlatform {
		return g.Name + "-" + g.Version
	}
	return g.Name + "-" + g.Version + "-" + g.Platform
}

// FileName is the .gem file name, FullName() + ".gem".
func (g Gem) FileName() string { return g.FullName() + ".gem" }

// Dependency is one entry of the DEPENDENCIES section.
type Dependency struct {
	// Name is the gem name.
	Name string
	// Requirement is the version requirement as written, e.g. "~> 1.21"
	// or ">= 1.4.4, < 1.6.0"; "" when unconstrained.
	Requirement string
	// Pinned reports the "!" marker: the gem comes from a specific source
	// (a GIT or PATH section, or a second gem server).
	Pinned bool
}

// Error is a problem at one line of a lockfile; Parse returns it (test with
// errors.As).
type Error struct {
	// Line is the 1-based line number.
	Line int
	// Msg describes the problem.
	Msg string
}

// Error returns "line N: MSG".
func (e *Error) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// section is the kind of section a line belongs to.
type section int

// The sections Parse tells apart.
const (
	// sectionNone is before the first section and inside unknown ones.
	sectionNone section = iota
	// sectionGem is a GEM source.
	sectionGem
	// sectionOtherSource is a GIT, PATH or PLUGIN SOURCE source.
	sectionOtherSource
	// sectionPlatforms is PLATFORMS.
	sectionPlatforms
	// sectionDependencies is DEPENDENCIES.
	sectionDependencies
	// sectionChecksums is CHECKSUMS.
	sectionChecksums
	// sectionRuby is RUBY VERSION.
	sectionRuby
	// sectionBundled is BUNDLED WITH.
	sectionBundled
)

// sectionOf returns the section an unindented header line starts:
// sectionNone for a section Parse does not know.
func sectionOf(header string) section {
	switch header {
	case "GEM":
		return sectionGem
	case "GIT", "PATH", "PLUGIN SOURCE":
		return sectionOtherSource
	case "PLATFORMS":
		return sectionPlatforms
	case "DEPENDENCIES":
		return sectionDependencies
	case "CHECKSUMS":
		return sectionChecksums
	case "RUBY VERSION":
		return sectionRuby
	case "BUNDLED WITH":
		return sectionBundled
	}
	return sectionNone
}

// parser is the state of one Parse call.
type parser struct {
	lf *Lockfile
	// sec is the current section.
	sec section
	// remotes are the remotes of the current GEM section.
	remotes []string
	// inSpecs is set after "  specs:" in the current GEM section.
	inSpecs bool
	// seen holds the full names already in lf.Gems.
	seen map[string]bool
	// checksums maps full names to SHA-256 hex from CHECKSUMS.
	checksums map[string]string
}

// Parse reads a lockfile from r. Unknown sections, unknown GEM options and
// lines Bundler would ignore are ignored; a merge conflict marker, a spec
// that is not NAME (VERSION[-PLATFORM]) with a file-name-safe name, version
// and platform, or a malformed sha256 checksum is an *Error.
func Parse(r io.Reader) (*Lockfile, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("lockfile: read: %w", err)
	}
	p := &parser{lf: &Lockfile{}, seen: make(map[string]bool), checksums: make(map[string]string)}
	for i, line := range strings.Split(string(data), "\n") {
		if err := p.line(i+1, strings.TrimSuffix(line, "\r")); err != nil {
			return nil, err
		}
	}
	for i := range p.lf.Gems {
		p.lf.Gems[i].SHA256 = p.checksums[p.lf.Gems[i].FullName()]
	}
	return p.lf, nil
}

// line parses line number n.
func (p *parser) line(n int, line string) error {
	for _, marker := range []string{"<<<<<<<", "=======", ">>>>>>>", "|||||||"} {
		if strings.HasPrefix(line, marker) {
			return &Error{Line: n, Msg: "merge conflict marker " + marker + "; resolve the conflict (or regenerate the lockfile) first"}
		}
	}
	if strings.TrimSpace(line) == "" {
		return nil
	}
	if line[0] != ' ' && line[0] != '\t' {
		p.sec = sectionOf(line)
		p.remotes, p.inSpecs = nil, false
		if p.sec == sectionChecksums {
			p.lf.HasChecksums = true
		}
		return nil
	}
	indent := len(line) - len(strings.TrimLeft(line, " "))
	text := line[indent:]
	switch p.sec {
	case sectionGem:
		return p.gemLine(n, indent, text)
	case sectionPlatforms:
		if indent == 2 {
			p.lf.Platforms = append(p.lf.Platforms, strings.TrimSpace(text))
		}
	case sectionDependencies:
		if indent == 2 {
			p.lf.Dependencies = append(p.lf.Dependencies, parseDependency(text))
		}
	case sectionChecksums:
		if indent == 2 {
			return p.checksumLine(n, text)
		}
	case sectionRuby:
		p.lf.RubyVersion = strings.TrimSpace(text)
	case sectionBundled:
		p.lf.BundledWith = strings.TrimSpace(text)
	}
	return nil
}

// gemLine parses a line of a GEM section: an option, "specs:", a spec, or a
// spec's dependency (ignored).
func (p *parser) gemLine(n, indent int, text string) error {
	switch {
	case indent == 2 && text == "specs:":
		// The section's gems share one remotes slice; clipping it makes an
		// append by a caller copy instead of writing into it.
		p.remotes, p.inSpecs = slices.Clip(p.remotes), true
	case indent == 2:
		key, value, ok := strings.Cut(text, ": ")
		if ok && key == "remote" {
			p.remotes = append(p.remotes, strings.TrimSpace(value))
		}
	case indent == 4:
		if !p.inSpecs {
			return &Error{Line: n, Msg: fmt.Sprintf("spec %q before the section's \"specs:\" line", text)}
		}
		name, version, platform, rest, err := parseSpec(text)
		if err == nil && rest != "" {
			err = fmt.Errorf("unexpected %q after the version", rest)
		}
		if err != nil {
			return &Error{Line: n, Msg: fmt.Sprintf("spec %q: %v", text, err)}
		}
		g := Gem{Name: name, Version: version, Platform: platform, Remotes: p.remotes, Line: n}
		if !p.seen[g.FullName()] {
			p.seen[g.FullName()] = true
			p.lf.Gems = append(p.lf.Gems, g)
		}
	}
	return nil
}

// checksumLine parses a CHECKSUMS entry.
func (p *parser) checksumLine(n int, text string) error {
	name, version, platform, rest, err := parseSpec(text)
	if err != nil {
		return &Error{Line: n, Msg: fmt.Sprintf("checksum %q: %v", text, err)}
	}
	full := Gem{Name: name, Version: version, Platform: platform}.FullName()
	if rest == "" {
		return nil // no checksum known for this gem
	}
	if rest[0] != ' ' {
		return &Error{Line: n, Msg: fmt.Sprintf("checksum %q: unexpected %q after the version", text, rest)}
	}
	for _, pair := range strings.Split(strings.TrimSpace(rest), ",") {
		algo, sum, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok {
			return &Error{Line: n, Msg: fmt.Sprintf("checksum %q: %q is not ALGORITHM=DIGEST", text, pair)}
		}
		if algo != "sha256" {
			continue // another algorithm: not checked here
		}
		if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 {
			return &Error{Line: n, Msg: fmt.Sprintf("checksum of %s: sha256 %q is not 64 hexadecimal digits", full, sum)}
		}
		p.checksums[full] = strings.ToLower(sum)
	}
	return nil
}

// parseSpec splits "NAME (VERSION[-PLATFORM])REST" and checks that name,
// version and platform can be part of a .gem file name. platform is
// RubyPlatform when absent.
func parseSpec(s string) (name, version, platform, rest string, err error) {
	open := strings.Index(s, " (")
	if open < 0 {
		return "", "", "", "", fmt.Errorf("want NAME (VERSION)")
	}
	closing := strings.IndexByte(s[open:], ')')
	if closing < 0 {
		return "", "", "", "", fmt.Errorf("missing )")
	}
	name, rest = s[:open], s[open+closing+1:]
	version, platform, hasPlatform := strings.Cut(s[open+2:open+closing], "-")
	switch {
	case !compactindex.ValidName(name):
		return "", "", "", "", fmt.Errorf("invalid gem name %q", name)
	case !compactindex.ValidVersion(version):
		return "", "", "", "", fmt.Errorf("invalid version %q", version)
	case hasPlatform && !compactindex.ValidPlatform(platform):
		return "", "", "", "", fmt.Errorf("invalid platform %q", platform)
	case !hasPlatform:
		platform = RubyPlatform
	}
	return name, version, platform, rest, nil
}

// parseDependency parses a DEPENDENCIES entry: "NAME", "NAME!",
// "NAME (REQ)" or "NAME (REQ)!".
func parseDependency(s string) Dependency {
	s = strings.TrimSpace(s)
	var d Dependency
	if strings.HasSuffix(s, "!") {
		d.Pinned, s = true, strings.TrimSuffix(s, "!")
	}
	if open := strings.Index(s, " ("); open >= 0 && strings.HasSuffix(s, ")") {
		d.Name, d.Requirement = s[:open], s[open+2:len(s)-1]
	} else {
		d.Name = s
	}
	return d
}
