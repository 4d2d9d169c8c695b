package testupstream

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gemproxy/gemproxy/internal/rubyfmt"
)

// Plain-text bodies the upstream answers (docs/protocol.md §3.6, §6), exported so
// tests can compare against them.
const (
	// TextInfoNotFound is the 404 body of /info/NAME for an unknown gem.
	TextInfoNotFound = "This gem could not be found"
	// TextRubygemNotFound is the 404 body of most API reads for an unknown gem.
	TextRubygemNotFound = "This rubygem could not be found."
	// TextV2GemNotFound is the 404 body of /api/v2 for an unknown gem.
	TextV2GemNotFound = "This gem could not be found"
	// TextVersionNotFound is the 404 body of /api/v2 for an unknown version.
	TextVersionNotFound = "This version could not be found."
	// TextDependencyAPIGone is the 404 body of /api/v1/dependencies.
	TextDependencyAPIGone = "The dependency API has gone away. See https://blog.rubygems.org/2023/02/22/dependency-api-deprecation.html for more information"
	// TextPleaseSignUp is the 401 body for a missing or unknown API key.
	TextPleaseSignUp = "Access Denied. Please sign up for an account at https://rubygems.org"
	// TextOTPMissing is the 401 body when MFA is on and no OTP was sent.
	TextOTPMissing = "You have enabled multifactor authentication but no OTP code provided. Please fill it and retry."
	// TextOTPIncorrect is the 401 body when the OTP is wrong.
	TextOTPIncorrect = "Your OTP code is incorrect. Please check it and retry."
	// TextInsufficientScope is the 403 body for a key lacking the scope.
	TextInsufficientScope = "This API key cannot perform the specified action on this gem."
	// TextRepush is the 403 body when a version is pushed again.
	TextRepush = "Repushing of gem versions is not allowed."
	// TextNoYankPermission is the 403 body when a non-owner yanks.
	TextNoYankPermission = "You do not have permission to delete this gem."
	// TextNotOwner is the 403 body when a non-owner manages owners.
	TextNotOwner = "You do not have permission to perform this action."
	// TextOwnerNotFound is the 404 body of the owners endpoints.
	TextOwnerNotFound = "Owner could not be found."
	// TextOwnerRemoved is the 200 body of DELETE owners.
	TextOwnerRemoved = "Owner removed successfully."
	// TextOwnerUpdated is the 200 body of PATCH/PUT owners.
	TextOwnerUpdated = "Owner updated successfully."
	// TextUnableToRemoveOwner is the 403 body when removing the last owner.
	TextUnableToRemoveOwner = "Unable to remove owner."
	// TextBasicDenied is the 401 body of a failed HTTP Basic challenge.
	TextBasicDenied = "HTTP Basic: Access denied.\n"
	// TextAPIKeyRetired is the 410 body of GET /api/v1/api_key, cut after
	// its first two sentences (docs/protocol.md §6.2).
	TextAPIKeyRetired = "This endpoint has been retired. `gem signin` (GET /api/v1/api_key) is no longer supported."
	// TextDeprecated is the 403 body of the deprecated v0 routes.
	TextDeprecated = "This version of the Gemcutter plugin has been deprecated.Please install the latest version using: gem update gemcutter"
	// TextCannotProcess starts the 422 body of a push whose gem is invalid.
	TextCannotProcess = "RubyGems.org cannot process this gem.\nPlease try rebuilding it and installing it locally to make sure it's valid.\nError:\n"
)

// reqState carries per-request facts for API handlers.
type reqState struct {
	w      http.ResponseWriter // the response being written
	r      *http.Request       // the request
	body   []byte              // the request body, read in full
	authed bool                // request carried Authorization or Cookie
}

// setCache sets Cache-Control unless the response must stay private.
func (q *reqState) setCache(v string) {
	if !q.authed {
		q.w.Header().Set("Cache-Control", v)
	}
}

// text answers a text/plain body.
func (q *reqState) text(status int, body string) {
	q.w.Header().Set("Content-Type", contentTypeText)
	writeBody(q.w, q.r, status, []byte(body))
}

