package proxy

import (
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/gemproxy/gemproxy/internal/compactindex"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// Class is a cache class: routes of one class share a TTL, a staleness
// budget and a line in the statistics. The set is bounded (a metrics label).
type Class string

// The cache classes.
const (
	// ClassVersions is the compact index /versions file.
	ClassVersions Class = "versions"
	// ClassInfo is the compact index /info/NAME files.
	ClassInfo Class = "info"
	// ClassNames is the compact index /names file.
	ClassNames Class = "names"
	// ClassFullIndex is the Marshal full index (specs.4.8.gz and friends).
	ClassFullIndex Class = "full_index"
	// ClassQuickSpec is /quick/Marshal.4.8/*.gemspec.rz (immutable).
	ClassQuickSpec Class = "quick_spec"
	// ClassGem is /gems/*.gem (immutable, checksum-verified).
	ClassGem Class = "gem"
	// ClassAPI is anonymous JSON/YAML API reads and the home page.
	ClassAPI Class = "api"
)

// Classes lists every cache class, for metrics and configuration.
var Classes = []Class{ClassVersions, ClassInfo, ClassNames, ClassFullIndex, ClassQuickSpec, ClassGem, ClassAPI}

// Handling says how the proxy answers a route.
type Handling uint8

// The ways a route is answered.
const (
	// Cached routes are read through the cache.
	Cached Handling = iota
	// PassThrough routes are forwarded upstream and never stored.
	PassThrough
	// DependencyAPI routes are answered locally with the origin's 404.
	DependencyAPI
	// Write routes are forwarded upstream and invalidate what they change.
	Write
	// Home is the site root, answered locally: RubyGems probes it with HEAD
	// and needs a 200, which must not depend on the upstream.
	Home
)

// Route is one row of the route table.
type Route struct {
	// Endpoint is the bounded name used in metrics and logs.
	Endpoint string
	// Methods lists the methods the row matches.
	Methods []string
	// Pattern is the path pattern: literal segments, parameter segments
	// (":name" a gem name or handle, ":version" a version, ":file" a
	// NAME-VERSION[-PLATFORM] file name; see paramCheck), either
	// optionally followed by one of "|"-separated suffixes (":name.json|.yaml",
	// "latest.json|.yaml"), and a final segment ending in "*" that matches
	// any rest starting with what precedes the "*".
	Pattern string
	// Handling says how the route is answered.
	Handling Handling
	// Class is the cache class (Cached routes).
	Class Class
	// Immutable bodies never expire (gems and quick specs).
	Immutable bool
	// CompactIndex routes are served with the compact-index validators,
	// ranges and gzip form.
	CompactIndex bool
	// Negotiated routes have no format extension: the origin picks the
	// format from Accept. Only requests without a preference (no Accept, or
	// */*) are cached; the others are passed through with their Accept.
	Negotiated bool
	// Query lists the query parameters the origin reads on an API route.
	// A query naming only these is part of the cache key; any other
	// parameter makes the request pass through uncached, so junk queries
	// cannot fill the cache.
	Query []string
	// ContentType, when set, replaces the upstream's Content-Type.
	ContentType string
	// Key, when set, maps the matched parameters to the cache key and
	// upstream path (so /downloads/X.gem shares /gems/X.gem).
	Key func(params []string) string

	segments []segment
}

// segment is one compiled pattern segment.
type segment struct {
	// literal is the exact text of a literal segment, or the prefix of a
	// rest segment.
	literal string
	// param marks a parameter segment.
	param bool
	// valid checks a parameter's value.
	valid func(string) bool
	// suffixes are the accepted endings of the segment (one is required
	// when any is listed).
	suffixes []string
	// rest marks the final segment that matches the remaining path.
	rest bool
}

// Content types forced on binary artefacts (docs/protocol.md §3.2-§3.4).
const (
	contentTypeBinary    = "application/octet-stream"
	contentTypeTextPlain = "text/plain; charset=utf-8"
)

var (
	readMethods = []string{"GET", "HEAD"}
	anyWrite    = []string{"POST", "PUT", "PATCH", "DELETE"}
)

// routeTable is the one table of endpoints, matched in order.
var routeTable = []Route{
	{Endpoint: "root", Methods: readMethods, Pattern: "/", Handling: Home},
	{Endpoint: "versions", Methods: readMethods, Pattern: "/versions", Class: ClassVersions, CompactIndex: true, ContentType: contentTypeTextPlain},
	{Endpoint: "info", Methods: readMethods, Pattern: "/info/:name", Class: ClassInfo, CompactIndex: true, ContentType: contentTypeTextPlain},
	{Endpoint: "names", Methods: readMethods, Pattern: "/names", Class: ClassNames, CompactIndex: true, ContentType: contentTypeTextPlain},
	{Endpoint: "specs", Methods: readMethods, Pattern: "/specs.4.8.gz", Class: ClassFullIndex, ContentType: contentTypeBinary},
	{Endpoint: "latest_specs", Methods: readMethods, Pattern: "/latest_specs.4.8.gz", Class: ClassFullIndex, ContentType: contentTypeBinary},
	{Endpoint: "prerelease_specs", Methods: readMethods, Pattern: "/prerelease_specs.4.8.gz", Class: ClassFullIndex, ContentType: contentTypeBinary},
	{Endpoint: "quick_spec", Methods: readMethods, Pattern: "/quick/Marshal.4.8/:file.gemspec.rz", Class: ClassQuickSpec, Immutable: true, ContentType: contentTypeBinary},
	{Endpoint: "gem", Methods: readMethods, Pattern: "/gems/:file.gem", Class: ClassGem, Immutable: true, ContentType: contentTypeBinary},
	{Endpoint: "download", Methods: readMethods, Pattern: "/downloads/:file.gem", Class: ClassGem, Immutable: true, ContentType: contentTypeBinary,
		Key: func(p []string) string { return "/gems/" + p[0] + ".gem" }},
	{Endpoint: "dependencies", Methods: readMethods, Pattern: "/api/v1/dependencies", Handling: DependencyAPI},
	{Endpoint: "dependencies", Methods: readMethods, Pattern: "/api/v1/dependencies.json", Handling: DependencyAPI},
	{Endpoint: "dependencies", Methods: readMethods, Pattern: "/api/v1/dependencies.marshal", Handling: DependencyAPI},

	// Authenticated reads: never cached, whoever asks.
	{Endpoint: "api_private", Methods: readMethods, Pattern: "/api/v1/gems.json", Handling: PassThrough},
	{Endpoint: "api_private", Methods: readMethods, Pattern: "/api/v1/gems.yaml", Handling: PassThrough},
	{Endpoint: "api_private", Methods: readMethods, Pattern: "/api/v1/web_hooks*", Handling: PassThrough},
	{Endpoint: "api_private", Methods: readMethods, Pattern: "/api/v1/profile/*", Handling: PassThrough},
	{Endpoint: "api_private", Methods: readMethods, Pattern: "/api/v1/api_key*", Handling: PassThrough},
	{Endpoint: "api_private", Methods: readMethods, Pattern: "/api/v1/oidc/*", Handling: PassThrough},
	{Endpoint: "api_private", Methods: readMethods, Pattern: "/api/v1/webauthn_verification/*", Handling: PassThrough},
	{Endpoint: "api_private", Methods: readMethods, Pattern: "/api/v1/gems/:name/trusted_publishers*", Handling: PassThrough},

	// Anonymous API reads (docs/protocol.md §3.6), stored only when the upstream
	// marks them public.
	{Endpoint: "api_gem", Methods: readMethods, Pattern: "/api/v1/gems/:name.json|.yaml", Class: ClassAPI},
	{Endpoint: "api_reverse_dependencies", Methods: readMethods, Pattern: "/api/v1/gems/:name/reverse_dependencies.json|.yaml", Class: ClassAPI, Query: []string{"only"}},
	{Endpoint: "api_owners", Methods: readMethods, Pattern: "/api/v1/gems/:name/owners.json|.yaml", Class: ClassAPI},
	{Endpoint: "api_latest_version", Methods: readMethods, Pattern: "/api/v1/versions/:name/latest.json|.yaml", Class: ClassAPI, Query: []string{"callback"}},
	{Endpoint: "api_version_reverse_dependencies", Methods: readMethods, Pattern: "/api/v1/versions/:name/reverse_dependencies.json|.yaml", Class: ClassAPI},
	{Endpoint: "api_versions", Methods: readMethods, Pattern: "/api/v1/versions/:name.json|.yaml", Class: ClassAPI},
	{Endpoint: "api_v2_contents", Methods: readMethods, Pattern: "/api/v2/rubygems/:name/versions/:version/contents.json|.yaml|.sha256", Class: ClassAPI},
	{Endpoint: "api_v2_version", Methods: readMethods, Pattern: "/api/v2/rubygems/:name/versions/:version.json|.yaml", Class: ClassAPI, Query: []string{"platform"}},
	{Endpoint: "api_downloads", Methods: readMethods, Pattern: "/api/v1/downloads", Class: ClassAPI, Negotiated: true},
	{Endpoint: "api_downloads", Methods: readMethods, Pattern: "/api/v1/downloads.json", Class: ClassAPI},
	{Endpoint: "api_downloads", Methods: readMethods, Pattern: "/api/v1/downloads.yaml", Class: ClassAPI},
	{Endpoint: "api_downloads", Methods: readMethods, Pattern: "/api/v1/downloads/all.json", Class: ClassAPI},
	// Retired (410) on the origin; passed through so clients see that answer.
	{Endpoint: "api_downloads", Methods: readMethods, Pattern: "/api/v1/downloads/top*", Handling: PassThrough},
	{Endpoint: "api_version_downloads", Methods: readMethods, Pattern: "/api/v1/downloads/:file.json|.yaml", Class: ClassAPI},
	{Endpoint: "api_owner_gems", Methods: readMethods, Pattern: "/api/v1/owners/:name/gems.json|.yaml", Class: ClassAPI},
	{Endpoint: "api_profile", Methods: readMethods, Pattern: "/api/v1/profiles/:name.json|.yaml", Class: ClassAPI},
	{Endpoint: "api_profile", Methods: readMethods, Pattern: "/api/v1/profiles/:name", Class: ClassAPI, Negotiated: true},
	{Endpoint: "api_search", Methods: readMethods, Pattern: "/api/v1/search.json", Class: ClassAPI, Query: []string{"query", "page"}},
	{Endpoint: "api_search", Methods: readMethods, Pattern: "/api/v1/search.yaml", Class: ClassAPI, Query: []string{"query", "page"}},
	{Endpoint: "api_search", Methods: readMethods, Pattern: "/api/v1/search/autocomplete", Class: ClassAPI, Query: []string{"query"}},
	{Endpoint: "api_activity", Methods: readMethods, Pattern: "/api/v1/activity/:name.json|.yaml", Class: ClassAPI},
	{Endpoint: "api_timeframe_versions", Methods: readMethods, Pattern: "/api/v1/timeframe_versions.json", Class: ClassAPI, Query: []string{"from", "to", "page"}},
	{Endpoint: "api_timeframe_versions", Methods: readMethods, Pattern: "/api/v1/timeframe_versions.yaml", Class: ClassAPI, Query: []string{"from", "to", "page"}},
	{Endpoint: "api_attestations", Methods: readMethods, Pattern: "/api/v1/attestations/:file.json", Class: ClassAPI},
	{Endpoint: "api_other", Methods: readMethods, Pattern: "/api/*", Handling: PassThrough},

	// Writes (docs/protocol.md §6.2), forwarded unchanged.
	{Endpoint: "push", Methods: []string{"POST"}, Pattern: "/api/v1/gems", Handling: Write},
	{Endpoint: "yank", Methods: []string{"DELETE"}, Pattern: "/api/v1/gems/yank", Handling: Write},
	{Endpoint: "owners", Methods: anyWrite, Pattern: "/api/v1/gems/:name/owners*", Handling: Write},
	{Endpoint: "owners", Methods: anyWrite, Pattern: "/api/v1/owners/*", Handling: Write},
	{Endpoint: "web_hooks", Methods: anyWrite, Pattern: "/api/v1/web_hooks*", Handling: Write},
	{Endpoint: "api_key", Methods: anyWrite, Pattern: "/api/v1/api_key*", Handling: Write},
	{Endpoint: "oidc", Methods: anyWrite, Pattern: "/api/v1/oidc/*", Handling: Write},
	{Endpoint: "webauthn", Methods: anyWrite, Pattern: "/api/v1/webauthn_verification*", Handling: Write},
	{Endpoint: "trusted_publishers", Methods: anyWrite, Pattern: "/api/v1/gems/:name/trusted_publishers*", Handling: Write},
	{Endpoint: "api_write_other", Methods: append([]string{"OPTIONS"}, anyWrite...), Pattern: "/api/*", Handling: Write},
}

// EndpointRejected and EndpointUnknown label requests that match no route.
const (
	// EndpointRejected labels requests refused as malformed or hostile.
	EndpointRejected = "rejected"
	// EndpointUnknown labels requests for paths gemproxy does not serve.
	EndpointUnknown = "unknown"
)

// Router matches request paths against the route table.
type Router struct {
	routes []Route
}

// NewRouter compiles the route table.
func NewRouter() *Router {
	r := &Router{routes: make([]Route, len(routeTable))}
	copy(r.routes, routeTable)
	for i := range r.routes {
		r.routes[i].segments = compile(r.routes[i].Pattern)
	}
	return r
}

// route returns the first route of endpoint, or nil.
func (r *Router) route(endpoint string) *Route {
	for i := range r.routes {
		if r.routes[i].Endpoint == endpoint {
			return &r.routes[i]
		}
	}
	return nil
}

// MetricEndpoints lists the route table's endpoints, sorted by name, with
// the methods each answers, which of them are rare, the status classes a
// local endpoint can answer, and whether it is read through the cache or
// reaches the upstream at all, so that metrics pre-create the series that
// clients cause in normal use and nothing that cannot occur.
func MetricEndpoints() []metrics.Endpoint {
	errorsOnly := []string{"4xx", "5xx"}
	byName := map[string]*metrics.Endpoint{
		EndpointRejected: {Name: EndpointRejected, Methods: slices.Clone(readMethods), Codes: errorsOnly},
		EndpointUnknown:  {Name: EndpointUnknown, Methods: slices.Clone(readMethods), Codes: errorsOnly},
	}
	for _, rt := range routeTable {
		ep := byName[rt.Endpoint]
		if ep == nil {
			ep = &metrics.Endpoint{Name: rt.Endpoint, Codes: localCodes[rt.Handling]}
			byName[rt.Endpoint] = ep
		}
		for _, m := range rt.Methods {
			if !slices.Contains(ep.Methods, m) {
				ep.Methods = append(ep.Methods, m)
			}
			if rareMethod(rt.Endpoint, m) && !slices.Contains(ep.RareMethods, m) {
				ep.RareMethods = append(ep.RareMethods, m)
			}
		}
		ep.Cached = ep.Cached || rt.Handling == Cached
		ep.Upstream = ep.Upstream || rt.Handling == Cached || rt.Handling == PassThrough || rt.Handling == Write
	}
	out := make([]metrics.Endpoint, 0, len(byName))
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		ep := *byName[name]
		slices.Sort(ep.Methods)
		slices.Sort(ep.RareMethods)
		out = append(out, ep)
	}
	return out
}

