package metrics

import (
	"bytes"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Client is the value of the client label of
// gemproxy_client_requests_total: which program sent the request, read
// from its User-Agent.
type Client uint8

// The clients told apart.
const (
	// ClientOther is any User-Agent that is neither Bundler's nor
	// RubyGems'.
	ClientOther Client = iota
	// ClientBundler is "bundler/VERSION rubygems/... ruby/... ...".
	ClientBundler
	// ClientRubyGems is "RubyGems/VERSION PLATFORM Ruby/..." (also with
	// the older "Ruby, " prefix).
	ClientRubyGems
	// numClients bounds the Client values.
	numClients
)

// clientNames are the label values of the Clients, by value.
var clientNames = [numClients]string{"other", "bundler", "rubygems"}

// String returns the label value.
func (c Client) String() string { return clientNames[c] }

// versionRange is one major version of a client and its highest minor
// version with a client_version label of its own.
type versionRange struct {
	// major is the major version.
	major int
	// maxMinor is the highest minor version counted as such.
	maxMinor int
}

// knownVersions are the MAJOR.MINOR versions that get a client_version
// label value; any other version (a typo, a fork, a release far ahead) is
// counted as OtherLabel. Bundler: 1.0-1.17 (1.17 was the last 1.x), 2.0-2.9
// (2.7 is the latest), 3.x (planned, never released) and 4.x (released with
// RubyGems 4); RubyGems: 2.0-2.7 (2.7 was the last 2.x), 3.0-3.9 and 4.x.
// Minors up to 9 leave room for releases to come.
var knownVersions = [numClients][]versionRange{
	ClientBundler:  {{1, 17}, {2, 9}, {3, 9}, {4, 9}},
	ClientRubyGems: {{2, 7}, {3, 9}, {4, 9}},
}

// numVersionSlots is the number of client_version values a client can
// have: OtherLabel (slot 0), then every known MAJOR.MINOR of the client
// with the most (Bundler: 18 + 10 + 10 + 10).
const numVersionSlots = 1 + 48

// ciNames are the ci label values: "none" (no ci/ token), OtherLabel (a
// ci/ token naming no CI below), then the names Bundler's User-Agent
// carries after "ci/": the values of ENV_DESCRIPTORS in
// bundler/lib/bundler/ci_detector.rb of rubygems/rubygems (Bundler 2.2 to
// 4.0), where "ci" means a CI that sets CI but is none of the others.
// Bundler joins every match with commas ("ci/ci,github"); CI_NAME adds an
// arbitrary name, counted as OtherLabel.
var ciNames = [...]string{"none", OtherLabel,
	"buildkite", "ci", "circle", "cirrus", "dsari", "github", "gitlab", "go",
	"jenkins", "semaphore", "taskcluster", "travis"}

// The ci label indexes with a meaning of their own.
const (
	// ciNone is a User-Agent without a ci/ token.
	ciNone = 0
	// ciOther is a ci/ token naming only CIs Bundler does not detect.
	ciOther = 1
	// ciGeneric is Bundler's bare "ci".
	ciGeneric = 3
)

// numCIs is the number of ci label values.
const numCIs = len(ciNames)

// clientKey is one parsed User-Agent: the label values of its series as
// indexes into the name tables.
type clientKey struct {
	// client is the program.
	client Client
	// version is the slot of its MAJOR.MINOR in knownVersions, 0 for
	// OtherLabel.
	version int
	// ci indexes ciNames.
	ci int
}

// index is the key's position in Metrics.clients.
func (k clientKey) index() int {
	return (int(k.client)*numVersionSlots+k.version)*numCIs + k.ci
}

// labels returns the label values of the key's series (client,
// client_version, ci). It allocates: call it once per series.
func (k clientKey) labels() []string {
	version := OtherLabel
	slot := k.version
	for _, r := range knownVersions[k.client] {
		if slot >= 1 && slot <= r.maxMinor+1 {
			version = strconv.Itoa(r.major) + "." + strconv.Itoa(slot-1)
			break
		}
		slot -= r.maxMinor + 1
	}
	return []string{k.client.String(), version, ciNames[k.ci]}
}

// versionSlot returns the slot of major.minor among c's known versions, or
// 0 (OtherLabel).
func versionSlot(c Client, major, minor int) int {
	slot := 1
	for _, r := range knownVersions[c] {
		if major == r.major && minor <= r.maxMinor {
			return slot + minor
		}
		slot += r.maxMinor + 1
	}
	return 0
}

// Client User-Agent prefixes.
var (
	// bundlerPrefix starts Bundler's User-Agent (bundler/lib/bundler/fetcher.rb).
	bundlerPrefix = []byte("bundler/")
	// rubygemsPrefix starts RubyGems' (lib/rubygems/request.rb).
	rubygemsPrefix = []byte("RubyGems/")
	// oldRubyGemsPrefix is what older RubyGems fetchers put before it.
	oldRubyGemsPrefix = []byte("Ruby, ")
	// ciToken introduces Bundler's list of detected CIs.
	ciToken = []byte(" ci/")
)

// parseUserAgent reads the client, its MAJOR.MINOR and its CI from a
// User-Agent. It does not allocate.
func parseUserAgent(ua []byte) clientKey {
	k := clientKey{ci: parseCI(ua)}
	var rest []byte
	switch {
	case bytes.HasPrefix(ua, bundlerPrefix):
		k.client, rest = ClientBundler, ua[len(bundlerPrefix):]
	case bytes.HasPrefix(bytes.TrimPrefix(ua, oldRubyGemsPrefix), rubygemsPrefix):
		k.client, rest = ClientRubyGems, bytes.TrimPrefix(ua, oldRubyGemsPrefix)[len(rubygemsPrefix):]
	default:
		return k
	}
	if major, minor, ok := parseMajorMinor(rest); ok {
		k.version = versionSlot(k.client, major, minor)
	}
	return k
}

// parseMajorMinor reads "MAJOR.MINOR" at the start of s, followed by the
// end, a space or a dot ("2.6.9 rubygems/..."), each a number of one to
// three digits.
func parseMajorMinor(s []byte) (major, minor int, ok bool) {
	major, s, ok = leadingNumber(s)
	if !ok || len(s) == 0 || s[0] != '.' {
		return 0, 0, false
	}
	minor, s, ok = leadingNumber(s[1:])
	if !ok || len(s) > 0 && s[0] != '.' && s[0] != ' ' {
		return 0, 0, false
	}
	return major, minor, true
}

// leadingNumber reads the one to three decimal digits s starts with.
func leadingNumber(s []byte) (n int, rest []byte, ok bool) {
	i := 0
	for ; i < len(s) && i < 4 && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + int(s[i]-'0')
	}
	if i == 0 || i > 3 {
		return 0, s, false
	}
	return n, s[i:], true
}