// encode answers v as JSON (ext "json") or YAML (ext "yaml").
func (q *reqState) encode(status int, ext string, v any) {
	var b []byte
	if ext == "yaml" {
		q.w.Header().Set("Content-Type", contentTypeYAML)
		b = []byte(rubyfmt.ToYAML(v))
	} else {
		q.w.Header().Set("Content-Type", contentTypeJSON)
		b, _ = json.Marshal(v)
	}
	writeBody(q.w, q.r, status, b)
}

// jsonNotFound answers the generic 404 of unknown API paths.
func (q *reqState) jsonNotFound() {
	q.setCache(cacheRailsDflt)
	q.encode(http.StatusNotFound, "json", omap{{"status", 404}, {"error", "Not Found"}})
}

// splitExt splits "name.json" into ("name", "json") for json/yaml only.
func splitExt(s string) (base, ext string) {
	for _, e := range []string{"json", "yaml"} {
		if b, ok := strings.CutSuffix(s, "."+e); ok && b != "" {
			return b, e
		}
	}
	return s, ""
}

// serveAPI dispatches /api/ requests.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, body []byte) {
	q := &reqState{w: w, r: r, body: body, authed: r.Header.Get("Authorization") != "" || r.Header.Get("Cookie") != ""}
	if q.authed {
		w.Header().Set("Cache-Control", cachePrivate)
		w.Header().Set("Vary", varyPrivate)
	}
	if s.serveWrite(q) {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		q.jsonNotFound()
		return
	}
	p := r.URL.Path
	seg := strings.Split(strings.TrimPrefix(p, "/api/"), "/")
	switch {
	case len(seg) == 3 && seg[0] == "v1" && seg[1] == "gems":
		name, ext := splitExt(seg[2])
		if ext == "" {
			q.jsonNotFound()
			return
		}
		s.apiGem(q, name, ext)
	case len(seg) == 4 && seg[0] == "v1" && seg[1] == "gems" && (seg[3] == "reverse_dependencies.json" || seg[3] == "reverse_dependencies.yaml"):
		s.apiReverseDeps(q, seg[2], strings.TrimPrefix(seg[3], "reverse_dependencies."))
	case len(seg) == 4 && seg[0] == "v1" && seg[1] == "gems" && (seg[3] == "owners.json" || seg[3] == "owners.yaml"):
		s.apiOwners(q, seg[2], strings.TrimPrefix(seg[3], "owners."))
	case len(seg) == 3 && seg[0] == "v1" && seg[1] == "versions":
		name, ext := splitExt(seg[2])
		if ext == "" {
			q.jsonNotFound()
			return
		}
		s.apiVersions(q, name, ext)
	case len(seg) == 4 && seg[0] == "v1" && seg[1] == "versions" && seg[3] == "latest.json":
		s.apiLatest(q, seg[2])
	case len(seg) == 5 && seg[0] == "v2" && seg[1] == "rubygems" && seg[3] == "versions":
		ver, ext := splitExt(seg[4])
		if ext == "" {
			q.jsonNotFound()
			return
		}
		s.apiV2Version(q, seg[2], ver, ext)
	case len(seg) == 2 && seg[0] == "v1" && (seg[1] == "search.json" || seg[1] == "search.yaml"):
		s.apiSearch(q, strings.TrimPrefix(seg[1], "search."))
	case len(seg) == 3 && seg[0] == "v1" && seg[1] == "activity":
		kind, ext := splitExt(seg[2])
		if ext == "" || (kind != "latest" && kind != "just_updated") {
			q.jsonNotFound()
			return
		}
		s.apiActivity(q, kind, ext)
	case len(seg) == 2 && seg[0] == "v1" && strings.HasPrefix(seg[1], "downloads"):
		s.apiTotalDownloads(q, strings.TrimPrefix(strings.TrimPrefix(seg[1], "downloads"), "."))
	case len(seg) == 3 && seg[0] == "v1" && seg[1] == "downloads":
		full, ext := splitExt(seg[2])
		if ext == "" {
			q.jsonNotFound()
			return
		}
		s.apiVersionDownloads(q, full, ext)
	case len(seg) == 2 && seg[0] == "v1" && (seg[1] == "dependencies" || seg[1] == "dependencies.json" || seg[1] == "dependencies.marshal"):
		q.setCache("max-age=30, public")
		if seg[1] == "dependencies.json" {
			q.encode(http.StatusNotFound, "json", omap{{"error", TextDependencyAPIGone}, {"code", 404}})
			return
		}
		q.text(http.StatusNotFound, TextDependencyAPIGone)
	default:
		q.jsonNotFound()
	}
}

