package metrics

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// bundlerUA is a real Bundler 2.6 User-Agent on GitHub Actions, with the
// CI list it sends there.
const bundlerUA = "bundler/2.6.9 rubygems/3.6.9 ruby/3.1.2 (x86_64-pc-linux-gnu) command/install options/jobs,mirror.https://rubygems.org/ ci/ci,github 6d1f1e4b2c3a9d8e"

// TestParseUserAgent checks the labels read from real and odd User-Agents.
func TestParseUserAgent(t *testing.T) {
	tests := []struct {
		ua                  string
		client, version, ci string
	}{
		{bundlerUA, "bundler", "2.6", "github"},
		{"bundler/2.7.1 rubygems/3.7.1 ruby/3.4.1 (aarch64-linux) command/install jruby/9.4.8.0 options/ ci/jenkins 0123456789abcdef", "bundler", "2.7", "jenkins"},
		{"bundler/1.17.3 rubygems/2.7.6 ruby/2.5.1 (x86_64-pc-linux-gnu) command/install options/ ci/ci 0123456789abcdef", "bundler", "1.17", "ci"},
		{"bundler/4.0.0.dev rubygems/4.0.0.dev ruby/3.5.0 (x86_64-linux) command/install options/ 0123456789abcdef", "bundler", "4.0", "none"},
		{"bundler/2.6.9 rubygems/3.6.9 ruby/3.3.0 (x86_64-linux) command/install options/ ci/ci,codeship abc", "bundler", "2.6", "other"},
		{"bundler/2.6.9 rubygems/3.6.9 ruby/3.3.0 (x86_64-linux) command/install options/ ci/codeship,gitlab abc", "bundler", "2.6", "gitlab"},
		{"bundler/2.6.9 ci/", "bundler", "2.6", "other"},
		{"bundler/1.18.0", "bundler", "other", "none"},
		{"bundler/2.10.0", "bundler", "other", "none"},
		{"bundler/5.0.0", "bundler", "other", "none"},
		{"bundler/2", "bundler", "other", "none"},
		{"bundler/2.6x", "bundler", "other", "none"},
		{"bundler/1234.5", "bundler", "other", "none"},
		{"bundler/", "bundler", "other", "none"},
		{"RubyGems/3.6.9 x86_64-linux Ruby/3.4.1 (2024-12-25 patchlevel 0)", "rubygems", "3.6", "none"},
		{"Ruby, RubyGems/3.3.15 x86_64-linux Ruby/3.1.2 (2022-04-12 patchlevel 20)", "rubygems", "3.3", "none"},
		{"RubyGems/2.7.6 x86_64-linux Ruby/2.5.1", "rubygems", "2.7", "none"},
		{"RubyGems/2.8.0 x86_64-linux", "rubygems", "other", "none"},
		{"RubyGems/1.8.23 x86_64-linux", "rubygems", "other", "none"},
		{"Ruby", "other", "other", "none"},
		{"curl/8.5.0", "other", "other", "none"},
		{"Mozilla/5.0 (X11; Linux x86_64) ci/github", "other", "other", "github"},
		{"", "other", "other", "none"},
	}
	for _, tt := range tests {
		t.Run(tt.ua, func(t *testing.T) {
			got := parseUserAgent([]byte(tt.ua)).labels()
			if want := []string{tt.client, tt.version, tt.ci}; !slices.Equal(got, want) {
				t.Errorf("labels = %v, want %v", got, want)
			}
		})
	}
}

// TestVersionSlots checks that every known version has its own slot below
// numVersionSlots and its label back, and that the largest client fills
// the slots exactly.
func TestVersionSlots(t *testing.T) {
	most := 0
	for c := range numClients {
		seen := map[int]bool{}
		n := 0
		for _, r := range knownVersions[c] {
			for minor := 0; minor <= r.maxMinor; minor++ {
				n++
				slot := versionSlot(c, r.major, minor)
				if slot <= 0 || slot >= numVersionSlots || seen[slot] {
					t.Fatalf("%s %d.%d: slot %d out of range or taken", c, r.major, minor, slot)
				}
				seen[slot] = true
				want := fmt.Sprintf("%d.%d", r.major, minor)
				if got := (clientKey{client: c, version: slot}).labels()[1]; got != want {
					t.Errorf("%s slot %d: label %q, want %q", c, slot, got, want)
				}
			}
		}
		most = max(most, n)
	}
	if numVersionSlots != 1+most {
		t.Errorf("numVersionSlots = %d, want %d", numVersionSlots, 1+most)
	}
}

