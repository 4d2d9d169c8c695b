package rubyfmt

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// RequireTools skips tb unless every tool (ruby, gem, bundle, ...) is in
// PATH; when $CI is set a missing tool fails it instead, so CI cannot
// silently lose the tests that check this package's output with real Ruby.
func RequireTools(tb testing.TB, tools ...string) {
	tb.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			msg := tool + " not found in PATH; install Ruby (Debian: apt-get install -y ruby ruby-bundler) to run this test"
			if os.Getenv("CI") != "" {
				tb.Fatal(msg + " (failing because CI is set)")
			}
			tb.Skip(msg)
		}
	}
}

// RubyEnv returns an environment for ruby, gem and bundle isolated from the
// user's gem setup: everything they write goes under home.
func RubyEnv(home string) []string {
	env := []string{
		"HOME=" + home,
		"GEM_HOME=" + filepath.Join(home, "gemhome"),
		"GEM_PATH=" + filepath.Join(home, "gemhome"),
		"GEM_SPEC_CACHE=" + filepath.Join(home, "specs"),
		"BUNDLE_USER_HOME=" + filepath.Join(home, "bundle"),
		"BUNDLE_APP_CONFIG=" + filepath.Join(home, "bundle-app"),
		"BUNDLE_DISABLE_VERSION_CHECK=true",
		"SOURCE_DATE_EPOCH=315964800",
		"LANG=C.UTF-8",
	}
	for _, k := range []string{"PATH", "TMPDIR"} {
		if v := os.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// RunTool runs name with args in dir with env (at most 3 minutes) and
// returns its combined output; tb fails on a non-zero exit.
func RunTool(tb testing.TB, dir string, env []string, name string, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, buf.String())
	}
	return buf.String()
}
