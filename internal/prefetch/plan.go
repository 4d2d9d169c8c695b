package prefetch

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/gemproxy/gemproxy/internal/lockfile"
)

// Lockfile is a lockfile read by ReadLockfiles.
type Lockfile struct {
	// Path is the path given on the command line.
	Path string
	// Parsed is its content.
	Parsed *lockfile.Lockfile
}

// ReadLockfiles reads and parses every lockfile; the first error names the
// path. A file with none of the sections Bundler always writes (a Gemfile
// given by mistake) is an error.
func ReadLockfiles(paths []string) ([]Lockfile, error) {
	out := make([]Lockfile, 0, len(paths))
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("lockfile %s: cannot read: %w", path, pathCause(err))
		}
		lf, err := lockfile.Parse(bufio.NewReader(f))
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("lockfile %s: %w", path, err)
		}
		if !looksLocked(lf) {
			return nil, fmt.Errorf("lockfile %s: not a lockfile: no GEM specs, PLATFORMS, DEPENDENCIES or BUNDLED WITH section (give the Gemfile.lock Bundler writes, not the Gemfile)", path)
		}
		out = append(out, Lockfile{Path: path, Parsed: lf})
	}
	return out, nil
}

// looksLocked reports whether lf has any of the sections Bundler writes in
// every lockfile; a Gemfile, or any other text, parses to none of them.
func looksLocked(lf *lockfile.Lockfile) bool {
	return len(lf.Gems) > 0 || len(lf.Platforms) > 0 || len(lf.Dependencies) > 0 || lf.BundledWith != ""
}

// pathCause strips the operation and path from a *fs.PathError, whose
// message would repeat the path already named.
func pathCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Target is one .gem file to prefetch, merged over the lockfiles that list
// it.
type Target struct {
	// File is the file name, NAME-VERSION[-PLATFORM].gem.
	File string
	// Name is the gem's name.
	Name string
	// SHA256 is the lowercase hex SHA-256 the CHECKSUMS section gives; ""
	// when no lockfile gives one.
	SHA256 string
	// SumFrom is the lockfile that gave SHA256.
	SumFrom string
	// Conflict, when set, is why the gem is not fetched: two lockfiles give
	// different checksums.
	Conflict string
}

// Skip is a gem not fetched because of its source.
type Skip struct {
	// File is the .gem file name.
	File string
	// Reason says why.
	Reason string
}

// Plan is what prefetch does: the gems to fetch and those skipped, each
// file once, in the order of their first appearance.
type Plan struct {
	// Gems are the .gem files to fetch.
	Gems []*Target
	// Skipped are the gems of other sources.
	Skipped []Skip
}

// NewPlan merges the gems of lockfiles: a gem is fetched when one of its
// GEM section's remotes passes allow in at least one lockfile, and skipped
// otherwise.
func NewPlan(lockfiles []Lockfile, allow func(remote string) bool) Plan {
	var pl Plan
	byFile := make(map[string]*Target)
	skipped := make(map[string]string)
	var skipOrder []string
	for _, l := range lockfiles {
		for _, g := range l.Parsed.Gems {
			file := g.FileName()
			if !allowedGem(g, allow) {
				if _, ok := skipped[file]; !ok {
					skipped[file] = skipReason(g)
					skipOrder = append(skipOrder, file)
				}
				continue
			}
			t := byFile[file]
			if t == nil {
				t = &Target{File: file, Name: g.Name}
				byFile[file] = t
				pl.Gems = append(pl.Gems, t)
			}
			switch {
			case g.SHA256 == "" || g.SHA256 == t.SHA256:
			case t.SHA256 == "":
				t.SHA256, t.SumFrom = g.SHA256, l.Path
			case t.Conflict == "":
				t.Conflict = fmt.Sprintf("CHECKSUMS of %s and %s disagree (sha256 %s and %s); not fetched",
					t.SumFrom, l.Path, t.SHA256, g.SHA256)
			}
		}
	}
	for _, file := range skipOrder {
		if byFile[file] == nil {
			pl.Skipped = append(pl.Skipped, Skip{File: file, Reason: skipped[file]})
		}
	}
	return pl
}

// indexPaths lists the compact-index files Bundler reads to install the
// plan's gems: /versions, /names and the /info file of each gem name.
func (pl Plan) indexPaths() []string {
	paths := []string{"/versions", "/names"}
	seen := make(map[string]bool)
	for _, t := range pl.Gems {
		if !seen[t.Name] {
			seen[t.Name] = true
			paths = append(paths, "/info/"+t.Name)
		}
	}
	return paths
}

// allowedGem reports whether one of g's remotes passes allow.
func allowedGem(g lockfile.Gem, allow func(string) bool) bool {
	for _, r := range g.Remotes {
		if allow(r) {
			return true
		}
	}
	return false
}

// skipReason says why g's source is not fetched.
func skipReason(g lockfile.Gem) string {
	switch len(g.Remotes) {
	case 0:
		return "its GEM section has no remote"
	case 1:
		return "source " + g.Remotes[0] + " is neither rubygems.org nor the upstream"
	}
	return "sources " + strings.Join(g.Remotes, ", ") + " are neither rubygems.org nor the upstream"
}

// NewRemoteFilter returns a function reporting whether a lockfile remote
// is served through gemproxy: rubygems.org or index.rubygems.org over http
// or https, or one of extra (the upstream, or the URL of the running
// server). Scheme, host case, default ports and trailing slashes do not
// matter.
func NewRemoteFilter(extra ...string) func(remote string) bool {
	keys := map[string]bool{"rubygems.org": true, "index.rubygems.org": true}
	for _, e := range extra {
		if k, ok := remoteKey(e); ok {
			keys[k] = true
		}
	}
	return func(remote string) bool {
		k, ok := remoteKey(remote)
		return ok && keys[k]
	}
}

// remoteKey is an http(s) URL reduced to host[:port][/path], lowercase host,
// without default port and trailing slash.
func remoteKey(s string) (string, bool) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", false
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port != "" && !(u.Scheme == "http" && port == "80") && !(u.Scheme == "https" && port == "443") {
		host = net.JoinHostPort(host, port)
	}
	return host + strings.TrimRight(u.Path, "/"), true
}
