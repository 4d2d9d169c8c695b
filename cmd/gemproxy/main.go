// Command gemproxy is a read-through caching proxy of rubygems.org.
//
//	gemproxy [serve] [flags]      run the proxy (the default command)
//	gemproxy version              print the version
//	gemproxy cache stats|verify   inspect the cache of a stopped server, or
//	                              with --url a running one's
//	gemproxy cache purge --all | PATH-PREFIX
//	gemproxy prefetch [--url URL] LOCKFILE...
//	                              store what Bundler needs to install lockfiles offline
//
// Settings come from defaults, then the TOML file (--config or
// GEMPROXY_CONFIG; every key is documented in config.example.toml), then
// GEMPROXY_* variables, then flags. Exit status: 0 success, 1 a runtime
// failure or problems found by cache verify, 2 a bad configuration or
// command line, a data directory in use, or a listen address in use.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"
)

// version is gemproxy's release, set at build time with
// -ldflags "-X main.version=v1.2.3". See resolvedVersion.
var version = "dev"

// Exit statuses.
const (
	// exitOK is success.
	exitOK = 0
	// exitFailure is a runtime failure, or problems found by cache verify.
	exitFailure = 1
	// exitUsage is a bad configuration or command line, or a resource
	// (data directory, listen address) held by someone else.
	exitUsage = 2
)

// main runs gemproxy with the process's arguments and environment and exits
// with run's status.
func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv))
}

// run dispatches the command line and returns the exit status.
func run(args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return serve(args, stdout, stderr, lookupEnv, mainUsage)
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve(rest, stdout, stderr, lookupEnv, serveUsage)
	case "cache":
		return cacheCommand(rest, stdout, stderr, lookupEnv)
	case "prefetch":
		return prefetchCommand(rest, stdout, stderr, lookupEnv)
	case "version":
		if len(rest) == 1 && (rest[0] == "-h" || rest[0] == "--help" || rest[0] == "-help") {
			fmt.Fprintln(stdout, "Usage: gemproxy version\n\nPrints gemproxy's version and the Go release it was built with.")
			return exitOK
		}
		if len(rest) > 0 {
			return fail(stderr, errors.New("version takes no arguments"))
		}
		fmt.Fprintf(stdout, "gemproxy %s (%s)\n", resolvedVersion(), runtime.Version())
		return exitOK
	case "help":
		mainUsage(stdout)
		return exitOK
	default:
		return fail(stderr, fmt.Errorf("unknown command %q (see gemproxy --help)", cmd))
	}
}

// resolvedVersion is version, or when it was not set at build time the
// main module version recorded by the go command (go install ...@v1.2.3).
func resolvedVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

// revision is the VCS revision, set at link time by `make build` and the
// image (-X main.revision=...), since both build without VCS stamping.
var revision = ""

// buildRevision is the revision set at link time, else the one the go
// command stamped, else "".
func buildRevision() string {
	if revision != "" {
		return revision
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			return s.Value
		}
	}
	return ""
}

// fail prints err as the one line "gemproxy: ERR" on w and returns
// exitUsage.
func fail(w io.Writer, err error) int {
	fmt.Fprintf(w, "gemproxy: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
	return exitUsage
}

// parseArgs parses args with fs, allowing flags after positional
// arguments, and returns the positional ones. On --help it prints usage on
// stdout and returns exitOK with ok false; on a bad flag it prints one line
// on stderr and returns exitUsage with ok false.
func parseArgs(fs *flag.FlagSet, args []string, stdout, stderr io.Writer, usage func(io.Writer)) (positional []string, code int, ok bool) {
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return nil, exitOK, false
		}
		if err != nil {
			return nil, fail(stderr, fmt.Errorf("%s: %w", fs.Name(), err)), false
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), exitOK, true
		}
		if len(rest) == 0 {
			return positional, exitOK, true
		}
		positional, args = append(positional, rest[0]), rest[1:]
	}
}

// mainUsage writes the help of gemproxy with no command: the commands and
// every flag.
func mainUsage(w io.Writer) {
	fmt.Fprint(w, `gemproxy is a read-through caching proxy of rubygems.org.

Usage:
  gemproxy [serve] [flags]                          run the proxy (the default command)
  gemproxy version                                  print the version
  gemproxy cache stats [flags]                      entries, bytes, hits, oldest, newest per class
  gemproxy cache verify [flags]                     check every entry; exit 1 on problems
  gemproxy cache purge [flags] --all | PATH-PREFIX  remove every entry, or those under PATH-PREFIX
  gemproxy prefetch [flags] LOCKFILE...             store what Bundler needs to install the lockfiles offline

Flags of serve:
`)
	printFlags(w, serveFlagSet())
	fmt.Fprint(w, "\nFlags of cache stats, verify and purge:\n")
	printFlags(w, cacheFlagSet("purge"))
	fmt.Fprint(w, "\nFlags of prefetch (see gemproxy prefetch --help):\n")
	printFlags(w, prefetchFlagSet())
	fmt.Fprint(w, precedenceNote)
}

// precedenceNote ends the help texts of serve and of gemproxy alone.
const precedenceNote = `
Settings are taken from defaults < config file < GEMPROXY_* environment < flags.
The config file (TOML) has more keys; config.example.toml documents each one.
GEMPROXY_ADMIN_TOKEN (file key admin_token; no flag, so it never shows in a
process listing) enables the admin API under /-/ that cache --url uses.
Exit status: 0 success, 1 runtime failure or cache verify problems,
2 bad configuration or command line, data directory or listen address in use.
`

// serveUsage writes the help of gemproxy serve.
func serveUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: gemproxy serve [flags]\n\nFlags:\n")
	printFlags(w, serveFlagSet())
	fmt.Fprint(w, precedenceNote)
}

// printFlags writes one line per flag of fs, with its variable and default.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	env := map[string]string{flagConfig: envConfig}
	args := map[string]string{flagConfig: "PATH"}
	for _, s := range settings() {
		env[s.flag], args[s.flag] = s.env, s.arg
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		name, arg, usage := "--"+f.Name, args[f.Name], f.Usage
		if arg == "" {
			// A flag of one command names its value in `backquotes`.
			arg, usage = flag.UnquoteUsage(f)
		}
		if arg != "" {
			name += " " + arg
		}
		var notes []string
		if env[f.Name] != "" {
			notes = append(notes, "env "+env[f.Name])
		}
		if f.DefValue != "" && f.DefValue != "false" {
			notes = append(notes, fmt.Sprintf("default %q", f.DefValue))
		}
		extra := ""
		if len(notes) > 0 {
			extra = " (" + strings.Join(notes, ", ") + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s%s\n", name, usage, extra)
	})
	_ = tw.Flush()
}
