package rubyfmt

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// versionSegmentRE splits a version into numeric and alphabetic segments
// (Gem::Version#_segments).
var versionSegmentRE = regexp.MustCompile(`[0-9]+|[a-zA-Z]+`)

// IsPrerelease reports whether v is a prerelease (contains a letter), as
// Gem::Version#prerelease?.
func IsPrerelease(v string) bool {
	return strings.IndexFunc(v, func(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }) >= 0
}

// vseg is one version segment: a number or a string.
type vseg struct {
	num   string // digits without leading zeros ("0" for zero); "" for strings
	str   string // the letters of a string segment
	isStr bool   // segment is a string
}

// canonicalSegments mirrors Gem::Version#canonical_segments: trailing zero
// segments are dropped from the numeric part and from the part after the
// first string segment.
func canonicalSegments(v string) []vseg {
	v = strings.ReplaceAll(strings.TrimSpace(v), "-", ".pre.")
	var segs []vseg
	for _, s := range versionSegmentRE.FindAllString(v, -1) {
		if s[0] >= '0' && s[0] <= '9' {
			n := strings.TrimLeft(s, "0")
			if n == "" {
				n = "0"
			}
			segs = append(segs, vseg{num: n})
		} else {
			segs = append(segs, vseg{str: s, isStr: true})
		}
	}
	split := len(segs)
	for i, s := range segs {
		if s.isStr {
			split = i
			break
		}
	}
	trim := func(p []vseg) []vseg {
		for len(p) > 0 && !p[len(p)-1].isStr && p[len(p)-1].num == "0" {
			p = p[:len(p)-1]
		}
		return p
	}
	out := append([]vseg{}, trim(append([]vseg{}, segs[:split]...))...)
	return append(out, trim(append([]vseg{}, segs[split:]...))...)
}

// CompareSpecs orders gem specs by name, then version (CompareVersions),
// then platform (ComparePlatforms): the order of the Marshal specs index.
func CompareSpecs(a, b GemSpec) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	if c := CompareVersions(a.Version, b.Version); c != 0 {
		return c
	}
	return ComparePlatforms(a.Platform, b.Platform)
}

// ComparePlatforms orders the "ruby" platform before every other one, and
// the others by name.
func ComparePlatforms(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == "ruby":
		return -1
	case b == "ruby":
		return 1
	}
	return strings.Compare(a, b)
}

// CompareVersions compares two version strings as Gem::Version#<=> does.
func CompareVersions(a, b string) int {
	if a == b {
		return 0
	}
	la, lb := canonicalSegments(a), canonicalSegments(b)
	n := max(len(la), len(lb))
	zero := vseg{num: "0"}
	for i := 0; i < n; i++ {
		x, y := zero, zero
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		switch {
		case x == y:
			continue
		case x.isStr && !y.isStr:
			return -1
		case !x.isStr && y.isStr:
			return 1
		case x.isStr:
			return strings.Compare(x.str, y.str)
		default:
			if len(x.num) != len(y.num) {
				if len(x.num) < len(y.num) {
					return -1
				}
				return 1
			}
			return strings.Compare(x.num, y.num)
		}
	}
	return 0
}

// ErrNotAGem is returned by ParseGem when the bytes are not a tar-format gem
// with a readable metadata.gz.
var ErrNotAGem = errors.New("rubyfmt: not a gem package")

// ParseGem reads the gemspec (metadata.gz) of a .gem file and returns the
// fields a GemSpec carries: name, version, platform (original platform
// string), runtime dependencies, required ruby/rubygems versions, summary,
// authors, licenses and date. Files and Padding are left empty. It
// understands the YAML written by Psych (RubyGems >= 1.8) and by Syck.
func ParseGem(gem []byte) (GemSpec, error) {
	meta, err := gemMember(gem, "metadata.gz")
	if err != nil {
		return GemSpec{}, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(meta))
	if err != nil {
		return GemSpec{}, fmt.Errorf("%w: metadata.gz: %v", ErrNotAGem, err)
	}
	yml, err := io.ReadAll(io.LimitReader(zr, 16<<20))
	if err != nil {
		return GemSpec{}, fmt.Errorf("%w: metadata.gz: %v", ErrNotAGem, err)
	}
	return parseGemspecYAML(string(yml))
}

