package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
)

// envConfig names the variable holding the config file path.
const envConfig = "GEMPROXY_CONFIG"

// flagConfig names the flag holding the config file path.
const flagConfig = "config"

// setting is a key that can also be set from the environment and, for the
// commands that offer it, a flag.
type setting struct {
	// key is the TOML key.
	key string
	// flag is the flag name, used as --flag.
	flag string
	// env is the environment variable.
	env string
	// arg names the flag's value in the usage text.
	arg string
	// usage describes the setting in the usage text.
	usage string
	// field returns a *string, *bool or *Duration pointing into c.
	field func(c *Config) any
}

// settings lists the keys settable from the environment and flags.
func settings() []setting {
	return []setting{
		{"listen", "listen", "GEMPROXY_LISTEN", "ADDR", "address to listen on, host:port",
			func(c *Config) any { return &c.Listen }},
		{"upstream", "upstream", "GEMPROXY_UPSTREAM", "URL", "registry to mirror, an absolute http(s) URL",
			func(c *Config) any { return &c.Upstream }},
		{"data_dir", "data-dir", "GEMPROXY_DATA_DIR", "DIR", "directory of the cache file; serve creates it if missing",
			func(c *Config) any { return &c.DataDir }},
		{"log_level", "log-level", "GEMPROXY_LOG_LEVEL", "LEVEL", "debug, info, warn or error",
			func(c *Config) any { return &c.LogLevel }},
		{"log_format", "log-format", "GEMPROXY_LOG_FORMAT", "FORMAT", "text or json",
			func(c *Config) any { return &c.LogFormat }},
		{"offline", "offline", "GEMPROXY_OFFLINE", "", "serve from the cache only, never contacting the upstream (misses 504, writes 503)",
			func(c *Config) any { return &c.Offline }},
		{"shared_store.url", "shared-store", "GEMPROXY_SHARED_STORE", "URL", "s3://BUCKET/PREFIX that the replicas of a fleet share",
			func(c *Config) any { return &c.SharedStore.URL }},
		{"shared_store.endpoint", "s3-endpoint", "GEMPROXY_S3_ENDPOINT", "URL", "S3-compatible server of the shared store (path-style); AWS when unset",
			func(c *Config) any { return &c.SharedStore.Endpoint }},
		{"shared_store.versions_poll", "shared-versions-poll", "GEMPROXY_SHARED_VERSIONS_POLL", "DURATION",
			"how often a replica reads the fleet's /versions pointer in the shared store",
			func(c *Config) any { return &c.SharedStore.VersionsPoll }},
		{"admin_token", "", envAdminToken, "", "",
			func(c *Config) any { return &c.AdminToken }},
	}
}

// apply sets s in c from its string form.
func (s setting) apply(c *Config, v string) error {
	switch p := s.field(c).(type) {
	case *string:
		*p = v
	case *bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("invalid boolean %q", v)
		}
		*p = b
	case *Duration:
		return p.UnmarshalText([]byte(v))
	}
	return nil
}

// current returns s's value in c as a string.
func (s setting) current(c *Config) string {
	switch p := s.field(c).(type) {
	case *string:
		return *p
	case *bool:
		return strconv.FormatBool(*p)
	case *Duration:
		return p.String()
	}
	return ""
}

// flagValue is the flag.Value of a setting: it only records the string;
// load applies it after the file and the environment.
type flagValue struct {
	// value is the last value given, or the default for the usage text.
	value string
	// isBool makes "--flag" alone mean true.
	isBool bool
}

// String returns the recorded value.
func (v *flagValue) String() string { return v.value }

// Set records a value; a boolean is checked at once.
func (v *flagValue) Set(s string) error {
	if v.isBool {
		if _, err := strconv.ParseBool(s); err != nil {
			return errors.New("want true or false")
		}
	}
	v.value = s
	return nil
}

// IsBoolFlag reports whether the flag needs no value.
func (v *flagValue) IsBoolFlag() bool { return v.isBool }

// newFlagSet returns a flag set named name with --config and a flag for
// each setting whose key is in keys. Errors and usage are left to the
// caller: the set prints nothing.
func newFlagSet(name string, keys ...string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.String(flagConfig, "", "TOML configuration file")
	d := Defaults()
	for _, s := range settings() {
		for _, k := range keys {
			if k == s.key {
				_, isBool := s.field(&d).(*bool)
				fs.Var(&flagValue{value: s.current(&d), isBool: isBool}, s.flag, s.usage)
			}
		}
	}
	return fs
}