// localCodes are the status classes of the endpoints gemproxy answers
// itself (5xx only if it fails); the others get every class, the
// upstream's answers being passed on.
var localCodes = map[Handling][]string{
	Home:          {"2xx", "5xx"},
	DependencyAPI: {"4xx", "5xx"},
}

// rareMethod reports whether clients seldom send method to endpoint, so
// that its metric series are created on first use: HEAD everywhere but
// the root and /versions, which RubyGems probes with it
// (docs/protocol.md §3.5 and §5.7), and PUT, PATCH and OPTIONS, which only
// owner role and API key scope updates send (§6.2).
func rareMethod(endpoint, method string) bool {
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodDelete:
		return false
	case http.MethodHead:
		return endpoint != "root" && endpoint != "versions"
	}
	return true
}

// compile splits a pattern into segments.
func compile(pattern string) []segment {
	if pattern == "/" {
		return nil
	}
	var segs []segment
	for _, part := range strings.Split(strings.TrimPrefix(pattern, "/"), "/") {
		switch {
		case part == "*":
			segs = append(segs, segment{rest: true})
		case strings.HasSuffix(part, "*"):
			segs = append(segs, segment{literal: strings.TrimSuffix(part, "*"), rest: true})
		case strings.HasPrefix(part, ":"):
			var suffixes []string
			if j := strings.IndexByte(part, '.'); j >= 0 {
				suffixes = strings.Split(part[j:], "|")
			}
			name, _, _ := strings.Cut(part[1:], ".")
			segs = append(segs, segment{param: true, valid: paramCheck(name), suffixes: suffixes})
		case strings.Contains(part, "|"):
			// "latest.json|.yaml": a literal name with alternative suffixes.
			j := strings.IndexByte(part, '.')
			segs = append(segs, segment{literal: part[:j], suffixes: strings.Split(part[j:], "|")})
		default:
			segs = append(segs, segment{literal: part})
		}
	}
	return segs
}

