package testupstream

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gemproxy/gemproxy/internal/rubyfmt"
)

// state is the gem database of a Server; guarded by Server.mu.
type state struct {
	gems     map[string]*gemEntry // gems by name
	byFull   map[string]*version  // versions by full name
	order    []*version           // every published version in publish order
	versions appendFile           // the /versions file
	created  time.Time            // created_at of the /versions header
	names    *rep                 // cached /names, nil when stale
	gen      uint64               // bumped on every index change (specs cache key)
	indexMod time.Time            // time of the last index change
	seq      int                  // last assigned version sequence number
}

// gemEntry is one gem name with its versions and owners.
type gemEntry struct {
	name     string     // gem name
	versions []*version // publish order
	owners   []string   // owner user names
	info     appendFile // the /info/NAME file
	created  time.Time  // first publish
	updated  time.Time  // last publish or yank
}

// version is one published gem version.
type version struct {
	spec      GemSpec      // Platform normalized ("ruby" for pure ruby)
	full      string       // NAME-VER[-PLAT]
	number    string       // VER[-PLAT], as in the compact index
	gem       []byte       // the .gem bytes served
	sha256    string       // hex SHA-256 of gem (the /info checksum)
	infoLine  string       // the /info line, with trailing newline
	created   time.Time    // publish time
	yanked    bool         // removed from the index
	yankedAt  time.Time    // yank time
	quick     []byte       // quick gemspec from the MarshalFunc
	phOnce    sync.Once    // computes placeholder lazily
	ph        []byte       // placeholder quick gemspec (default MarshalFunc)
	quickErr  error        // MarshalFunc failure for this gem
	md5Once   sync.Once    // computes md5hex lazily
	md5hex    string       // hex MD5 of gem (the S3 ETag)
	downloads atomic.Int64 // full GETs of the .gem
	seq       int          // publish sequence number
}

// gemMD5 returns the hex MD5 of the .gem bytes (the S3 ETag), computed once.
func (v *version) gemMD5() string {
	v.md5Once.Do(func() {
		s := md5.Sum(v.gem)
		v.md5hex = hex.EncodeToString(s[:])
	})
	return v.md5hex
}

// quickSpec returns the quick gemspec body: the MarshalFunc's, or the
// placeholder when useMarshal is false (computed once).
func (v *version) quickSpec(useMarshal bool) ([]byte, error) {
	if useMarshal {
		return v.quick, v.quickErr
	}
	v.phOnce.Do(func() { v.ph = PlaceholderQuickSpec(v.full) })
	return v.ph, nil
}

// indexed reports whether the version is served (not yanked).
func (v *version) indexed() bool { return !v.yanked }

// appendFile is an append-mostly file with running MD5 and SHA-256.
type appendFile struct {
	body []byte    // current content
	md5  hash.Hash // running MD5 of body
	sha  hash.Hash // running SHA-256 of body
	mod  time.Time // last change
}

// reset replaces the content.
func (f *appendFile) reset(b []byte, mod time.Time) {
	f.body = b
	f.md5, f.sha = md5.New(), sha256.New()
	f.md5.Write(b)
	f.sha.Write(b)
	f.mod = mod
}

// add appends b. Readers holding an earlier rep keep seeing their bytes:
// appends only write beyond their length.
func (f *appendFile) add(b []byte, mod time.Time) {
	f.body = append(f.body, b...)
	f.md5.Write(b)
	f.sha.Write(b)
	f.mod = mod
}

// md5hex returns the hex MD5 of the current content.
func (f *appendFile) md5hex() string { return hex.EncodeToString(f.md5.Sum(nil)) }

// rep snapshots the file.
func (f *appendFile) rep() *rep {
	n := len(f.body)
	return &rep{body: f.body[:n:n], md5hex: f.md5hex(), sha256: f.sha.Sum(nil), mod: f.mod}
}

// rep is an immutable representation of a served file.
type rep struct {
	body   []byte    // the bytes served
	md5hex string    // hex MD5 of body (ETag)
	sha256 []byte    // raw SHA-256 of body (digests)
	mod    time.Time // Last-Modified
}

// newRep builds a rep from bytes.
func newRep(b []byte, mod time.Time) *rep {
	m := md5.Sum(b)
	s := sha256.Sum256(b)
	return &rep{body: b, md5hex: hex.EncodeToString(m[:]), sha256: s[:], mod: mod}
}

