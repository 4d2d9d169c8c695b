package main

import (
	"context"
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
  gemproxy cache verify [flags]                     check every entry and remove the bad ones; print KEY: reason per problem; exit 1 on problems
  gemproxy cache purge [flags] --all | PATH-PREFIX  remove every entry, or those whose key starts with PATH-PREFIX

Without --url the cache commands work on the data directory of a stopped
server (while a server holds it they exit 2); purge, and verify when it
removed entries, then compact the file and print its size before and after.
With --url they ask a running server's admin API, sending the admin token
(GEMPROXY_ADMIN_TOKEN or admin_token); a running server's file does not
shrink, they print how much of it new entries will reuse.

Flags:
`)
	printFlags(w, cacheFlagSet("purge"))
}

// cacheFlagSet returns the flags of gemproxy cache SUB.
func cacheFlagSet(sub string) *flag.FlagSet {
	fs := newFlagSet("cache "+sub, "data_dir")
	fs.String("url", "", "ask the running server at `URL` (http://HOST:PORT) through its admin API instead of opening data_dir")
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
	if serverURL := fs.Lookup("url").Value.String(); serverURL != "" {
		return remoteCacheCommand(sub, prefix, serverURL, cfg.AdminToken, stdout, stderr)
	}
	store, err := openExisting(cfg, sub == "stats")
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
		return purge(store, prefix, stdout, stderr)
	}
}

// purge removes the entries of store under prefix ("" for all), then
// compacts the file.
func purge(store *cache.Store, prefix string, stdout, stderr io.Writer) int {
	n, err := store.Purge(prefix)
	if err != nil {
		fmt.Fprintf(stderr, "gemproxy: cache purge: %v\n", err)
		return exitFailure
	}
	printRemoved(stdout, n)
	return compact(store, "purge", stdout, stderr)
}

// compact closes store after compacting its file, and prints the file's
// size before and after. A failed compaction leaves the file as it was,
// which the error says.
func compact(store *cache.Store, sub string, stdout, stderr io.Writer) int {
	before, after, err := store.CloseCompacted()
	if err != nil {
		fmt.Fprintf(stderr, "gemproxy: cache %s: %v (the file keeps its size; new entries reuse its free space)\n", sub, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: %d bytes before compaction, %d after\n", cache.FileName, before, after)
	return exitOK
}

// printRemoved writes the result of a purge.
func printRemoved(w io.Writer, n int) {
	fmt.Fprintf(w, "removed %d %s\n", n, plural(n, "entry", "entries"))
}

// printReusable writes the size of a running server's file and how much of
// it is free.
func printReusable(w io.Writer, u cache.FileUsage) {
	fmt.Fprintf(w, "%s: %d bytes, %d of them free for new entries (a running server's file does not shrink)\n",
		cache.FileName, u.Bytes, u.Reusable)
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
		return nil, fmt.Errorf("data_dir %s is in use by a running gemproxy%s; stop it first, or use --url http://HOST:PORT with %s",
			dir, lockHolder(dir), envAdminToken)
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

// verify checks every entry of store and removes the bad ones (see
// cache.Store.Repair), printing each problem as it is found and a summary
// line, then compacts the file if it removed any. It returns exitFailure
// if there was any problem.
func verify(store *cache.Store, stdout, stderr io.Writer) int {
	file := store.Path()
	sum, err := store.Repair(context.Background(), func(p cache.RepairProgress) {
		if p.Problem != nil {
			printProblem(stdout, *p.Problem, file)
		}
	})
	if err != nil {
		fmt.Fprintf(stderr, "gemproxy: cache verify: %v\n", err)
		return exitFailure
	}
	printVerifySummary(stdout, sum)
	code := exitOK
	if sum.Removed > 0 {
		code = compact(store, "verify", stdout, stderr)
	}
	if sum.Problems > 0 {
		return exitFailure
	}
	return code
}

// printProblem writes p as "KEY: reason", naming file for a problem of the
// file itself.
func printProblem(w io.Writer, p cache.Problem, file string) {
	key := p.Key
	if key == "" {
		key = file
	}
	removed := ""
	if p.Removed {
		removed = " (removed)"
	}
	fmt.Fprintf(w, "%s: %s%s\n", key, p.Reason, removed)
}

// printVerifySummary writes the last line of a verify.
func printVerifySummary(w io.Writer, sum cache.RepairProgress) {
	removed := ""
	if sum.Problems > 0 {
		removed = fmt.Sprintf(", %d removed", sum.Removed)
	}
	fmt.Fprintf(w, "checked %d %s: %d %s%s\n", sum.Checked, plural(sum.Checked, "entry", "entries"),
		sum.Problems, plural(sum.Problems, "problem", "problems"), removed)
}

// plural returns one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