// gemMember returns the bytes of the named member of the gem's outer tar.
func gemMember(gem []byte, name string) ([]byte, error) {
	tr := tar.NewReader(bytes.NewReader(gem))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%w: no %s", ErrNotAGem, name)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotAGem, err)
		}
		if h.Name == name {
			return io.ReadAll(io.LimitReader(tr, 64<<20))
		}
	}
}

// parseGemspecYAML extracts GemSpec fields from a YAML gemspec.
func parseGemspecYAML(src string) (GemSpec, error) {
	root, err := parseYAML(src)
	if err != nil {
		return GemSpec{}, err
	}
	if root == nil || root.Kind != yaml.MappingNode {
		return GemSpec{}, fmt.Errorf("%w: gemspec is not a mapping", ErrNotAGem)
	}
	field := func(k string) *yaml.Node { return yamlGet(root, k) }
	spec := GemSpec{Name: yamlScalarValue(field("name"))}
	if v := field("version"); v != nil && v.Kind == yaml.MappingNode {
		spec.Version = yamlScalarValue(yamlGet(v, "version"))
	} else {
		spec.Version = yamlScalarValue(v)
	}
	spec.Platform = NormalizePlatform(yamlScalarValue(field("platform")))
	if spec.Name == "" || spec.Version == "" {
		return GemSpec{}, fmt.Errorf("%w: gemspec without name or version", ErrNotAGem)
	}
	spec.Summary = strings.TrimSpace(yamlScalarValue(field("summary")))
	spec.Authors = yamlStrings(field("authors"))
	spec.Licenses = yamlStrings(field("licenses"))
	if spec.Licenses == nil {
		if l := yamlScalarValue(field("license")); l != "" {
			spec.Licenses = []string{l}
		}
	}
	if d := yamlScalarValue(field("date")); len(d) >= 10 {
		if t, err := time.Parse("2006-01-02", d[:10]); err == nil {
			spec.Date = t
		}
	}
	spec.RequiredRuby = yamlRequirement(field("required_ruby_version"))
	spec.RequiredRubygems = yamlRequirement(field("required_rubygems_version"))
	for _, d := range yamlItems(field("dependencies")) {
		typ := yamlScalarValue(yamlGet(d, "type"))
		if typ != "" && typ != ":runtime" {
			continue
		}
		req := yamlGet(d, "requirement")
		if isNull(req) {
			req = yamlGet(d, "version_requirements")
		}
		spec.Deps = append(spec.Deps, Dep{Name: yamlScalarValue(yamlGet(d, "name")), Requirement: yamlRequirement(req)})
	}
	return spec, nil
}

// yamlStrings returns a sequence (or single scalar) as a string slice,
// without its null and non-scalar items; nil when n is neither.
func yamlStrings(n *yaml.Node) []string {
	switch {
	case isNull(n):
		return nil
	case n.Kind == yaml.ScalarNode:
		return []string{n.Value}
	case n.Kind == yaml.SequenceNode:
		out := []string{}
		for _, v := range yamlItems(n) {
			if v.Kind == yaml.ScalarNode && !isNull(v) {
				out = append(out, v.Value)
			}
		}
		return out
	}
	return nil
}

// yamlRequirement renders a Gem::Requirement node as Gem::Requirement#to_s.
func yamlRequirement(n *yaml.Node) string {
	if isNull(n) {
		return ">= 0"
	}
	if n.Kind == yaml.ScalarNode {
		return RequirementString(n.Value)
	}
	var parts []string
	for _, r := range yamlItems(yamlGet(n, "requirements")) {
		pair := yamlItems(r)
		if len(pair) != 2 {
			continue
		}
		op, v := yamlScalarValue(pair[0]), pair[1]
		ver := yamlScalarValue(v)
		if v.Kind == yaml.MappingNode {
			ver = yamlScalarValue(yamlGet(v, "version"))
		}
		parts = append(parts, op+" "+ver)
	}
	if len(parts) == 0 {
		return ">= 0"
	}
	return strings.Join(parts, ", ")
}
