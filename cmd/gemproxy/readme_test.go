package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/gemproxy/gemproxy/internal/proxy"
)

// policyTable renders the default policy rows as the README's markdown
// table rows, in proxy.Classes order.
func policyTable() string {
	var b strings.Builder
	defaults := classTables(proxy.DefaultPolicies())
	for _, c := range proxy.Classes {
		cc := defaults[string(c)]
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s | %s | %s | %s |\n", c, cc.TTL, cc.NegativeTTL, cc.MaxStale,
			cc.StaleWhileRevalidate, cc.RevalidateTimeout, cc.FirstByteTimeout, cc.IdleTimeout, cc.MaxResponseSize)
	}
	return b.String()
}

// TestReadmePolicyTableEqualsDefaults keeps the README's policy table
// equal to proxy.DefaultPolicies, the one place the defaults are written.
func TestReadmePolicyTableEqualsDefaults(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "|---|---|---|---|---|---|---|---|---|\n", "<!-- end policy-table -->"
	s := string(readme)
	i := strings.Index(s, "<!-- policy-table:")
	j := strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatal("README.md has no policy-table markers")
	}
	table := s[i:j]
	k := strings.Index(table, begin)
	if k < 0 {
		t.Fatal("README.md policy table has no header")
	}
	if got, want := table[k+len(begin):], policyTable(); got != want {
		t.Errorf("README.md policy table:\n%s\nwant (from proxy.DefaultPolicies):\n%s", got, want)
	}
}
