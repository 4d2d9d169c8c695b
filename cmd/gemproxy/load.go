package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/BurntSushi/toml"
)

// load runs the configuration pipeline over the parsed flag set fs:
// Defaults, then the TOML file (--config, else GEMPROXY_CONFIG), then the
// GEMPROXY_* variables from lookupEnv (an empty variable counts as unset),
// then the flags given on the command line, then Validate. An error names
// where the bad value came from: "config PATH: KEY", the variable, or the
// flag.
func load(fs *flag.FlagSet, lookupEnv func(string) (string, bool)) (Config, error) {
	c := Defaults()
	// origin maps a key to where its value came from, for error messages.
	origin := make(map[string]string)

	path := ""
	if v, ok := lookupEnv(envConfig); ok && v != "" {
		path = v
	}
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given[flagConfig] {
		path = fs.Lookup(flagConfig).Value.String()
	}
	c.File = path
	if path != "" {
		keys, err := decodeFile(path, &c)
		if err != nil {
			return Config{}, err
		}
		for _, k := range keys {
			origin[k] = "config " + path + ": " + k
		}
	}

	for _, s := range settings() {
		v, ok := lookupEnv(s.env)
		if !ok || v == "" {
			continue
		}
		if err := s.apply(&c, v); err != nil {
			return Config{}, fmt.Errorf("%s: %w", s.env, err)
		}
		origin[s.key] = s.env
	}

	for _, s := range settings() {
		if !given[s.flag] {
			continue
		}
		if err := s.apply(&c, fs.Lookup(s.flag).Value.String()); err != nil {
			return Config{}, fmt.Errorf("--%s: %w", s.flag, err)
		}
		origin[s.key] = "--" + s.flag
	}

	if err := c.Validate(); err != nil {
		var ke *keyError
		if errors.As(err, &ke) {
			if where, ok := originOf(origin, ke.key); ok {
				return Config{}, fmt.Errorf("%s: %s", where, ke.problem)
			}
		}
		return Config{}, err
	}
	return c, nil
}

// originOf finds where key's value came from: the key itself, or the
// closest enclosing table given (a [class.info] table decoded as a whole).
func originOf(origin map[string]string, key string) (string, bool) {
	for k := key; k != ""; {
		if where, ok := origin[k]; ok && k == key {
			return where, true
		} else if ok {
			return strings.TrimSuffix(where, k) + key, true
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return "", false
}

// decodeFile decodes the TOML file at path over c and returns the keys it
// defines. Syntax errors, bad values and unknown keys are reported as
// "config PATH: ..." with the key or line.
func decodeFile(path string, c *Config) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: cannot read: %w", path, pathCause(err))
	}
	// A schema-free decode first, so that syntax errors are told apart
	// from bad values and reported with their line.
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("config %s: line %d: %s", path, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		return nil, fmt.Errorf("config %s: %s", path, describeDecodeError(err))
	}
	if unknown := topmostKeys(md.Undecoded()); len(unknown) == 1 {
		return nil, fmt.Errorf("config %s: %s", path, unknownKeyError(unknown[0]))
	} else if len(unknown) > 1 {
		return nil, fmt.Errorf("config %s: unknown keys %s", path, strings.Join(unknown, ", "))
	}
	var keys []string
	for _, k := range md.Keys() {
		keys = append(keys, k.String())
	}
	return keys, nil
}

// describeDecodeError renders a toml.Decode error as "KEY: PROBLEM". Bad
// values come as toml.ParseError; type mismatches are untyped errors of the
// form `toml: line 3 (last key "ttl.info"): incompatible types: ...`.
func describeDecodeError(err error) string {
	var pe toml.ParseError
	if errors.As(err, &pe) && pe.LastKey != "" {
		if strings.HasPrefix(pe.Message, pe.LastKey+".") {
			return pe.Message // a table's own decoder named the key inside it
		}
		return pe.LastKey + ": " + pe.Message
	}
	msg := err.Error()
	const marker = `(last key "`
	if i := strings.Index(msg, marker); i >= 0 {
		rest := msg[i+len(marker):]
		if j := strings.Index(rest, `"): `); j >= 0 {
			return rest[:j] + ": " + friendlyTypeError(rest[j+len(`"): `):])
		}
	}
	return msg
}

// topmostKeys renders keys as dotted strings, dropping those whose parent
// is in the list too (an unknown table is reported once).
func topmostKeys(keys []toml.Key) []string {
	seen := make(map[string]bool, len(keys))
	var out []string
	for _, k := range keys {
		parent := false
		for i := 1; i < len(k); i++ {
			if seen[k[:i].String()] {
				parent = true
				break
			}
		}
		seen[k.String()] = true
		if !parent {
			out = append(out, k.String())
		}
	}
	return out
}