// gemSnapshot is a consistent copy of one gem for rendering.
type gemSnapshot struct {
	name     string     // gem name
	versions []*version // indexed versions, newest (by version order) first
	all      []*version // all versions in publish order
	owners   []string   // owner user names
	updated  time.Time  // last publish or yank
}

// snapshotGem copies a gem under the lock; nil if unknown.
func (s *Server) snapshotGem(name string) *gemSnapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.snapshotGemLocked(name)
}

// snapshotGemLocked implements snapshotGem. s.mu must be held.
func (s *Server) snapshotGemLocked(name string) *gemSnapshot {
	g := s.st.gems[name]
	if g == nil {
		return nil
	}
	snap := &gemSnapshot{name: g.name, all: append([]*version{}, g.versions...), owners: append([]string{}, g.owners...), updated: g.updated}
	for _, v := range g.versions {
		if v.indexed() {
			snap.versions = append(snap.versions, v)
		}
	}
	sortVersionsDesc(snap.versions)
	return snap
}

// sortVersionsDesc orders versions newest first (Gem::Version, then ruby
// platform before others, then platform name).
func sortVersionsDesc(vs []*version) {
	slices.SortStableFunc(vs, func(a, b *version) int {
		if c := rubyfmt.CompareVersions(b.spec.Version, a.spec.Version); c != 0 {
			return c
		}
		return rubyfmt.ComparePlatforms(a.spec.Platform, b.spec.Platform)
	})
}

// mostRecent returns the version the gem object describes: the newest
// release (ruby platform preferred), else the newest prerelease.
func (g *gemSnapshot) mostRecent() *version {
	for _, v := range g.versions {
		if !rubyfmt.IsPrerelease(v.spec.Version) && v.spec.Platform == "ruby" {
			return v
		}
	}
	for _, v := range g.versions {
		if !rubyfmt.IsPrerelease(v.spec.Version) {
			return v
		}
	}
	if len(g.versions) > 0 {
		return g.versions[0]
	}
	return nil
}

// totalDownloads sums the downloads of all versions.
func (g *gemSnapshot) totalDownloads() int64 {
	var n int64
	for _, v := range g.all {
		n += v.downloads.Load()
	}
	return n
}