// newState returns an empty database whose /versions header is stamped now.
func newState(now time.Time) *state {
	st := &state{gems: map[string]*gemEntry{}, byFull: map[string]*version{}, created: now, indexMod: now}
	st.versions.reset([]byte(versionsHeader(now)), now)
	return st
}

// versionsHeader returns the /versions preamble.
func versionsHeader(t time.Time) string {
	return "created_at: " + t.UTC().Format("2006-01-02T15:04:05Z") + "\n---\n"
}

// compactNumber returns VER or VER-PLAT.
func compactNumber(spec GemSpec) string {
	if p := rubyfmt.NormalizePlatform(spec.Platform); p != "ruby" {
		return spec.Version + "-" + p
	}
	return spec.Version
}

// infoLine renders the /info line of a version (RGO gem_version.rb).
func (s *Server) infoLine(v *version) string {
	deps := append([]Dep{}, v.spec.Deps...)
	sort.SliceStable(deps, func(i, j int) bool { return deps[i].Name < deps[j].Name })
	var b strings.Builder
	b.WriteString(v.number)
	b.WriteByte(' ')
	for i, d := range deps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(d.Name + ":" + rubyfmt.CompactRequirement(d.Requirement))
	}
	b.WriteString("|checksum:" + v.sha256)
	if r := rubyfmt.RequirementString(v.spec.RequiredRuby); r != ">= 0" {
		b.WriteString(",ruby:" + rubyfmt.CompactRequirement(r))
	}
	if r := rubyfmt.RequirementString(v.spec.EffectiveRequiredRubygems()); r != ">= 0" {
		b.WriteString(",rubygems:" + rubyfmt.CompactRequirement(r))
	}
	if !s.opts.InfoV1 {
		b.WriteString(",created_at:" + v.created.Format("2006-01-02T15:04:05Z"))
	}
	b.WriteByte('\n')
	return b.String()
}

// Item is one gem of a PublishAll batch.
type Item struct {
	// Spec holds the metadata indexed for the gem.
	Spec GemSpec
	// Gem holds the .gem bytes served at /gems/FULL.gem; nil means
	// BuildGem(Spec). The slice must not be modified afterwards.
	Gem []byte
}

// Publish adds one gem version: it appends the line to /info/NAME and
// `NAME VER INFOMD5` to /versions, updates /names, the specs files and the
// API, and serves gem at /gems/FULL.gem (gem nil means BuildGem(spec)).
// spec is the metadata indexed (the gem bytes are served as they are).
// Publish panics on an invalid spec or an already published full name; a
// MarshalFunc failure is recorded (see MarshalErr) and makes the quick
// gemspec answer 500.
func (s *Server) Publish(spec GemSpec, gem []byte) {
	if err := s.publish([]Item{{Spec: spec, Gem: gem}}, s.owner()); err != nil && !errors.Is(err, errMarshal) {
		panic(err)
	}
}

// errMarshal marks MarshalFunc failures.
var errMarshal = errors.New("testupstream: marshal failed")

// PublishAll publishes a batch of gems in order, with one MarshalFunc call
// for the whole batch. It returns an error (and publishes nothing) on an
// invalid spec or a duplicate full name; a MarshalFunc failure is returned
// after the batch was published.
func (s *Server) PublishAll(items []Item) error {
	return s.publish(items, s.owner())
}

// MarshalErr returns the last MarshalFunc error, or nil.
func (s *Server) MarshalErr() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.specs.lastErr
}

