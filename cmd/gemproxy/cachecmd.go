package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gemproxy/gemproxy/internal/cache"
)

// cacheUsage writes the help of gemproxy cache.
func cacheUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  gemproxy cache stats [flags]                      entries, bytes, hits, oldest, newest per class
  gemproxy cache verify [flags]                     check every entry; print KEY: reason per problem; exit 1 on problems
  gemproxy cache purge [flags] --all | PATH-PREFIX  remove every entry, or those whose key starts with PATH-PREFIX

The cache commands work on the data directory of a stopped server; while a
server holds it they exit 2.

Flags:
`)
	printFlags(w, cacheFlagSet("purge"))
}

// cacheFlagSet returns the flags of gemproxy cache SUB.
func cacheFlagSet(sub string) *flag.FlagSet {
	fs := newFlagSet("cache "+sub, "data_dir")
	if sub == "purge" {
		fs.Bool("all", false, "purge only: remove every entry")
	}
	return fs
}

// cacheCommand runs gemproxy cache SUB and returns the exit status.
func cacheCommand(args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	if len(args) == 0 {
		return fail(stderr, errors.New("cache: missing subcommand (stats, verify or purge)"))
	}
	sub := args[0]
	switch sub {
	case "-h", "-help", "--help", "help":
		cacheUsage(stdout)
		return exitOK
	case "stats", "verify", "purge":
	default:
		return fail(stderr, fmt.Errorf("cache: unknown subcommand %q (want stats, verify or purge)", sub))
	}
	fs := cacheFlagSet(sub)
	positional, code, ok := parseArgs(fs, args[1:], stdout, stderr, cacheUsage)
	if !ok {
		return code
	}
	prefix := ""
	if sub == "purge" {
		all := fs.Lookup("all").Value.String() == "true"
		switch {
		case all && len(positional) == 0:
		case !all && len(positional) == 1 && strings.HasPrefix(positional[0], "/"):
			prefix = positional[0]
		case !all && len(positional) == 1:
			return fail(stderr, fmt.Errorf("cache purge: PATH-PREFIX %q must start with / (e.g. /info/rails)", positional[0]))
		default:
			return fail(stderr, errors.New("cache purge: give either --all or one PATH-PREFIX"))
		}
	} else if len(positional) > 0 {
		return fail(stderr, fmt.Errorf("cache %s: unexpected argument %q", sub, positional[0]))
	}
	cfg, err := load(fs, lookupEnv)
	if err != nil {
		return fail(stderr, err)
	}
	store, err := openExisting(cfg, sub != "purge")
	if err != nil {
		return fail(stderr, err)
	}
	defer func() { _ = store.Close() }()

	switch sub {
	case "stats":
		printStats(stdout, store.Stats())
		return exitOK
	case "verify":
		return verify(store, stdout, stderr)
	default:
		n, err := store.Purge(prefix)
		if err == nil {
			err = store.Close()
		}
		if err != nil {
			fmt.Fprintf(stderr, "gemproxy: cache purge: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "removed %d %s\n", n, plural(n, "entry", "entries"))
		return exitOK
	}
}

// openExisting opens the cache file of cfg.DataDir, which must exist: the
// cache commands never create one.
func openExisting(cfg Config, readOnly bool) (*cache.Store, error) {
	dir := cfg.DataDir
	if _, err := os.Stat(filepath.Join(dir, cache.FileName)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("data_dir %s: no %s here (nothing cached yet, or another directory)", dir, cache.FileName)
		}
		return nil, fmt.Errorf("data_dir %s: %w", dir, pathCause(err))
	}
	store, err := cache.Open(dir, cfg.CacheOptions(readOnly))
	if errors.Is(err, cache.ErrLocked) {
		return nil, fmt.Errorf("data_dir %s is in use by a running gemproxy; stop it first", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", dir, err)
	}
	return store, nil
}

// printStats writes the per-class table of st and a total line. Every
// class of the route table is listed, empty or not.
func printStats(w io.Writer, st cache.Stats) {
	classes := classNames()
	for _, name := range slices.Sorted(maps.Keys(st.Classes)) {
		if !slices.Contains(classes, name) {
			classes = append(classes, name)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "class\tentries\tbytes\thits\toldest\tnewest")
	var total cache.ClassStats
	row := func(name string, c cache.ClassStats) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", name, c.Entries, c.Bytes, c.Hits, timeCell(c.Oldest), timeCell(c.Newest))
	}
	for _, name := range classes {
		c := st.Classes[name]
		row(name, c)
		total.Entries += c.Entries
		total.Bytes += c.Bytes
		total.Hits += c.Hits
		if !c.Oldest.IsZero() && (total.Oldest.IsZero() || c.Oldest.Before(total.Oldest)) {
			total.Oldest = c.Oldest
		}
		if c.Newest.After(total.Newest) {
			total.Newest = c.Newest
		}
	}
	row("total", total)
	_ = tw.Flush()
}

// timeCell renders a stats time in UTC, or "-" when there is none.
func timeCell(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// verify prints every problem of store as "KEY: reason" and a summary line,
// and returns exitFailure if there was any.
func verify(store *cache.Store, stdout, stderr io.Writer) int {
	problems, err := store.Verify()
	if err != nil {
		fmt.Fprintf(stderr, "gemproxy: cache verify: %v\n", err)
		return exitFailure
	}
	for _, p := range problems {
		key := p.Key
		if key == "" {
			key = store.Path() // a problem of the file itself
		}
		fmt.Fprintf(stdout, "%s: %s\n", key, p.Reason)
	}
	var entries int64
	for _, c := range store.Stats().Classes {
		entries += c.Entries
	}
	fmt.Fprintf(stdout, "checked %d %s: %d %s\n", entries, plural(int(entries), "entry", "entries"),
		len(problems), plural(len(problems), "problem", "problems"))
	if len(problems) > 0 {
		return exitFailure
	}
	return exitOK
}

// plural returns one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