// isoMillis formats a time as rubygems.org's JSON does.
func isoMillis(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// specSHA returns the hex SHA-256 of the quick gemspec, or nil.
func (s *Server) specSHA(v *version) any {
	b, _ := v.quickSpec(s.opts.Marshal != nil)
	if b == nil {
		return nil
	}
	return gemSHA256Hex(b)
}

// depsPayload renders the dependencies object.
func depsPayload(v *version) omap {
	runtime := []any{}
	for _, d := range v.spec.Deps {
		runtime = append(runtime, omap{{"name", d.Name}, {"requirements", rubyfmt.RequirementString(d.Requirement)}})
	}
	return omap{{"development", []any{}}, {"runtime", runtime}}
}

// licenses returns the license list (never nil).
func licenses(v *version) []string {
	if v.spec.Licenses == nil {
		return []string{}
	}
	return v.spec.Licenses
}

// gemPayload renders the Gem object (docs/protocol.md §7.1) for version v of g.
func (s *Server) gemPayload(g *gemSnapshot, v *version) omap {
	return omap{
		{"name", g.name},
		{"downloads", g.totalDownloads()},
		{"version", v.spec.Version},
		{"version_created_at", isoMillis(v.created)},
		{"version_downloads", v.downloads.Load()},
		{"platform", v.spec.Platform},
		{"authors", strings.Join(v.spec.EffectiveAuthors(), ", ")},
		{"info", v.spec.EffectiveSummary()},
		{"licenses", licenses(v)},
		{"metadata", omap{}},
		{"yanked", false}, // only indexed versions are rendered
		{"sha", v.sha256},
		{"spec_sha", s.specSHA(v)},
		{"project_uri", "https://rubygems.org/gems/" + g.name},
		{"gem_uri", "https://rubygems.org/gems/" + v.full + ".gem"},
		{"homepage_uri", nil},
		{"wiki_uri", nil},
		{"documentation_uri", nil},
		{"mailing_list_uri", nil},
		{"source_code_uri", nil},
		{"bug_tracker_uri", nil},
		{"changelog_uri", nil},
		{"funding_uri", nil},
		{"dependencies", depsPayload(v)},
	}
}

// versionPayload renders the Version object (docs/protocol.md §7.2).
func (s *Server) versionPayload(v *version) omap {
	var ruby any
	if r := rubyfmt.RequirementString(v.spec.RequiredRuby); r != "" {
		ruby = r
	}
	return omap{
		{"authors", strings.Join(v.spec.EffectiveAuthors(), ", ")},
		{"built_at", isoMillis(v.spec.EffectiveDate())},
		{"created_at", isoMillis(v.created)},
		{"description", v.spec.EffectiveSummary()},
		{"downloads_count", v.downloads.Load()},
		{"metadata", omap{}},
		{"number", v.spec.Version},
		{"summary", v.spec.EffectiveSummary()},
		{"platform", v.spec.Platform},
		{"rubygems_version", rubyfmt.RequirementString(v.spec.EffectiveRequiredRubygems())},
		{"ruby_version", ruby},
		{"prerelease", rubyfmt.IsPrerelease(v.spec.Version)},
		{"licenses", licenses(v)},
		{"requirements", []any{}},
		{"sha", v.sha256},
		{"spec_sha", s.specSHA(v)},
	}
}

// corsHeaders sets the CORS headers of /api/v1/gems/NAME.json.
func corsHeaders(w http.ResponseWriter) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Access-Control-Allow-Methods", "GET")
	w.Header().Set("Access-Control-Max-Age", "1728000")
}

// apiGem serves /api/v1/gems/NAME.(json|yaml).
func (s *Server) apiGem(q *reqState, name, ext string) {
	g := s.snapshotGem(name)
	if g == nil || g.mostRecent() == nil {
		q.text(http.StatusNotFound, TextRubygemNotFound)
		return
	}
	corsHeaders(q.w)
	q.setCache(cachePublic60)
	q.encode(http.StatusOK, ext, s.gemPayload(g, g.mostRecent()))
}

// apiReverseDeps serves /api/v1/gems/NAME/reverse_dependencies.(json|yaml):
// names of gems with an indexed version depending on NAME at runtime.
func (s *Server) apiReverseDeps(q *reqState, name, ext string) {
	s.mu.RLock()
	set := map[string]bool{}
	for _, v := range s.st.order {
		if !v.indexed() {
			continue
		}
		for _, d := range v.spec.Deps {
			if d.Name == name {
				set[v.spec.Name] = true
			}
		}
	}
	s.mu.RUnlock()
	out := []any{}
	if q.r.URL.Query().Get("only") != "development" {
		for _, n := range sortedKeys(set) {
			out = append(out, n)
		}
	}
	q.setCache(cachePublic60)
	q.encode(http.StatusOK, ext, out)
}

// ownerPayload renders one owner entry.
func ownerPayload(owner string) omap {
	return omap{{"id", userID(owner)}, {"handle", handleOf(owner)}, {"email", owner}, {"role", "owner"}}
}

// userID derives a stable numeric id from a user name.
func userID(user string) int {
	h := md5.Sum([]byte(user))
	return int(h[0])<<16 | int(h[1])<<8 | int(h[2]) + 1
}

