package main

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/gemproxy/gemproxy/internal/proxy"
)

// ClassConfig is one [class.CLASS] table: the file form of a proxy.Policy.
// Every key is optional; a key not given keeps its default.
type ClassConfig struct {
	// TTL is how long an entry is served without asking the upstream; 0
	// revalidates on every request. Gems and gemspecs never expire.
	TTL Duration `toml:"ttl"`
	// NegativeTTL is how long an upstream 404 is remembered; 0 disables
	// negative caching.
	NegativeTTL Duration `toml:"negative_ttl"`
	// MaxStale is how long after expiry a stale copy may stand in for an
	// upstream that fails or misses revalidate_timeout; 0 never, and
	// "unlimited" always.
	MaxStale Duration `toml:"max_stale"`
	// StaleWhileRevalidate is the window after expiry in which a stale copy
	// is served at once while a background refresh runs; 0 (the default)
	// revalidates before answering.
	StaleWhileRevalidate Duration `toml:"stale_while_revalidate"`
	// RevalidateTimeout is how long a request for an expired entry waits
	// for the upstream before the stale copy is served.
	RevalidateTimeout Duration `toml:"revalidate_timeout"`
	// FirstByteTimeout bounds the wait for the upstream's headers.
	FirstByteTimeout Duration `toml:"first_byte_timeout"`
	// IdleTimeout bounds the wait between two reads of the upstream's body.
	IdleTimeout Duration `toml:"idle_timeout"`
	// MaxResponseSize bounds the upstream body accepted, counted after any
	// Content-Encoding is decoded; a larger one is a 502, nothing stored.
	MaxResponseSize Size `toml:"max_response_size"`
}

// classConfig renders a policy in file form.
func classConfig(pol proxy.Policy) ClassConfig {
	return ClassConfig{
		TTL:                  Duration(pol.TTL),
		NegativeTTL:          Duration(pol.NegativeTTL),
		MaxStale:             Duration(pol.MaxStale),
		StaleWhileRevalidate: Duration(pol.StaleWhileRevalidate),
		RevalidateTimeout:    Duration(pol.RevalidateTimeout),
		FirstByteTimeout:     Duration(pol.FirstByteTimeout),
		IdleTimeout:          Duration(pol.IdleTimeout),
		MaxResponseSize:      Size(pol.MaxResponseSize),
	}
}

// policy translates the table for proxy.New.
func (cc ClassConfig) policy() proxy.Policy {
	return proxy.Policy{
		TTL:                  time.Duration(cc.TTL),
		NegativeTTL:          time.Duration(cc.NegativeTTL),
		MaxStale:             time.Duration(cc.MaxStale),
		StaleWhileRevalidate: time.Duration(cc.StaleWhileRevalidate),
		RevalidateTimeout:    time.Duration(cc.RevalidateTimeout),
		FirstByteTimeout:     time.Duration(cc.FirstByteTimeout),
		IdleTimeout:          time.Duration(cc.IdleTimeout),
		MaxResponseSize:      int64(cc.MaxResponseSize),
	}
}

// ClassTables is the [class] table: a ClassConfig per cache class name.
// Decoding merges each table given over the defaults already present, so
// that `[class.info] ttl = "5m"` changes only that key.
type ClassTables map[string]ClassConfig

// classTables renders policies in file form.
func classTables(policies map[proxy.Class]proxy.Policy) ClassTables {
	t := make(ClassTables, len(policies))
	for c, pol := range policies {
		t[string(c)] = classConfig(pol)
	}
	return t
}

// policies translates the tables for proxy.Options.
func (t ClassTables) policies() map[proxy.Class]proxy.Policy {
	out := make(map[proxy.Class]proxy.Policy, len(t))
	for name, cc := range t {
		out[proxy.Class(name)] = cc.policy()
	}
	return out
}

// UnmarshalTOML merges the decoded [class.*] tables over t.
func (t *ClassTables) UnmarshalTOML(data any) error {
	tables, ok := data.(map[string]any)
	if !ok {
		return fmt.Errorf("class: want a table of [class.CLASS] tables")
	}
	if *t == nil {
		*t = make(ClassTables)
	}
	for _, name := range sortedKeys(tables) {
		if !slices.Contains(proxy.Classes, proxy.Class(name)) {
			return fmt.Errorf("class.%s: unknown cache class (want one of %v)", name, proxy.Classes)
		}
		table, ok := tables[name].(map[string]any)
		if !ok {
			return fmt.Errorf("class.%s: want a table", name)
		}
		// Re-encode the one table and decode it over the current values:
		// the TOML decoder sets only the keys present.
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(table); err != nil {
			return fmt.Errorf("class.%s: %w", name, err)
		}
		cc := (*t)[name]
		md, err := toml.Decode(buf.String(), &cc)
		if err != nil {
			return fmt.Errorf("class.%s.%s", name, describeDecodeError(err))
		}
		if unknown := md.Undecoded(); len(unknown) > 0 {
			return errors.New(unknownKeyError("class." + name + "." + unknown[0].String()))
		}
		(*t)[name] = cc
	}
	return nil
}

// sortedKeys returns m's keys in order, for deterministic errors.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// validate checks every class's values and returns the first problem as
// a *keyError.
func (t ClassTables) validate() error {
	for _, c := range proxy.Classes {
		cc := t[string(c)]
		key := "class." + string(c) + "."
		if err := checkBounds([]bound[Duration]{
			{key + "ttl", cc.TTL, false},
			{key + "negative_ttl", cc.NegativeTTL, false},
			{key + "max_stale", cc.MaxStale, false},
			{key + "stale_while_revalidate", cc.StaleWhileRevalidate, false},
			{key + "revalidate_timeout", cc.RevalidateTimeout, false},
			{key + "first_byte_timeout", cc.FirstByteTimeout, true},
			{key + "idle_timeout", cc.IdleTimeout, true},
		}); err != nil {
			return err
		}
		if err := checkBounds([]bound[Size]{{key + "max_response_size", cc.MaxResponseSize, true}}); err != nil {
			return err
		}
	}
	return nil
}