// TestClientLabelsBounded feeds hundreds of made-up User-Agents (random
// bytes, long strings, every CI name, odd versions) and checks that every
// request is counted under label values from the bounded sets, and that
// the series stay within the documented bound.
func TestClientLabelsBounded(t *testing.T) {
	m, reg := newTestMetrics(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var uas []string
	for range 300 {
		b := make([]byte, rng.IntN(300))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		uas = append(uas, string(b))
	}
	uas = append(uas, strings.Repeat("bundler/2.6.9 ci/github,", 1000), strings.Repeat("x", 16<<10))
	for _, ci := range append(slices.Clone(ciNames[:]), "github-actions", "codeship", "", ",,,", "CI") {
		for _, version := range []string{"2.6.9", "1.17.3", "3.0.0", "4.1.2", "0.9", "9.9.9", "2.99", "-1.2", "2.6.9.pre", "2.", ".6", "99999999999999999999.1"} {
			uas = append(uas,
				"bundler/"+version+" rubygems/3.6.9 ruby/3.3.0 (x86_64-linux) command/install options/ ci/"+ci+" 0123",
				"RubyGems/"+version+" x86_64-linux Ruby/3.3.0 ci/"+ci,
				"Ruby, RubyGems/"+version+" x86_64-linux",
				"gem/"+version+" ci/"+ci)
		}
	}
	for _, ua := range uas {
		m.ObserveClient([]byte(ua))
	}

	series := gather(t, reg)["gemproxy_client_requests_total"]
	total := 0.0
	for labels, v := range series {
		total += v
		var client, version, ci string
		for kv := range strings.SplitSeq(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "client":
				client = v
			case "client_version":
				version = v
			case "ci":
				ci = v
			}
		}
		if !slices.Contains(clientNames[:], client) || !slices.Contains(ciNames[:], ci) || !knownVersionLabel(client, version) {
			t.Errorf("series {%s} has a label value outside the bounded sets", labels)
		}
	}
	if int(total) != len(uas) {
		t.Errorf("%v requests counted, want %d", total, len(uas))
	}
	// Other clients have no version: 1 + 49 + 29 version values in all.
	bound := (1 + 49 + 29) * numCIs
	t.Logf("%d User-Agents gave %d series (bound %d)", len(uas), len(series), bound)
	if len(series) > bound {
		t.Errorf("%d series, more than the bound %d", len(series), bound)
	}
	if len(series) < 50 {
		t.Errorf("only %d series: the made-up User-Agents should reach many label sets", len(series))
	}
}

// knownVersionLabel reports whether version is OtherLabel or a
// MAJOR.MINOR knownVersions lists for the client named client.
func knownVersionLabel(client, version string) bool {
	if version == OtherLabel {
		return true
	}
	c := Client(slices.Index(clientNames[:], client))
	for _, r := range knownVersions[c] {
		for minor := 0; minor <= r.maxMinor; minor++ {
			if version == fmt.Sprintf("%d.%d", r.major, minor) {
				return true
			}
		}
	}
	return false
}

// TestObserveClientConcurrent counts from many goroutines at once, so that
// the race detector checks the lazily created series.
func TestObserveClientConcurrent(t *testing.T) {
	m := New(nil, Options{})
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				m.ObserveClient([]byte(bundlerUA))
			}
		}()
	}
	for range 8 {
		<-done
	}
	c := m.ClientRequests.WithLabelValues("bundler", "2.6", "github")
	if got := testutil.ToFloat64(c); got != 800 {
		t.Errorf("counted %v, want 800", got)
	}
}