// maxParams is the most parameters a route pattern has.
const maxParams = 4

// errBadParam rejects a path that has a route's shape but a parameter no
// registry could hold ("/gems/rack.gem", "/info/..."): it is answered 400
// without asking upstream, rather than falling through to the /api/
// pass-through.
var errBadParam = badRequest("invalid gem name, version or file name in path")

// Match finds the route for method and path (already checked by
// splitRequestURI). It returns the route and the matched parameters (a
// slice of buf, so matching does not allocate), nil when no route matches,
// or errBadParam.
func (r *Router) Match(method, path string, buf *[maxParams]string) (*Route, []string, error) {
	for i := range r.routes {
		rt := &r.routes[i]
		if !slices.Contains(rt.Methods, method) {
			continue
		}
		switch params, m := matchSegments(rt.segments, path, buf[:0]); m {
		case matched:
			return rt, params, nil
		case badParam:
			return nil, nil, errBadParam
		}
	}
	return nil, nil, nil
}

// match is the outcome of matching a path against one route.
type match uint8

const (
	// noMatch: the path does not have the route's shape.
	noMatch match = iota
	// matched: shape and parameters fit.
	matched
	// badParam: the shape fits but a parameter is invalid.
	badParam
)

// matchSegments matches path against segs, appending parameters to params.
func matchSegments(segs []segment, path string, params []string) ([]string, match) {
	if len(segs) == 0 {
		if path == "/" {
			return nil, matched
		}
		return nil, noMatch
	}
	rest := strings.TrimPrefix(path, "/")
	invalid := false
	for i, seg := range segs {
		if seg.rest {
			if !strings.HasPrefix(rest, seg.literal) {
				return nil, noMatch
			}
			break
		}
		part := rest
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			part, rest = rest[:j], rest[j+1:]
		} else {
			rest = ""
			if i != len(segs)-1 {
				return nil, noMatch
			}
		}
		if i == len(segs)-1 && rest != "" {
			return nil, noMatch
		}
		if !seg.param {
			if name, ok := trimSuffixes(part, seg.suffixes); !ok || name != seg.literal {
				return nil, noMatch
			}
			continue
		}
		value, ok := trimSuffixes(part, seg.suffixes)
		if !ok {
			return nil, noMatch
		}
		invalid = invalid || !seg.valid(value)
		params = append(params, value)
	}
	if invalid {
		return nil, badParam
	}
	return params, matched
}

// trimSuffixes strips the one of suffixes that s ends with; with no
// suffixes s is returned as is.
func trimSuffixes(s string, suffixes []string) (string, bool) {
	if len(suffixes) == 0 {
		return s, true
	}
	for _, suf := range suffixes {
		if strings.HasSuffix(s, suf) {
			return s[:len(s)-len(suf)], true
		}
	}
	return "", false
}

// CacheableQuery reports whether every parameter in rawQuery is one rt
// lists in Query. It does not allocate.
func (rt *Route) CacheableQuery(rawQuery string) bool {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		name, _, _ := strings.Cut(pair, "=")
		if !slices.Contains(rt.Query, name) {
			return false
		}
	}
	return true
}

// paramCheck returns the validator for a pattern parameter by its name:
// the rules of compactindex, gemproxy's one definition of gem names (user
// handles follow the same rule), versions and full names.
func paramCheck(name string) func(string) bool {
	switch name {
	case "name":
		return compactindex.ValidName
	case "version":
		return compactindex.ValidVersion
	case "file":
		return compactindex.ValidFullName
	}
	panic("route pattern: unknown parameter :" + name)
}