// publish validates, marshals and indexes a batch; owner owns new gems.
func (s *Server) publish(items []Item, owner string) error {
	vs := make([]*version, 0, len(items))
	seen := map[string]bool{}
	for _, it := range items {
		spec := it.Spec
		spec.Platform = rubyfmt.NormalizePlatform(spec.Platform)
		if err := spec.Validate(); err != nil {
			return err
		}
		gem := it.Gem
		if gem == nil {
			b, err := BuildGem(spec)
			if err != nil {
				return err
			}
			gem = b
		}
		full := spec.FullName()
		if seen[full] {
			return fmt.Errorf("testupstream: %s published twice in one batch", full)
		}
		seen[full] = true
		vs = append(vs, &version{spec: spec, full: full, number: compactNumber(spec), gem: gem, sha256: gemSHA256Hex(gem)})
	}
	s.mu.RLock()
	for _, v := range vs {
		if _, dup := s.st.byFull[v.full]; dup {
			s.mu.RUnlock()
			return fmt.Errorf("testupstream: %s is already published", v.full)
		}
	}
	s.mu.RUnlock()

	var merr error
	if s.opts.Marshal != nil && len(vs) > 0 {
		in := rubyfmt.MarshalInput{Gems: make([]rubyfmt.MarshalGem, len(vs))}
		for i, v := range vs {
			in.Gems[i] = rubyfmt.MarshalGem{FullName: v.full, Gem: v.gem}
		}
		out, err := s.opts.Marshal(in)
		for _, v := range vs {
			switch {
			case err != nil:
				v.quickErr = err
			case out.QuickSpecs[v.full] == nil:
				v.quickErr = fmt.Errorf("no quick gemspec for %s", v.full)
			default:
				v.quick = out.QuickSpecs[v.full]
			}
		}
		if err != nil {
			merr = fmt.Errorf("%w: %v", errMarshal, err)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vs {
		if _, dup := s.st.byFull[v.full]; dup {
			return fmt.Errorf("testupstream: %s is already published", v.full)
		}
	}
	now := s.now()
	for _, v := range vs {
		s.indexLocked(v, owner, now)
	}
	if merr != nil {
		s.specs.lastErr = merr
	}
	return merr
}

// indexLocked adds v to the database. s.mu must be held for writing.
func (s *Server) indexLocked(v *version, owner string, now time.Time) {
	st := s.st
	g := st.gems[v.spec.Name]
	if g == nil {
		g = &gemEntry{name: v.spec.Name, owners: []string{owner}, created: now}
		g.info.reset([]byte("---\n"), now)
		st.gems[g.name] = g
	}
	st.seq++
	v.seq = st.seq
	v.created = now
	v.infoLine = s.infoLine(v)
	g.versions = append(g.versions, v)
	g.updated = now
	g.info.add([]byte(v.infoLine), now)
	st.byFull[v.full] = v
	st.order = append(st.order, v)
	st.versions.add([]byte(g.name+" "+v.number+" "+g.info.md5hex()+"\n"), now)
	st.names = nil
	st.gen++
	st.indexMod = now
}

// Yank removes a version from the index as rubygems.org does: /info/NAME is
// rewritten without its line, `NAME -VER INFOMD5` is appended to /versions,
// /names, the specs files and the API are updated, and the .gem and quick
// gemspec answer 403. platform "" means ruby. It returns false when the
// version is unknown or already yanked.
func (s *Server) Yank(name, version, platform string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.yankLocked(name, version, platform)
}

// yankLocked implements Yank. s.mu must be held for writing.
func (s *Server) yankLocked(name, ver, platform string) bool {
	v := s.st.byFull[GemSpec{Name: name, Version: ver, Platform: platform}.FullName()]
	if v == nil || v.yanked {
		return false
	}
	now := s.now()
	g := s.st.gems[name]
	v.yanked, v.yankedAt = true, now
	var b bytes.Buffer
	b.WriteString("---\n")
	for _, o := range g.versions {
		if o.indexed() {
			b.WriteString(o.infoLine)
		}
	}
	g.info.reset(b.Bytes(), now)
	g.updated = now
	s.st.versions.add([]byte(name+" -"+v.number+" "+g.info.md5hex()+"\n"), now)
	s.st.names = nil
	s.st.gen++
	s.st.indexMod = now
	return true
}

// RebuildVersions performs the monthly /versions rebuild: a new created_at
// header (strictly later than the previous one), then one line per gem with
// indexed versions, sorted by name, listing its versions in publish order
// and the current info MD5; yanked versions are dropped and the appended
// tail is folded in, so the new file is not a prefix of the old one.
func (s *Server) RebuildVersions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if !now.After(s.st.created) {
		now = s.st.created.Add(time.Second)
	}
	var b bytes.Buffer
	b.WriteString(versionsHeader(now))
	for _, name := range sortedKeys(s.st.gems) {
		g := s.st.gems[name]
		var nums []string
		for _, v := range g.versions {
			if v.indexed() {
				nums = append(nums, v.number)
			}
		}
		if len(nums) == 0 {
			continue
		}
		b.WriteString(name + " " + strings.Join(nums, ",") + " " + g.info.md5hex() + "\n")
	}
	s.st.created = now
	s.st.versions.reset(b.Bytes(), now)
}

// versionsRep snapshots /versions.
func (s *Server) versionsRep() *rep {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.versions.rep()
}

// namesRep returns /names: "---\n" + names with indexed versions + "\n".
func (s *Server) namesRep() *rep {
	s.mu.RLock()
	r := s.st.names
	s.mu.RUnlock()
	if r != nil {
		return r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.names == nil {
		var names []string
		for _, name := range sortedKeys(s.st.gems) {
			for _, v := range s.st.gems[name].versions {
				if v.indexed() {
					names = append(names, name)
					break
				}
			}
		}
		s.st.names = newRep([]byte("---\n"+strings.Join(names, "\n")+"\n"), s.st.indexMod)
	}
	return s.st.names
}

// infoRep snapshots /info/NAME; ok is false for unknown gems.
func (s *Server) infoRep(name string) (*rep, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	g := s.st.gems[name]
	if g == nil {
		return nil, false
	}
	return g.info.rep(), true
}

// InfoMD5 returns the hex MD5 of the current /info/NAME body ("" if unknown).
func (s *Server) InfoMD5(name string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if g := s.st.gems[name]; g != nil {
		return g.info.md5hex()
	}
	return ""
}

// Body returns the current bytes of a compact-index file ("/versions",
// "/names" or "/info/NAME"); ok is false for unknown paths or gems.
func (s *Server) Body(path string) (b []byte, ok bool) {
	switch {
	case path == "/versions":
		return s.versionsRep().body, true
	case path == "/names":
		return s.namesRep().body, true
	case strings.HasPrefix(path, "/info/"):
		r, ok := s.infoRep(strings.TrimPrefix(path, "/info/"))
		if !ok {
			return nil, false
		}
		return r.body, true
	}
	return nil, false
}

// specsCache caches the three specs files per index generation.
type specsCache struct {
	mu      sync.Mutex      // serializes computation
	gen     uint64          // index generation the files were built for
	valid   bool            // files/err are set
	files   map[string]*rep // file name -> representation
	err     error           // MarshalFunc error of that build
	lastErr error           // last MarshalFunc error of any kind (guarded by Server.mu)
}

// specsIndexLocked builds the tuple lists. s.mu must be held.
func (s *Server) specsIndexLocked() rubyfmt.SpecsIndex {
	var all []*version
	for _, v := range s.st.order {
		if v.indexed() {
			all = append(all, v)
		}
	}
	slices.SortStableFunc(all, func(a, b *version) int { return rubyfmt.CompareSpecs(a.spec, b.spec) })
	var idx rubyfmt.SpecsIndex
	latest := map[string]int{} // name\x00platform -> index in idx.Latest
	for _, v := range all {
		t := rubyfmt.SpecTuple{Name: v.spec.Name, Version: v.spec.Version, Platform: v.spec.Platform}
		if rubyfmt.IsPrerelease(v.spec.Version) {
			idx.Prerelease = append(idx.Prerelease, t)
			continue
		}
		idx.Specs = append(idx.Specs, t)
		k := t.Name + "\x00" + t.Platform
		if i, ok := latest[k]; ok {
			idx.Latest[i] = t // sorted ascending, so the last one wins
		} else {
			latest[k] = len(idx.Latest)
			idx.Latest = append(idx.Latest, t)
		}
	}
	return idx
}

// specsFiles returns the current specs files (computing them if needed).
func (s *Server) specsFiles() (map[string]*rep, error) {
	s.specs.mu.Lock()
	defer s.specs.mu.Unlock()
	s.mu.RLock()
	gen, mod := s.st.gen, s.st.indexMod
	if s.specs.valid && s.specs.gen == gen {
		s.mu.RUnlock()
		return s.specs.files, s.specs.err
	}
	idx := s.specsIndexLocked()
	s.mu.RUnlock()
	var specs, latest, pre []byte
	var err error
	if s.opts.Marshal != nil {
		var out rubyfmt.MarshalOutput
		out, err = s.opts.Marshal(rubyfmt.MarshalInput{Index: &idx})
		specs, latest, pre = out.Specs, out.LatestSpecs, out.PrereleaseSpecs
		if err != nil {
			s.mu.Lock()
			s.specs.lastErr = fmt.Errorf("%w: %v", errMarshal, err)
			s.mu.Unlock()
		}
	} else {
		specs, latest, pre = rubyfmt.GoSpecsIndex(idx)
	}
	s.specs.gen, s.specs.valid, s.specs.err = gen, true, err
	s.specs.files = map[string]*rep{
		"specs.4.8.gz":            newRep(specs, mod),
		"latest_specs.4.8.gz":     newRep(latest, mod),
		"prerelease_specs.4.8.gz": newRep(pre, mod),
	}
	return s.specs.files, err
}

// lookupVersion returns the version with that full name, or nil.
func (s *Server) lookupVersion(full string) *version {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.byFull[full]
}

// PublishCorpus publishes every gem of a corpus directory laid out like
// the shared corpus (../shared/corpus or $GEMPROXY_CORPUS): gems/*.gem plus INDEX.tsv (tab-separated, header
// row; columns file, name, version, platform, runtime_dependencies as
// "a (~> 1.0);b (>= 0)", ..., sha256). Name, version and dependencies come
// from INDEX.tsv, the platform from the file name (e.g. x86_64-linux-gnu,
// as rubygems.org names it), required ruby/rubygems versions, authors,
// summary and licenses from the gem's own metadata.gz when readable. The
// bytes served are the real files; their SHA-256 must match the sha256
// column. Gems are published in one batch ordered by name, then version,
// then platform; call RebuildVersions afterwards to fold them into the
// /versions base section.
func (s *Server) PublishCorpus(dir string) error {
	f, err := os.Open(filepath.Join(dir, "INDEX.tsv"))
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if !sc.Scan() {
		return fmt.Errorf("testupstream: %s/INDEX.tsv is empty", dir)
	}
	col := map[string]int{}
	for i, c := range strings.Split(sc.Text(), "\t") {
		col[c] = i
	}
	for _, need := range []string{"file", "name", "version", "runtime_dependencies", "sha256"} {
		if _, ok := col[need]; !ok {
			return fmt.Errorf("testupstream: INDEX.tsv has no %q column", need)
		}
	}
	var items []Item
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		row := strings.Split(sc.Text(), "\t")
		field := func(name string) string {
			if i, ok := col[name]; ok && i < len(row) {
				return row[i]
			}
			return ""
		}
		file := field("file")
		gem, err := os.ReadFile(filepath.Join(dir, "gems", file))
		if err != nil {
			return err
		}
		if got := gemSHA256Hex(gem); got != field("sha256") {
			return fmt.Errorf("testupstream: %s: sha256 %s, INDEX.tsv says %s", file, got, field("sha256"))
		}
		spec := GemSpec{Name: field("name"), Version: field("version")}
		base := strings.TrimSuffix(file, ".gem")
		prefix := spec.Name + "-" + spec.Version
		switch {
		case base == prefix:
			spec.Platform = "ruby"
		case strings.HasPrefix(base, prefix+"-"):
			spec.Platform = strings.TrimPrefix(base, prefix+"-")
		default:
			return fmt.Errorf("testupstream: %s does not match %s", file, prefix)
		}
		deps, err := parseDepsColumn(field("runtime_dependencies"))
		if err != nil {
			return fmt.Errorf("testupstream: %s: %w", file, err)
		}
		spec.Deps = deps
		if l := field("licenses"); l != "" {
			spec.Licenses = strings.Split(l, ";")
		}
		if d, err := time.Parse("2006-01-02", field("date")); err == nil {
			spec.Date = d
		}
		if meta, err := rubyfmt.ParseGem(gem); err == nil {
			spec.RequiredRuby = meta.RequiredRuby
			spec.RequiredRubygems = meta.RequiredRubygems
			spec.Authors = meta.Authors
			spec.Summary = meta.Summary
		}
		items = append(items, Item{Spec: spec, Gem: gem})
	}
	if err := sc.Err(); err != nil {
		return err
	}
	slices.SortStableFunc(items, func(a, b Item) int { return rubyfmt.CompareSpecs(a.Spec, b.Spec) })
	return s.PublishAll(items)
}

// parseDepsColumn parses "a (~> 1.0);b (>= 1, < 2)" into deps.
func parseDepsColumn(s string) ([]Dep, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []Dep
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		open := strings.Index(part, " (")
		if open < 0 || !strings.HasSuffix(part, ")") {
			return nil, fmt.Errorf("bad dependency %q", part)
		}
		out = append(out, Dep{Name: part[:open], Requirement: part[open+2 : len(part)-1]})
	}
	return out, nil
}