// handleOf derives a handle from an email-like owner.
func handleOf(owner string) string {
	if i := strings.IndexByte(owner, '@'); i > 0 {
		return owner[:i]
	}
	return owner
}

// apiOwners serves GET /api/v1/gems/NAME/owners.(json|yaml).
func (s *Server) apiOwners(q *reqState, name, ext string) {
	g := s.snapshotGem(name)
	if g == nil {
		q.text(http.StatusNotFound, TextRubygemNotFound)
		return
	}
	out := []any{}
	for _, o := range g.owners {
		out = append(out, ownerPayload(o))
	}
	q.setCache(cacheRailsDflt)
	q.encode(http.StatusOK, ext, out)
}

// weakETag returns W/"md5" of b.
func weakETag(b []byte) string {
	s := md5.Sum(b)
	return `W/"` + hex.EncodeToString(s[:]) + `"`
}

// staleCheck answers 304 when the request's validators match (Rails
// stale?), after setting ETag and Last-Modified; it reports whether it did.
func staleCheck(q *reqState, etag string, mod time.Time) bool {
	q.w.Header().Set("ETag", etag)
	q.w.Header().Set("Last-Modified", mod.UTC().Format(http.TimeFormat))
	if inm := strings.Join(q.r.Header.Values("If-None-Match"), ","); inm != "" {
		if etagMatch(inm, etag) {
			q.w.WriteHeader(http.StatusNotModified)
			return true
		}
		return false
	}
	if ims := q.r.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !mod.After(t) {
			q.w.WriteHeader(http.StatusNotModified)
			return true
		}
	}
	return false
}

// encodeBytes returns the encoded body of v.
func encodeBytes(ext string, v any) []byte {
	if ext == "yaml" {
		return []byte(rubyfmt.ToYAML(v))
	}
	b, _ := json.Marshal(v)
	return b
}

// apiVersions serves /api/v1/versions/NAME.(json|yaml).
func (s *Server) apiVersions(q *reqState, name, ext string) {
	g := s.snapshotGem(name)
	if g == nil || len(g.versions) == 0 {
		q.text(http.StatusNotFound, TextRubygemNotFound)
		return
	}
	out := []any{}
	for _, v := range g.versions {
		out = append(out, s.versionPayload(v))
	}
	q.setCache(cachePublic60)
	body := encodeBytes(ext, out)
	if staleCheck(q, weakETag(body), g.updated) {
		return
	}
	q.encode(http.StatusOK, ext, out)
}

// apiLatest serves /api/v1/versions/NAME/latest.json[?callback=fn].
func (s *Server) apiLatest(q *reqState, name string) {
	ver := "unknown"
	if g := s.snapshotGem(name); g != nil {
		if v := g.mostRecent(); v != nil {
			ver = v.spec.Version
		}
	}
	q.setCache(cachePublic60)
	body, _ := json.Marshal(omap{{"version", ver}})
	if cb := q.r.URL.Query().Get("callback"); cb != "" {
		q.w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		writeBody(q.w, q.r, http.StatusOK, []byte("/**/"+cb+"("+string(body)+")"))
		return
	}
	q.w.Header().Set("Content-Type", contentTypeJSON)
	writeBody(q.w, q.r, http.StatusOK, body)
}

// apiV2Version serves /api/v2/rubygems/NAME/versions/VER.(json|yaml).
func (s *Server) apiV2Version(q *reqState, name, ver, ext string) {
	g := s.snapshotGem(name)
	if g == nil {
		q.text(http.StatusNotFound, TextV2GemNotFound)
		return
	}
	plat := rubyfmt.NormalizePlatform(q.r.URL.Query().Get("platform"))
	var v *version
	for _, c := range g.versions {
		if c.spec.Version == ver && c.spec.Platform == plat {
			v = c
			break
		}
	}
	if v == nil {
		q.text(http.StatusNotFound, TextVersionNotFound)
		return
	}
	out := s.gemPayload(g, v).merge(s.versionPayload(v))
	q.setCache(cachePublic60)
	if staleCheck(q, weakETag(encodeBytes(ext, out)), g.updated) {
		return
	}
	q.encode(http.StatusOK, ext, out)
}

