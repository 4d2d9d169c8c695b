package main

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/proxy"
)

// envVars lists every variable load reads.
func envVars() []string {
	vars := []string{envConfig}
	for _, s := range settings() {
		vars = append(vars, s.env)
	}
	return vars
}

// clearEnv unsets (sets empty, which load treats as unset) every variable
// load reads, for the duration of t.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, v := range envVars() {
		t.Setenv(v, "")
	}
}

// writeFile writes content to name in a new temporary directory and
// returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadServe parses args as gemproxy serve does and runs the pipeline with
// the process environment.
func loadServe(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	fs := serveFlagSet()
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return load(fs, os.LookupEnv)
}

// TestLoadPrecedence checks defaults < file < env < flags per key.
func TestLoadPrecedence(t *testing.T) {
	const file = `
listen = "file:1"
upstream = "https://file.example"
data_dir = "/file"
`
	type want struct{ listen, upstream, dataDir string }
	tests := []struct {
		name  string
		file  bool
		env   map[string]string
		flags []string
		want  want
	}{
		{
			name: "defaults",
			want: want{":9292", "https://rubygems.org", "./data"},
		},
		{
			name: "file over defaults",
			file: true,
			want: want{"file:1", "https://file.example", "/file"},
		},
		{
			name: "env over file",
			file: true,
			env:  map[string]string{"GEMPROXY_LISTEN": "env:2", "GEMPROXY_UPSTREAM": "http://env.example", "GEMPROXY_DATA_DIR": "/env"},
			want: want{"env:2", "http://env.example", "/env"},
		},
		{
			name:  "flags over env",
			file:  true,
			env:   map[string]string{"GEMPROXY_LISTEN": "env:2", "GEMPROXY_UPSTREAM": "http://env.example", "GEMPROXY_DATA_DIR": "/env"},
			flags: []string{"--listen", "flag:3", "--upstream=https://flag.example/base", "-data-dir", "/flag"},
			want:  want{"flag:3", "https://flag.example/base", "/flag"},
		},
		{
			name:  "layers mix per key",
			file:  true,
			env:   map[string]string{"GEMPROXY_UPSTREAM": "http://env.example"},
			flags: []string{"--data-dir", "/flag"},
			want:  want{"file:1", "http://env.example", "/flag"},
		},
		{
			name: "empty variable counts as unset",
			file: true,
			env:  map[string]string{"GEMPROXY_LISTEN": ""},
			want: want{"file:1", "https://file.example", "/file"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			if tt.file {
				t.Setenv(envConfig, writeFile(t, "gemproxy.toml", file))
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c, err := loadServe(t, tt.flags...)
			if err != nil {
				t.Fatal(err)
			}
			if got := (want{c.Listen, c.Upstream, c.DataDir}); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestLoadSharedStore: the shared store comes from the file, the
// environment or the flags, and its URL splits into bucket and prefix.
func TestLoadSharedStore(t *testing.T) {
	clearEnv(t)
	t.Setenv(envConfig, writeFile(t, "gemproxy.toml",
		"[shared_store]\nurl = \"s3://file/x\"\nendpoint = \"http://file:1\"\nversions_poll = \"1s\"\n"))
	t.Setenv("GEMPROXY_SHARED_STORE", "s3://fleet-bucket/ci/gems")
	t.Setenv("GEMPROXY_SHARED_VERSIONS_POLL", "2s")
	c, err := loadServe(t, "--s3-endpoint", "http://127.0.0.1:8333", "--shared-versions-poll", "15s")
	if err != nil {
		t.Fatal(err)
	}
	want := SharedStoreConfig{URL: "s3://fleet-bucket/ci/gems", Endpoint: "http://127.0.0.1:8333", VersionsPoll: Duration(15 * time.Second)}
	if c.SharedStore != want {
		t.Fatalf("shared store %+v, want %+v", c.SharedStore, want)
	}
	if bucket, prefix, err := parseSharedStore(c.SharedStore.URL); bucket != "fleet-bucket" || prefix != "ci/gems" || err != nil {
		t.Fatalf("parsed as bucket %q, prefix %q, %v", bucket, prefix, err)
	}
}

// TestLoadConfigFlagOverridesEnv checks --config wins over GEMPROXY_CONFIG.
func TestLoadConfigFlagOverridesEnv(t *testing.T) {
	clearEnv(t)
	t.Setenv(envConfig, writeFile(t, "env.toml", `listen = "env-file:1"`))
	flagFile := writeFile(t, "flag.toml", `listen = "flag-file:2"`)
	c, err := loadServe(t, "--config", flagFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "flag-file:2" {
		t.Errorf("listen = %q, want the --config file's", c.Listen)
	}
}

// TestExampleConfigEqualsDefaults keeps config.example.toml equal to
// Defaults, with every key set.
func TestExampleConfigEqualsDefaults(t *testing.T) {
	const path = "../../config.example.toml"
	var c Config // zero: every value must come from the file
	keys, err := decodeFile(path, &c)
	if err != nil {
		t.Fatal(err)
	}
	if d := Defaults(); !reflect.DeepEqual(c, d) {
		t.Errorf("config.example.toml differs from Defaults():\n file     %+v\n defaults %+v", c, d)
	}
	defined := make(map[string]bool)
	for _, k := range keys {
		defined[k] = true
	}
	for _, k := range knownKeys() {
		if !defined[k] {
			t.Errorf("config.example.toml does not set %s", k)
		}
	}
	if err := Defaults().Validate(); err != nil {
		t.Errorf("Defaults() is invalid: %v", err)
	}
}

// TestLoadRejectsBadValues checks each bad value yields one error naming
// the key and where it came from.
func TestLoadRejectsBadValues(t *testing.T) {
	tests := []struct {
		name  string
		file  string // config file content; "" for none
		env   map[string]string
		flags []string
		// want is the whole error; FILE stands for the config file path.
		want string
	}{
		{name: "unknown key", file: "listen = \":1\"\ncolour = \"blue\"\n",
			want: `config FILE: colour: unknown key`},
		{name: "unknown key in table", file: "[breaker]\nfailure = 1\n",
			want: `config FILE: breaker.failure: unknown key (did you mean breaker.failures?)`},
		{name: "unknown table reported once", file: "[cache]\nsize = 1\n",
			want: `config FILE: cache: unknown key`},
		{name: "several unknown keys", file: "a = 1\nb = 2\n",
			want: `config FILE: unknown keys a, b`},
		{name: "syntax error", file: "listen = \n",
			want: `config FILE: line 1: expected value but found '\n' instead`},
		{name: "wrong type", file: "listen = 9292\n",
			want: `config FILE: listen: want a string (in quotes), got an integer`},
		{name: "wrong type in a table", file: "[server]\nmax_connections = \"many\"\n",
			want: `config FILE: server.max_connections: want an integer, got a string`},
		{name: "misspelt key", file: "maxsize = \"1GiB\"\n",
			want: `config FILE: maxsize: unknown key (did you mean max_size?)`},
		{name: "misspelt key in a table", file: "[server]\nidle_timout = \"1s\"\n",
			want: `config FILE: server.idle_timout: unknown key (did you mean server.idle_timeout?)`},
		{name: "misspelt class key", file: "[class.info]\nttll = \"1s\"\n",
			want: `config FILE: class.info.ttll: unknown key (did you mean class.info.ttl?)`},
		{name: "bad duration", file: "[class.info]\nttl = \"abc\"\n",
			want: `config FILE: class.info.ttl: invalid duration "abc"`},
		{name: "duration without unit", file: "sweep_interval = 60\n",
			want: `config FILE: sweep_interval: invalid duration "60": missing unit (e.g. "60s")`},
		{name: "negative duration", file: "sweep_interval = \"-1s\"\n",
			want: `config FILE: sweep_interval: must not be negative`},
		{name: "zero timeout", file: "[upstream_timeouts]\nconnect = \"0s\"\n",
			want: `config FILE: upstream_timeouts.connect: must be positive`},
		{name: "zero drain timeout", file: "[server]\ndrain_timeout = 0\n",
			want: `config FILE: server.drain_timeout: must be positive`},
		{name: "bad size unit", file: "max_size = \"10GB\"\n",
			want: `config FILE: max_size: invalid size "10GB" (want bytes, or a number with B, KiB, MiB, GiB or TiB)`},
		{name: "negative size", file: "memory_cache = -1\n",
			want: `config FILE: memory_cache: invalid size "-1" (want bytes, or a number with B, KiB, MiB, GiB or TiB)`},
		{name: "zero body size", file: "max_body_size = 0\n",
			want: `config FILE: max_body_size: must be positive`},
		{name: "zero response size", file: "[class.info]\nmax_response_size = 0\n",
			want: `config FILE: class.info.max_response_size: must be positive`},
		{name: "zero concurrency", file: "upstream_concurrency = 0\n",
			want: `config FILE: upstream_concurrency: must be positive`},
		{name: "zero pass-through concurrency", file: "upstream_pass_through_concurrency = 0\n",
			want: `config FILE: upstream_pass_through_concurrency: must be positive`},
		{name: "negative max_negative_entries", file: "max_negative_entries = -1\n",
			want: `config FILE: max_negative_entries: must not be negative`},
		{name: "redirect host with a scheme", file: "upstream_redirect_hosts = [\"https://cdn.example/\"]\n",
			want: `config FILE: upstream_redirect_hosts: "https://cdn.example/" is not a host or host:port`},
		{name: "small header limit", file: "[server]\nmax_header_bytes = 10\n",
			want: `config FILE: server.max_header_bytes: must be at least 1024`},
		{name: "ftp upstream in file", file: "upstream = \"ftp://rubygems.org\"\n",
			want: `config FILE: upstream: "ftp://rubygems.org" is not an http or https URL`},
		{name: "relative upstream", flags: []string{"--upstream", "rubygems.org"},
			want: `--upstream: "rubygems.org" is not an http or https URL`},
		{name: "upstream with query in env", env: map[string]string{"GEMPROXY_UPSTREAM": "https://rubygems.org/?a=1"},
			want: `GEMPROXY_UPSTREAM: "https://rubygems.org/?a=1" must not have a query`},
		{name: "upstream with fragment in flag", flags: []string{"--upstream", "https://rubygems.org/#x"},
			want: `--upstream: "https://rubygems.org/#x" must not have a fragment`},
		{name: "upstream with credentials", flags: []string{"--upstream", "https://u:p@rubygems.org"},
			want: `--upstream: "https://u:p@rubygems.org" must not contain credentials`},
		{name: "bad log level in env", env: map[string]string{"GEMPROXY_LOG_LEVEL": "verbose"},
			want: `GEMPROXY_LOG_LEVEL: unknown level "verbose" (want debug, info, warn or error)`},
		{name: "bad log format in flag", flags: []string{"--log-format", "xml"},
			want: `--log-format: unknown format "xml" (want text or json)`},
		{name: "bad log format in file", file: "log_format = \"xml\"\n",
			want: `config FILE: log_format: unknown format "xml" (want text or json)`},
		{name: "bad boolean in env", env: map[string]string{"GEMPROXY_OFFLINE": "maybe"},
			want: `GEMPROXY_OFFLINE: invalid boolean "maybe"`},
		{name: "listen without port", flags: []string{"--listen", "9292"},
			want: `--listen: invalid address "9292" (want host:port, e.g. ":9292")`},
		{name: "flag overrides a bad env value", env: map[string]string{"GEMPROXY_LOG_LEVEL": "verbose"},
			flags: []string{"--log-level", "loud"},
			want:  `--log-level: unknown level "loud" (want debug, info, warn or error)`},
		{name: "shared store not s3 in flag", flags: []string{"--shared-store", "https://bucket/prefix"},
			want: `--shared-store: "https://bucket/prefix" is not s3://BUCKET/PREFIX`},
		{name: "shared store with a bad prefix in file", file: "[shared_store]\nurl = \"s3://bucket/a//b\"\n",
			want: `config FILE: shared_store.url: prefix of "s3://bucket/a//b": blobstore: invalid key: "a//b": empty, "." or ".." segment`},
		{name: "s3 endpoint without a shared store", env: map[string]string{"GEMPROXY_S3_ENDPOINT": "http://127.0.0.1:8333"},
			want: `GEMPROXY_S3_ENDPOINT: set without shared_store.url`},
		{name: "s3 endpoint not a URL", flags: []string{"--shared-store", "s3://b", "--s3-endpoint", "minio:9000"},
			want: `--s3-endpoint: "minio:9000" is not an http or https URL`},
		{name: "zero versions poll in file", file: "[shared_store]\nversions_poll = \"0s\"\n",
			want: `config FILE: shared_store.versions_poll: must be positive`},
		{name: "bad versions poll in env", env: map[string]string{"GEMPROXY_SHARED_VERSIONS_POLL": "often"},
			want: `GEMPROXY_SHARED_VERSIONS_POLL: invalid duration "often"`},
		{name: "missing config file", env: map[string]string{envConfig: "/nonexistent/gemproxy.toml"},
			want: `config /nonexistent/gemproxy.toml: cannot read: no such file or directory`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			path := ""
			if tt.file != "" {
				path = writeFile(t, "gemproxy.toml", tt.file)
				t.Setenv(envConfig, path)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := loadServe(t, tt.flags...)
			want := strings.ReplaceAll(tt.want, "FILE", path)
			if err == nil || err.Error() != want {
				t.Errorf("error = %v\nwant    %s", err, want)
			}
		})
	}
}

// TestEnsureDataDir checks the data directory is created and probed.
func TestEnsureDataDir(t *testing.T) {
	file := writeFile(t, "regular", "not a directory")
	tests := []struct {
		name string
		dir  string
		want string // "" for success
	}{
		{name: "created when missing", dir: filepath.Join(t.TempDir(), "a", "b")},
		{name: "existing", dir: t.TempDir()},
		// A path under a regular file cannot be created, even by root.
		{name: "under a regular file", dir: filepath.Join(file, "data"),
			want: "data_dir " + filepath.Join(file, "data") + ": cannot create: not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ensureDataDir(tt.dir)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want == "":
				if fi, err := os.Stat(tt.dir); err != nil || !fi.IsDir() {
					t.Fatalf("%s not created: %v", tt.dir, err)
				}
				if left, _ := os.ReadDir(tt.dir); len(left) != 0 {
					t.Errorf("write test left %v behind", left)
				}
			case err == nil || err.Error() != tt.want:
				t.Errorf("error = %v, want %s", err, tt.want)
			}
		})
	}
}

// TestSizeUnmarshalText checks the size syntax.
func TestSizeUnmarshalText(t *testing.T) {
	tests := []struct {
		in      string
		want    Size
		wantErr bool
	}{
		{in: "0", want: 0},
		{in: "1024", want: 1024},
		{in: "512B", want: 512},
		{in: "64KiB", want: 64 << 10},
		{in: "500MiB", want: 500 << 20},
		{in: "10GiB", want: 10 << 30},
		{in: "2TiB", want: 2 << 40},
		{in: "10 gib", want: 10 << 30},
		{in: "", wantErr: true},
		{in: "GiB", wantErr: true},
		{in: "10GB", wantErr: true},
		{in: "1.5GiB", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "9999999TiB", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var s Size
			err := s.UnmarshalText([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && s != tt.want {
				t.Errorf("got %d, want %d", s, tt.want)
			}
		})
	}
}

// TestSizeString checks sizes print with the largest exact unit.
func TestSizeString(t *testing.T) {
	for _, tt := range []struct {
		in   Size
		want string
	}{{0, "0"}, {1000, "1000B"}, {64 * KiB, "64KiB"}, {10 * GiB, "10GiB"}, {GiB + 1, "1073741825B"}} {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
	}
}

// TestOptionsTranslation checks the translation into cache and proxy
// options, zero values included.
func TestOptionsTranslation(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		check func(t *testing.T, c Config)
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			co := c.CacheOptions(false)
			if co.MaxSize != 10<<30 || co.MaxNegativeEntries != 10000 || co.MemoryBudget != 64<<20 || co.MemoryBodyLimit != 0 ||
				co.FillTimeout != 10*time.Minute || co.LockTimeout != 0 || co.ReadOnly { // LockTimeout: the cache's default
				t.Errorf("cache options %+v", co)
			}
			po := mustProxyOptions(t, c)
			if po.Upstream.URL.String() != "https://rubygems.org" || po.Upstream.MaxConcurrent != 32 ||
				po.Upstream.ConnectTimeout != 10*time.Second || po.Upstream.FirstByteTimeout != 30*time.Second ||
				po.Upstream.IdleTimeout != 30*time.Second {
				t.Errorf("upstream options %+v", po.Upstream)
			}
			if po.MaxBodySize != 500<<20 || po.KeepYanked {
				t.Errorf("proxy options %+v", po)
			}
			if !maps.Equal(po.Policies, proxy.DefaultPolicies()) {
				t.Errorf("policies %+v, want the defaults %+v", po.Policies, proxy.DefaultPolicies())
			}
			want := proxy.ServerOptions{ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16384, MaxConnections: 10000}
			if po.Server != want {
				t.Errorf("server options %+v, want %+v", po.Server, want)
			}
		}},
		{name: "zero means off", file: `
max_size = 0
memory_cache = 0
max_negative_entries = 0
[class.info]
ttl = "0s"
negative_ttl = "0s"
max_stale = "0s"
`, check: func(t *testing.T, c Config) {
			co := c.CacheOptions(true)
			if co.MaxSize != -1 || co.MaxNegativeEntries != -1 || co.MemoryBodyLimit != -1 || !co.ReadOnly {
				t.Errorf("cache options %+v: want no caps, no memory bodies, read-only", co)
			}
			po := mustProxyOptions(t, c)
			info := proxy.DefaultPolicies()[proxy.ClassInfo]
			info.TTL, info.NegativeTTL, info.MaxStale = 0, 0, 0
			if po.Policies[proxy.ClassInfo] != info {
				t.Errorf("info policy %+v, want %+v (only the keys given changed)", po.Policies[proxy.ClassInfo], info)
			}
			if po.Policies[proxy.ClassVersions] != proxy.DefaultPolicies()[proxy.ClassVersions] {
				t.Errorf("versions policy %+v changed", po.Policies[proxy.ClassVersions])
			}
		}},
		{name: "values pass through", file: `
upstream = "http://mirror.internal:8080/rubygems"
keep_yanked = true
max_body_size = "1GiB"
upstream_concurrency = 4
upstream_pass_through_concurrency = 8
[upstream_timeouts]
fill = "1h"
[server]
write_timeout = "5m"
[class.api]
max_response_size = "1MiB"
`, check: func(t *testing.T, c Config) {
			if co := c.CacheOptions(false); co.FillTimeout != time.Hour {
				t.Errorf("FillTimeout = %v", co.FillTimeout)
			}
			po := mustProxyOptions(t, c)
			if po.Policies[proxy.ClassAPI].MaxResponseSize != 1<<20 || po.Policies[proxy.ClassGem].MaxResponseSize != 500<<20 {
				t.Errorf("max_response_size: api %d, gem %d", po.Policies[proxy.ClassAPI].MaxResponseSize, po.Policies[proxy.ClassGem].MaxResponseSize)
			}
			if !po.KeepYanked || po.MaxBodySize != 1<<30 || po.Upstream.MaxConcurrent != 4 || po.Upstream.MaxPassThrough != 8 ||
				po.Server.WriteTimeout != 5*time.Minute || po.Upstream.URL.Path != "/rubygems" {
				t.Errorf("proxy options %+v", po)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			if tt.file != "" {
				t.Setenv(envConfig, writeFile(t, "gemproxy.toml", tt.file))
			}
			c, err := loadServe(t)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

// mustProxyOptions returns c.ProxyOptions or fails t.
func mustProxyOptions(t *testing.T, c Config) proxy.Options {
	t.Helper()
	po, err := c.ProxyOptions()
	if err != nil {
		t.Fatal(err)
	}
	return po
}

// TestClassTablesValidated rejects an unknown class, an unknown key, a
// bad value and a negative or zero one, naming the file and the key.
func TestClassTablesValidated(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"[class.gems]\nidle_timeout = \"1s\"\n", "class.gems: unknown cache class"},
		{"[class.gem]\nidle = \"1s\"\n", "class.gem.idle: unknown key"},
		{"[class.gem]\nidle_timeout = \"soon\"\n", "class.gem.idle_timeout"},
		{"[class.gem]\nidle_timeout = \"-1s\"\n", "class.gem.idle_timeout: must not be negative"},
		{"class.info.first_byte_timeout = \"0s\"\n", "class.info.first_byte_timeout: must be positive"},
	} {
		clearEnv(t)
		path := writeFile(t, "gemproxy.toml", tc.file)
		t.Setenv(envConfig, path)
		_, err := loadServe(t)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: %v, want %q naming %s", tc.file, err, tc.want, path)
		}
	}
}

// TestUnlimitedDuration round-trips "unlimited", the file's word for a
// bound that never runs out.
func TestUnlimitedDuration(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("unlimited")); err != nil || time.Duration(d) != proxy.Unlimited {
		t.Fatalf("unlimited parsed as %v, %v", d, err)
	}
	if d.String() != "unlimited" {
		t.Fatalf("unlimited written as %q", d.String())
	}
}