// parseCI returns the ciNames index of the CI named by ua's ci/ token: the
// first detected CI it lists; else OtherLabel when it lists a name Bundler
// does not detect (from CI_NAME) or nothing; else "ci" (the bare "ci"
// alone). ciNone without a ci/ token.
func parseCI(ua []byte) int {
	i := bytes.Index(ua, ciToken)
	if i < 0 {
		return ciNone
	}
	list := ua[i+len(ciToken):]
	if j := bytes.IndexByte(list, ' '); j >= 0 {
		list = list[:j]
	}
	generic, unknown := false, false
	for len(list) > 0 {
		var name []byte
		name, list, _ = bytes.Cut(list, []byte{','})
		switch n := ciIndex(name); n {
		case ciGeneric:
			generic = true
		case 0:
			unknown = true
		default:
			return n
		}
	}
	if generic && !unknown {
		return ciGeneric
	}
	return ciOther
}

// ciIndex is the ciNames index of name, or 0 when it is none of Bundler's
// CI names.
func ciIndex(name []byte) int {
	for i := ciOther + 1; i < numCIs; i++ {
		if string(name) == ciNames[i] {
			return i
		}
	}
	return 0
}

// clientSeries holds one created gemproxy_client_requests_total series.
type clientSeries struct {
	// counter is the series.
	counter prometheus.Counter
}

// ObserveClient counts one request in gemproxy_client_requests_total by
// the client, version and CI its User-Agent names. The label values are
// bounded: versions outside knownVersions and unknown CI names are
// OtherLabel. A series is created on its first request (the label space
// has about a thousand combinations, few of which a fleet uses); after
// that the call does not allocate.
func (m *Metrics) ObserveClient(userAgent []byte) {
	k := parseUserAgent(userAgent)
	slot := &m.clients[k.index()]
	s := slot.Load()
	if s == nil {
		s = &clientSeries{counter: m.ClientRequests.WithLabelValues(k.labels()...)}
		slot.Store(s) // a concurrent first request stores the same child
	}
	s.counter.Inc()
}

// clientSlots are the created client series, by clientKey.index.
type clientSlots [int(numClients) * numVersionSlots * numCIs]atomic.Pointer[clientSeries]