// apiSearch serves /api/v1/search.(json|yaml)?query=Q[&page=N].
func (s *Server) apiSearch(q *reqState, ext string) {
	query := q.r.URL.Query().Get("query")
	q.setCache(cacheRailsDflt)
	if query == "" {
		q.encode(http.StatusBadRequest, "json", omap{{"error", "Request is missing param 'query'"}})
		return
	}
	page := 1
	if p := q.r.URL.Query().Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 1000 {
			q.w.Header().Set("Location", q.r.URL.Path+"?query="+query+"&page=1")
			writeBody(q.w, q.r, http.StatusFound, nil)
			return
		}
		page = n
	}
	s.mu.RLock()
	var names []string
	for _, n := range sortedKeys(s.st.gems) {
		if strings.Contains(strings.ToLower(n), strings.ToLower(query)) {
			names = append(names, n)
		}
	}
	var snaps []*gemSnapshot
	for _, n := range names {
		if g := s.snapshotGemLocked(n); g.mostRecent() != nil {
			snaps = append(snaps, g)
		}
	}
	s.mu.RUnlock()
	out := []any{}
	for i := (page - 1) * 30; i < len(snaps) && i < page*30; i++ {
		g := snaps[i]
		full := s.gemPayload(g, g.mostRecent())
		item := omap{}
		for _, k := range []string{"name", "downloads", "version", "version_downloads", "platform", "authors", "info", "licenses", "metadata", "sha", "project_uri", "gem_uri", "homepage_uri", "wiki_uri", "documentation_uri", "mailing_list_uri", "funding_uri", "source_code_uri", "bug_tracker_uri", "changelog_uri"} {
			v, _ := full.get(k)
			item = append(item, kv{k, v})
		}
		out = append(out, item)
	}
	q.encode(http.StatusOK, ext, out)
}

// apiActivity serves /api/v1/activity/(latest|just_updated).(json|yaml):
// up to 50 gems, newest first (latest: by first publish; just_updated: by
// version publish).
func (s *Server) apiActivity(q *reqState, kind, ext string) {
	s.mu.RLock()
	out := []any{}
	seen := map[string]bool{}
	for i := len(s.st.order) - 1; i >= 0 && len(out) < 50; i-- {
		v := s.st.order[i]
		if !v.indexed() {
			continue
		}
		g := s.snapshotGemLocked(v.spec.Name)
		if kind == "latest" {
			if seen[g.name] || g.all[0] != v {
				continue
			}
			seen[g.name] = true
			if mr := g.mostRecent(); mr != nil {
				out = append(out, s.gemPayload(g, mr))
			}
			continue
		}
		out = append(out, s.gemPayload(g, v))
	}
	s.mu.RUnlock()
	q.setCache(cachePublic60)
	q.encode(http.StatusOK, ext, out)
}

// apiTotalDownloads serves /api/v1/downloads(.json|.yaml|"").
func (s *Server) apiTotalDownloads(q *reqState, ext string) {
	s.mu.RLock()
	var n int64
	for _, v := range s.st.order {
		n += v.downloads.Load()
	}
	s.mu.RUnlock()
	q.setCache(cacheRailsDflt)
	switch ext {
	case "":
		q.text(http.StatusOK, strconv.FormatInt(n, 10))
	case "json", "yaml":
		q.encode(http.StatusOK, ext, omap{{"total", n}})
	default:
		q.jsonNotFound()
	}
}

// apiVersionDownloads serves /api/v1/downloads/FULL.(json|yaml).
func (s *Server) apiVersionDownloads(q *reqState, full, ext string) {
	v := s.lookupVersion(full)
	if v == nil {
		q.text(http.StatusNotFound, TextRubygemNotFound)
		return
	}
	g := s.snapshotGem(v.spec.Name)
	q.setCache(cacheRailsDflt)
	q.encode(http.StatusOK, ext, omap{{"total_downloads", g.totalDownloads()}, {"version_downloads", v.downloads.Load()}})
}
